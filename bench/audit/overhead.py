"""What the audit record adds to ``nextSteps``: in-process latency with and without it, and store growth.

On the demo store (``demo.load_demo`` into an on-disk store, as the service runs),
``service.decisions.decide.next_steps`` is called for random demo users and channels in three
modes, interleaved in rounds (each round runs every mode on the same request list,
in a rotating order, so the machine's noise falls on all of them alike):

- ``with audit``: the service as it is (``AuditTrail.append`` after the decision:
  ``stored_form``, ``content_hash``, ``Store.commit``, and every 1000 decisions a
  checkpoint: ``Store.flush`` plus an fsync'd anchor line);
- ``no append``: the same runtime and store, but ``runtime.trail`` replaced by a
  stand-in whose ``append`` does nothing (``runtime.__dict__["trail"] = NoopTrail()``;
  ``Runtime.trail`` is a cached property). The record is still built
  (``decision_triples`` runs as append's argument); only chaining, hashing and the
  write are skipped;
- ``no record``: as ``no append``, and ``decide.decision_triples`` patched to return
  ``[]`` (``unittest.mock.patch.object``): no record building either. The service's
  code is not edited; this mode is the decision alone.

Then the parts, alone: ``decision_triples`` (replayed with the arguments real calls
passed), ``AuditTrail.append`` on the real trail with its parts timed inside it
(``stored_form``, ``content_hash``, ``Store.commit``), for demo-sized records (the
6 demo users have 1 to 8 candidates) and for records of 15 candidates, 5 returned
with reasons (``records.RecordFactory``), and what one checkpoint costs. Store
growth: quads and bytes on disk per decision (after ``Store.flush``; and after a
RocksDB compaction, ``optimize``).

Logging is as in library use (the ``wayfinder`` logger is not configured, so
``log.info`` is filtered out); tracing is OpenTelemetry's no-op (the default).

    .venv/bin/python -m bench.audit.overhead                      # 20 rounds x 250 requests per mode
    .venv/bin/python -m bench.audit.overhead --rounds 4 --per-round 100   # quick

Results: ``bench/audit/results/overhead.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import random
import shutil
import time
from pathlib import Path
from unittest import mock

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

MODES = ["with audit", "no append", "no record"]


class NoopTrail:
    """Stands in for AuditTrail: append does nothing (the record is built, not chained nor stored)."""

    def append(self, record, triples, **_kwargs) -> audit.ChainHead:
        return audit.ChainHead(0, audit.GENESIS)


def _timed(fn, sink: list[float]):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            sink.append(time.perf_counter() - t0)

    return wrapper


def interleaved(full: Runtime, bare: Runtime, *, rounds: int, per_round: int, warmup: int, seed: int) -> dict:
    """next_steps latency per mode, interleaved in rounds; checkpoints of the audited mode noted apart."""
    rng = random.Random(seed)
    trail = full.trail
    samples = {m: [] for m in MODES}
    cpu = {m: [] for m in MODES}  # process CPU time per request (all threads, RocksDB's included)
    per_round_p50 = {m: [] for m in MODES}
    checkpoint_latencies: list[float] = []

    def call(mode: str, user: str, channel: str) -> tuple[float, float]:
        runtime = full if mode == "with audit" else bare
        c0 = time.process_time()
        t0 = time.perf_counter()
        decide.next_steps(runtime, user, channel=channel)
        return time.perf_counter() - t0, time.process_time() - c0

    def run(mode: str, requests: list[tuple[str, str]], keep: bool) -> list[float]:
        out = []
        if mode == "no record":
            patch = mock.patch.object(decide, "decision_triples", lambda *a, **k: [])
        else:
            patch = contextlib.nullcontext()
        with patch:
            for user, channel in requests:
                dt, dc = call(mode, user, channel)
                if keep:
                    cpu[mode].append(dc)
                if (
                    mode == "with audit"
                    and trail._head is not None
                    and trail._head.sequence % trail.checkpoint_every == 0
                ):
                    checkpoint_latencies.append(dt)  # this request also sealed a checkpoint
                out.append(dt)
        return out

    def requests(n: int) -> list[tuple[str, str]]:
        return [(rng.choice(records.DEMO_USERS), rng.choice(records.CHANNELS)) for _ in range(n)]

    warm = requests(warmup)
    for mode in MODES:
        run(mode, warm, keep=False)
    decisions_before = trail.head().sequence
    full.store.flush()
    quads_before = len(full.store)
    bytes_before = lib.dir_bytes(full.store.location)
    anchors_before = trail.anchor_file.stat().st_size if trail.anchor_file.exists() else 0
    t_start = time.perf_counter()
    for r in range(rounds):
        batch = requests(per_round)
        order = MODES[r % len(MODES) :] + MODES[: r % len(MODES)]
        gc.collect()
        for mode in order:
            times = run(mode, batch, keep=True)
            samples[mode].extend(times)
            per_round_p50[mode].append(lib.percentile(times, 50))
    elapsed = time.perf_counter() - t_start
    decisions = trail.head().sequence - decisions_before
    full.store.flush()
    quads_after = len(full.store)
    bytes_after = lib.dir_bytes(full.store.location)
    anchors_after = trail.anchor_file.stat().st_size if trail.anchor_file.exists() else 0
    full.store.optimize()
    bytes_compacted = lib.dir_bytes(full.store.location)
    paired = [a - b for a, b in zip(per_round_p50["with audit"], per_round_p50["no append"], strict=True)]
    paired_rec = [a - b for a, b in zip(per_round_p50["no append"], per_round_p50["no record"], strict=True)]
    return {
        "summary": {m: lib.summary_ms(s) for m, s in samples.items()},
        "cpu_summary": {m: lib.summary_ms(s) for m, s in cpu.items()},
        "per_round_p50_diff_ms": {
            "with_audit_minus_no_append": sorted(round(d * 1e3, 4) for d in paired),
            "no_append_minus_no_record": sorted(round(d * 1e3, 4) for d in paired_rec),
        },
        "checkpoint_requests_ms": [round(x * 1e3, 3) for x in checkpoint_latencies],
        "elapsed_s": round(elapsed, 1),
        "growth": {
            "decisions": decisions,
            "quads": quads_after - quads_before,
            "quads_per_decision": round((quads_after - quads_before) / decisions, 2),
            "bytes_on_disk_after_flush": bytes_after - bytes_before,
            "bytes_per_decision_after_flush": round((bytes_after - bytes_before) / decisions, 1),
            "store_bytes_before": bytes_before,
            "store_bytes_after_flush": bytes_after,
            "store_bytes_after_optimize": bytes_compacted,
            "anchor_file_bytes_per_decision": round((anchors_after - anchors_before) / decisions, 2),
        },
    }


def capture_args(runtime: Runtime, n: int, seed: int) -> list[dict]:
    """The arguments real next_steps calls pass to decision_triples (appended through the real trail)."""
    rng = random.Random(seed)
    captured: list[dict] = []
    real = decide.decision_triples

    def spy(record, rec, **kwargs):
        captured.append({"record": record, "rec": rec, **kwargs})
        return real(record, rec, **kwargs)

    with mock.patch.object(decide, "decision_triples", spy):
        for _ in range(n):
            decide.next_steps(runtime, rng.choice(records.DEMO_USERS), channel=rng.choice(records.CHANNELS))
    return captured


def time_decision_triples(captured: list[dict], n: int) -> dict:
    times = []
    for i in range(n):
        c = captured[i % len(captured)]
        kwargs = {k: v for k, v in c.items() if k not in ("record", "rec")}
        t0 = time.perf_counter()
        decide.decision_triples(c["record"], c["rec"], **kwargs)
        times.append(time.perf_counter() - t0)
    return lib.summary_ms(times)


def time_append(runtime: Runtime, make, n: int) -> dict:
    """AuditTrail.append alone, on the real trail, with its parts timed inside it."""
    trail = runtime.trail
    parts = {"stored_form": [], "content_hash": [], "store_commit": []}
    total, triples_per_record, checkpoint_appends = [], [], []
    store = runtime.store
    real_commit = store.commit
    store.flush()
    quads_before, bytes_before = len(store), lib.dir_bytes(store.location)
    with (
        mock.patch.object(audit, "stored_form", _timed(audit.stored_form, parts["stored_form"])),
        mock.patch.object(audit, "content_hash", _timed(audit.content_hash, parts["content_hash"])),
        mock.patch.object(store, "commit", _timed(real_commit, parts["store_commit"])),
    ):
        for i in range(n):
            record, triples = make(i)
            triples_per_record.append(len(triples))
            t0 = time.perf_counter()
            head = trail.append(record, triples)
            dt = time.perf_counter() - t0
            total.append(dt)
            if head.sequence % trail.checkpoint_every == 0:
                checkpoint_appends.append(dt)
    store.flush()
    quads_after, bytes_after = len(store), lib.dir_bytes(store.location)
    return {
        "append": lib.summary_ms(total),
        "parts": {k: lib.summary_ms(v) for k, v in parts.items()},
        "triples_per_record_mean": round(sum(triples_per_record) / n, 1),
        "checkpoint_appends_ms": [round(x * 1e3, 3) for x in checkpoint_appends],
        "quads_per_decision": round((quads_after - quads_before) / n, 2),
        "bytes_per_decision_after_flush": round((bytes_after - bytes_before) / n, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--per-round", type=int, default=250, help="requests per mode per round")
    parser.add_argument("--warmup", type=int, default=200, help="requests per mode before timing")
    parser.add_argument("--micro", type=int, default=3000, help="calls of each part timed alone")
    parser.add_argument("--checkpoints", type=int, default=20, help="checkpoints timed alone")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", default="var/bench-audit-overhead", help="the store (removed unless --keep)")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    command = lib.command_line()
    print(f"$ {command}", flush=True)
    t_all = time.perf_counter()

    path = (ROOT / args.dir).resolve()
    shutil.rmtree(path, ignore_errors=True)
    anchors_file = path.with_name(path.name + ".anchors.jsonl")
    anchors_file.unlink(missing_ok=True)
    full = Runtime(settings=Settings(store=str(path)))
    loaded = demo.load_demo(full)
    bare = Runtime(settings=full.settings, store=full.store)
    bare.__dict__["trail"] = NoopTrail()
    print(f"demo loaded into {path}: {loaded}, {len(full.store):,} quads", flush=True)

    print(f"interleaved: {args.rounds} rounds x {args.per_round} requests x {len(MODES)} modes ...", flush=True)
    inter = interleaved(full, bare, rounds=args.rounds, per_round=args.per_round, warmup=args.warmup, seed=args.seed)

    print("parts alone ...", flush=True)
    captured = capture_args(full, 60, args.seed)
    dt_demo = time_decision_triples(captured, args.micro)
    rng = random.Random(args.seed)

    def demo_record(i: int):
        c = captured[rng.randrange(len(captured))]
        record = ox.NamedNode(vocab.DECISION_BASE + records._uuid(rng))
        kwargs = {k: v for k, v in c.items() if k not in ("record", "rec")}
        return record, decide.decision_triples(record, c["rec"], **kwargs)

    append_demo = time_append(full, demo_record, args.micro)
    real_captured, _ = records.capture_real_decisions(full)
    factory = records.RecordFactory(full, real_captured, seed=args.seed, population=1000)
    t_make = []

    def big_record(i: int):
        return factory.make(i)

    # decision_triples alone for 15-candidate records: factory.make is Recommendation building + decision_triples;
    # time decision_triples by patching it with a timer during make.
    with mock.patch.object(decide, "decision_triples", _timed(decide.decision_triples, t_make)):
        for i in range(args.micro):
            factory.make(i)
    dt_big = lib.summary_ms(t_make)
    append_big = time_append(full, big_record, args.micro)

    checkpoint_times = []
    for _ in range(args.checkpoints):
        decide.next_steps(full, "ana")
        t0 = time.perf_counter()
        full.trail.checkpoint()
        checkpoint_times.append(time.perf_counter() - t0)
    checkpoint = lib.summary_ms(checkpoint_times)
    verify_ok = audit.verify(full.store, full.queries["audit-index"], anchors=full.trail.anchors())

    s = inter["summary"]
    with_, noapp, norec = s["with audit"], s["no append"], s["no record"]

    def diff(a: dict, b: dict, key: str) -> str:
        d = a[key] - b[key]
        return f"{d:+.3f} ms ({d / b[key] * 100:+.1f}%)"

    c = inter["cpu_summary"]
    rows = [
        (
            m,
            f"{s[m]['n']:,}",
            f"{s[m]['p50_ms']:.3f}",
            f"{s[m]['p90_ms']:.3f}",
            f"{s[m]['p99_ms']:.3f}",
            f"{s[m]['max_ms']:.1f}",
            f"{s[m]['mean_ms']:.3f}",
            f"{c[m]['p50_ms']:.3f}",
            f"{c[m]['mean_ms']:.3f}",
        )
        for m in MODES
    ]
    diff_rows = [
        (
            "audit record, all of it (with audit - no record)",
            diff(with_, norec, "p50_ms"),
            diff(with_, norec, "p99_ms"),
            diff(with_, norec, "mean_ms"),
        ),
        (
            "append: chain + hash + commit (with audit - no append)",
            diff(with_, noapp, "p50_ms"),
            diff(with_, noapp, "p99_ms"),
            diff(with_, noapp, "mean_ms"),
        ),
        (
            "building the record (no append - no record)",
            diff(noapp, norec, "p50_ms"),
            diff(noapp, norec, "p99_ms"),
            diff(noapp, norec, "mean_ms"),
        ),
        (
            "CPU: all of it (with audit - no record)",
            diff(c["with audit"], c["no record"], "p50_ms"),
            "-",
            diff(c["with audit"], c["no record"], "mean_ms"),
        ),
    ]
    paired = inter["per_round_p50_diff_ms"]["with_audit_minus_no_append"]
    part_rows = []
    for label, dt, ap in (("demo decisions", dt_demo, append_demo), ("15 candidates, 5 returned", dt_big, append_big)):
        part_rows.append(
            (
                label,
                ap["triples_per_record_mean"],
                f"{dt['p50_ms']:.3f} / {dt['p99_ms']:.3f}",
                f"{ap['append']['p50_ms']:.3f} / {ap['append']['p99_ms']:.3f}",
                f"{ap['parts']['stored_form']['p50_ms']:.3f}",
                f"{ap['parts']['content_hash']['p50_ms']:.3f}",
                f"{ap['parts']['store_commit']['p50_ms']:.3f} / {ap['parts']['store_commit']['p99_ms']:.3f}",
                ap["quads_per_decision"],
                f"{ap['bytes_per_decision_after_flush'] / 1024:.1f}",
            )
        )
    g = inter["growth"]

    out = [
        f"$ {command}",
        "",
        f"next_steps in process, demo store ({len(records.DEMO_USERS)} users x {len(records.CHANNELS)} channels at random), "
        f"ms; {args.rounds} rounds x {args.per_round} requests per mode, interleaved",
        lib.table(["mode", "n", "p50", "p90", "p99", "max", "mean", "CPU p50", "CPU mean"], rows),
        "",
        "(CPU: process CPU time per request, all threads, RocksDB background threads included)",
        "",
        lib.table(["difference", "p50", "p99", "mean"], diff_rows),
        "",
        f"per-round p50 difference (with audit - no append), ms, min / median / max over {len(paired)} rounds: "
        f"{paired[0]:.3f} / {paired[len(paired) // 2]:.3f} / {paired[-1]:.3f}",
        f"requests that also sealed a checkpoint (flush + fsync), ms: {inter['checkpoint_requests_ms']}",
        "",
        "parts alone (ms, p50 / p99; parts are timed inside AuditTrail.append)",
        lib.table(
            [
                "records",
                "triples/record",
                "decision_triples",
                "AuditTrail.append",
                "stored_form p50",
                "content_hash p50",
                "Store.commit",
                "quads/decision",
                "KiB on disk/decision",
            ],
            part_rows,
        ),
        "",
        f"checkpoint alone (Store.flush + fsync'd anchor line): p50 {checkpoint['p50_ms']:.1f} ms, "
        f"max {checkpoint['max_ms']:.1f} ms over {checkpoint['n']}",
        f"store growth over {g['decisions']:,} demo decisions: {g['quads_per_decision']} quads and "
        f"{g['bytes_per_decision_after_flush'] / 1024:.1f} KiB on disk per decision after flush "
        f"(store {g['store_bytes_before'] / 1e6:.1f} -> {g['store_bytes_after_flush'] / 1e6:.1f} MB, "
        f"{g['store_bytes_after_optimize'] / 1e6:.1f} MB after optimize), "
        f"anchor file {g['anchor_file_bytes_per_decision']} B per decision",
        f"chain after the run: ok={verify_ok.ok}, {verify_ok.records:,} records",
    ]
    text = "\n".join(out)
    print()
    print(text)
    payload = {
        "settings": vars(args),
        "store": {"path": os.path.relpath(path, ROOT), "demo": loaded},
        "interleaved": inter,
        "parts": {
            "decision_triples_demo": dt_demo,
            "append_demo": append_demo,
            "decision_triples_15_candidates": dt_big,
            "append_15_candidates": append_big,
            "checkpoint": checkpoint,
        },
        "chain_verified": {"ok": verify_ok.ok, "records": verify_ok.records},
        "text": text,
        "total_s": round(time.perf_counter() - t_all, 1),
    }
    full.store.close()
    if not args.keep:
        shutil.rmtree(path, ignore_errors=True)
        anchors_file.unlink(missing_ok=True)
    result = lib.write_result(RESULTS, "overhead", payload, markdown=text, command=command)
    print(f"\nwrote {result.relative_to(ROOT)} in {payload['total_s']} s")


if __name__ == "__main__":
    main()
