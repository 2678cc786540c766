"""How long ``wayfinder audit verify`` takes for N decisions, and where the time goes.

For each size N the script builds an on-disk store: the demo (``demo.load_demo``),
24 real decisions through ``decide.next_steps`` (every demo user on every channel,
appended by the real ``AuditTrail``), then N - 24 more decision records chained in
bulk by ``records.ChainWriter``: the real record builder (``decide.decision_triples``)
and hashing (``audit.stored_form``, ``audit.content_hash``) with
``AuditTrail.append``'s chaining, written in chunks with pyoxigraph's
the store's ``bulk_load``. Records are realistic: 15 ranked candidates each, 5 returned
with 1 to 3 reasons, 1 to 3 consent records, role, plan, industry and 0 to 8 events
used (``records.RecordFactory``). An anchor line is written every 1000 records,
as the service's checkpoints do.

Then, in a fresh subprocess (clean peak RSS, the store closed by the builder), it
runs what the command runs: ``Runtime(Settings(store=DIR))`` and
``audit.verify(store, queries["audit-index"], anchors=trail.anchors())``, and times
the index query alone. On one size it also profiles verify (cProfile, top 15), runs
the real command line (``.venv/bin/wayfinder audit verify --store DIR``), and tries
an experimental parallel check (what a speed-up could look like; not service code).

Before any of that, a small store checks that ``verify`` accepts the bulk-built
records (ok=True, with a real ``next_steps`` decision appended after them) and
rejects a tampered one (a candidate's score changed: broken at that record).

The page cache is warm (the builder has just written the store): these are warm
timings, the best case for a command run right after writes.

    .venv/bin/python -m bench.audit.verify                        # 10k and 100k decisions (about 22 min here)
    .venv/bin/python -m bench.audit.verify --sizes 10000          # quick (about 3 min)
    .venv/bin/python -m bench.audit.verify --sizes 10000,100000,1000000   # 1M: ~3 h here, ~36 GB of disk
    .venv/bin/python -m bench.audit.verify --report-only          # re-render table + 1M extrapolation from the JSON

Stores are built under ``--dir`` (default ``var/bench-audit``) and removed at the
end unless ``--keep``. Results: ``bench/audit/results/verify.json`` and
``bench/audit/results/verify-profile-<N>.txt``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import multiprocessing as mp
import os
import pstats
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyoxigraph as ox

from bench import lib
from bench.audit import records
from service import demo
from service.audit import chain as audit
from service.decisions import decide
from service.knowledge import vocab
from service.runtime import Runtime
from service.settings import Settings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = HERE / "results"


# -- building ----------------------------------------------------------------------------------------------


def chain_writer(runtime: Runtime, *, checkpoint_every: int, chunk_quads: int) -> records.ChainWriter:
    """A bulk writer that continues the runtime's own audit chain from its head."""
    trail = runtime.trail
    return records.ChainWriter(
        runtime.store,
        chain=trail.chain,
        head=trail.head(),
        anchor_file=trail.anchor_file,
        checkpoint_every=checkpoint_every,
        chunk_quads=chunk_quads,
    )


def build_store(path: Path, total: int, *, seed: int, chunk_quads: int, population: int) -> dict:
    """Build a store of ``total`` chained decisions (24 real, the rest in bulk); return what it took."""
    if path.exists():
        shutil.rmtree(path)
    anchors = path.with_name(path.name + ".anchors.jsonl")
    anchors.unlink(missing_ok=True)
    started = time.perf_counter()
    runtime = Runtime(settings=Settings(store=str(path)))
    demo.load_demo(runtime)
    demo_s = time.perf_counter() - started
    quads_demo = len(runtime.store)
    captured, _recs = records.capture_real_decisions(runtime)
    real_audit_quads = sum(1 for _ in runtime.store.quads(graph=vocab.AUDIT_GRAPH))
    factory = records.RecordFactory(runtime, captured, seed=seed, population=population)
    trail = runtime.trail
    writer = chain_writer(runtime, checkpoint_every=trail.checkpoint_every, chunk_quads=chunk_quads)
    bulk = max(0, total - len(captured))
    t0 = time.perf_counter()
    for i in range(bulk):
        writer.add(*factory.make(i))
        if (i + 1) % 50_000 == 0:
            rate = (i + 1) / (time.perf_counter() - t0)
            print(f"  built {i + 1:,}/{bulk:,} records ({rate:,.0f}/s)", flush=True)
    writer.write()
    runtime.store.flush()
    build_s = time.perf_counter() - t0
    quads = len(runtime.store)
    audit_quads = real_audit_quads + writer.quads_written  # counted, not scanned: a scan of 1M records takes ~30 min
    head = writer.head
    runtime.store.close()
    return {
        "decisions": head.sequence,
        "real_decisions": len(captured),
        "bulk_records": bulk,
        "demo_load_s": round(demo_s, 2),
        "bulk_build_s": round(build_s, 2),
        "bulk_records_per_s": round(bulk / build_s, 1) if build_s else None,
        "quads_total": quads,
        "quads_demo": quads_demo,
        "audit_quads": audit_quads,
        "audit_quads_per_decision": round(audit_quads / head.sequence, 1),
        "store_bytes": lib.dir_bytes(path),
        "anchor_lines": len(anchors.read_text().splitlines()) if anchors.exists() else 0,
    }


# -- correctness check on a small store --------------------------------------------------------------------


def check_records(path: Path, *, seed: int, n: int) -> dict:
    """verify accepts bulk-built records (followed by a real decision) and rejects a tampered one."""
    if path.exists():
        shutil.rmtree(path)
    path.with_name(path.name + ".anchors.jsonl").unlink(missing_ok=True)
    runtime = Runtime(settings=Settings(store=str(path)))
    demo.load_demo(runtime)
    captured, _ = records.capture_real_decisions(runtime)
    factory = records.RecordFactory(runtime, captured, seed=seed, population=100)
    trail = runtime.trail
    writer = chain_writer(runtime, checkpoint_every=100, chunk_quads=5_000)
    for i in range(n):
        writer.add(*factory.make(i))
    writer.write()
    trail.forget_head()  # another writer appended: re-read the head from the store
    decide.next_steps(runtime, "ana")  # a real decision chained after the bulk records
    index = runtime.queries["audit-index"]
    intact = audit.verify(runtime.store, index, anchors=trail.anchors())
    # Tamper with one bulk record as tests/audit/test_chain.py does: change a candidate's score.
    target_sequence = len(captured) + n // 2
    row = next(r for r in runtime.store.select(index) if int(r["sequence"].value) == target_sequence)
    record = row["record"]
    candidate = next(
        q.object for q in runtime.store.quads(subject=record, predicate=vocab.HAS_CANDIDATE, graph=vocab.AUDIT_GRAPH)
    )
    score = next(q for q in runtime.store.quads(subject=candidate, predicate=vocab.SCORE, graph=vocab.AUDIT_GRAPH))
    runtime.store.commit(
        remove=[score],
        add=[ox.Quad(candidate, vocab.SCORE, ox.Literal("99.0", datatype=vocab.XSD_DOUBLE), vocab.AUDIT_GRAPH)],
    )
    tampered = audit.verify(runtime.store, index, anchors=trail.anchors())
    runtime.store.close()
    shutil.rmtree(path)
    path.with_name(path.name + ".anchors.jsonl").unlink(missing_ok=True)
    result = {
        "records_real": len(captured) + 1,
        "records_bulk": n,
        "intact": {
            "ok": intact.ok,
            "records": intact.records,
            "anchors_checked": intact.anchors_checked,
            "reason": intact.reason,
        },
        "tampered": {
            "ok": tampered.ok,
            "broken_sequence": tampered.broken_sequence,
            "expected_sequence": target_sequence,
            "broken_record_is_target": tampered.broken_record == record.value,
            "reason": tampered.reason,
        },
    }
    result["passed"] = (
        intact.ok
        and intact.records == len(captured) + n + 1
        and not tampered.ok
        and tampered.broken_sequence == target_sequence
        and tampered.broken_record == record.value
    )
    return result


# -- the verify run, in a fresh process --------------------------------------------------------------------


def worker_verify(store: str, profile_out: str | None, scan: bool = False) -> dict:
    base_rss = lib.rss_mb()
    t0 = time.perf_counter()
    runtime = Runtime(settings=Settings(store=store))  # what the command does (cli._runtime)
    index = runtime.queries["audit-index"]
    anchors = runtime.trail.anchors()
    open_s = time.perf_counter() - t0
    rss_open = lib.rss_mb()
    t1 = time.perf_counter()
    if profile_out:
        profiler = cProfile.Profile()
        result = profiler.runcall(audit.verify, runtime.store, index, anchors=anchors)
    else:
        result = audit.verify(runtime.store, index, anchors=anchors)
    verify_s = time.perf_counter() - t1
    peak = lib.peak_rss_mb()
    out = {
        "ok": result.ok,
        "records": result.records,
        "anchors_checked": result.anchors_checked,
        "reason": result.reason,
        "open_s": round(open_s, 3),
        "verify_s": round(verify_s, 3),
        "records_per_s": round(result.records / verify_s, 1),
        "rss_start_mb": base_rss,
        "rss_after_open_mb": rss_open,
        "peak_rss_mb": peak,
    }
    if profile_out:
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("tottime").print_stats(15)
        Path(profile_out).write_text(
            f"cProfile of audit.verify on {store} ({result.records} records, "
            f"{verify_s:.1f} s under the profiler), sorted by own time\n" + text.getvalue()
        )
        out["profiled"] = True
        return out
    # The index query alone (the rest is fetching each record's triples and hashing them).
    t2 = time.perf_counter()
    rows = runtime.store.select(index)
    out["index_query_s"] = round(time.perf_counter() - t2, 3)
    out["index_rows"] = len(rows)
    if not scan:
        return out
    # One full scan of the audit graph: the floor for reading every record's triples once.
    t3 = time.perf_counter()
    n = sum(1 for _ in runtime.store.quads(graph=vocab.AUDIT_GRAPH))
    out["scan_audit_graph_s"] = round(time.perf_counter() - t3, 3)
    out["scan_quads"] = n
    out["scan_us_per_quad"] = round((time.perf_counter() - t3) / n * 1e6, 2) if n else None
    return out


class _ReadOnly:
    """Just what audit.record_triples needs of a Store, over a read-only pyoxigraph store."""

    def __init__(self, path: str) -> None:
        self._ox = ox.Store.read_only(path)

    def quads(self, *, subject=None, predicate=None, object=None, graph=None):
        return self._ox.quads_for_pattern(subject, predicate, object, graph)


_RO: _ReadOnly | None = None


def _pool_init(path: str) -> None:
    global _RO
    _RO = _ReadOnly(path)


def _pool_hash(batch: list[tuple[str, str]]) -> list[str]:
    """Return the records of the batch whose recomputed hash differs from the stored one."""
    bad = []
    for iri, stored in batch:
        if audit.content_hash(audit.record_triples(_RO, ox.NamedNode(iri))) != stored:
            bad.append(iri)
    return bad


def worker_parallel(store: str, processes: int) -> dict:
    """Experimental: the same checks, with the per-record hashing spread over processes.

    Links and sequences are checked from the index rows (a record's stored hash must equal
    its recomputed one, so the next record's previousHash can be compared with the stored
    hash); each process opens the store read-only and recomputes the hashes of a slice.
    """
    t0 = time.perf_counter()
    ro = _ReadOnly(store)
    index = (ROOT / "queries" / "service" / "audit-index.rq").read_text()
    rows = list(ro._ox.query(index, use_default_graph_as_union=True))
    chains: dict[str, list] = {}
    for row in rows:
        chains.setdefault(row["chain"].value, []).append(row)
    work = []
    links_ok = True
    for chain_rows in chains.values():
        previous = audit.GENESIS
        for position, row in enumerate(chain_rows, start=1):
            links_ok &= int(row["sequence"].value) == position and row["previous"].value == previous
            previous = row["hash"].value
            work.append((row["record"].value, row["hash"].value))
    del ro
    batch = 500
    batches = [work[i : i + batch] for i in range(0, len(work), batch)]
    with mp.get_context("spawn").Pool(processes, initializer=_pool_init, initargs=(store,)) as pool:
        bad = [iri for part in pool.imap(_pool_hash, batches) for iri in part]
    elapsed = time.perf_counter() - t0
    return {
        "processes": processes,
        "records": len(work),
        "links_ok": links_ok,
        "hash_mismatches": len(bad),
        "ok": links_ok and not bad,
        "verify_s": round(elapsed, 3),
        "records_per_s": round(len(work) / elapsed, 1),
        "peak_rss_parent_mb": lib.peak_rss_mb(),
    }


def run_worker(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-m", "bench.audit.verify", *args], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_cli(store: Path) -> dict:
    exe = Path(sys.executable).with_name("wayfinder")
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/env", "time", "-f", "%M", str(exe), "audit", "verify", "--store", str(store)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    wall = time.perf_counter() - t0
    lines = proc.stderr.strip().splitlines()
    max_kb = int(lines[-1]) if lines and lines[-1].isdigit() else None
    return {
        "command": f"{os.path.relpath(exe, ROOT)} audit verify --store {os.path.relpath(store, ROOT)}",
        "exit_code": proc.returncode,
        "wall_s": round(wall, 2),
        "output": proc.stdout.strip(),
        "peak_rss_mb": round(max_kb / 1024, 1) if max_kb else None,
    }


# -- main ----------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="decisions per store, comma-separated")
    parser.add_argument("--dir", default="var/bench-audit", help="where the stores are built (removed unless --keep)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--chunk-quads", type=int, default=1_000_000, help="quads per bulk_load call")
    parser.add_argument("--check-records", type=int, default=300, help="bulk records of the correctness check")
    parser.add_argument("--profile-size", type=int, default=10_000, help="size to profile (cProfile); 0: none")
    parser.add_argument("--cli-size", type=int, default=10_000, help="size to run the real command on; 0: none")
    parser.add_argument("--parallel-size", type=int, default=10_000, help="size of the parallel experiment; 0: none")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="re-render the table and the 1M extrapolation from results/verify.json; measure nothing",
    )
    parser.add_argument("--worker", choices=["verify", "parallel"], help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", help=argparse.SUPPRESS)
    parser.add_argument("--scan", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker == "verify":
        print(json.dumps(worker_verify(args.store, args.profile_out, args.scan)))
        return
    if args.worker == "parallel":
        print(json.dumps(worker_parallel(args.store, args.processes)))
        return

    if args.report_only:
        report(json.loads((RESULTS / "verify.json").read_text()))
        return
    command = lib.command_line()
    print(f"$ {command}", flush=True)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    base = (ROOT / args.dir).resolve()
    base.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()

    print("checking that verify accepts bulk-built records and rejects a tampered one ...", flush=True)
    check = check_records(base / "check", seed=args.seed, n=args.check_records)
    print(
        f"  intact: ok={check['intact']['ok']} records={check['intact']['records']}; tampered: ok={check['tampered']['ok']} "
        f"broken at {check['tampered']['broken_sequence']} (expected {check['tampered']['expected_sequence']}) "
        f"-> {'PASSED' if check['passed'] else 'FAILED'}",
        flush=True,
    )
    if not check["passed"]:
        raise SystemExit("the bulk-built records do not verify as the service's do: stopping")

    runs = []
    for n in sizes:
        label = lib.size_label(n)
        path = base / f"store-{label}"
        print(f"[{label}] building {n:,} decisions in {path} ...", flush=True)
        built = build_store(
            path, n, seed=args.seed, chunk_quads=args.chunk_quads, population=min(100_000, max(100, n // 10))
        )
        print(
            f"[{label}] built in {built['bulk_build_s']} s ({built['bulk_records_per_s']} records/s), "
            f"{built['audit_quads']:,} audit quads, {built['store_bytes'] / 1e6:.0f} MB; verifying ...",
            flush=True,
        )
        scan = ["--scan"] if n == args.profile_size else []  # a full scan costs as much as verify: one size only
        measured = run_worker(["--worker", "verify", "--store", str(path), *scan])
        print(
            f"[{label}] verify: {measured['verify_s']} s, ok={measured['ok']}, {measured['records_per_s']} records/s, "
            f"peak RSS {measured['peak_rss_mb']} MB",
            flush=True,
        )
        run = {"size": n, "build": built, "verify": measured}
        if n == args.profile_size:
            profile_path = RESULTS / f"verify-profile-{label}.txt"
            RESULTS.mkdir(parents=True, exist_ok=True)
            run["profile"] = run_worker(
                ["--worker", "verify", "--store", str(path), "--profile-out", str(profile_path)]
            )
            run["profile"]["file"] = os.path.relpath(profile_path, ROOT)
            print(f"[{label}] profiled: {run['profile']['file']}", flush=True)
        if n == args.cli_size:
            run["cli"] = run_cli(path)
            print(
                f"[{label}] {run['cli']['command']}: {run['cli']['wall_s']} s, exit {run['cli']['exit_code']}: "
                f"{run['cli']['output']}",
                flush=True,
            )
        if n == args.parallel_size:
            run["parallel_experiment"] = run_worker(
                ["--worker", "parallel", "--store", str(path), "--processes", str(args.processes)]
            )
            print(
                f"[{label}] parallel experiment ({args.processes} processes): "
                f"{run['parallel_experiment']['verify_s']} s, ok={run['parallel_experiment']['ok']}",
                flush=True,
            )
        runs.append(run)
        if not args.keep:
            shutil.rmtree(path, ignore_errors=True)
            path.with_name(path.name + ".anchors.jsonl").unlink(missing_ok=True)
    if not args.keep:
        try:
            base.rmdir()
        except OSError:
            pass

    payload = {
        "command": command,
        "settings": vars(args),
        "check": check,
        "runs": runs,
        "total_s": round(time.perf_counter() - t_all, 1),
    }
    report(payload)


def extrapolate(runs: list[dict]) -> dict | None:
    """1M decisions from the measured sizes, when 1M itself was not measured.

    Two figures for the time: ``linear`` (the largest size's records/s held constant: a
    lower bound, since the per-record cost rose with size here) and ``trend`` (the
    per-record cost keeps growing by the factor seen between the two largest sizes, per
    the same ratio of sizes). Memory: the peak-RSS slope between the two largest sizes.
    """
    if any(r["size"] == 1_000_000 for r in runs):
        return None
    ordered = sorted(runs, key=lambda r: r["size"])
    largest = ordered[-1]
    v = largest["verify"]
    k = 1_000_000 / v["records"]
    out = {"from_size": largest["size"], "linear_verify_s": round(v["verify_s"] * k, 0)}
    if len(ordered) >= 2:
        a = ordered[-2]["verify"]
        growth = (v["verify_s"] / v["records"]) / (a["verify_s"] / a["records"])  # per-record cost, largest vs previous
        steps = math.log(1_000_000 / v["records"]) / math.log(v["records"] / a["records"])
        out["per_record_cost_growth"] = round(growth, 2)
        out["trend_verify_s"] = round(v["verify_s"] * k * max(1.0, growth) ** steps, 0)
        rss_per_record = (v["peak_rss_mb"] - a["peak_rss_mb"]) / (v["records"] - a["records"])
    else:
        rss_per_record = (v["peak_rss_mb"] - v["rss_after_open_mb"]) / v["records"]
    out.update(
        {
            "method": "EXTRAPOLATED, not measured: time linear in records from the largest size (lower bound) and with "
            "the per-record cost growth seen between the two largest sizes carried on; memory from the peak-RSS "
            "slope between the two largest sizes; disk and quads linear",
            "peak_rss_mb": round(v["peak_rss_mb"] + rss_per_record * (1_000_000 - v["records"]), 0),
            "rss_mb_per_1000_records": round(rss_per_record * 1000, 2),
            "store_gb": round(largest["build"]["store_bytes"] * k / 1e9, 1),
            "audit_quads": int(largest["build"]["audit_quads"] * k),
            "bulk_build_min_here": round(1_000_000 / largest["build"]["bulk_records_per_s"] / 60, 1),
        }
    )
    return out


def report(payload: dict) -> None:
    """Print the table, extrapolate to 1M and write results/verify.json."""
    runs = payload["runs"]
    extrapolation = extrapolate(runs)
    rows = []
    for r in runs:
        b, v = r["build"], r["verify"]
        rows.append(
            (
                lib.size_label(r["size"]),
                f"{v['records']:,}",
                "yes" if v["ok"] else "NO",
                f"{v['verify_s']:.1f}",
                f"{v['records_per_s']:,.0f}",
                f"{v['verify_s'] / v['records'] * 1e3:.2f}",
                f"{v['index_query_s']:.2f}",
                f"{v['scan_audit_graph_s']:.1f}" if "scan_audit_graph_s" in v else "-",
                f"{v['peak_rss_mb']:,.0f}",
                f"{b['audit_quads']:,}",
                f"{b['store_bytes'] / 1e6:,.0f}",
                f"{b['store_bytes'] / r['size'] / 1024:.1f}",
            )
        )
    if extrapolation:
        e = extrapolation
        low, high = e["linear_verify_s"], e.get("trend_verify_s", e["linear_verify_s"])
        rows.append(
            (
                "1M (EXTRAPOLATED)",
                "1,000,000",
                "-",
                f"{low:,.0f} to {high:,.0f}",
                f"{1_000_000 / high:,.0f} to {1_000_000 / low:,.0f}",
                f"{low / 1000:.2f} to {high / 1000:.2f}",
                "-",
                "-",
                f"~{e['peak_rss_mb']:,.0f}",
                f"{e['audit_quads']:,}",
                f"{e['store_gb'] * 1000:,.0f}",
                "-",
            )
        )
    headers = [
        "decisions",
        "records verified",
        "ok",
        "verify s",
        "records/s",
        "ms/record",
        "index query s",
        "full scan of audit graph s",
        "peak RSS MB",
        "audit quads",
        "store MB",
        "KiB/decision",
    ]
    lines = [f"$ {payload['command']}", lib.table(headers, rows)]
    if extrapolation:
        e = extrapolation
        lines.append(
            f"\n1M is an EXTRAPOLATION from {lib.size_label(e['from_size'])}, not a measurement: "
            f"{e['linear_verify_s'] / 60:.0f} min if the per-record cost stayed as at "
            f"{lib.size_label(e['from_size'])}, about {e.get('trend_verify_s', e['linear_verify_s']) / 60:.0f} min "
            f"if it keeps growing as it did (x{e.get('per_record_cost_growth', 1.0)} from the previous size); "
            f"~{e['peak_rss_mb']:,.0f} MB peak RSS, ~{e['store_gb']} GB on disk (building it here would take "
            f"about {e['bulk_build_min_here']:.0f} min)."
        )
    for r in runs:
        if "parallel_experiment" in r:
            p = r["parallel_experiment"]
            lines.append(
                f"parallel experiment at {lib.size_label(r['size'])}: {p['processes']} processes, "
                f"{p['verify_s']} s vs {r['verify']['verify_s']} s sequential, ok={p['ok']}"
            )
        if "cli" in r:
            c = r["cli"]
            lines.append(
                f"{c['command']}: {c['wall_s']} s wall, peak RSS {c['peak_rss_mb']} MB, exit {c['exit_code']}: "
                f"{c['output']}"
            )
    text = "\n".join(lines)
    print()
    print(text)
    payload["extrapolation_1m"] = extrapolation
    payload["table"] = {"headers": headers, "rows": rows}
    payload["text"] = text
    path = lib.write_result(RESULTS, "verify", payload, markdown=text, command=payload["command"])
    print(
        f"\nwrote {path.relative_to(ROOT)}" + (f" (run took {payload['total_s']} s)" if payload.get("total_s") else "")
    )


if __name__ == "__main__":
    main()
