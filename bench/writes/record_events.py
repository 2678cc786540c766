"""recordEvents throughput in process: the service's write path against the validation it replaced.

Both run in the same process, on the same store, in alternating rounds:

- ``now``: ``users.record_events`` as shipped (``writes.check``, then ``commit_checked``: the
  knowledge loaded once per version into a ``DeltaValidator``, the write and the
  users' profiles and consent records added to it, only the shapes that target the
  new subjects run, property shapes checked for all focus nodes at once);
- ``before``: the same ``users.record_events`` with the validation of ``commit_validated`` as of
  755e586 (``previous_check`` below): the whole knowledge copied into a
  new rdflib graph on every write, pyshacl over all shapes with the focus nodes in a
  list, the SHACL-SPARQL constraints on a fresh Oxigraph store built from that graph.

Batches are drawn as in bench/next_steps/latency.py (5 events per user: 50%
FEATURE_USED when consented, 40% STEP_COMPLETED, 10% STEP_DISMISSED; ``at`` now).
Goal of the issue: 5,000 events/s.

    .venv/bin/python -m bench.writes.record_events --demo
    .venv/bin/python -m bench.next_steps.populate --store /tmp/wf-bench-store-10000 --users 10000 --force
    .venv/bin/python -m bench.writes.record_events --store /tmp/wf-bench-store-10000
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pyoxigraph as ox
import rdflib

from bench import lib
from bench.next_steps.latency import Pool, reports
from service.decisions import users, writes
from service.errors import RefusedWrite
from service.knowledge import vocab
from service.knowledge.terms import to_rdflib_graph
from service.runtime import Runtime
from service.settings import Settings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
GOAL_EVENTS_PER_S = 5000.0
RESULTS = HERE / "results"


def previous_check(
    runtime: Runtime,
    add: list[ox.Quad],
    *,
    users: list[ox.NamedNode],
    source: str | None = None,
    seen: list[ox.Quad] | None = None,
) -> writes.Checked:
    """``writes.check`` with the validation of 755e586: the write validated in a copy of the whole knowledge.

    (It reads the neighbourhood itself, as it did then; ``seen``, the caller's own read, is not used.)
    """
    users = list(dict.fromkeys(users))
    graph = rdflib.Graph()
    graph += runtime.knowledge.graph
    store = runtime.store
    for user in users:
        user_id = user.value.removeprefix(vocab.USER_BASE)
        to_rdflib_graph(store.quads(subject=user, graph=vocab.user_graph(user_id)), graph)
        for record in store.quads(predicate=vocab.HAS_DATA_SUBJECT, object=user, graph=vocab.CONSENT_GRAPH):
            to_rdflib_graph(store.quads(subject=record.subject, graph=vocab.CONSENT_GRAPH), graph)
    to_rdflib_graph(add, graph)
    focus = {q.subject for q in add if isinstance(q.subject, ox.NamedNode)}
    violations = runtime.validator.validate(graph, focus=sorted(rdflib.URIRef(f.value) for f in focus))
    if violations:
        raise RefusedWrite(violations, source=source)
    return writes.Checked(add, users, focus, frozenset(writes.neighbourhood(store, users)), source)


# users.record_events validates with writes.check (outside the write lock), then commits.
SHIPPED = users.check
WRITE_PATHS = {"now": SHIPPED, "before": previous_check}


def measure(
    runtime: Runtime,
    pool: Pool,
    rng: random.Random,
    size: int,
    path: str,
    *,
    batches: int,
    budget_s: float,
    clients: int = 1,
) -> dict:
    """Batches of ``size`` events through ``users.record_events`` with one write path, from ``clients`` threads at
    once (as the API's worker threads run concurrent requests), each drawing its own batches; ``wall`` is the
    time from the first batch's start to the last one's end."""
    users.check = WRITE_PATHS[path]  # type: ignore[assignment]
    times: list[float] = []
    cpu: list[float] = []
    counted = [0]
    lock = threading.Lock()
    seeds = [rng.random() for _ in range(clients)]
    started = time.perf_counter()

    def client(seed: float) -> None:
        own = random.Random(seed)
        while True:
            with lock:
                if len(times) >= batches or (times and time.perf_counter() - started >= budget_s):
                    return
            batch = reports(pool.batch(own, size))
            c, t = time.thread_time(), time.perf_counter()
            users.record_events(runtime, batch)
            with lock:
                times.append(time.perf_counter() - t)
                cpu.append(time.thread_time() - c)
                counted[0] += len(batch)

    try:
        threads = [threading.Thread(target=client, args=(seed,)) for seed in seeds]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        users.check = SHIPPED
    return {"times": times, "cpu": cpu, "events": counted[0], "wall": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--store", type=Path, help="a store built by bench/next_steps/populate.py (it gains events)")
    target.add_argument("--demo", action="store_true", help="the demo store (load_demo into a temporary folder)")
    parser.add_argument("--sizes", default="1,100,1000", help="events per batch, comma-separated")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds of now and before")
    parser.add_argument("--events", type=int, default=2000, help="events per path, size and round, at most")
    parser.add_argument("--budget-s", type=float, default=20.0, help="time cap of one path, size and round")
    parser.add_argument("--paths", default="now,before", help="write paths to run, comma-separated (now, before)")
    parser.add_argument("--clients", type=int, default=1, help="threads sending batches at once")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--label")
    args = parser.parse_args(argv)
    command = lib.command_line()
    print(f"command: {command}", flush=True)
    rng = random.Random(args.seed)
    tmp = None
    if args.demo:
        from service.demo import load_demo

        tmp = Path(tempfile.mkdtemp(prefix="wf-bench-writes-"))
        runtime = Runtime(settings=Settings(store=str(tmp / "store")))
        load_demo(runtime)
        user_ids = [u["id"] for u in json.loads((runtime.settings.demo_dir / "users.json").read_text())["users"]]
        label, store_info = args.label or "demo", {"kind": "demo", "users": len(user_ids)}
    else:
        meta = json.loads(Path(str(args.store) + ".bench.json").read_text())
        user_ids = [meta["id_format"].format(i) for i in range(meta["first"], meta["first"] + meta["users"])]
        runtime = Runtime(settings=Settings(store=str(args.store)))
        label, store_info = args.label or lib.size_label(meta["users"]), {"kind": "synthetic", **meta}
    try:
        store_info["quads_before"] = len(runtime.store)
        pool = Pool(runtime, user_ids, rng)
        users.record_events(runtime, reports(pool.batch(rng, 10)))  # warm: knowledge, validators, shapes
        sizes = [int(s) for s in args.sizes.split(",")]
        runs: dict[tuple[int, str], dict] = {}
        for r in range(args.rounds):
            for size in sizes:
                order = [p for p in ("now", "before") if p in args.paths.split(",")]
                for path in order if r % 2 == 0 else order[::-1]:
                    m = measure(
                        runtime,
                        pool,
                        rng,
                        size,
                        path,
                        batches=max(1, args.events // size),
                        budget_s=args.budget_s,
                        clients=args.clients,
                    )
                    run = runs.setdefault((size, path), {"times": [], "cpu": [], "events": 0, "wall": 0.0})
                    for k in ("times", "cpu"):
                        run[k] += m[k]
                    run["events"] += m["events"]
                    run["wall"] += m["wall"]
                    print(
                        f"round {r} size {size:>5} {path:>6}: {m['events'] / m['wall']:>9.1f} events/s "
                        f"({len(m['times'])} batches)",
                        flush=True,
                    )
        rows, table = [], []
        for (size, path), run in sorted(runs.items(), key=lambda kv: (kv[0][0], kv[0][1] != "before")):
            total = run["wall"]
            row = {
                "batch_size": size,
                "write_path": path,
                "batches": len(run["times"]),
                "events": run["events"],
                "events_per_s": round(run["events"] / total, 1),
                "events_per_cpu_s": round(run["events"] / sum(run["cpu"]), 1),
                "batch_latency": lib.summary_ms(run["times"]),
            }
            rows.append(row)
            table.append(
                (
                    size,
                    path,
                    row["batches"],
                    f"{row['events_per_s']:,.0f}",
                    f"{row['events_per_cpu_s']:,.0f}",
                    row["batch_latency"]["p50_ms"],
                    row["batch_latency"]["p99_ms"],
                    "met" if row["events_per_s"] >= GOAL_EVENTS_PER_S else "missed",
                )
            )
        text = lib.table(
            [
                "batch",
                "write path",
                "batches",
                "events/s",
                "events/CPU s",
                "p50 ms",
                "p99 ms",
                f"goal {GOAL_EVENTS_PER_S:,.0f}/s",
            ],
            table,
        )
        print(text)
        store_info["quads_after"] = len(runtime.store)
        payload = {
            "store": store_info,
            "goal_events_per_s": GOAL_EVENTS_PER_S,
            "rounds": args.rounds,
            "clients": args.clients,
            "results": rows,
        }
        out = lib.write_result(RESULTS, f"record-events-{label}", payload, markdown=text, command=command)
        print(f"wrote {out.relative_to(ROOT)}")
    finally:
        runtime.close()  # the store and the analytics log: a log closed cleanly is not rebuilt when next opened
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
