"""Where verify's time goes: the same chain verified on an on-disk store and on an in-memory one.

Builds N chained decision records (``records.RecordFactory`` / ``records.ChainWriter``,
as verify.py does, without the demo users' real decisions) into an on-disk store
and, with the same quads, into an in-memory store; then, on each, times:

- one full scan of the audit graph (``quads_for_pattern(None, None, None, audit)``):
  reading every record's triples once, Python objects included;
- ``dump`` of the audit graph as N-Triples (the same reads, serialised in Rust: no
  Python objects);
- ``audit.verify`` (the index query, per record 1 + 15 pattern lookups, hashing).

If verify is much faster in memory, the time goes to the on-disk store's reads
(RocksDB lookups while decoding each quad's terms), not to Python or hashing.

    .venv/bin/python -m bench.audit.scan_floor            # 3000 records, about 1-2 min

Results: ``bench/audit/results/scan_floor.json``.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import pyoxigraph as ox

from bench import lib
from bench.audit import records
from service import demo
from service.audit import chain as audit
from service.knowledge import vocab
from service.knowledge.embedded import Store
from service.runtime import Runtime
from service.settings import Settings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = HERE / "results"


def measure(store: Store, raw: ox.Store, index: str) -> dict:
    """Scan and verify through the service's store; dump with pyoxigraph alone (``raw``: the same quads)."""
    t0 = time.perf_counter()
    n = sum(1 for _ in store.quads(graph=vocab.AUDIT_GRAPH))
    scan = time.perf_counter() - t0
    t1 = time.perf_counter()
    raw.dump(format=ox.RdfFormat.N_TRIPLES, from_graph=vocab.AUDIT_GRAPH)
    dump = time.perf_counter() - t1
    t2 = time.perf_counter()
    result = audit.verify(store, index)
    verify_s = time.perf_counter() - t2
    return {
        "quads": n,
        "scan_s": round(scan, 3),
        "scan_us_per_quad": round(scan / n * 1e6, 2),
        "dump_s": round(dump, 3),
        "dump_us_per_quad": round(dump / n * 1e6, 2),
        "verify_s": round(verify_s, 3),
        "verify_ok": result.ok,
        "records": result.records,
        "verify_ms_per_record": round(verify_s / result.records * 1e3, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--dir", default="var/bench-audit-scan")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    command = lib.command_line()
    print(f"$ {command}", flush=True)
    path = (ROOT / args.dir).resolve()
    shutil.rmtree(path, ignore_errors=True)

    # Knowledge (for the factory) in memory; the records go to two fresh stores.
    runtime = Runtime(settings=Settings(store=":memory:"))
    demo.load_demo(runtime)
    captured, _ = records.capture_real_decisions(runtime)
    factory = records.RecordFactory(runtime, captured, seed=args.seed, population=1000)
    writer = records.ChainWriter(
        Store(None), chain="main", head=audit.ChainHead(0, audit.GENESIS), anchor_file=None, chunk_quads=10**12
    )
    for i in range(args.records):
        writer.add(*factory.make(i))
    quads = writer.buffer
    data = records.nquads(quads)
    memory, disk = Store(None), Store(path)
    memory.bulk_load(data, format=ox.RdfFormat.N_QUADS)
    disk.bulk_load(data, format=ox.RdfFormat.N_QUADS)
    disk.flush()
    raw_memory = ox.Store()  # for the dump, which the service's store does not offer: the same quads
    raw_memory.bulk_load(data, format=ox.RdfFormat.N_QUADS)
    raw = {"on disk": ox.Store.read_only(str(path)), "in memory": raw_memory}
    del quads, writer, data
    index = runtime.queries["audit-index"]
    results = {}
    for label, store in (("on disk", disk), ("in memory", memory)):
        results[label] = measure(store, raw[label], index)
        print(f"  {label}: {results[label]}", flush=True)
    disk.close()
    shutil.rmtree(path, ignore_errors=True)

    rows = [
        (
            label,
            f"{r['records']:,}",
            f"{r['quads']:,}",
            f"{r['scan_s']:.2f} ({r['scan_us_per_quad']:.2f})",
            f"{r['dump_s']:.2f} ({r['dump_us_per_quad']:.2f})",
            f"{r['verify_s']:.2f}",
            f"{r['verify_ms_per_record']:.3f}",
            "yes" if r["verify_ok"] else "NO",
        )
        for label, r in results.items()
    ]
    ratio = results["on disk"]["verify_s"] / results["in memory"]["verify_s"]
    text = "\n".join(
        [
            f"$ {command}",
            lib.table(
                [
                    "store",
                    "records",
                    "audit quads",
                    "full scan s (us/quad)",
                    "N-Triples dump s (us/quad)",
                    "verify s",
                    "verify ms/record",
                    "ok",
                ],
                rows,
            ),
            f"\nverify on disk / in memory: x{ratio:.1f}",
        ]
    )
    print()
    print(text)
    out = lib.write_result(
        RESULTS,
        "scan_floor",
        {
            "settings": vars(args),
            "results": results,
            "verify_disk_over_memory": round(ratio, 2),
            "text": text,
        },
        markdown=text,
        command=command,
    )
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
