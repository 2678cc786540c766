"""The sealed audit tier at scale: bytes per decision hot and at rest, and what sealing, checking and querying cost.

Builds (or reuses) a store of chained decisions (``bench.audit.verify.build_store``), then in one run:
the store's size and a full ``audit verify`` before sealing; ``audit seal`` of every decision but the head;
the store's size after (RocksDB tables after flush and compaction), the segments' size; a full and an
incremental verify over both tiers; an archive of the store with every segment, and one lineage query
(``why-decision`` of a sealed decision) on it. Each step runs as the ``wayfinder`` command an operator types,
timed with its peak memory (``/usr/bin/time -v``).

    .venv/bin/python -m bench.audit.sealed --store /tmp/wf-seal100k --decisions 100000 \\
        --out bench/audit/results/sealed-100k.json
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from bench.audit.verify import build_store
from bench.lib.results import table, write_result
from service.clock import parse_datetime

WAYFINDER = str(Path(sys.executable).with_name("wayfinder"))


def sst_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.sst"))


def compact(folder: Path) -> int:
    """Flush and compact the store's tables; return their bytes."""
    from service.knowledge.embedded import Store

    store = Store(folder)
    store.flush()
    store.optimize()
    store.close()
    return sst_bytes(folder)


def timed(*args: str) -> dict:
    """Run a wayfinder command under /usr/bin/time -v; return its wall time, peak memory and last output line."""
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", WAYFINDER, *args], capture_output=True, text=True)
    wall = time.perf_counter() - started
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0:
        raise SystemExit(f"wayfinder {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return {
        "wall_s": round(wall, 2),
        "peak_mb": round(int(peak.group(1)) / 1024, 1) if peak else None,
        "said": lines[-1] if lines else "",
    }


def a_sealed_decision(store: Path) -> str:
    """The ID of the first decision of the first segment."""
    import gzip

    from service.audit.sealed import Sealed

    segment = Sealed(store.with_name(store.name + ".sealed")).segments()[0]
    with gzip.open(segment.path, "rt") as text:
        for line in text:
            found = re.match(r"<https://w3id\.org/wayfinder/decision/([0-9a-f-]{36})[>/]", line)
            if found:
                return found.group(1)
    raise SystemExit("no decision in the first segment")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--reuse", action="store_true", help="use the store as it is (built by an earlier run)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--skip-before", action="store_true", help="leave out the full verify before sealing (measured elsewhere)"
    )
    parser.add_argument(
        "--archive-first-segment",
        action="store_true",
        help="archive only the first segment's window (--until), not every segment: what an auditor asks of a month",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    store = args.store
    sealed = store.with_name(store.name + ".sealed")
    result: dict = {"decisions": args.decisions}
    if not args.reuse:
        shutil.rmtree(sealed, ignore_errors=True)
        result["build"] = build_store(store, args.decisions, seed=7, chunk_quads=500_000, population=2_000)
    result["hot_bytes_before"] = compact(store)
    if not args.skip_before:
        result["verify_before"] = timed("audit", "verify", "--store", str(store), "--workers", str(args.workers))
    # Every decision is older than a second by now: all but each chain's head are sealed.
    result["seal"] = timed("audit", "seal", "--store", str(store), "--older-than-days", "0.00001")
    result["hot_bytes_after"] = compact(store)
    segments = sorted(sealed.glob("*.json"))
    manifests = [json.loads(p.read_text()) for p in segments]
    result["segments"] = len(manifests)
    result["sealed_records"] = sum(m["records"] for m in manifests)
    result["sealed_decisions"] = sum(m["decisions"] for m in manifests)
    result["sealed_bytes"] = sum(m["bytes"] for m in manifests) + sum(p.stat().st_size for p in segments)
    result["verify_after"] = timed("audit", "verify", "--store", str(store), "--workers", str(args.workers))
    result["verify_since_anchor_after"] = timed("audit", "verify", "--store", str(store), "--since-anchor")
    decision = a_sealed_decision(store)
    result["decision_hot"] = subprocess.run(
        [WAYFINDER, "audit", "decision", decision, "--store", str(store)], capture_output=True
    ).returncode  # 2: not in the hot store
    result["decision_sealed"] = timed("audit", "decision", decision, "--store", str(store), "--sealed")
    archive = store.with_name(store.name + ".archive")
    shutil.rmtree(archive, ignore_errors=True)
    window = []
    if args.archive_first_segment:
        first = min(manifests, key=lambda m: m["first"])
        until = parse_datetime(first["newest"]) + timedelta(milliseconds=1)
        window = ["--until", until.isoformat()]
    result["archive"] = timed("audit", "archive", str(archive), "--store", str(store), *window)
    result["archive_query"] = timed(
        "audit",
        "query",
        "why-decision",
        "-p",
        f"decision=https://w3id.org/wayfinder/decision/{decision}",
        "--store",
        str(archive),
        "-f",
        "csv",
    )
    shutil.rmtree(archive, ignore_errors=True)
    n = result["sealed_decisions"]
    per = {
        "hot store before sealing (bytes)": result["hot_bytes_before"],
        "hot store after sealing (bytes)": result["hot_bytes_after"],
        "hot store per decision before sealing (bytes)": round(result["hot_bytes_before"] / args.decisions),
        "hot store freed per sealed decision (bytes)": round(
            (result["hot_bytes_before"] - result["hot_bytes_after"]) / n
        ),
        "sealed segment per decision (bytes, manifests included)": round(result["sealed_bytes"] / n),
    }
    result["per_decision"] = per
    rows = [[k, f"{v:,}"] for k, v in per.items()]
    steps = [
        [name, f"{result[key]['wall_s']:.1f} s", f"{result[key]['peak_mb']:,.0f} MB", result[key]["said"][:90]]
        for name, key in (
            ("verify, hot only (before)", "verify_before"),
            ("seal", "seal"),
            ("verify, sealed + hot", "verify_after"),
            ("verify --since-anchor", "verify_since_anchor_after"),
            ("audit decision --sealed", "decision_sealed"),
            ("audit archive (every segment)", "archive"),
            ("why-decision on the archive", "archive_query"),
        )
        if key in result
    ]
    markdown = (
        f"{args.decisions:,} decisions, {result['segments']} segments of {n:,} decisions "
        f"({result['sealed_records']:,} records).\n\n"
        + table(["bytes", "value"], rows)
        + "\n\n"
        + table(["step", "wall", "peak memory", "said"], steps)
    )
    print(markdown)
    if args.out:
        write_result(args.out.parent, args.out.stem, result, markdown=markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
