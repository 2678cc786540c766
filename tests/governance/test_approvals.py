"""Approvals bound to identities: the author never approves their own change, a quorum of other principals serves a
model version, a rejection blocks it, and an auditor lists who approved what over SPARQL."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from service.api.app import create_app
from service.governance import approvals
from service.knowledge.embedded import Store
from service.models import lifecycle, records
from service.runtime import Runtime
from service.settings import Settings
from tests.models.conftest import register_untrained

ANN, BO, CY, AUDITOR, CLIENT = "n" * 24, "b" * 24, "c" * 24, "a" * 24, "k" * 24
KEYS = (
    f"{ANN}:operator:ops-ann,{BO}:operator:ops-bo,{CY}:operator:ops-cy,{AUDITOR}:auditor:audit-team,"
    f"{CLIENT}:client:backend"
)
APPROVE = (
    "mutation($v: String!, $ok: Boolean) { approveModelVersion(version: $v, approve: $ok) "
    "{ version status approvals { by verdict current } } }"
)
PROMOTE = "mutation($v: String!) { promoteModel(version: $v) { version status approvedBy approvals { by } } }"


def serving(knowledge_quads, tmp_path, **settings) -> tuple[TestClient, Runtime]:
    store = Store(":memory:")
    store.commit(add=knowledge_quads)
    runtime = Runtime(
        settings=Settings(store=":memory:", api_keys=KEYS, models_dir=tmp_path / "m", **settings), store=store
    )
    return TestClient(create_app(runtime)), runtime


def call(http, key: str, query: str, **variables) -> dict:
    return http.post(
        "/graphql", json={"query": query, "variables": variables}, headers={"Authorization": f"Bearer {key}"}
    ).json()


def code_of(body: dict) -> str | None:
    return ((body.get("errors") or [{}])[0].get("extensions") or {}).get("code")


def test_the_author_never_approves_and_a_quorum_of_others_serves_a_version(knowledge_quads, tmp_path):
    http, runtime = serving(knowledge_quads, tmp_path, approvals_required=2)
    version = register_untrained(runtime, b"candidate one", requested_by="ops-ann")
    own = call(http, ANN, PROMOTE, v=version)
    assert code_of(own) == "FORBIDDEN" and "another principal" in own["errors"][0]["message"]
    assert code_of(call(http, ANN, APPROVE, v=version)) == "FORBIDDEN"  # nor approves it without promoting
    # One approval of two: bo's promotion is refused and records nothing.
    short = call(http, BO, PROMOTE, v=version)
    assert code_of(short) == "FORBIDDEN" and "needs 2 approvals" in short["errors"][0]["message"]
    assert approvals.of(runtime, records.find(runtime, version).iri) == []
    approved = call(http, CY, APPROVE, v=version)["data"]["approveModelVersion"]
    assert approved["status"] == "candidate" and approved["approvals"] == [
        {"by": "ops-cy", "verdict": "approved", "current": True}
    ]
    again = call(http, CY, APPROVE, v=version)
    assert code_of(again) == "CONFLICT"  # one principal counts once
    promoted = call(http, BO, PROMOTE, v=version)["data"]["promoteModel"]
    assert promoted["status"] == "active" and promoted["approvedBy"] == "ops-bo"
    assert [a["by"] for a in promoted["approvals"]] == ["ops-cy", "ops-bo"]


def test_a_rejection_blocks_the_version_until_it_is_retrained(knowledge_quads, tmp_path):
    http, runtime = serving(knowledge_quads, tmp_path)
    version = register_untrained(runtime, b"candidate two", requested_by="ops-ann")
    rejected = call(http, CY, APPROVE, v=version, ok=False)["data"]["approveModelVersion"]
    assert rejected["approvals"] == [{"by": "ops-cy", "verdict": "rejected", "current": True}]
    blocked = call(http, BO, PROMOTE, v=version)
    assert code_of(blocked) == "FORBIDDEN" and "rejected by ops-cy" in blocked["errors"][0]["message"]
    assert records.find(runtime, version).status is records.Status.CANDIDATE
    other = register_untrained(runtime, b"candidate three", minute=2, requested_by="ops-ann")
    assert call(http, BO, PROMOTE, v=other)["data"]["promoteModel"]["status"] == "active"  # quorum 1 by default


def test_an_approval_judges_the_content_as_it_was(knowledge_quads, tmp_path):
    """An approval names the artefact hash it judged: were the artefact replaced, the approval would not count."""
    _, runtime = serving(knowledge_quads, tmp_path, approvals_required=1)
    version = register_untrained(runtime, b"candidate four", requested_by="ops-ann")
    target = records.find(runtime, version)
    approvals.record(runtime, target.iri, content="0" * 64, author="ops-ann", by="ops-cy", what="test")
    stand = approvals.standing(runtime, target.iri, content=target.artifact_hash, author="ops-ann", needed=1)
    assert not stand.approved and stand.missing() == 1
    lifecycle.approve(runtime, version, approved_by="ops-cy")
    stand = approvals.standing(runtime, target.iri, content=target.artifact_hash, author="ops-ann", needed=1)
    assert stand.approved and stand.approvers == ["ops-cy"]


def test_without_keys_approvals_are_recorded_and_none_is_required(runtime):
    version = register_untrained(runtime, b"candidate five", requested_by=None)
    promoted = lifecycle.promote(runtime, version, approved_by="Grace", required=0)
    assert promoted.status is records.Status.ACTIVE
    assert [a.by for a in approvals.of(runtime, promoted.iri)] == ["Grace"]
    with pytest.raises(Exception, match="name who approves"):
        lifecycle.approve(runtime, version, approved_by=" ")


def test_an_auditor_lists_who_approved_what_over_sparql(knowledge_quads, tmp_path):
    http, runtime = serving(knowledge_quads, tmp_path)
    version = register_untrained(runtime, b"candidate six", requested_by="ops-ann")
    call(http, CY, APPROVE, v=version, ok=False)
    call(http, BO, APPROVE, v=version)
    query = (runtime.settings.queries_dir / "lineage" / "approvals.rq").read_text()
    answer = http.post(
        "/sparql",
        content=query,
        headers={
            "Authorization": f"Bearer {AUDITOR}",
            "content-type": "application/sparql-query",
            "accept": "application/sparql-results+json",
        },
    )
    assert answer.status_code == 200, answer.text
    rows = answer.json()["results"]["bindings"]
    assert [(r["by"]["value"], r["verdict"]["value"]) for r in rows] == [("ops-cy", "rejected"), ("ops-bo", "approved")]
    assert {r["entity"]["value"] for r in rows} == {records.find(runtime, version).iri}
    assert {r["kind"]["value"].rsplit("#", 1)[-1] for r in rows} == {"ModelVersion"}
    assert {r["content"]["value"] for r in rows} == {records.find(runtime, version).artifact_hash}


def test_the_command_line_records_an_approval_and_refuses_the_author(disk_runtime):
    import gc

    from typer.testing import CliRunner

    from service.cli import app

    version = register_untrained(disk_runtime, b"candidate seven", requested_by="ops-ann")
    disk_runtime.close()
    gc.collect()
    store = disk_runtime.settings.store
    own = CliRunner().invoke(app, ["model", "approve", version, "--approved-by", "ops-ann", "--store", store])
    assert own.exit_code != 0 and "another principal" in own.output
    gc.collect()
    ok = CliRunner().invoke(app, ["model", "approve", version, "--approved-by", "Grace", "--store", store])
    assert ok.exit_code == 0, ok.output
    assert "approved by Grace; 1 verdicts on it as it is" in ok.stdout


POLICIES = "{ policyVersions { version status declaredStatus approvals { by verdict current } } }"
APPROVE_POLICY = (
    "mutation($v: String!, $ok: Boolean) { approvePolicyVersion(version: $v, approve: $ok) "
    "{ version status approvals { by verdict current } } }"
)
NEXT = "query($u: ID!) { nextSteps(userId: $u) { policyVersion } }"
REGISTER = "mutation($id: ID!) { registerUser(input: {id: $id, consents: [PERSONALIZATION]}) { id } }"


def policy(http, label: str) -> dict:
    return next(p for p in call(http, AUDITOR, POLICIES)["data"]["policyVersions"] if p["version"] == label)


def test_with_keys_a_policy_file_declaring_a_version_active_serves_it_only_once_approved(knowledge_quads, tmp_path):
    http, runtime = serving(knowledge_quads, tmp_path)
    assert policy(http, "default@1.2.0") | {"approvals": []} == {
        "version": "default@1.2.0",
        "status": "candidate",
        "declaredStatus": "active",
        "approvals": [],
    }
    call(http, CLIENT, REGISTER, id="u1")
    assert code_of(call(http, CLIENT, NEXT, u="u1")) == "NOT_FOUND"  # no approved active version: nothing serves
    approved = call(http, CY, APPROVE_POLICY, v="default@1.2.0")["data"]["approvePolicyVersion"]
    assert approved["status"] == "active" and approved["approvals"] == [
        {"by": "ops-cy", "verdict": "approved", "current": True}
    ]
    assert call(http, CLIENT, NEXT, u="u1")["data"]["nextSteps"]["policyVersion"] == "default@1.2.0"
    assert code_of(call(http, CLIENT, APPROVE_POLICY, v="default@1.2.0")) == "FORBIDDEN"  # operators approve
    # An auditor's approval is recorded with its role (the second role high-impact changes need).
    assert call(http, AUDITOR, APPROVE_POLICY, v="default@1.2.0")["data"]["approvePolicyVersion"]["approvals"][1] == {
        "by": "audit-team",
        "verdict": "approved",
        "current": True,
    }
    assert code_of(call(http, CY, APPROVE_POLICY, v="default@9.9.9")) == "NOT_FOUND"

    # An edit of the approved version revokes its approval: the file loaded again with another rule weight.
    text = (runtime.settings.ontology_dir / "policies" / "default.ttl").read_text()
    start = text.index("pol:default-1.2.0 a wf:PolicyVersion")
    edited = text[:start] + text[start:].replace("wf:ruleWeight 1.0 ;", "wf:ruleWeight 0.9 ;", 1)
    assert edited != text
    changed = tmp_path / "default.ttl"
    changed.write_text(edited)
    runtime.load([changed])
    revoked = policy(http, "default@1.2.0")
    assert revoked["status"] == "candidate" and revoked["approvals"] == [
        {"by": "ops-cy", "verdict": "approved", "current": False},
        {"by": "audit-team", "verdict": "approved", "current": False},
    ]
    # A rejection keeps the edited content from serving even after another approval.
    call(http, BO, APPROVE_POLICY, v="default@1.2.0", ok=False)
    assert call(http, CY, APPROVE_POLICY, v="default@1.2.0")["data"]["approvePolicyVersion"]["status"] == "candidate"


def test_without_keys_a_declared_active_version_serves_at_once(client):
    client.data(REGISTER, {"id": "u2"})
    assert client.data(NEXT, {"u": "u2"})["nextSteps"]["policyVersion"] == "default@1.2.0"


def test_policy_commands_list_and_approve(disk_runtime, monkeypatch):
    import gc

    from typer.testing import CliRunner

    from service.cli import app

    disk_runtime.close()
    gc.collect()
    store = disk_runtime.settings.store
    monkeypatch.setenv("WAYFINDER_API_KEYS", KEYS)
    listed = CliRunner().invoke(app, ["policy", "list", "--store", store])
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.stdout.splitlines() if "default@1.2.0" in line)
    assert "candidate" in row and "active" in row  # serves as a candidate, declared active
    gc.collect()
    ok = CliRunner().invoke(app, ["policy", "approve", "default@1.2.0", "--approved-by", "Grace", "--store", store])
    assert ok.exit_code == 0 and "approved by Grace" in ok.stdout
    gc.collect()
    listed = CliRunner().invoke(app, ["policy", "list", "--store", store])
    row = next(line for line in listed.stdout.splitlines() if "default@1.2.0" in line)
    assert "candidate" not in row and "Grace (approved)" in row
    gc.collect()
    missing = CliRunner().invoke(app, ["policy", "approve", "nope@1.0.0", "--approved-by", "Grace", "--store", store])
    assert missing.exit_code != 0 and "no policy version" in missing.output
