"""Experiments through the public GraphQL API: created, approved, started, assigned in nextSteps, sticky, stopped."""

from __future__ import annotations

import json

import pyoxigraph as ox
import pytest
from starlette.testclient import TestClient

from service.api.app import create_app
from service.audit.chain import verify
from service.experiments import registry
from service.experiments.bucketing import bucket
from service.knowledge import vocab
from service.knowledge.embedded import Store
from service.runtime import Runtime
from service.settings import Settings
from tests.graphql_client import NEXT_STEPS, register

FIELDS = (
    "id status coverage holdout hashVersion createdBy approvedBy arms { name policyVersion weight status } "
    "guardrails { kpi maxRelativeDrop detectableDrop }"
)
CREATE = f"mutation C($input: ExperimentInput!) {{ createExperiment(input: $input) {{ {FIELDS} }} }}"
START = f"mutation S($id: ID!) {{ startExperiment(id: $id) {{ {FIELDS} }} }}"
STOP = f"mutation S($id: ID!) {{ stopExperiment(id: $id) {{ {FIELDS} }} }}"
APPROVE = f"mutation A($id: ID!) {{ approveExperiment(id: $id) {{ {FIELDS} }} }}"
REWEIGHT = f"mutation R($id: ID!, $w: [Float!]!) {{ reweightExperiment(id: $id, weights: $w) {{ {FIELDS} }} }}"
RAMP = f"mutation R($id: ID!, $c: Float!) {{ rampExperiment(id: $id, coverage: $c) {{ {FIELDS} }} }}"
LIST = f"{{ experiments {{ {FIELDS} }} }}"

RULES_VS_HYBRID = {
    "id": "rules-vs-hybrid",
    "arms": [
        {"name": "control", "policyVersion": "default@1.2.0", "weight": 1},
        {"name": "rules-only", "policyVersion": "default@1.3.0", "weight": 1},
    ],
    "guardrails": [{"kpi": "activation", "maxRelativeDrop": 0.0}],
}


def started(client, spec=RULES_VS_HYBRID) -> dict:
    client.data(CREATE, {"input": spec})
    return client.data(START, {"id": spec["id"]})["startExperiment"]


def test_a_draft_is_created_with_normalised_weights_and_listed(client):
    spec = {
        **RULES_VS_HYBRID,
        "arms": [{**a, "weight": w} for a, w in zip(RULES_VS_HYBRID["arms"], (3, 1), strict=True)],
    }
    created = client.data(CREATE, {"input": spec})["createExperiment"]
    assert created["status"] == "draft" and created["createdBy"] == "open" and created["hashVersion"] == 1
    assert [(a["name"], a["weight"], a["status"]) for a in created["arms"]] == [
        ("control", 0.75, "active"),
        ("rules-only", 0.25, "active"),
    ]
    assert created["guardrails"] == [{"kpi": "activation", "maxRelativeDrop": 0.0, "detectableDrop": 0.2}]
    assert client.data(LIST)["experiments"] == [created]


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"id": "has space"}, "input.id", "letters, digits"),
        ({"arms": RULES_VS_HYBRID["arms"][:1]}, "input.arms", "2 to 10 arms"),
        ({"arms": [RULES_VS_HYBRID["arms"][0]] * 2}, "input.arms[1].name", "two arms"),
        (
            {"arms": [RULES_VS_HYBRID["arms"][0], {"name": "b", "policyVersion": "default@9.9.9", "weight": 1}]},
            "input.arms[1].policyVersion",
            "no policy version",
        ),
        (
            {"arms": [RULES_VS_HYBRID["arms"][0], {"name": "b", "policyVersion": "default@1.1.0", "weight": 1}]},
            "input.arms[1].policyVersion",
            "retired",
        ),
        (
            {"arms": [RULES_VS_HYBRID["arms"][0], {"name": "b", "policyVersion": "default@1.3.0", "weight": 0}]},
            "input.arms[1].weight",
            "positive",
        ),
        ({"guardrails": [{"kpi": "happiness", "maxRelativeDrop": 0.1}]}, "input.guardrails[0].kpi", "unknown KPI"),
        (
            {"guardrails": [{"kpi": "activation", "maxRelativeDrop": 1.5}]},
            "input.guardrails[0].maxRelativeDrop",
            "[0, 1)",
        ),
        ({"coverage": 0.0}, "input.coverage", "(0, 1]"),
    ],
)
def test_a_bad_experiment_is_refused_naming_the_field_and_stores_nothing(client, runtime, change, field, reason):
    error = client.error(CREATE, {"input": {**RULES_VS_HYBRID, **change}})
    assert field in error["message"] and reason in error["message"], error
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert registry.experiments(runtime) == []
    assert not list(runtime.store.quads(graph=vocab.EXPERIMENTS_GRAPH))


def test_a_running_experiment_assigns_every_user_and_names_the_arm_and_its_version(client, runtime):
    started(client)
    versions = {"control": "default@1.2.0", "rules-only": "default@1.3.0"}
    seen = set()
    for i in range(40):
        register(
            client, f"u{i}", consents=[] if i % 2 else ["PERSONALIZATION"]
        )  # consent does not decide who is assigned
        rec = client.data(NEXT_STEPS, {"user": f"u{i}"})["nextSteps"]
        assert rec["variant"] in versions
        assert rec["policyVersion"] == versions[rec["variant"]]
        seen.add(rec["variant"])
    assert seen == set(versions)


def test_the_decision_record_lets_an_auditor_rederive_the_assignment(client, runtime):
    started(client)
    register(client, "ana")
    rec = client.data(NEXT_STEPS, {"user": "ana"})["nextSteps"]
    rows = runtime.store.select(
        """
        PREFIX wf: <https://w3id.org/wayfinder/ontology#>
        SELECT ?pseudonym ?id ?bucket ?hash ?reason ?arm WHERE {
          GRAPH <https://w3id.org/wayfinder/graph/audit> {
            ?d wf:subjectPseudonym ?pseudonym ; wf:inExperiment ?e ; wf:bucket ?bucket ;
               wf:hashVersion ?hash ; wf:assignmentReason ?reason ; wf:assignedArm ?armNode ; wf:variant ?arm .
          }
          GRAPH <https://w3id.org/wayfinder/graph/experiments> { ?e wf:experimentId ?id }
        }"""
    )
    assert len(rows) == 1
    row = {k: rows[0][k].value for k in ("pseudonym", "id", "bucket", "hash", "reason", "arm")}
    assert row["id"] == "rules-vs-hybrid" and row["hash"] == "1" and row["reason"] == "SPLIT"
    assert int(row["bucket"]) == bucket("rules-vs-hybrid", row["pseudonym"])
    assert row["arm"] == rec["variant"] == ("control" if int(row["bucket"]) < 5_000 else "rules-only")
    client.data(REWEIGHT, {"id": "rules-vs-hybrid", "w": [1, 3]})
    again = client.data(NEXT_STEPS, {"user": "ana"})["nextSteps"]
    lineage = runtime.store.select(
        runtime.queries["lineage/decision-experiment"].bind(
            decision=ox.NamedNode(vocab.DECISION_BASE + again["decisionId"])
        )
    )
    assert len(lineage) == 1
    found = {k: lineage[0][k].value for k in ("experimentId", "arm", "bucket", "reason", "changeKind", "pseudonym")}
    assert found["experimentId"] == "rules-vs-hybrid" and found["arm"] == rec["variant"]
    assert found["reason"] == "STICKY" and found["changeKind"] == "reweight"
    assert int(found["bucket"]) == bucket("rules-vs-hybrid", found["pseudonym"])
    assert json.loads(lineage[0]["stateBefore"].value)["arms"][1]["weight"] == 0.75
    reasons = sorted(
        r["reason"].value
        for r in runtime.store.select(
            "PREFIX wf: <https://w3id.org/wayfinder/ontology#> SELECT ?reason WHERE { GRAPH ?g { ?d wf:assignmentReason ?reason } }"
        )
    )
    assert reasons == ["SPLIT", "STICKY"]


def test_assignment_is_sticky_when_weights_change(client):
    started(client)
    first = {}
    for i in range(60):
        register(client, f"u{i}")
        first[f"u{i}"] = client.data(NEXT_STEPS, {"user": f"u{i}"})["nextSteps"]["variant"]
    weights = client.data(REWEIGHT, {"id": "rules-vs-hybrid", "w": [1, 99]})["reweightExperiment"]
    assert [a["weight"] for a in weights["arms"]] == [0.01, 0.99]
    for user, variant in first.items():
        assert client.data(NEXT_STEPS, {"user": user})["nextSteps"]["variant"] == variant
    newcomers = []
    for i in range(30):
        register(client, f"new{i}")
        newcomers.append(client.data(NEXT_STEPS, {"user": f"new{i}"})["nextSteps"]["variant"])
    assert newcomers.count("rules-only") >= 27  # 99% by the new weights


def test_a_ramp_takes_in_more_users_and_keeps_those_already_in(client):
    spec = {**RULES_VS_HYBRID, "coverage": 0.1, "guardrails": []}  # unguarded: nothing to detect first
    started(client, spec)
    variants = {}
    for i in range(80):
        register(client, f"u{i}")
        variants[f"u{i}"] = client.data(NEXT_STEPS, {"user": f"u{i}"})["nextSteps"]["variant"]
    inside = {u: v for u, v in variants.items() if v is not None}
    assert 0 < len(inside) < 30
    assert client.data(RAMP, {"id": "rules-vs-hybrid", "c": 1.0})["rampExperiment"]["coverage"] == 1.0
    after = {u: client.data(NEXT_STEPS, {"user": u})["nextSteps"]["variant"] for u in variants}
    assert all(after[u] == v for u, v in inside.items())
    assert all(v is not None for v in after.values())


RECORD = "mutation E($input: EventInput!) { recordEvent(input: $input) { id } }"


def test_a_guarded_ramp_widens_only_once_the_evidence_could_detect_the_harm(client, runtime):
    guarded = [{"kpi": "activation", "maxRelativeDrop": 0.0, "detectableDrop": 0.9}]
    started(client, {**RULES_VS_HYBRID, "coverage": 0.5, "guardrails": guarded})
    refused = client.error(RAMP, {"id": "rules-vs-hybrid", "c": 1.0})
    assert refused["extensions"]["code"] == "CONFLICT" and "coverage stays at 0.5" in refused["message"]
    assert "no drop at all yet" in refused["message"]
    assert client.data(LIST)["experiments"][0]["coverage"] == 0.5
    inside = 0
    for i in range(400):
        register(client, f"u{i}")
        if client.data(NEXT_STEPS, {"user": f"u{i}"})["nextSteps"]["variant"] is not None:
            inside += 1
            if i % 2:
                client.data(RECORD, {"input": {"userId": f"u{i}", "type": "ACTIVATED"}})
        if inside >= 90:
            break
    assert client.data(RAMP, {"id": "rules-vs-hybrid", "c": 1.0})["rampExperiment"]["coverage"] == 1.0
    rows = runtime.store.select(
        """PREFIX wf: <https://w3id.org/wayfinder/ontology#> PREFIX prov: <http://www.w3.org/ns/prov#>
        SELECT ?snapshot WHERE { GRAPH ?g { ?c wf:changeKind "ramp" ; prov:used ?snapshot . ?snapshot a wf:AnalysisSnapshot } }"""
    )
    assert len(rows) == 1  # the ramp record uses the analysis it was allowed on
    assert (
        client.data(RAMP, {"id": "rules-vs-hybrid", "c": 0.2})["rampExperiment"]["coverage"] == 0.2
    )  # lowering: always


def test_a_rolled_back_arm_keeps_its_users_but_serves_the_controls_version(client, runtime):
    started(client)
    arms = {}
    for i in range(30):
        register(client, f"u{i}")
        arms[f"u{i}"] = client.data(NEXT_STEPS, {"user": f"u{i}"})["nextSteps"]["variant"]
    registry.roll_back(runtime, "rules-vs-hybrid", "rules-only", by="monitor")
    listed = client.data(LIST)["experiments"][0]
    assert [a["status"] for a in listed["arms"]] == ["active", "rolled-back"]
    for user, arm in arms.items():
        rec = client.data(NEXT_STEPS, {"user": user})["nextSteps"]
        assert rec["variant"] == arm  # intention to treat
        assert rec["policyVersion"] == "default@1.2.0"


def test_a_holdout_keeps_its_share_out_of_every_arm_on_the_active_version(client, runtime):
    started(client, {**RULES_VS_HYBRID, "holdout": 0.2, "coverage": 0.5})
    from service.decisions.users import profile

    groups = {}
    for i in range(120):
        register(client, f"u{i}")
        rec = client.data(NEXT_STEPS, {"user": f"u{i}"})["nextSteps"]
        at = bucket("rules-vs-hybrid", profile(runtime, f"u{i}").pseudonym)
        if at >= 8_000:  # the top fifth of the buckets, whatever the coverage
            assert rec["variant"] == "holdout" and rec["policyVersion"] == "default@1.2.0"
        else:
            assert rec["variant"] != "holdout"
        groups[f"u{i}"] = rec["variant"]
    assert 0 < list(groups.values()).count("holdout") < 45
    again = {u: client.data(NEXT_STEPS, {"user": u})["nextSteps"]["variant"] for u in list(groups)[:30]}
    assert all(again[u] == groups[u] for u in again)  # sticky, held-out users too
    from service.experiments.analysis import analyse

    analysis = analyse(runtime, "rules-vs-hybrid")
    assert [a.name for a in analysis.arms] == ["control", "rules-only", "holdout"]
    assert analysis.arms[2].users == list(groups.values()).count("holdout")
    assert len(analysis.expected) == 2  # the SRM check is over the arms only
    assert all(g.arm != "holdout" for g in analysis.guardrails)
    error = client.error(CREATE, {"input": {**RULES_VS_HYBRID, "id": "too-much", "holdout": 0.5}})
    assert "input.holdout" in error["message"]


def test_a_stopped_experiment_assigns_no_one(client):
    started(client)
    register(client, "ana")
    assert client.data(NEXT_STEPS, {"user": "ana"})["nextSteps"]["variant"] is not None
    assert client.data(STOP, {"id": "rules-vs-hybrid"})["stopExperiment"]["status"] == "stopped"
    rec = client.data(NEXT_STEPS, {"user": "ana"})["nextSteps"]
    assert rec["variant"] is None and rec["policyVersion"] == "default@1.2.0"
    error = client.error(START, {"id": "rules-vs-hybrid"})
    assert "only a draft starts" in error["message"]


def test_one_experiment_runs_per_policy(client):
    started(client)
    client.data(CREATE, {"input": {**RULES_VS_HYBRID, "id": "second"}})
    error = client.error(START, {"id": "second"})
    assert "is running on policy 'default'" in error["message"]


def test_every_change_is_a_chained_audit_record_with_the_state_after_it(client, runtime):
    started(client)
    client.data(REWEIGHT, {"id": "rules-vs-hybrid", "w": [2, 1]})
    client.data(STOP, {"id": "rules-vs-hybrid"})
    rows = runtime.store.select(
        """
        PREFIX wf: <https://w3id.org/wayfinder/ontology#>
        PREFIX prov: <http://www.w3.org/ns/prov#>
        SELECT ?kind ?by ?state ?seq WHERE {
          GRAPH <https://w3id.org/wayfinder/graph/audit> {
            ?c a wf:ExperimentChange ; wf:changeKind ?kind ; wf:requestedBy ?by ; wf:stateAfter ?state ;
               prov:startedAtTime ?at ; wf:sequence ?seq ; prov:used <https://w3id.org/wayfinder/experiment/rules-vs-hybrid> .
          }
        } ORDER BY ?seq"""
    )
    assert [r["kind"].value for r in rows] == ["create", "start", "reweight", "stop"]
    assert {r["by"].value for r in rows} == {"open"}
    states = [json.loads(r["state"].value) for r in rows]
    assert [s["status"] for s in states] == ["draft", "running", "running", "stopped"]
    assert [round(a["weight"], 4) for a in states[2]["arms"]] == [0.6667, 0.3333]
    assert verify(runtime.store, runtime.queries["audit-index"]).ok


KEYS = "op-key-ann-0123456789:operator:ann,op-key-bob-0123456789:operator:bob,client-key-0123456789:client"


@pytest.fixture
def keyed(knowledge_quads, tmp_path):
    store = Store(":memory:")
    store.commit(add=knowledge_quads)
    settings = Settings(store=":memory:", api_keys=KEYS, models_dir=tmp_path / "models")
    with TestClient(create_app(Runtime(settings=settings, store=store))) as http:
        yield http


def as_(http, key, query, **variables):
    body = http.post(
        "/graphql", json={"query": query, "variables": variables}, headers={"Authorization": f"Bearer {key}"}
    ).json()
    return body


def test_with_keys_another_principal_approves_before_it_starts(keyed):
    created = as_(keyed, "op-key-ann-0123456789", CREATE, input=RULES_VS_HYBRID)["data"]["createExperiment"]
    assert created["createdBy"] == "ann"
    refused = as_(keyed, "op-key-ann-0123456789", START, id="rules-vs-hybrid")
    assert (
        "not approved" in refused["errors"][0]["message"] and refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    )
    own = as_(keyed, "op-key-ann-0123456789", APPROVE, id="rules-vs-hybrid")
    assert "another principal" in own["errors"][0]["message"]
    client = as_(keyed, "client-key-0123456789", APPROVE, id="rules-vs-hybrid")
    assert client["errors"][0]["extensions"]["code"] == "FORBIDDEN"  # the operator role is needed
    approved = as_(keyed, "op-key-bob-0123456789", APPROVE, id="rules-vs-hybrid")["data"]["approveExperiment"]
    assert approved["approvedBy"] == "bob" and approved["status"] == "draft"
    assert (
        as_(keyed, "op-key-ann-0123456789", START, id="rules-vs-hybrid")["data"]["startExperiment"]["status"]
        == "running"
    )


def test_a_change_to_an_approved_draft_revokes_its_approval(keyed):
    as_(keyed, "op-key-ann-0123456789", CREATE, input=RULES_VS_HYBRID)
    assert as_(keyed, "op-key-bob-0123456789", APPROVE, id="rules-vs-hybrid")["data"]["approveExperiment"]["approvedBy"]
    reweight = "mutation($id: ID!, $w: [Float!]!) { reweightExperiment(id: $id, weights: $w) { approvedBy } }"
    edited = as_(keyed, "op-key-ann-0123456789", reweight, id="rules-vs-hybrid", w=[3, 1])
    assert edited["data"]["reweightExperiment"]["approvedBy"] is None
    refused = as_(keyed, "op-key-ann-0123456789", START, id="rules-vs-hybrid")
    assert "not approved" in refused["errors"][0]["message"] and "has 0" in refused["errors"][0]["message"]
    # Bob approves the plan as it is now; approving it twice as it is is refused.
    assert as_(keyed, "op-key-bob-0123456789", APPROVE, id="rules-vs-hybrid")["data"]["approveExperiment"]["approvedBy"]
    twice = as_(keyed, "op-key-bob-0123456789", APPROVE, id="rules-vs-hybrid")
    assert twice["errors"][0]["extensions"]["code"] == "CONFLICT"
    started = as_(keyed, "op-key-ann-0123456789", START, id="rules-vs-hybrid")["data"]["startExperiment"]
    assert started["status"] == "running"


def test_metrics_count_assignments_by_arm_and_show_guardrail_state(client):
    started(client)
    for i in range(6):
        register(client, f"m{i}")
        client.data(NEXT_STEPS, {"user": f"m{i}"})
    client.data("mutation { checkGuardrails { id } }")
    text = client.http.get("/metrics").text
    counted = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("wayfinder_experiment_assignments_total{") and 'experiment="rules-vs-hybrid"' in line
    ]
    assert sum(counted) >= 6  # the counter is process-wide: other tests' experiments of this name add to it
    assert 'wayfinder_guardrail_state{arm="rules-only",experiment="rules-vs-hybrid",kpi="activation"} 0.0' in text
