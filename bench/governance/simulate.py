"""Governance end to end through the public GraphQL API with API keys: a candidate policy estimated offline,
approved by two principals, started, ramped, and rolled back by the plan's automatic actor when it harms activation.

The service runs in process (starlette's TestClient over an in-memory store, keys with named principals, a quorum
of 2) under a :class:`~service.clock.SimulatedClock`:

1. A release manager (``ops-ann``) loads a policy file with ``default@1.4.0`` (active, exploring: a random slate
   in half of its decisions) and the candidate ``default@1.5.0`` (it puts inviting teammates first); two other
   principals approve 1.4.0, which then serves.
2. Logging: users sign up, get their next steps, and complete shown steps by a position-based click model in
   which the candidate's first step is the most attractive, so the candidate's step uptake is truly higher.
3. Offline: ``offlineEvaluation`` estimates 1.5.0's uptake from 1.4.0's log (SNIPW, DR) against the log's.
4. ann creates an experiment (control 1.4.0, treatment 1.5.0, an activation guardrail, coverage 0.5, an
   offline margin); ``ops-bo`` and ``ops-cy`` approve it; ann starts it: the start checks the offline evidence.
5. Users arrive; a user activates with the probability of the arm that served them (the treatment's is lower:
   the step it pushes is completed but does not lead to value); the operator ramps to full coverage as soon as
   the evidence allows; the monitor runs every ``check_every`` users and rolls the treatment back, acting for
   the two approvers.
6. The auditor lists, over SPARQL, who approved what and why each rollback happened.

``python -m bench.governance.simulate`` runs the full size and writes ``bench/governance/results/simulate.json``;
``tests/governance/test_simulation.py`` runs a small one.
"""

from __future__ import annotations

import argparse
import heapq
import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from starlette.testclient import TestClient

from service.api.app import create_app
from service.clock import SimulatedClock, use_clock
from service.demo import knowledge_files
from service.knowledge import vocab
from service.runtime import Runtime
from service.settings import Settings

ANN, BO, CY, AUDITOR, CLIENT = "n" * 24, "b" * 24, "c" * 24, "a" * 24, "k" * 24
KEYS = (
    f"{ANN}:operator:ops-ann,{BO}:operator:ops-bo,{CY}:operator:ops-cy,{AUDITOR}:auditor:audit-team,"
    f"{CLIENT}:client:backend"
)
START_AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
EXAMINE = (0.9, 0.6, 0.4)  # the chance a user looks at the step shown at rank 1, 2, 3
ATTRACTION = {"invite-teammates": 0.8, "explore-sample-data": 0.4, "upload-spreadsheet": 0.35}
CONTROL, CANDIDATE = "default@1.4.0", "default@1.5.0"

REGISTER = "mutation R($input: RegisterUserInput!) { registerUser(input: $input) { id } }"
NEXT = "query N($u: ID!) { nextSteps(userId: $u, limit: 3) { variant policyVersion steps { step { id } } } }"
EVENTS = "mutation E($input: [EventInput!]!) { recordEvents(inputs: $input) }"
APPROVE_POLICY = "mutation A($v: String!) { approvePolicyVersion(version: $v) { version status } }"
OFFLINE = """query O($c: String!) { offlineEvaluation(candidate: $c) {
  decisions rows snipw { value low high } doublyRobust { value low high } controlValue { value low high }
  difference { value low high } } }"""
CREATE = "mutation C($input: ExperimentInput!) { createExperiment(input: $input) { id status } }"
APPROVE = "mutation A($id: ID!) { approveExperiment(id: $id) { id approvedBy } }"
START = "mutation S($id: ID!) { startExperiment(id: $id) { id status } }"
RAMP = "mutation R($id: ID!, $c: Float!) { rampExperiment(id: $id, coverage: $c) { coverage } }"
CHECK = "mutation { checkGuardrails { id arms { name status } } }"
RESULTS = """query R($id: ID!) { experimentResults(id: $id) {
  arms { name users } guardrails { arm kpi state estimate bound } } }"""
APPROVALS = (Path(__file__).resolve().parents[2] / "queries" / "lineage" / "approvals.rq").read_text()
ROLLBACKS = (Path(__file__).resolve().parents[2] / "queries" / "lineage" / "rollbacks.rq").read_text()


@dataclass
class Scenario:
    logged_users: int = 400
    experiment_users: int = 2000
    activation: tuple[float, float] = (0.4, 0.2)  # by arm: control, treatment
    users_per_day: int = 200
    check_every: int = 100
    offline_margin: float = 0.02
    exploration: float = 0.5  # default@1.4.0's exploration rate
    seed: int = 0


@dataclass
class Outcome:
    offline: dict = field(default_factory=dict)
    started: bool = False
    start_refusal: str | None = None
    ramped_at: int | None = None  # experiment users when the ramp to full coverage was allowed
    rolled_back_at: int | None = None  # experiment users when the monitor rolled the treatment back
    results: dict = field(default_factory=dict)  # experimentResults at the end: users per arm, guardrail states
    approvals: list[dict] = field(default_factory=list)
    rollbacks: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def policy_file(folder: Path, exploration: float = 0.5) -> Path:
    """The demo's default policy file with an exploring version 1.4.0 (active) and a candidate 1.5.0."""
    text = (Path(__file__).resolve().parents[2] / "ontology" / "policies" / "default.ttl").read_text()
    block = text[text.index("pol:default-1.3.0 a wf:PolicyVersion ;") :].split("\n\n", 1)[0]
    explore = (
        block.replace("pol:default-1.3.0", "pol:default-1.4.0")
        .replace('wf:version "1.3.0"', 'wf:version "1.4.0"')
        .replace('wf:status "candidate"', 'wf:status "active"')
        .replace("wf:modelWeight 0.0 ;", f"wf:modelWeight 0.0 ;\n    wf:explorationRate {exploration} ;")
        .replace("version 1.3.0: 1.2.0 ranked by its rules alone, without the model", "version 1.4.0: 1.3.0, exploring")
    )
    candidate = (
        block.replace("pol:default-1.3.0", "pol:default-1.5.0")
        .replace('wf:version "1.3.0"', 'wf:version "1.5.0"')
        .replace("version 1.3.0: 1.2.0 ranked by its rules alone, without the model", "version 1.5.0: teammates first")
        .replace("wf:hasRule ", "wf:hasRule pol:teammates-first, ")
    )
    rule = (
        'pol:teammates-first a wf:RankingRule ;\n    rdfs:label "Teammates first"@en ;\n'
        '    wf:targetStep demo:invite-teammates ;\n    wf:weight 3.0 ;\n    wf:reasonText "Bring your team in" .'
    )
    path = folder / "default.ttl"
    path.write_text("\n\n".join([text, explore, candidate, rule]) + "\n")
    return path


def run(scenario: Scenario) -> Outcome:
    """Run the scenario to its end; return what the service did and what the auditor reads."""
    started = time.perf_counter()
    rng = np.random.default_rng(scenario.seed)
    runtime = Runtime(
        settings=Settings(
            store=":memory:", api_keys=KEYS, approvals_required=2, guardrail_interval_s=0, retention_interval_s=0
        )
    )
    runtime.ensure_ontology()
    runtime.load(knowledge_files(runtime), by="ops-ann")
    outcome = Outcome()
    clock = SimulatedClock(START_AT)
    with tempfile.TemporaryDirectory() as folder, use_clock(clock), TestClient(create_app(runtime)) as http:
        runtime.load([policy_file(Path(folder), scenario.exploration)], by="ops-ann")

        def call(key: str, query: str, **variables) -> dict:
            body = http.post(
                "/graphql", json={"query": query, "variables": variables}, headers={"Authorization": f"Bearer {key}"}
            ).json()
            if body.get("errors"):
                raise RuntimeError(body["errors"][0]["message"])
            return body["data"]

        for approver in (BO, CY):
            call(approver, APPROVE_POLICY, v=CONTROL)
        pending: list[tuple[float, int, str]] = []
        gap_s = 86_400 / scenario.users_per_day

        def arrive(i: int, prefix: str) -> dict:
            now = clock.advance(seconds=gap_s)
            while pending and pending[0][0] <= now.timestamp():
                _, _, user = heapq.heappop(pending)
                call(CLIENT, EVENTS, input=[{"userId": user, "type": "ACTIVATED"}])
            user = f"{prefix}-{i}"
            profile = {"id": user, "role": ["analyst", "engineer", "manager", "admin"][i % 4], "plan": "team"}
            call(CLIENT, REGISTER, input={**profile, "consents": ["ANALYTICS"]})
            shown = call(CLIENT, NEXT, u=user)["nextSteps"]
            done = [
                {"userId": user, "type": "STEP_COMPLETED", "stepId": s["step"]["id"]}
                for k, s in enumerate(shown["steps"])
                if rng.random() < EXAMINE[k] * ATTRACTION.get(s["step"]["id"], 0.25)
            ]
            if done:
                call(CLIENT, EVENTS, input=done)
            return shown

        for i in range(scenario.logged_users):
            arrive(i, "log")
        clock.advance(days=8)  # the logged decisions' windows close
        outcome.offline = call(AUDITOR, OFFLINE, c=CANDIDATE)["offlineEvaluation"]

        spec = {
            "id": "teammates-first",
            "arms": [
                {"name": "control", "policyVersion": CONTROL, "weight": 1},
                {"name": "treatment", "policyVersion": CANDIDATE, "weight": 1},
            ],
            "guardrails": [{"kpi": "activation", "maxRelativeDrop": 0.0, "detectableDrop": 0.5}],
            "coverage": 0.5,
            "offlineMargin": scenario.offline_margin,
        }
        call(ANN, CREATE, input=spec)
        for approver in (BO, CY):
            call(approver, APPROVE, id="teammates-first")
        try:
            call(ANN, START, id="teammates-first")
            outcome.started = True
        except RuntimeError as refused:
            outcome.start_refusal = str(refused)
        if outcome.started:
            for i in range(scenario.experiment_users):
                shown = arrive(i, "exp")
                arm = 1 if shown["variant"] == "treatment" else 0
                if rng.random() < scenario.activation[arm]:
                    due = clock.advance(seconds=0).timestamp() + float(rng.uniform(0.1, 2.0)) * 86_400
                    heapq.heappush(pending, (due, i, f"exp-{i}"))
                if (i + 1) % scenario.check_every == 0:
                    if outcome.ramped_at is None:
                        try:
                            call(ANN, RAMP, id="teammates-first", c=1.0)
                            outcome.ramped_at = i + 1
                        except RuntimeError:
                            pass  # the evidence cannot detect the guarded harm yet
                    checked = call(ANN, CHECK)["checkGuardrails"]
                    mine = next(e for e in checked if e["id"] == "teammates-first")
                    if mine["arms"][1]["status"] == "rolled-back":
                        outcome.rolled_back_at = i + 1
                        break
        if outcome.started:
            outcome.results = call(ANN, RESULTS, id="teammates-first")["experimentResults"]
        outcome.approvals = [{k: _text(v) for k, v in row.items()} for row in _rows(runtime, APPROVALS)]
        outcome.rollbacks = [
            {k: _text(v) for k, v in row.items() if k != "analysis"} for row in _rows(runtime, ROLLBACKS)
        ]
    outcome.seconds = round(time.perf_counter() - started, 1)
    return outcome


def _rows(runtime: Runtime, query: str) -> list[dict]:
    result = runtime.store.query(query)
    names = [v.value for v in result.variables]
    return [{n: row[n] for n in names} for row in result]


def _text(term) -> str | None:
    if term is None:
        return None
    value = term.value
    return vocab.local_id(value) if value.startswith(vocab.BASE) else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logged-users", type=int, default=Scenario.logged_users)
    parser.add_argument("--experiment-users", type=int, default=Scenario.experiment_users)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "simulate.json")
    args = parser.parse_args()
    outcome = run(Scenario(logged_users=args.logged_users, experiment_users=args.experiment_users))
    command = "python -m bench.governance.simulate" + (
        f" --logged-users {args.logged_users} --experiment-users {args.experiment_users}"
    )
    args.out.write_text(json.dumps({"command": command, "outcome": asdict(outcome)}, indent=2) + "\n")
    print(json.dumps(asdict(outcome), indent=2))


if __name__ == "__main__":
    main()
