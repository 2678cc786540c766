"""Build an on-disk Wayfinder store for the nextSteps / recordEvents benchmark.

The store holds the demo knowledge (ontology, demo catalog, default policy), loaded
through the service (``Runtime.ensure_ontology`` and ``Runtime.load``: validated,
with OWL RL entailments), and then N synthetic users with about 20 events each,
written directly as N-Quads through pyoxigraph's ``Store.bulk_load``.

Why not through the API: ``users.register`` and ``users.record_events`` validate
every write with pyshacl (about 1,300 events/s on the demo store, so 2M events
would take more than 25 minutes plus 100k validated registrations), and as the
store grows their per-user consent query slows them to about 4 events/s at 100k
users (results/latency-*.json): days. The quads are built by ``service/synthetic.py`` with
the functions those write paths use (``users.registration_quads``,
``consent.consent_quads``, ``users.event_quads``): the profile in ``graph/user/ID``, the
consent records (given or withdrawn, ``wf:recordedAt`` = the time indicated) in
``graph/consent``, the events (StepCompleted, StepDismissed, FeatureUsed, Activated,
Converted) in ``graph/user/ID``.

Histories are realistic for the demo catalog: a step is completed only when all
its prerequisites are (transitively), and only steps open to the user's role and
plan (``wf:includesPlan*``) are completed or dismissed (what the candidates query
would have shown); feature-used events are mostly about features that completed
steps introduce; events that need consent (FeatureUsed: Personalization or
Analytics; Activated, Converted: Analytics) are only written for users whose
latest consent allows them, so the data conforms to shapes/privacy.ttl.
Consents: 80% of users give PERSONALIZATION + ANALYTICS at registration, 7%
ANALYTICS only, 5% PERSONALIZATION only, 8% none; 30% also give MARKETING; 3%
later withdraw PERSONALIZATION (only users who keep ANALYTICS), 2% withdraw
MARKETING. Seeded: the same seed and size give the same store.

    .venv/bin/python -m bench.next_steps.populate --store /tmp/wf-bench-store --users 100000

A small sidecar file ``<store>.bench.json`` records the user count, ID format and
seed for latency.py. Results: ``bench/next_steps/results/populate-<N>.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import queue
import random
import shutil
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyoxigraph as ox

from bench import lib
from service import demo
from service.decisions import (
    consent,  # noqa: E402
    subjects,  # noqa: E402
    users,
)
from service.knowledge import vocab
from service.knowledge.queries import inline
from service.knowledge.store import bound
from service.runtime import Runtime
from service.settings import Settings
from service.synthetic import SyntheticConsent, SyntheticEvent, SyntheticUser, user_quads

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = HERE / "results"

EVENT_CLASS = {
    "done": vocab.STEP_COMPLETED.value,
    "dismissed": vocab.STEP_DISMISSED.value,
    "used": vocab.FEATURE_USED.value,
    "activated": vocab.ACTIVATED.value,
    "converted": vocab.CONVERTED.value,
}
CHANNELS = [(vocab.WEB.value, 70), (vocab.MOBILE.value, 20), (vocab.EMAIL.value, 10)]  # nobody signs up in-app
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
PLAN_INCLUDES = "PREFIX wf: <https://w3id.org/wayfinder/ontology#> SELECT ?p WHERE { ?plan wf:includesPlan* ?p }"


def user_id(i: int) -> str:
    return f"u{i:06d}"


def _uuid4(rng: random.Random) -> str:
    bits = rng.getrandbits(128)
    bits = (bits & ~(0xF000 << 64)) | (0x4000 << 64)  # version 4
    bits = (bits & ~(0xC000 << 48)) | (0x8000 << 48)  # RFC 4122 variant
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class DemoCatalog:
    """What the generator needs of the loaded catalog, read through the service's own view."""

    def __init__(self, runtime: Runtime) -> None:
        catalog = runtime.catalog
        self.steps = catalog.steps  # in default order
        self.index = {s.iri: i for i, s in enumerate(self.steps)}
        self.requires = [[self.index[p] for p in s.requires if p in self.index] for s in self.steps]
        self.dependents: list[list[int]] = [[] for _ in self.steps]
        for i, pres in enumerate(self.requires):
            for p in pres:
                self.dependents[p].append(i)
        self.features = sorted(catalog.by_id["Feature"].values(), key=lambda e: e.iri)
        self.roles = sorted(e.iri for e in catalog.by_id["Role"].values())
        self.industries = sorted(e.iri for e in catalog.by_id["Industry"].values())
        plans = sorted(e.iri for e in catalog.by_id["Plan"].values())
        # Plan inclusion, transitively (wf:includesPlan*), as the candidates query reads it.
        self.includes: dict[str, set[str]] = {}
        for plan in plans:
            rows = runtime.store.select(inline(PLAN_INCLUDES, plan=ox.NamedNode(plan)))
            self.includes[plan] = {bound(r, "p").value for r in rows} | {plan}
        # Free < team < enterprise in the demo: order plans by how much they include.
        self.plans = sorted(plans, key=lambda p: len(self.includes[p]))
        self.purposes = dict(runtime.knowledge.codes.purposes)  # code -> IRI


def synthetic_user(rng: random.Random, cat: DemoCatalog, uid: str, stats: dict) -> SyntheticUser:
    """One user: profile, consent records, events (the draws in a fixed order: the same seed, the same store)."""
    role = rng.choice(cat.roles)
    plan = rng.choices(cat.plans, weights=[50, 35, 15][: len(cat.plans)] + [5] * max(0, len(cat.plans) - 3))[0]
    channel = rng.choices([c for c, _ in CHANNELS], weights=[w for _, w in CHANNELS])[0]
    registered = EPOCH + timedelta(seconds=rng.randrange(300 * 86400))
    pseudonym = f"{rng.getrandbits(128):032x}"
    user = SyntheticUser(
        id=uid,
        registered_at=registered,
        pseudonym=pseudonym,
        role=role,
        industry=rng.choice(cat.industries),
        plan=plan,
        signup_channel=channel,
    )

    # Consent records, granted at registration (as users.register writes them).
    r = rng.random()
    given = (
        ["PERSONALIZATION", "ANALYTICS"]
        if r < 0.80
        else ["ANALYTICS"]
        if r < 0.87
        else ["PERSONALIZATION"]
        if r < 0.92
        else []
    )
    if rng.random() < 0.30:
        given.append("MARKETING")
    records = [(code, True, registered) for code in given]
    personalization, analytics = "PERSONALIZATION" in given, "ANALYTICS" in given
    later = registered + timedelta(days=rng.randint(20, 60))
    if personalization and analytics and rng.random() < 0.03:
        records.append(("PERSONALIZATION", False, later))
        personalization = False
    if "MARKETING" in given and rng.random() < 0.02:
        records.append(("MARKETING", False, later))
    user.consents = [SyntheticConsent(_uuid4(rng), cat.purposes[code], granted, at) for code, granted, at in records]
    stats["consents"] += len(records)
    feature_ok = personalization or analytics  # FeatureUsed is collected for either
    milestone_ok = analytics  # Activated, Converted: Analytics only

    # Events along the prerequisite graph, restricted to the steps open to role and plan.
    open_ = [(not s.roles or role in s.roles) and all(p in cat.includes[plan] for p in s.plans) for s in cat.steps]
    missing = [len(r) for r in cat.requires]
    available = {i for i, s in enumerate(cat.steps) if not missing[i] and open_[i]}
    completed: list[int] = []
    activated = converted = False
    at = registered + timedelta(minutes=rng.randint(1, 30))
    for _ in range(rng.randint(12, 28)):  # mean 20
        at += timedelta(seconds=rng.randint(60, 2 * 86400))
        kind = rng.choices(["done", "used", "dismissed", "activated", "converted"], weights=[25, 55, 6, 7, 7])[0]
        if kind == "used" and not feature_ok:
            kind = "done"
        if kind == "activated" and (activated or not milestone_ok):
            kind = "done" if available else "used"
        if kind == "converted" and (converted or not milestone_ok or plan == cat.plans[0]):
            kind = "done" if available else "used"
        if kind in ("done", "dismissed") and not available:
            kind = "used"
        if kind == "used" and not feature_ok:
            continue  # nothing left that this user could report
        event_id = _uuid4(rng)
        step = feature = None
        if kind in ("done", "dismissed"):
            ordered = sorted(available)
            index = ordered[min(int(rng.expovariate(0.9)), len(ordered) - 1)]  # mostly the next in order
            available.discard(index)
            step = cat.steps[index].iri
            if kind == "done":
                completed.append(index)
                for d in cat.dependents[index]:
                    missing[d] -= 1
                    if missing[d] == 0 and open_[d]:
                        available.add(d)
        elif kind == "used":
            introduced = cat.steps[rng.choice(completed)].introduces if completed and rng.random() < 0.8 else []
            feature = rng.choice(introduced) if introduced else rng.choice(cat.features).iri
        else:
            activated = activated or kind == "activated"
            converted = converted or kind == "converted"
        user.events.append(SyntheticEvent(event_id, EVENT_CLASS[kind], at, step=step, feature=feature))
        stats["events"] += 1
        stats["by_type"][kind] += 1
    stats["completed_steps"] += len(completed)
    stats["users"] += 1
    return user


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def populate(store_path: Path, n_users: int, seed: int, chunk: int, optimize: bool) -> dict:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    runtime = Runtime(settings=Settings(store=str(store_path)))
    runtime.ensure_ontology()
    runtime.load(demo.knowledge_files(runtime))
    timings["knowledge_s"] = time.perf_counter() - t0
    knowledge_quads = len(runtime.store)
    cat = DemoCatalog(runtime)
    store = runtime.store

    # Generation (Python, this thread) overlaps with bulk_load (Rust, a second thread:
    # pyoxigraph releases the GIL while it parses and writes).
    stats = {
        "users": 0,
        "events": 0,
        "consents": 0,
        "quads": 0,
        "completed_steps": 0,
        "by_type": {k: 0 for k in ("done", "used", "dismissed", "activated", "converted")},
    }
    chunks: queue.Queue = queue.Queue(maxsize=2)
    load_time = [0.0]
    errors: list[BaseException] = []

    def loader() -> None:
        while True:
            data = chunks.get()
            if data is None:
                return
            t = time.perf_counter()
            try:
                store.bulk_load(data, format=ox.RdfFormat.N_QUADS)  # noqa: F821 - deleted only after join
            except BaseException as exc:  # surfaced after join
                errors.append(exc)
                return
            load_time[0] += time.perf_counter() - t

    thread = threading.Thread(target=loader, daemon=True)
    thread.start()
    rng = random.Random(seed)
    t1 = time.perf_counter()
    gen_time = 0.0
    pending: list[ox.Quad] = []
    for i in range(1, n_users + 1):
        tg = time.perf_counter()
        quads = user_quads(synthetic_user(rng, cat, user_id(i), stats))
        stats["quads"] += len(quads)
        pending += quads
        gen_time += time.perf_counter() - tg
        if i % chunk == 0 or i == n_users:
            tg = time.perf_counter()
            data = ox.serialize(pending, format=ox.RdfFormat.N_QUADS)
            gen_time += time.perf_counter() - tg
            pending = []
            chunks.put(data)
            if errors:
                break
            if i % (chunk * 4) == 0 or i == n_users:
                print(f"  {i:,} users, {stats['events']:,} events, {time.perf_counter() - t1:.0f} s", flush=True)
    chunks.put(None)
    thread.join()
    if errors:
        raise errors[0]
    timings["generate_s"] = gen_time
    timings["bulk_load_s"] = load_time[0]
    timings["users_wall_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    runtime.store.flush()
    if optimize:
        store.optimize()
    timings["flush_optimize_s"] = time.perf_counter() - t2
    timings["total_s"] = time.perf_counter() - t0

    # Sanity: the layout is the service's own (a user exists, reads back, has its consents).
    probe = user_id(1)
    assert subjects.exists(runtime, probe), "user graph missing: bulk_load did not register the named graph"
    prof = users.profile(runtime, probe)
    assert prof is not None and prof.role and prof.pseudonym
    sample_events = users.events(runtime, probe)
    sample_consents = consent.consents(runtime, probe)
    del runtime, store, cat
    gc.collect()
    return {
        "timings": timings,
        "stats": stats,
        "knowledge_quads": knowledge_quads,
        "probe": {"user": probe, "events": len(sample_events), "consent_records": len(sample_consents)},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path("/tmp/wf-bench-store"))
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--chunk", type=int, default=5_000, help="users per bulk_load call")
    parser.add_argument("--no-optimize", action="store_true", help="skip Store.optimize() (compaction) at the end")
    parser.add_argument("--force", action="store_true", help="delete an existing store folder first")
    args = parser.parse_args(argv)
    print(f"command: {lib.command_line()}")
    store: Path = args.store
    if store.exists() and any(store.iterdir()):
        if not args.force:
            sys.exit(f"{store} exists and is not empty; pass --force to rebuild it")
        shutil.rmtree(store)
    Path(str(store) + ".anchors.jsonl").unlink(missing_ok=True)  # the audit trail's checkpoints of the old store
    result = populate(store, args.users, args.seed, args.chunk, not args.no_optimize)
    size = folder_size(store)
    stats, t = result["stats"], result["timings"]
    meta = {"users": stats["users"], "id_format": "u{:06d}", "first": 1, "seed": args.seed}
    Path(str(store) + ".bench.json").write_text(json.dumps(meta))

    rows = [
        ("users", f"{stats['users']:,}"),
        ("events", f"{stats['events']:,} ({stats['events'] / max(stats['users'], 1):.1f} per user)"),
        ("events by kind", ", ".join(f"{k} {v:,}" for k, v in stats["by_type"].items())),
        ("consent records", f"{stats['consents']:,}"),
        ("user quads written", f"{stats['quads']:,}"),
        ("knowledge quads (ontology, catalog, policy, entailments)", f"{result['knowledge_quads']:,}"),
        ("knowledge load (through the service)", f"{t['knowledge_s']:.1f} s"),
        ("generation (Python: service.synthetic quads, serialised as N-Quads)", f"{t['generate_s']:.1f} s"),
        ("bulk_load (pyoxigraph, overlapped with generation)", f"{t['bulk_load_s']:.1f} s"),
        ("users wall time", f"{t['users_wall_s']:.1f} s ({stats['quads'] / t['users_wall_s']:,.0f} quads/s)"),
        ("flush + optimize", f"{t['flush_optimize_s']:.1f} s"),
        ("total", f"{t['total_s']:.1f} s"),
        ("store size on disk", f"{size / 1e9:.2f} GB ({store})"),
    ]
    text = lib.table(["what", "value"], rows)
    print(text)
    payload = {"args": {k: str(v) for k, v in vars(args).items()}, "store_size_bytes": size, **result}
    out = lib.write_result(RESULTS, f"populate-{lib.size_label(stats['users'])}", payload, markdown=text)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
