"""`wayfinder audit verify` in full and `--since-anchor`, on one store of N chained decisions, each in a fresh
process as an operator runs it; then 500 decisions appended with the service's own code, and both again.

    .venv/bin/python -m bench.audit.incremental --decisions 20000 --out bench/audit/results/incremental.json
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import lib
from bench.audit.verify import build_store


def timed_cli(store: Path, *extra: str) -> dict:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "audit", "verify", *extra, "--store", str(store)],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stdout + done.stderr
    return {"seconds": round(seconds, 2), "said": done.stdout.strip().splitlines()[-1]}


def append(store: Path, n: int) -> None:
    """Append ``n`` decisions through the service, as serving does (each sealed every checkpoint)."""
    from service.decisions import decide, users
    from service.runtime import Runtime
    from service.settings import Settings

    runtime = Runtime(settings=Settings(store=str(store)))
    users.register(runtime, users.Registration(id="bench-appender", role="analyst", consents=["PERSONALIZATION"]))
    for _ in range(n):
        decide.next_steps(runtime, "bench-appender")
    runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--append", type=int, default=500)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        built = build_store(store, args.decisions, seed=7, chunk_quads=500_000, population=2_000)
        print(f"built {built['decisions']:,} decisions in {built['bulk_build_s']} s", flush=True)
        runs = {"full": timed_cli(store), "since-anchor": timed_cli(store, "--since-anchor")}
        append(store, args.append)
        runs["full-after-append"] = timed_cli(store)
        runs["since-anchor-after-append"] = timed_cli(store, "--since-anchor")
    for name, r in runs.items():
        print(f"{name:26s} {r['seconds']:8.2f} s   {r['said']}")
    if args.out:
        text = lib.table(["run", "seconds", "output"], [(n, r["seconds"], r["said"]) for n, r in runs.items()])
        lib.write_result(args.out.resolve().parent, args.out.stem, {"store": built, "runs": runs}, markdown=text)


if __name__ == "__main__":
    main()
