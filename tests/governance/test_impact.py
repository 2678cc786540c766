"""High-impact steps: a policy, model or experiment change that alters who sees the steps the catalog marks
(pricing, data sharing, permissions) serves only once principals of two roles approved it, one of them an auditor;
a change that leaves who sees them alone needs the usual quorum; the assessment is stored and an auditor reads it,
with who approved in which role, over SPARQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.decisions import decide, users
from service.errors import Forbidden
from service.experiments import registry
from service.governance import approvals, impact
from service.knowledge.embedded import Store
from service.models import lifecycle, records
from service.runtime import Runtime
from tests.governance.test_approvals import AUDITOR, BO, CLIENT, CY, call, serving
from tests.governance.test_fairness_gate import Planned, enrol, fresh

POLICIES = (Path(__file__).resolve().parents[2] / "ontology" / "policies" / "default.ttl").read_text()
APPROVE_POLICY = (
    "mutation($v: String!) { approvePolicyVersion(version: $v) { version status approvals { by role current } "
    "impactAssessment { highImpact requiredRole baseline ranked changed summary steps { step before after gained lost moved } } } }"
)
NEXT = "query($u: ID!) { nextSteps(userId: $u) { policyVersion steps { step { id } } } }"


def candidate(version: str, *, status: str, pricing_first: bool) -> str:
    """Version ``version`` of the default policy: 1.3.0's content (1.2.0 without the model), and with
    ``pricing_first`` a rule that puts choosing a plan, a high-impact step, first for managers."""
    start = POLICIES.index("pol:default-1.3.0 a wf:PolicyVersion")
    block = POLICIES[start : POLICIES.index(" .\n", start) + 3]
    block = block.replace("pol:default-1.3.0", f"pol:default-{version}").replace(
        'wf:version "1.3.0"', f'wf:version "{version}"'
    )
    block = block.replace('wf:status "candidate"', f'wf:status "{status}"')
    block = block.replace("version 1.3.0: 1.2.0 ranked by its rules alone", f"version {version}: a test candidate")
    rule = ""
    if pricing_first:
        block = block.replace("pol:free-plan-upgrade .", "pol:free-plan-upgrade, pol:managers-choose-plan .")
        rule = """
pol:managers-choose-plan a wf:RankingRule ;
    rdfs:label "Managers choose a plan first"@en ;
    wf:whenRole demo:manager ;
    wf:targetStep demo:choose-plan ;
    wf:weight 5.0 ;
    wf:reasonText "Pick the plan that fits your team" .
"""
    header = POLICIES[: POLICIES.index("pol:default a wf:Policy")]
    return header + block + rule


def load_candidate(runtime: Runtime, tmp_path: Path, version: str, *, status: str, pricing_first: bool) -> None:
    path = tmp_path / f"candidate-{version}.ttl"
    path.write_text(candidate(version, status=status, pricing_first=pricing_first))
    runtime.load([path])


def managers(runtime: Runtime, n: int = 6) -> list[str]:
    ids = [f"manager-{i}" for i in range(n)]
    for user_id in ids:
        users.register(
            runtime, users.Registration(id=user_id, role="manager", plan="team", consents=["PERSONALIZATION"])
        )
    return ids


def test_a_policy_that_puts_a_pricing_step_first_needs_an_auditor_and_an_operator(knowledge_quads, tmp_path):
    http, runtime = serving(knowledge_quads, tmp_path, approvals_required=1)
    # Before anyone is registered the demo version changes nobody's exposure: one operator's approval serves it.
    first = call(http, CY, APPROVE_POLICY, v="default@1.2.0")["data"]["approvePolicyVersion"]
    assert first["status"] == "active" and first["impactAssessment"]["highImpact"] is False
    ids = managers(runtime)
    before = call(http, CLIENT, NEXT, u=ids[0])["data"]["nextSteps"]
    assert before["policyVersion"] == "default@1.2.0" and before["steps"][-1]["step"]["id"] == "choose-plan"

    load_candidate(runtime, tmp_path, "2.0.0", status="active", pricing_first=True)
    # The auditor alone is not enough: a high-impact change is approved by two roles.
    by_auditor = call(http, AUDITOR, APPROVE_POLICY, v="default@2.0.0")["data"]["approvePolicyVersion"]
    assessed = by_auditor["impactAssessment"]
    assert by_auditor["status"] == "candidate" and assessed["highImpact"] is True
    assert assessed["requiredRole"] == "auditor" and assessed["baseline"] == "default@1.2.0"
    # Six managers on the two channels choosing a plan is available on (web and e-mail).
    assert assessed["ranked"] == 12 and assessed["changed"] > 0
    pricing = next(s for s in assessed["steps"] if s["step"] == "choose-plan")
    # Managers see the plans step in their top five already; the candidate puts it first.
    assert pricing["moved"] == assessed["changed"] == 12 and pricing["gained"] == pricing["lost"] == 0
    assert call(http, CLIENT, NEXT, u=ids[0])["data"]["nextSteps"]["policyVersion"] == "default@1.2.0"

    by_operator = call(http, BO, APPROVE_POLICY, v="default@2.0.0")["data"]["approvePolicyVersion"]
    assert by_operator["status"] == "active"
    assert [(a["by"], a["role"]) for a in by_operator["approvals"]] == [
        ("audit-team", "auditor"),
        ("ops-bo", "operator"),
    ]
    after = call(http, CLIENT, NEXT, u=ids[0])["data"]["nextSteps"]
    assert after["policyVersion"] == "default@2.0.0" and after["steps"][0]["step"]["id"] == "choose-plan"

    # The auditor's question over SPARQL: which change was high-impact, and who approved it in which role.
    query = (runtime.settings.queries_dir / "lineage" / "impact-assessments.rq").read_text()
    answer = http.post(
        "/sparql",
        data={"query": query},
        headers={"Authorization": f"Bearer {AUDITOR}", "Accept": "application/sparql-results+json"},
    ).json()
    rows = [
        {k: v["value"] for k, v in b.items()}
        for b in answer["results"]["bindings"]
        if b["version"]["value"].endswith("default-2.0.0")
    ]
    assert {(r["highImpact"], r["requiredRole"], r["approvedBy"], r["approverRole"]) for r in rows} == {
        ("true", "auditor", "audit-team", "auditor"),
        ("true", "auditor", "ops-bo", "operator"),
    }


def test_a_change_that_leaves_who_sees_them_alone_needs_the_usual_quorum(knowledge_quads, tmp_path):
    http, runtime = serving(knowledge_quads, tmp_path, approvals_required=1)
    call(http, CY, APPROVE_POLICY, v="default@1.2.0")
    managers(runtime)
    # 1.2.1 ranks as 1.2.0 does while no model is active: the same steps for everyone.
    load_candidate(runtime, tmp_path, "1.2.1", status="active", pricing_first=False)
    approved = call(http, BO, APPROVE_POLICY, v="default@1.2.1")["data"]["approvePolicyVersion"]
    assert approved["status"] == "active"
    assert approved["impactAssessment"] | {"steps": None, "summary": None} == {
        "highImpact": False,
        "requiredRole": "auditor",
        "baseline": "default@1.2.0",
        "ranked": 12,
        "changed": 0,
        "steps": None,
        "summary": None,
    }
    assert "no change to who sees a high-impact step" in approved["impactAssessment"]["summary"]


def test_without_keys_nothing_waits_for_a_second_role(runtime, tmp_path):
    managers(runtime)
    load_candidate(runtime, tmp_path, "2.0.0", status="candidate", pricing_first=True)
    version = next(v for v in runtime.knowledge.policies.values() if v.label == "default@2.0.0")
    found = impact.assess_policy(runtime, version)
    assert found.high_impact and found.record is not None  # assessed and recorded all the same
    assert impact.assess_policy(runtime, version).record == found.record  # once per content and baseline
    # Declared active in open mode (no keys), it serves at once: approvals are recorded, none is required.
    load_candidate(runtime, tmp_path, "2.0.0", status="active", pricing_first=True)
    assert decide.next_steps(runtime, "manager-0").policy_version == "default@2.0.0"


def test_an_experiment_whose_arm_changes_who_sees_a_pricing_step_starts_once_two_roles_approved_its_plan(
    knowledge_quads, tmp_path
):
    _, runtime = serving(knowledge_quads, tmp_path, approvals_required=1)
    approvals.approve_policy(runtime, "default@1.2.0", by="ops-cy")
    managers(runtime)
    load_candidate(runtime, tmp_path, "2.0.0", status="candidate", pricing_first=True)
    spec = registry.ExperimentSpec(
        id="pricing",
        arms=[registry.ArmSpec("control", "default@1.2.0", 0.5), registry.ArmSpec("plans", "default@2.0.0", 0.5)],
        coverage=1.0,
    )
    registry.create(runtime, spec, by="ops-ann")
    registry.approve(runtime, "pricing", by="ops-bo", four_eyes=True)
    with pytest.raises(Forbidden, match="auditor role"):
        registry.start(runtime, "pricing", by="ops-ann", needs_approval=True)
    registry.approve(runtime, "pricing", by="audit-team", four_eyes=True, role="auditor")
    assert registry.start(runtime, "pricing", by="ops-ann", needs_approval=True).status == registry.RUNNING


def test_a_model_that_changes_who_sees_them_is_promoted_once_an_auditor_approved_it(knowledge_quads, tmp_path):
    """A real GNN, trained briefly on the demo catalog, scored under the default policy (which mixes a model in)."""
    from service.models import training

    runtime = fresh(knowledge_quads, tmp_path)
    people = [
        Planned(f"p-{i:02}", "age-18-34", "retail", i % 3 == 0, role="manager" if i % 2 else "admin") for i in range(24)
    ]
    enrol(runtime, people, plan="team")
    # the GNN alone: stacked on 19 training users, its scores would shrink to almost nothing
    version = training.train(runtime, epochs=3, members=1, requested_by="ops-ann", stack=False).version
    target = records.find(runtime, version)
    found = impact.assess_model(runtime, target)
    assert found.baseline == "none" and found.ranked == 24 * 2  # no model serves: rules alone against the model
    assert (found.changed > 0) == any(s.gained or s.lost for s in found.steps)
    assert found.high_impact, found.summary()  # the model reorders the admins' and managers' sensitive steps
    with pytest.raises(Forbidden, match="auditor role"):
        lifecycle.promote(runtime, version, approved_by="ops-bo", required=1)
    assert records.find(runtime, version).status is records.Status.CANDIDATE
    lifecycle.approve(runtime, version, approved_by="audit-team", role="auditor")
    promoted = lifecycle.promote(runtime, version, approved_by="ops-bo", required=1)
    assert promoted.status is records.Status.ACTIVE
    assert {(a.by, a.role) for a in approvals.of(runtime, target.iri)} == {
        ("audit-team", "auditor"),
        ("ops-bo", "operator"),
    }


def test_the_command_line_assesses_a_version_and_records_the_roles(disk_runtime, tmp_path):
    from service.cli import app

    managers(disk_runtime)
    load_candidate(disk_runtime, tmp_path, "2.0.0", status="candidate", pricing_first=True)
    store_path = str(disk_runtime.settings.store)
    disk_runtime.store.close()
    runner = CliRunner()
    shown = runner.invoke(app, ["policy", "impact", "default@2.0.0", "--store", store_path])
    assert shown.exit_code == 0, shown.output
    assert "high-impact: approvals of two roles, one of them auditor" in shown.output and "choose-plan" in shown.output
    bad = runner.invoke(
        app, ["policy", "approve", "default@2.0.0", "--approved-by", "x", "--role", "client", "--store", store_path]
    )
    assert bad.exit_code == 2 and "--role" in bad.output
    ok = runner.invoke(
        app,
        [
            "policy",
            "approve",
            "default@2.0.0",
            "--approved-by",
            "audit-team",
            "--role",
            "auditor",
            "--store",
            store_path,
        ],
    )
    assert ok.exit_code == 0, ok.output
    reopened = Store(store_path)
    try:
        rows = reopened.select((disk_runtime.settings.queries_dir / "lineage" / "approvals.rq").read_text())
        assert [(r["by"].value, r["role"].value) for r in rows] == [("audit-team", "auditor")]
    finally:
        reopened.close()
