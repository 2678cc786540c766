"""One life cycle for every governed change: policy versions, model versions, experiment plans and flag changes go
from draft or in-review to approved, active, rejected or retired, read the same way over GraphQL."""

from __future__ import annotations

from service.experiments import registry
from service.models import records
from tests.conftest import approve_policies
from tests.experiments.test_flags import flag
from tests.governance.test_approvals import ANN, AUDITOR, BO, CY, call, serving
from tests.models.conftest import register_untrained

REVIEW = "review { state approvals needed requiredRole lacking }"
POLICIES = f"{{ policyVersions {{ version {REVIEW} }} }}"
MODELS = f"{{ models {{ version {REVIEW} }} }}"
EXPERIMENTS = f"{{ experiments {{ id {REVIEW} }} }}"
APPROVE_POLICY = "mutation($v: String!, $ok: Boolean) { approvePolicyVersion(version: $v, approve: $ok) { version } }"
APPROVE_MODEL = "mutation($v: String!, $ok: Boolean) { approveModelVersion(version: $v, approve: $ok) { version } }"
PROMOTE = "mutation($v: String!) { promoteModel(version: $v) { version } }"
CREATE_FLAG = f"mutation C($input: FlagInput!) {{ createFlag(input: $input) {{ pendingChange {{ {REVIEW} }} }} }}"
APPROVE_FLAG = f"mutation A($id: ID!) {{ approveFlagChange(id: $id) {{ status {REVIEW} }} }}"


def states(http, query: str, field: str, key: str = AUDITOR) -> dict[str, dict]:
    rows = call(http, key, query)["data"][field]
    return {row.get("version") or row["id"]: row["review"] for row in rows}


def test_policy_versions_move_from_draft_and_review_to_active_rejected_or_retired(knowledge_quads, tmp_path):
    http, _ = serving(knowledge_quads, tmp_path, approvals_required=1)
    before = states(http, POLICIES, "policyVersions")
    assert before["default@1.2.0"] == {
        "state": "in-review",  # its file declares it active: it waits for an approval
        "approvals": 0,
        "needed": 1,
        "requiredRole": None,
        "lacking": "1 more approval(s) by principals other than its author",
    }
    assert before["default@1.3.0"]["state"] == "draft"  # a candidate nobody proposed
    assert before["default@1.0.0"]["state"] == "retired"
    call(http, CY, APPROVE_POLICY, v="default@1.2.0")
    call(http, BO, APPROVE_POLICY, v="default@1.3.0", ok=False)
    after = states(http, POLICIES, "policyVersions")
    assert after["default@1.2.0"] | {"lacking": None} == {
        "state": "active",
        "approvals": 1,
        "needed": 1,
        "requiredRole": None,
        "lacking": None,
    }
    assert after["default@1.3.0"]["state"] == "rejected" and after["default@1.3.0"]["lacking"] == "rejected by ops-bo"


def test_model_versions_are_in_review_until_approved_then_active_then_retired(knowledge_quads, tmp_path):
    http, runtime = serving(knowledge_quads, tmp_path, approvals_required=1)
    first = register_untrained(runtime, b"review one", requested_by="ops-ann")
    second = register_untrained(runtime, b"review two", minute=2, requested_by="ops-ann")
    rejected = register_untrained(runtime, b"review three", minute=4, requested_by="ops-ann")
    assert states(http, MODELS, "models", key=BO)[first]["state"] == "in-review"
    call(http, CY, APPROVE_MODEL, v=first)
    call(http, CY, APPROVE_MODEL, v=rejected, ok=False)
    seen = states(http, MODELS, "models", key=BO)
    assert seen[first]["state"] == "approved" and seen[rejected]["state"] == "rejected"
    call(http, BO, PROMOTE, v=first)
    assert states(http, MODELS, "models", key=BO)[first]["state"] == "active"
    call(http, BO, PROMOTE, v=second)
    assert records.find(runtime, second).status is records.Status.ACTIVE
    seen = states(http, MODELS, "models", key=BO)
    assert (seen[first]["state"], seen[second]["state"]) == ("retired", "active")


def test_an_experiment_plan_goes_from_draft_to_approved_to_active_to_retired(knowledge_quads, tmp_path):
    http, runtime = serving(knowledge_quads, tmp_path, approvals_required=1)
    approve_policies(runtime)
    spec = registry.ExperimentSpec(
        id="trial",
        arms=[registry.ArmSpec("control", "default@1.2.0", 0.5), registry.ArmSpec("rules", "default@1.3.0", 0.5)],
    )
    registry.create(runtime, spec, by="ops-ann")
    assert states(http, EXPERIMENTS, "experiments", key=BO)["trial"]["state"] == "draft"
    registry.approve(runtime, "trial", by="ops-bo", four_eyes=True)
    assert states(http, EXPERIMENTS, "experiments", key=BO)["trial"]["state"] == "approved"
    registry.start(runtime, "trial", by="ops-ann", needs_approval=True)
    assert states(http, EXPERIMENTS, "experiments", key=BO)["trial"]["state"] == "active"
    registry.stop(runtime, "trial", by="ops-ann")
    assert states(http, EXPERIMENTS, "experiments", key=BO)["trial"]["state"] == "retired"


def test_a_flag_change_is_in_review_until_approved_and_then_active(knowledge_quads, tmp_path):
    http, runtime = serving(knowledge_quads, tmp_path, approvals_required=1)
    approve_policies(runtime)
    proposed = call(http, ANN, CREATE_FLAG, input=flag())["data"]["createFlag"]["pendingChange"]["review"]
    assert (proposed["state"], proposed["approvals"], proposed["needed"]) == ("in-review", 0, 1)
    done = call(http, BO, APPROVE_FLAG, id="ranking")["data"]["approveFlagChange"]
    assert done["status"] == "applied" and done["review"]["state"] == "active" and done["review"]["lacking"] is None
