"""Auditors: lineage queries, the hash chain and its tamper evidence, erasure, consent propagation."""

from __future__ import annotations

import threading

import pyoxigraph as ox
import pytest
from typer.testing import CliRunner

from service.audit.chain import verify, verify_since_anchors
from service.cli import app
from service.decisions import decide, users
from service.knowledge import vocab
from service.runtime import Runtime
from tests.graphql_client import NEXT_STEPS, REGISTER, WITHDRAW

LINEAGE = "lineage/"


def setup_users(runtime):
    users.register(
        runtime,
        users.Registration(
            id="ana", role="analyst", industry="retail", plan="team", consents=["PERSONALIZATION", "ANALYTICS"]
        ),
    )
    users.register(runtime, users.Registration(id="bo", role="manager", plan="free", consents=[]))
    users.record_events(
        runtime,
        [
            users.EventReport("ana", "STEP_COMPLETED", step_id="explore-sample-data"),
            users.EventReport("ana", "FEATURE_USED", feature_id="charts"),
        ],
    )
    return [
        decide.next_steps(runtime, "ana"),
        decide.next_steps(runtime, "bo"),
        decide.next_steps(runtime, "ana", channel="EMAIL"),
    ]


def check(runtime):
    return verify(runtime.store, runtime.queries["audit-index"])


def test_why_decision_names_consent_events_profile_policy_and_ranking(runtime):
    recs = setup_users(runtime)
    rows = runtime.store.select(
        runtime.queries[LINEAGE + "why-decision"].bind(decision=ox.NamedNode(vocab.DECISION_BASE + recs[0].decision_id))
    )
    kinds = {}
    for row in rows:
        kinds.setdefault(row["kind"].value, []).append(row["item"].value)
    assert len(kinds["consent"]) == 2  # PERSONALIZATION and ANALYTICS records
    assert len(kinds["event"]) == 2
    assert {vocab.local_id(i) for i in kinds["profile"]} == {"analyst", "retail", "team"}
    assert len(kinds["returned"]) == len(recs[0].steps)
    assert rows[0]["policyVersion"].value == "1.2.0"
    assert len(rows[0]["policyHash"].value) == 64


def test_a_non_personalised_decision_uses_no_behaviour_or_industry(runtime):
    recs = setup_users(runtime)
    rows = runtime.store.select(
        runtime.queries[LINEAGE + "why-decision"].bind(decision=ox.NamedNode(vocab.DECISION_BASE + recs[1].decision_id))
    )
    assert rows[0]["personalized"].value == "false"
    assert not [r for r in rows if r["kind"].value == "event"]


def test_decisions_by_policy_model_consent_and_user(runtime):
    recs = setup_users(runtime)
    policy = ox.NamedNode("https://w3id.org/wayfinder/policy/default-1.2.0")
    by_policy = runtime.store.select(runtime.queries[LINEAGE + "decisions-by-policy-version"].bind(policy=policy))
    assert {vocab.local_id(r["decision"].value) for r in by_policy} == {r.decision_id for r in recs}
    affected = runtime.store.select(runtime.queries[LINEAGE + "users-affected-by-policy-change"].bind(policy=policy))
    assert sorted(int(r["decisions"].value) for r in affected) == [1, 2]
    assert {vocab.local_id(r["user"].value) for r in affected} == {"ana", "bo"}
    mine = runtime.store.select(runtime.queries[LINEAGE + "decisions-for-user"].bind(user=vocab.user_iri("ana")))
    assert {vocab.local_id(r["decision"].value) for r in mine} == {recs[0].decision_id, recs[2].decision_id}
    history = runtime.store.select(runtime.queries[LINEAGE + "consent-history"].bind(user=vocab.user_iri("ana")))
    assert len(history) == 2
    record = history[0]["record"]
    using = runtime.store.select(runtime.queries[LINEAGE + "decisions-using-consent"].bind(consent=record))
    assert {vocab.local_id(r["decision"].value) for r in using} == {recs[0].decision_id, recs[2].decision_id}
    model = runtime.store.select(
        runtime.queries[LINEAGE + "decisions-by-model-version"].bind(model=ox.NamedNode(vocab.MODEL_BASE + "none"))
    )
    assert model == []


def test_the_chain_verifies(runtime):
    setup_users(runtime)
    result = check(runtime)
    assert result.ok and result.records == 3


def tamper_cases():
    def remove(store, record):
        quad = next(q for q in store.quads(subject=record, predicate=vocab.PERSONALIZED, graph=vocab.AUDIT_GRAPH))
        store.commit(remove=[quad])

    def add(store, record):
        store.commit(add=[ox.Quad(record, vocab.PROV_USED, ox.NamedNode("urn:forged"), vocab.AUDIT_GRAPH)])

    def change(store, record):
        candidate = next(
            q.object for q in store.quads(subject=record, predicate=vocab.HAS_CANDIDATE, graph=vocab.AUDIT_GRAPH)
        )
        score = next(q for q in store.quads(subject=candidate, predicate=vocab.SCORE, graph=vocab.AUDIT_GRAPH))
        store.commit(
            remove=[score],
            add=[ox.Quad(candidate, vocab.SCORE, ox.Literal("99.0", datatype=vocab.XSD_DOUBLE), vocab.AUDIT_GRAPH)],
        )

    def drop_record(store, record):
        store.commit(remove=list(store.quads(subject=record, graph=vocab.AUDIT_GRAPH)))

    return {"removed": remove, "added": add, "changed": change, "record-deleted": drop_record}


@pytest.mark.parametrize("how", sorted(tamper_cases()))
def test_tampering_is_detected_and_names_the_first_broken_record(runtime, how):
    recs = setup_users(runtime)
    target = ox.NamedNode(vocab.DECISION_BASE + recs[1].decision_id)
    tamper_cases()[how](runtime.store, target)
    result = check(runtime)
    assert not result.ok
    assert result.broken_sequence == 2
    if how != "record-deleted":
        assert result.broken_record == target.value


@pytest.mark.parametrize("how", ["intact", "changed", "record-deleted"])
def test_hashing_in_worker_processes_finds_what_one_process_finds(disk_runtime, how):
    """The workers read a checkpoint of the folder, taken while this process holds it, with its latest commits."""
    recs = setup_users(disk_runtime)
    if how != "intact":
        tamper_cases()[how](disk_runtime.store, ox.NamedNode(vocab.DECISION_BASE + recs[1].decision_id))
    alone = check(disk_runtime)
    shared = verify(disk_runtime.store, disk_runtime.queries["audit-index"], workers=2)
    assert shared == alone
    folder = disk_runtime.store.location
    assert not list(folder.parent.glob(f".{folder.name}.verify-*"))  # the snapshot they read is gone
    assert shared.ok == (how == "intact") and shared.records == (3 if how == "intact" else 1)


def test_audit_verify_command_exits_non_zero_on_tampering(disk_runtime):
    recs = setup_users(disk_runtime)
    store_path = disk_runtime.settings.store
    tamper_cases()["added"](disk_runtime.store, ox.NamedNode(vocab.DECISION_BASE + recs[2].decision_id))
    disk_runtime.store.close()  # the command opens the folder itself
    result = CliRunner().invoke(app, ["audit", "verify", "--store", store_path])
    assert result.exit_code == 1
    assert recs[2].decision_id in result.output


def test_external_anchors_catch_a_rewritten_chain(disk_runtime):
    disk_runtime.trail.checkpoint_every = 2
    setup_users(disk_runtime)
    anchors = disk_runtime.trail.anchors()
    assert [a["sequence"] for a in anchors] == [2]
    assert check(disk_runtime).ok
    result = verify(disk_runtime.store, disk_runtime.queries["audit-index"], anchors=anchors)
    assert result.ok and result.anchors_checked == 1
    forged = [{"sequence": 2, "hash": "0" * 64}]
    assert not verify(disk_runtime.store, disk_runtime.queries["audit-index"], anchors=forged).ok


def test_withdrawing_consent_lists_the_decisions_that_used_it(client):
    client.data(REGISTER, {"input": {"id": "w1", "consents": ["PERSONALIZATION"]}})
    first = client.data(NEXT_STEPS, {"user": "w1"})["nextSteps"]["decisionId"]
    second = client.data(NEXT_STEPS, {"user": "w1"})["nextSteps"]["decisionId"]
    withdrawn = client.data(
        WITHDRAW.replace("{ purpose granted at }", "{ purpose granted affectedDecisions affectedModelVersions }"),
        {"u": "w1", "p": "PERSONALIZATION"},
    )["withdrawConsent"]
    assert set(withdrawn["affectedDecisions"]) == {first, second}
    assert withdrawn["affectedModelVersions"] == []


def test_a_checkpoint_is_sealed_outside_the_write_lock(disk_runtime):
    """The flush before an anchor takes up to hundreds of milliseconds: other writers must not wait for it."""
    from service.knowledge.embedded import Store

    free_at_flush: list[bool] = []

    class LockWatch(Store):
        """The real on-disk store; at each flush, another thread tries the write lock."""

        def flush(self) -> None:
            probe = threading.Thread(target=lambda: free_at_flush.append(self._try_lock()))
            probe.start()
            probe.join()
            super().flush()

        def _try_lock(self) -> bool:
            if self.write_lock.acquire(timeout=0.5):
                self.write_lock.release()
                return True
            return False

    path = disk_runtime.store.location
    disk_runtime.store.close()
    runtime = Runtime(settings=disk_runtime.settings, store=LockWatch(path))
    runtime.trail.checkpoint_every = 1
    setup_users(runtime)
    assert [a["sequence"] for a in runtime.trail.anchors()] == [1, 2, 3]  # sealed before each decision returned
    assert free_at_flush == [True] * 3
    assert check(runtime).ok
    runtime.store.close()


def more_decisions(runtime, n: int) -> None:
    for i in range(n):
        decide.next_steps(runtime, ["ana", "bo"][i % 2])


@pytest.mark.parametrize("how", sorted(tamper_cases()))
def test_verifying_since_the_anchors_checks_the_tail_and_the_anchored_record(disk_runtime, how):
    disk_runtime.trail.checkpoint_every = 2
    setup_users(disk_runtime)
    more_decisions(disk_runtime, 5)  # 8 records: anchors at 2, 4, 6 and 8
    anchors = disk_runtime.trail.anchors()[:3]  # as if the check ran before the 8th was sealed
    assert [a["sequence"] for a in anchors] == [2, 4, 6]
    intact = verify_since_anchors(disk_runtime.store, disk_runtime.queries["audit-head"], anchors)
    assert intact.ok and intact.records == 3 and intact.anchors_checked == 3 and intact.chains == {"main": 8}
    # Past the last anchor (record 7 of 8): found, and named, as the full check does.
    tail = next(
        q.subject
        for q in disk_runtime.store.quads(
            predicate=vocab.SEQUENCE, object=ox.Literal("7", datatype=vocab.XSD_INTEGER), graph=vocab.AUDIT_GRAPH
        )
    )
    tamper_cases()[how](disk_runtime.store, tail)
    broken = verify_since_anchors(disk_runtime.store, disk_runtime.queries["audit-head"], anchors)
    full = check(disk_runtime)
    assert not broken.ok and not full.ok
    assert broken.broken_sequence == full.broken_sequence == 7


def test_verifying_since_the_anchors_catches_a_changed_anchored_record_and_a_forged_anchor(disk_runtime):
    disk_runtime.trail.checkpoint_every = 2
    setup_users(disk_runtime)
    more_decisions(disk_runtime, 2)  # 5 records: anchors at 2 and 4
    anchors = disk_runtime.trail.anchors()
    assert (
        verify_since_anchors(
            disk_runtime.store, disk_runtime.queries["audit-head"], [{"sequence": 2, "hash": "0" * 64}, anchors[1]]
        ).ok
        is False
    )
    anchored = next(
        q.subject
        for q in disk_runtime.store.quads(
            predicate=vocab.SEQUENCE, object=ox.Literal("4", datatype=vocab.XSD_INTEGER), graph=vocab.AUDIT_GRAPH
        )
    )
    tamper_cases()["added"](disk_runtime.store, anchored)
    changed = verify_since_anchors(disk_runtime.store, disk_runtime.queries["audit-head"], anchors)
    assert not changed.ok and changed.broken_sequence == 4 and "content hash" in (changed.reason or "")


def test_without_anchors_the_walk_covers_every_record_and_the_command_says_so(disk_runtime):
    setup_users(disk_runtime)
    whole = verify_since_anchors(disk_runtime.store, disk_runtime.queries["audit-head"], [])
    assert whole.ok and whole.records == 3 and whole.chains == {"main": 3}
    store_path = disk_runtime.settings.store
    disk_runtime.store.close()
    result = CliRunner().invoke(app, ["audit", "verify", "--since-anchor", "--store", store_path])
    assert result.exit_code == 0, result.output
    assert "intact since the anchors" in result.output and "main at 3" in result.output
