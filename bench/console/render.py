"""How long each console page takes to render on a large store: a populated store (``bench.next_steps.populate``),
decisions made for a share of its users through the service's own decision path, an experiment checked by the
guardrail monitor, then each page asked for over starlette's TestClient (in process: the render, not the
network), several times each.

    .venv/bin/python -m bench.console.render --store /tmp/wf-bench-store --users 100000 --decisions 20000 \\
        --out bench/console/results/render-100k.json

An existing store at ``--store`` with as many users is used as it is (populating 100k users takes minutes);
decisions are added until it holds ``--decisions`` of them.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

from starlette.testclient import TestClient

from bench.lib.results import write_result
from bench.lib.stats import percentile
from bench.next_steps.populate import populate, user_id
from service.api.app import create_app
from service.decisions import decide
from service.experiments import monitor, registry
from service.knowledge import vocab
from service.runtime import Runtime
from service.settings import Settings

EXPERIMENT = "bench-console"


def decisions_held(runtime: Runtime) -> int:
    return sum(1 for _ in runtime.store.quads(predicate=vocab.RDF_TYPE, object=vocab.DECISION, graph=vocab.AUDIT_GRAPH))


def prepare(runtime: Runtime, *, users: int, decisions: int, seed: int) -> dict:
    rng = random.Random(seed)
    if registry.find(runtime, EXPERIMENT) is None:
        spec = registry.ExperimentSpec(
            id=EXPERIMENT,
            arms=[
                registry.ArmSpec("control", "default@1.2.0", 1.0),
                registry.ArmSpec("treatment", "default@1.3.0", 1.0),
            ],
            guardrails=[registry.Guardrail("activation", 0.0)],
        )
        registry.create(runtime, spec, by="bench")
        registry.start(runtime, EXPERIMENT, by="bench", needs_approval=False)
    have = decisions_held(runtime)
    started = time.perf_counter()
    made = 0
    while have + made < decisions:
        decide.next_steps(runtime, user_id(rng.randrange(users)))
        made += 1
        if made % 2000 == 0:
            monitor.check(runtime)
            print(f"{have + made} decisions", file=sys.stderr)
    monitor.check(runtime)
    return {"decisions_added": made, "decisions_s": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path("/tmp/wf-bench-store"))
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench/console/results/render.json"))
    args = parser.parse_args(argv)
    populated = None
    if not (args.store / "CURRENT").exists():
        populated = populate(args.store, args.users, 42, 5_000, True)
    runtime = Runtime(settings=Settings(store=str(args.store), guardrail_interval_s=0, retention_interval_s=0))
    runtime.ensure_ontology()
    prepared = prepare(runtime, users=args.users, decisions=args.decisions, seed=args.seed)
    some_user = user_id(3)
    decision = decide.next_steps(runtime, some_user).decision_id
    pages = {
        "decisions (newest 50)": "/console/decisions",
        "decisions of one user": f"/console/decisions?user={some_user}",
        "decisions of one arm and a day": "/console/decisions?arm=treatment&start=2026-01-01",
        "decision with lineage": f"/console/decisions/{decision}",
        "experiments": "/console/experiments",
        "experiment with KPIs over time": f"/console/experiments/{EXPERIMENT}",
        "journeys (everyone)": "/console/journeys",
        "journeys (one role)": "/console/journeys?role=analyst",
        "models": "/console/models",
        "consent": "/console/consent",
        "consent with one user's history": f"/console/consent?user={some_user}",
        "preview as a user": f"/console/preview?user={some_user}",
        "preview of a made-up profile": "/console/preview?madeUp=1&role=analyst&plan=team&signupChannel=WEB"
        "&consents=PERSONALIZATION&consents=ANALYTICS",
    }
    timings: dict[str, list[float]] = {}
    with TestClient(create_app(runtime)) as http:
        for name, path in pages.items():
            first = http.get(path)
            assert first.status_code == 200, (path, first.status_code, first.text[:300])
            for _ in range(args.rounds):
                started = time.perf_counter()
                response = http.get(path)
                timings.setdefault(name, []).append(time.perf_counter() - started)
                assert response.status_code == 200
    rows = {
        name: {
            "median_ms": round(statistics.median(values) * 1000, 1),
            "max_ms": round(max(values) * 1000, 1),
            "p90_ms": round(percentile(values, 90) * 1000, 1),
        }
        for name, values in timings.items()
    }
    lines = [
        f"{args.users:,} users, {decisions_held(runtime):,} decisions; each page {args.rounds} times after a first"
        " request, in process (TestClient).",
        "",
        "| page | median ms | max ms |",
        "|---|---|---|",
        *(f"| {name} | {r['median_ms']} | {r['max_ms']} |" for name, r in rows.items()),
    ]
    print("\n".join(lines))
    write_result(
        args.out.parent,
        args.out.stem,
        {
            "users": args.users,
            "decisions": decisions_held(runtime),
            "pages": rows,
            "prepared": prepared,
            "populated": populated,
        },
        markdown="\n".join(lines) + "\n",
    )


if __name__ == "__main__":
    main()
