"""Experiments end to end through the public GraphQL API, on simulated users, with days passing.

The service runs in process (starlette's TestClient over a real in-memory store) under a
:class:`~service.clock.SimulatedClock`: outcomes carry the server's time, so a simulation
that needs days to pass moves the service's own clock. A scenario:

1. creates and starts an experiment over GraphQL (control ``default@1.2.0``, treatment
   ``default@1.3.0``), with an activation guardrail;
2. lets users sign up (``registerUser``), ask for their next steps (``nextSteps``, which
   assigns them), and, with the activation probability of the arm they were served,
   report ``ACTIVATED`` some hours to days later (``recordEvent``);
3. runs the monitor (``checkGuardrails``) after every ``check_every`` new users;
4. reads ``experimentResults`` at the end.

An assignment imbalance is injected the way one happens in a product: a share of the
treatment's users never reach their first decision (``drop``; their arm is known
beforehand from the documented bucketing of their pseudonym, as a broken client would
lose exactly them).

``python -m bench.experiments.simulate`` runs the full-size scenarios and writes
``bench/experiments/results/simulate.json``; ``tests/experiments/test_simulation.py`` runs
small ones.
"""

from __future__ import annotations

import argparse
import heapq
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np
from starlette.testclient import TestClient

from service.api.app import create_app
from service.clock import SimulatedClock, use_clock
from service.demo import knowledge_files
from service.experiments.bucketing import arm_of, bucket
from service.knowledge import vocab
from service.knowledge.store import plain
from service.runtime import Runtime
from service.settings import Settings
from tests.graphql_client import GraphQLClient

CREATE = "mutation C($input: ExperimentInput!) { createExperiment(input: $input) { id status } }"
START = "mutation S($id: ID!) { startExperiment(id: $id) { id status } }"
CHECK = "mutation { checkGuardrails { id status arms { name status } } }"
REGISTER = "mutation R($input: RegisterUserInput!) { registerUser(input: $input) { id } }"
NEXT = "query N($u: ID!) { nextSteps(userId: $u) { variant policyVersion decisionId } }"
EVENT = "mutation E($input: EventInput!) { recordEvent(input: $input) { id } }"
RESULTS = """
query R($id: ID!) {
  experimentResults(id: $id) {
    srmPValue sampleRatioMismatch
    experiment { arms { name status } }
    arms { name users kpis { kpi units estimate lower upper lift liftLower liftUpper pValue decision } }
    guardrails { arm kpi state estimate bound }
  }
}"""
ARMS = [("control", "default@1.2.0"), ("treatment", "default@1.3.0")]
START_AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@dataclass
class Scenario:
    name: str
    rates: tuple[float, float]  # true activation probability of a user served by each arm
    users: int
    check_every: int = 100
    drop: float = 0.0  # share of the treatment's users who never reach their first decision
    max_relative_drop: float = 0.0
    users_per_day: int = 400
    seed: int = 0


@dataclass
class Outcome:
    scenario: str
    users_registered: int
    rolled_back_at: int | None  # users exposed (both arms) when the monitor rolled the treatment back
    served_after_rollback: dict[str, int] = field(default_factory=dict)  # versions the treatment's users got since
    decision: str | None = None  # the treatment's activation decision at the end
    lift: float | None = None
    lift_interval: tuple[float | None, float | None] = (None, None)
    srm_p_value: float | None = None
    sample_ratio_mismatch: bool = False
    exposed: dict[str, int] = field(default_factory=dict)
    activation: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def runtime_for_simulation() -> Runtime:
    """A fresh in-memory service with the demo knowledge and no users; the periodic monitor off."""
    runtime = Runtime(settings=Settings(store=":memory:", guardrail_interval_s=0, retention_interval_s=0))
    runtime.ensure_ontology()
    runtime.load(knowledge_files(runtime))
    return runtime


def run(scenario: Scenario, runtime: Runtime | None = None) -> Outcome:
    """Run one scenario to its end; return what the service did and reported."""
    runtime = runtime or runtime_for_simulation()
    rng = np.random.default_rng(scenario.seed)
    started = time.perf_counter()
    clock = SimulatedClock(START_AT)
    outcome = Outcome(scenario.name, 0, None)
    experiment_id = f"sim-{scenario.name}"
    with use_clock(clock), TestClient(create_app(runtime)) as http:
        api = GraphQLClient(http)
        api.data(
            CREATE,
            {
                "input": {
                    "id": experiment_id,
                    "arms": [{"name": n, "policyVersion": v, "weight": 1} for n, v in ARMS],
                    "guardrails": [{"kpi": "activation", "maxRelativeDrop": scenario.max_relative_drop}],
                }
            },
        )
        api.data(START, {"id": experiment_id})
        pending: list[tuple[float, int, str]] = []  # (due time, tie-break, user) of activations not yet reported
        gap_s = 86_400 / scenario.users_per_day
        exposed = 0
        for i in range(scenario.users):
            now = clock.advance(seconds=gap_s)
            _deliver(api, pending, now.timestamp())
            user = f"sim-{i}"
            api.data(
                REGISTER,
                {
                    "input": {
                        "id": user,
                        "role": ["analyst", "engineer", "manager", "admin"][i % 4],
                        "industry": ["retail", "fintech", "healthcare"][i % 3],
                        "plan": ["free", "team"][i % 2],
                        "consents": ["PERSONALIZATION", "ANALYTICS"],
                    }
                },
            )
            outcome.users_registered += 1
            if (
                scenario.drop
                and _arm_before_exposure(runtime, experiment_id, user) == 1
                and rng.random() < scenario.drop
            ):
                continue  # lost before the first decision: never exposed
            rec = api.data(NEXT, {"u": user})["nextSteps"]
            exposed += 1
            arm = [n for n, _ in ARMS].index(rec["variant"])
            if outcome.rolled_back_at is not None and arm == 1:
                served = outcome.served_after_rollback
                served[rec["policyVersion"]] = served.get(rec["policyVersion"], 0) + 1
            if rng.random() < scenario.rates[arm]:
                delay = float(rng.uniform(0.1, 3.0)) * 86_400  # activation arrives hours to days later
                heapq.heappush(pending, (now.timestamp() + delay, i, user))
            if (i + 1) % scenario.check_every == 0:
                checked = api.data(CHECK)["checkGuardrails"]
                mine = next(e for e in checked if e["id"] == experiment_id)
                if outcome.rolled_back_at is None and mine["arms"][1]["status"] == "rolled-back":
                    outcome.rolled_back_at = exposed
        clock.advance(days=3)
        _deliver(api, pending, clock.advance(seconds=1).timestamp())
        api.data(CHECK)
        results = api.data(RESULTS, {"id": experiment_id})["experimentResults"]
    treatment = results["arms"][1]
    activation = {a["name"]: next(k for k in a["kpis"] if k["kpi"] == "activation") for a in results["arms"]}
    outcome.decision = activation["treatment"]["decision"]
    outcome.lift = activation["treatment"]["lift"]
    outcome.lift_interval = (activation["treatment"]["liftLower"], activation["treatment"]["liftUpper"])
    outcome.srm_p_value = results["srmPValue"]
    outcome.sample_ratio_mismatch = results["sampleRatioMismatch"]
    outcome.exposed = {a["name"]: a["users"] for a in results["arms"]}
    outcome.activation = {name: k["estimate"] for name, k in activation.items()}
    assert treatment["name"] == "treatment"
    outcome.seconds = round(time.perf_counter() - started, 1)
    return outcome


def _deliver(api: GraphQLClient, pending: list[tuple[float, int, str]], until: float) -> None:
    """Report every activation that is due by ``until``."""
    while pending and pending[0][0] <= until:
        _, _, user = heapq.heappop(pending)
        api.data(EVENT, {"input": {"userId": user, "type": "ACTIVATED"}})


def _arm_before_exposure(runtime: Runtime, experiment_id: str, user: str) -> int | None:
    """The arm the documented bucketing will give the user (from their pseudonym), before any decision."""
    quads = runtime.store.quads(subject=vocab.user_iri(user), predicate=vocab.PSEUDONYM, graph=vocab.user_graph(user))
    pseudonym = plain(next(iter(quads)).object).value
    return arm_of(bucket(experiment_id, pseudonym), [1.0, 1.0])


SCENARIOS = [
    Scenario("harmful", rates=(0.30, 0.24), users=4000),
    Scenario("better", rates=(0.30, 0.40), users=3000, seed=1),
    Scenario("no-effect", rates=(0.30, 0.30), users=3000, seed=2),
    Scenario("imbalanced", rates=(0.30, 0.30), users=2000, drop=0.15, seed=3),
]


def main() -> None:
    from pathlib import Path

    from bench.lib import write_result

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", action="append", help="run only these (default: all)")
    parser.add_argument("--seeds", type=int, default=1, help="runs of each scenario, with seeds 0..N-1 added")
    args = parser.parse_args()
    outcomes = []
    for scenario in SCENARIOS:
        if args.scenario and scenario.name not in args.scenario:
            continue
        for k in range(args.seeds):
            seeded = Scenario(**{**asdict(scenario), "seed": scenario.seed * 100 + k})
            outcome = run(seeded)
            print(outcome)
            outcomes.append(asdict(outcome))
    write_result(Path(__file__).parent / "results", "simulate", {"outcomes": outcomes})


if __name__ == "__main__":
    main()
