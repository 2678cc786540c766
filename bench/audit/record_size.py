"""Bytes on disk per decision record and per event, and what every lineage query answers, on one seeded world.

The world is written through the service's own write paths (``users.register``, ``users.record_events``,
``decide.next_steps``, ``consent.set_consent``, ``erasure.erase``) into a store in a temporary folder, under a
simulated clock and with seeded UUIDs and pseudonyms, so that the same seed gives the same IRIs, times and
answers on any release: run this module in two checkouts and compare their answer files to see that a change
to how records are stored left every query in ``queries/lineage/`` answering the same.

Sizes are the bytes of the store's RocksDB tables (``*.sst``) after ``Store.flush`` and ``Store.optimize``
(compacted), measured before and after each phase: users, then events, then decisions, divided by what the
phase wrote. The write-ahead log (``*.log``) is left out: it holds the same writes until RocksDB starts a new
one, so at this scale it would count every write a second time, and more than the tables themselves.

    .venv/bin/python -m bench.audit.record_size --out bench/audit/results/record_size.json \\
        --answers /tmp/answers-after.json [--compare /tmp/answers-before.json]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import pyoxigraph as ox

from bench.lib.results import write_result
from service.audit import erasure
from service.clock import SimulatedClock, use_clock
from service.decisions import consent, decide, users
from service.demo import knowledge_files, load_demo
from service.knowledge import vocab
from service.knowledge.embedded import Store
from service.runtime import Runtime
from service.settings import Settings

CHANNELS = ["WEB", "MOBILE", "IN_APP", "EMAIL"]


def seeded(seed: int):
    """uuid4 and token_hex that draw from one seeded generator."""
    rng = random.Random(seed)
    return (
        lambda: uuid.UUID(int=rng.getrandbits(128), version=4),
        lambda n=32: f"{rng.getrandbits(8 * n):0{2 * n}x}",
    )


def build(folder: Path, *, users_n: int, events_per_user: int, decisions_per_user: int, seed: int) -> dict:
    runtime = Runtime(settings=Settings(store=str(folder / "store"), models_dir=folder / "models"))
    rng = random.Random(seed)
    uuid4, token_hex = seeded(seed)
    sizes: dict[str, int] = {}
    counts: dict[str, int] = {}

    def measure(name: str) -> None:
        runtime.store.flush()
        runtime.store.optimize()
        sizes[name] = sum(p.stat().st_size for p in (folder / "store").glob("*.sst"))
        counts[name] = sum(1 for _ in runtime.store.quads())

    with mock.patch("uuid.uuid4", uuid4), mock.patch("secrets.token_hex", token_hex):
        with use_clock(SimulatedClock(datetime(2026, 6, 1, tzinfo=UTC))) as clock:
            runtime.ensure_ontology()
            runtime.load(knowledge_files(runtime))
            catalog = runtime.catalog
            roles, plans, industries = (sorted(catalog.by_id[k]) for k in ("Role", "Plan", "Industry"))
            steps, features = sorted(catalog.by_id["Step"]), sorted(catalog.by_id["Feature"])
            ids = [f"user-{i:05d}" for i in range(users_n)]
            for user_id in ids:
                consents = ["PERSONALIZATION", "ANALYTICS"] if rng.random() < 0.85 else ["ANALYTICS"]
                users.register(
                    runtime,
                    users.Registration(
                        id=user_id,
                        role=rng.choice(roles),
                        plan=rng.choice(plans),
                        industry=rng.choice(industries),
                        consents=consents,
                    ),
                )
            measure("users")
            events = 0
            for user_id in ids:
                reports = []
                for _ in range(events_per_user):
                    kind = rng.random()
                    if kind < 0.5:
                        reports.append(users.EventReport(user_id, "STEP_COMPLETED", step_id=rng.choice(steps)))
                    elif kind < 0.9:
                        reports.append(users.EventReport(user_id, "FEATURE_USED", feature_id=rng.choice(features)))
                    else:
                        reports.append(users.EventReport(user_id, "ACTIVATED"))
                events += len(users.record_events(runtime, reports))
                clock.advance(minutes=1)
            measure("events")
            decisions = []
            for user_id in ids:
                for _ in range(decisions_per_user):
                    decisions.append(decide.next_steps(runtime, user_id, channel=rng.choice(CHANNELS)).decision_id)
                clock.advance(minutes=1)
            measure("decisions")
            # Lineage worth asking about: a withdrawal after decisions, and an erasure.
            consent.set_consent(runtime, ids[0], "PERSONALIZATION", granted=False)
            decisions.append(decide.next_steps(runtime, ids[0]).decision_id)
            erasure.erase(runtime, ids[1], requested_by="bench")
            answers = lineage_answers(runtime, ids, decisions)
    audit_quads = sum(1 for _ in runtime.store.quads(graph=vocab.AUDIT_GRAPH))
    runtime.store.close()
    n_decisions = users_n * decisions_per_user
    return {
        "users": users_n,
        "events": events,
        "decisions": n_decisions,
        "bytes_per_event": (sizes["events"] - sizes["users"]) / events,
        "quads_per_event": (counts["events"] - counts["users"]) / events,
        "bytes_per_decision": (sizes["decisions"] - sizes["events"]) / n_decisions,
        "quads_per_decision": (counts["decisions"] - counts["events"]) / n_decisions,
        "audit_quads_at_end": audit_quads,
        "store_bytes": sizes,
        "answers": answers,
    }


def catalog_records(folder: Path, *, n: int, seed: int) -> dict:
    """Bytes and quads per decision for records of a larger catalog: 15 candidates, 5 returned with reasons
    (``bench.audit.records``: the service's own record builder, chained in bulk), ``n`` of them."""
    from bench.audit import records
    from service.audit import chain as audit

    runtime = Runtime(settings=Settings(store=":memory:"))
    load_demo(runtime)  # the demo users, whose real decisions give the records their reasons
    captured, _ = records.capture_real_decisions(runtime)
    factory = records.RecordFactory(runtime, captured, seed=seed, candidates=15, returned=5)
    store = Store(folder / "catalog-records")
    writer = records.ChainWriter(store, chain="main", head=audit.ChainHead(0, audit.GENESIS), anchor_file=None)
    for i in range(n):
        writer.add(*factory.make(i))
    writer.write()
    store.flush()
    store.optimize()
    size = sum(p.stat().st_size for p in (folder / "catalog-records").glob("*.sst"))
    quads = len(store)
    store.close()
    return {"records": n, "bytes_per_decision": size / n, "quads_per_decision": quads / n}


def lineage_answers(runtime: Runtime, ids: list[str], decisions: list[str]) -> dict[str, list]:
    """Every lineage query's rows, for the parameters the world offers (the first few of each kind)."""
    queries = {name: q for name, q in runtime.queries.items() if name.startswith("lineage/")}
    store = runtime.store
    consent_records = sorted(
        {q.subject.value for q in store.quads(predicate=vocab.RDF_TYPE, graph=vocab.CONSENT_GRAPH)}
    )[:3]
    policies = sorted({q.object.value for q in store.quads(predicate=vocab.POLICY_VERSION_OF_DECISION)})
    bindings = {
        "decision": [ox.NamedNode(vocab.DECISION_BASE + d) for d in decisions[:5] + decisions[-1:]],
        "user": [ox.NamedNode(vocab.USER_BASE + u) for u in ids[:3]],
        "consent": [ox.NamedNode(c) for c in consent_records],
        "policy": [ox.NamedNode(p) for p in policies],
        "model": [],
        "version": [],
    }
    answers: dict[str, list] = {}
    for name in sorted(queries):
        query = queries[name]
        needed = [p for p, declared in query.parameters.items() if not declared.optional]
        runs: list[dict] = [{}] if not needed else [{needed[0]: value} for value in bindings[needed[0]]]
        rows = []
        for given in runs:
            for row in store.select(query.bind(**given) if given else query):
                rows.append({k: (None if v is None else str(v)) for k, v in sorted(row.items())})
        answers[name] = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))
    return answers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--events-per-user", type=int, default=20)
    parser.add_argument("--decisions-per-user", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--catalog-records", type=int, default=5000, help="records of 15 candidates, 5 returned")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--answers", type=Path, help="write the lineage answers here")
    parser.add_argument("--compare", type=Path, help="lineage answers of another run, to compare with")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="wf-record-size-"))
    try:
        result = build(
            folder,
            users_n=args.users,
            events_per_user=args.events_per_user,
            decisions_per_user=args.decisions_per_user,
            seed=args.seed,
        )
        result["catalog_records"] = catalog_records(folder, n=args.catalog_records, seed=args.seed)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    answers = result.pop("answers")
    result["lineage_rows"] = {name: len(rows) for name, rows in answers.items()}
    if args.answers:
        args.answers.write_text(json.dumps(answers, indent=1, sort_keys=True))
    if args.compare:
        before = json.loads(args.compare.read_text())
        differing = sorted(n for n in set(before) | set(answers) if before.get(n) != answers.get(n))
        result["compared_with"] = str(args.compare)
        result["lineage_queries_differing"] = differing
    print(json.dumps(result, indent=1))
    if args.out:
        write_result(args.out.parent, args.out.stem, result)
    return 1 if result.get("lineage_queries_differing") else 0


if __name__ == "__main__":
    sys.exit(main())
