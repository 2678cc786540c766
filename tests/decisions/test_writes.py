"""Validated writes: checked against the current knowledge and the users' stored consent, refused whole
with every violation, and validated in one pass however large the batch."""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pyoxigraph as ox
import pytest
import rdflib

from service.clock import datetime_literal
from service.decisions import consent, users, writes
from service.errors import RefusedWrite
from service.knowledge import vocab
from service.knowledge.terms import to_rdflib_graph
from tests.paths import ROOT

SHAPES = "https://w3id.org/wayfinder/shapes#"
AT = datetime(2026, 3, 1, tzinfo=UTC)
FOAF_NAME = ox.NamedNode("http://xmlns.com/foaf/0.1/name")


def event(
    user_id: str, kind: ox.NamedNode, *, at: datetime | None = AT, step: str | None = None, feature: str | None = None
) -> list[ox.Quad]:
    """The quads of one event, as record_events writes them (``at=None``: without its time)."""
    node, graph = ox.NamedNode(vocab.EVENT_BASE + str(uuid.uuid4())), vocab.user_graph(user_id)
    quads = [ox.Quad(node, vocab.RDF_TYPE, kind, graph), ox.Quad(node, vocab.BY_USER, vocab.user_iri(user_id), graph)]
    if at is not None:
        quads.append(ox.Quad(node, vocab.OCCURRED_AT, datetime_literal(at), graph))
    if step:
        quads.append(ox.Quad(node, vocab.ABOUT_STEP, ox.NamedNode(step), graph))
    if feature:
        quads.append(ox.Quad(node, vocab.ABOUT_FEATURE, ox.NamedNode(feature), graph))
    return quads


def register(runtime, user_id: str, consents: list[str]) -> ox.NamedNode:
    users.register(runtime, users.Registration(id=user_id, role="analyst", plan="team", consents=consents))
    return vocab.user_iri(user_id)


def full_validation(runtime, quads: list[ox.Quad], user: ox.NamedNode) -> list[dict]:
    """The violations of the write found as the service first did: one rdflib graph of the whole
    knowledge, the user's neighbourhood and the write, validated by pyshacl with the new subjects as focus."""
    graph = rdflib.Graph()
    graph += runtime.knowledge.graph
    to_rdflib_graph(writes.neighbourhood(runtime.store, [user]), graph)
    to_rdflib_graph(quads, graph)
    focus = sorted({rdflib.URIRef(q.subject.value) for q in quads})
    return [v.as_dict() for v in runtime.validator.validate(graph, focus=focus)]


def words(violation: dict) -> dict:
    """The violation with its message as a bag of words: GROUP_CONCAT lists the purposes in no set order."""
    return {**violation, "message": sorted(re.findall(r"[^\s,]+", violation["message"]))}


def refusal(runtime, quads: list[ox.Quad], user: ox.NamedNode) -> set[tuple[str, str]]:
    """Commit, expecting a refusal; return its violations as (focus, shape) and check nothing was stored
    and that they are, word for word, those of a full validation."""
    before = set(runtime.store.quads())
    expected = full_validation(runtime, quads, user)
    with pytest.raises(RefusedWrite) as refused:
        writes.commit_validated(runtime, quads, users=[user])
    assert set(runtime.store.quads()) == before
    assert [words(v) for v in refused.value.details] == [words(v) for v in expected]
    return {(v["focus"], v["shape"].removeprefix(SHAPES)) for v in refused.value.details}


def test_a_refused_write_stores_nothing_and_names_every_violation(runtime):
    ana = register(runtime, "ana", ["PERSONALIZATION", "ANALYTICS"])
    fine = event("ana", vocab.ACTIVATED)
    untimed = event("ana", vocab.ACTIVATED, at=None)
    unknown_step = event("ana", vocab.STEP_COMPLETED, step="https://example.org/no-such-step")
    named = [ox.Quad(ana, FOAF_NAME, ox.Literal("Ana"), vocab.user_graph("ana"))]
    found = refusal(runtime, [*fine, *untimed, *unknown_step, *named], ana)
    assert found == {
        (untimed[0].subject.value, "EventOccurredAt"),
        (unknown_step[0].subject.value, "StepEventAboutStep"),
        (ana.value, "UserNoFoafName"),
    }


def test_a_large_batch_is_refused_for_its_few_bad_events_only(runtime):
    ana = register(runtime, "ana", ["PERSONALIZATION", "ANALYTICS"])
    batch = [
        event("ana", vocab.FEATURE_USED, at=AT + timedelta(seconds=i), feature="https://w3id.org/wayfinder/demo/charts")
        for i in range(1000)
    ]
    for i in (3, 500, 999):
        batch[i] = [q for q in batch[i] if q.predicate != vocab.BY_USER]
    found = refusal(runtime, [q for quads in batch for q in quads], ana)
    # Without a user, an event has no consent either.
    assert found == {
        (batch[i][0].subject.value, shape) for i in (3, 500, 999) for shape in ("EventByUser", "EventConsentShape")
    }
    batch = [event("ana", vocab.ACTIVATED, at=AT + timedelta(seconds=i)) for i in range(1000)]
    writes.commit_validated(runtime, [q for quads in batch for q in quads], users=[ana])
    assert len(users.events(runtime, "ana")) == 1000


def test_an_event_is_checked_against_the_consent_records_stored_for_its_user(runtime):
    bo = register(runtime, "bo", [])
    used = event("bo", vocab.FEATURE_USED, feature="https://w3id.org/wayfinder/demo/charts")
    assert refusal(runtime, used, bo) == {(used[0].subject.value, "EventConsentShape")}
    consent.set_consent(runtime, "bo", "ANALYTICS", granted=True)
    writes.commit_validated(runtime, used, users=[bo])
    consent.set_consent(runtime, "bo", "ANALYTICS", granted=False)
    again = event("bo", vocab.FEATURE_USED, feature="https://w3id.org/wayfinder/demo/charts")
    assert refusal(runtime, again, bo) == {(again[0].subject.value, "EventConsentShape")}


def test_writes_are_validated_against_the_knowledge_loaded_since_the_last_write(runtime):
    ana = register(runtime, "ana", [])
    step = "https://example.org/crm/onboarding#import-contacts"
    completed = event("ana", vocab.STEP_COMPLETED, step=step)
    assert refusal(runtime, completed, ana) == {(completed[0].subject.value, "StepEventAboutStep")}
    runtime.load([ROOT / "tests" / "fixtures" / "other-catalog.ttl"])
    writes.commit_validated(runtime, completed, users=[ana])
    assert [e.step for e in users.events(runtime, "ana")] == [step]


def test_concurrent_writers_each_get_their_events_stored(runtime):
    for i in range(4):
        register(runtime, f"w{i}", ["ANALYTICS"])
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            for b in range(10):
                users.record_events(
                    runtime,
                    [
                        users.EventReport(
                            f"w{i}", "FEATURE_USED", feature_id="charts", at=AT + timedelta(seconds=b * 10 + j)
                        )
                        for j in range(10)
                    ],
                )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert [len(users.events(runtime, f"w{i}")) for i in range(4)] == [100] * 4


def test_a_consent_withdrawn_between_the_check_and_the_commit_refuses_the_write(runtime):
    """The write is checked outside the lock; a withdrawal committed before it takes the lock is still seen."""
    bo = register(runtime, "bo", ["ANALYTICS"])
    used = event("bo", vocab.FEATURE_USED, feature="https://w3id.org/wayfinder/demo/charts")
    checked = writes.check(runtime, used, users=[bo])
    assert checked.seen_at == runtime.store.commits  # an embedded store: its own count says what changed
    consent.set_consent(runtime, "bo", "ANALYTICS", granted=False)
    before = set(runtime.store.quads())
    with pytest.raises(RefusedWrite) as refused:
        writes.commit_checked(runtime, checked)
    assert {v["shape"].removeprefix(SHAPES) for v in refused.value.details} == {"EventConsentShape"}
    assert set(runtime.store.quads()) == before


def test_a_write_with_no_commit_since_its_check_is_committed_without_reading_again(runtime, monkeypatch):
    bo = register(runtime, "bo", ["ANALYTICS"])
    used = event("bo", vocab.FEATURE_USED, feature="https://w3id.org/wayfinder/demo/charts")
    checked = writes.check(runtime, used, users=[bo])
    reads = []
    original = writes.neighbourhood
    monkeypatch.setattr(writes, "neighbourhood", lambda *a: reads.append(1) or original(*a))
    writes.commit_checked(runtime, checked)
    assert reads == [] and len(users.events(runtime, "bo")) == 1
    # Without a count of its own (a shared store: other processes write too), it reads again.
    again = writes.check(runtime, event("bo", vocab.ACTIVATED), users=[bo])
    writes.commit_checked(runtime, replace(again, seen_at=None))
    assert reads == [1, 1] and len(users.events(runtime, "bo")) == 2
