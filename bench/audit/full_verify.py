"""`wayfinder audit verify` (the full check, one scan of the audit graph) against the record-by-record check it
replaced, on stores of N chained decisions; each run in a fresh process, as an operator runs it.

The stores are built by ``verify.build_store`` (24 real decisions, the rest realistic records of 15 candidates,
5 returned, chained in bulk with the service's own record builder and hashing). The record-by-record check
(``chain.verify`` without digests: each record's triples looked up and hashed in Python) runs only up to
``--lookups-up-to`` decisions: it is the slow one.

    .venv/bin/python -m bench.audit.full_verify --sizes 20000,100000 --out bench/audit/results/full_verify.json
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import lib
from bench.audit.verify import build_store

# What each child runs: the command itself (the scan), or the check it replaced.
_COMMAND = """
import sys
from service.cli import app
try:
    app(["audit", "verify", "--store", sys.argv[1]])
except SystemExit as exit:
    code = exit.code
else:
    code = 0
from bench.lib.machine import peak_rss_mb
print("PEAK", peak_rss_mb(), "EXIT", code)
"""

_LOOKUPS = """
import sys
from service.audit.chain import verify
from service.runtime import Runtime
from service.settings import Settings
runtime = Runtime(settings=Settings(store=sys.argv[1]))
result = verify(runtime.store, runtime.queries["audit-index"], anchors=runtime.trail.anchors())
print("intact" if result.ok else "broken", result.records, "records")
from bench.lib.machine import peak_rss_mb
print("PEAK", peak_rss_mb(), "EXIT", 0 if result.ok else 1)
"""


def run(code: str, store: Path) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, str(store)], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    lines = done.stdout.strip().splitlines()
    peak = next((line for line in lines if line.startswith("PEAK ")), "")
    fields = peak.split()
    assert done.returncode == 0 and fields and fields[-1] == "0", done.stdout + done.stderr
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mb": float(fields[1]),
        "said": next(line for line in lines if not line.startswith("PEAK ")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,100000", help="decisions per store, comma-separated")
    parser.add_argument("--lookups-up-to", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, help="where the stores are built (a temporary folder by default)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    runs = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for size in sizes:
            store = Path(tmp) / f"store-{size}"
            built = build_store(store, size, seed=7, chunk_quads=1_000_000, population=10_000)
            print(f"built {built['decisions']:,} decisions in {built['bulk_build_s']} s", flush=True)
            entry = {"size": size, "build": built, "scan": run(_COMMAND, store)}
            print(f"  audit verify (scan): {entry['scan']}", flush=True)
            if size <= args.lookups_up_to:
                entry["lookups"] = run(_LOOKUPS, store)
                print(f"  record by record:    {entry['lookups']}", flush=True)
            runs.append(entry)
            shutil.rmtree(store)  # the next size needs the disk
    rows = [
        (
            f"{r['size']:,}",
            r["build"]["audit_quads_per_decision"],
            r["scan"]["seconds"],
            r["scan"]["peak_rss_mb"],
            r.get("lookups", {}).get("seconds", "-"),
            r.get("lookups", {}).get("peak_rss_mb", "-"),
        )
        for r in runs
    ]
    text = lib.table(
        ["decisions", "quads/decision", "audit verify s", "peak MB", "record by record s", "peak MB"], rows
    )
    print(text)
    if args.out:
        lib.write_result(args.out.resolve().parent, args.out.stem, {"runs": runs}, markdown=text)


if __name__ == "__main__":
    main()
