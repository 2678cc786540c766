"""Small experiments end to end through GraphQL with days passing: a harmful arm is rolled back by the
monitor, a better one is found better, an injected imbalance trips the SRM check (bench/experiments/simulate.py
runs the same at full size)."""

from __future__ import annotations

import json

from bench.experiments.simulate import Scenario, run, runtime_for_simulation
from service.audit.chain import verify


def test_a_harmful_arm_is_rolled_back_automatically_with_its_evidence_in_the_audit_trail():
    runtime = runtime_for_simulation()
    # Five days pass between checks, so the outcomes (0.1 to 3 days late) of all but the newest users have arrived.
    # Pseudonyms, and so the split, are random: at rates 0.5 and 0.15 the monitor acted at 200 to 300 users (one CI
    # run at 300), at 0.6 and 0.1 at 150 to 200 users in five runs. Full size: the bench.
    outcome = run(Scenario("harm", rates=(0.6, 0.1), users=300, check_every=50, users_per_day=10), runtime)
    assert outcome.rolled_back_at is not None and outcome.rolled_back_at <= 250, outcome
    assert outcome.served_after_rollback and set(outcome.served_after_rollback) == {"default@1.2.0"}  # control's
    rows = runtime.store.select(
        """
        PREFIX wf: <https://w3id.org/wayfinder/ontology#>
        PREFIX prov: <http://www.w3.org/ns/prov#>
        SELECT ?by ?agent ?analysis WHERE {
          GRAPH <https://w3id.org/wayfinder/graph/audit> {
            ?rollback a wf:Rollback ; wf:requestedBy ?by ; prov:wasAssociatedWith ?agent ;
                      wf:rolledBackArm <https://w3id.org/wayfinder/experiment/sim-harm/arm/treatment> ;
                      prov:used ?snapshot .
            ?snapshot a wf:AnalysisSnapshot ; wf:analysis ?analysis .
          }
        }"""
    )
    assert len(rows) == 1
    assert rows[0]["by"].value == "open" and rows[0]["agent"].value.endswith("agent/guardrail-monitor")
    evidence = json.loads(rows[0]["analysis"].value)
    harm = [g for g in evidence["guardrails"] if g["arm"] == "treatment" and g["kpi"] == "activation"]
    assert harm and harm[0]["state"] == "harm" and harm[0]["bound"] < 0
    moments = evidence["moments"]["activation"]
    assert moments["control"]["n"] > 0 and moments["treatment"]["total"] < moments["control"]["total"]
    assert verify(runtime.store, runtime.queries["audit-index"]).ok
    # The auditor's lineage query finds the same rollback and its evidence.
    lineage = runtime.store.select(runtime.queries["lineage/rollbacks"])
    assert [(r["experimentId"].value, r["arm"].value) for r in lineage] == [("sim-harm", "treatment")]
    assert json.loads(lineage[0]["analysis"].value) == evidence


def test_a_truly_better_arm_is_detected_as_better_and_not_rolled_back():
    outcome = run(Scenario("better", rates=(0.3, 0.7), users=400, check_every=100, users_per_day=50, seed=1))
    assert outcome.rolled_back_at is None
    assert outcome.decision == "better", outcome
    assert outcome.lift_interval[0] is not None and outcome.lift_interval[0] > 0
    assert not outcome.sample_ratio_mismatch


def test_an_injected_assignment_imbalance_is_caught_by_the_srm_check():
    outcome = run(Scenario("srm", rates=(0.3, 0.3), users=400, check_every=400, drop=0.6, seed=2))
    assert outcome.exposed["treatment"] < outcome.exposed["control"]
    assert outcome.sample_ratio_mismatch and outcome.srm_p_value is not None and outcome.srm_p_value < 0.001, outcome
