"""Delivery to senders, in process: the outbox written with the decision, refusals, and the worker against a real
local webhook receiver that fails, delays and duplicates."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pyoxigraph as ox
import pytest

from service.audit import erasure
from service.audit.chain import verify
from service.decisions import consent, users
from service.decisions.decide import next_steps, read_decision
from service.delivery import outbox, webhooks, worker
from service.errors import ConsentRequired, InvalidInput, NotFound
from service.knowledge import vocab
from service.knowledge.embedded import Store
from service.runtime import Runtime
from service.settings import Settings
from tests.delivery.receiver import Receiver, Step

SECRET = b"test-sender-secret"


def runtime_for(knowledge_quads, tmp_path, url: str | None, **settings) -> Runtime:
    store = Store(":memory:")
    store.commit(add=knowledge_quads)
    senders = {"EMAIL": url, "MOBILE": url} if url else {}
    return Runtime(
        settings=Settings(
            store=":memory:",
            models_dir=tmp_path / "models",
            senders=senders,
            sender_secret=SECRET.decode() if url else None,
            delivery_backoff_s=settings.pop("delivery_backoff_s", 0.01),
            delivery_backoff_max_s=settings.pop("delivery_backoff_max_s", 0.05),
            delivery_timeout_s=settings.pop("delivery_timeout_s", 2.0),
            **settings,
        ),
        store=store,
    )


def with_user(runtime: Runtime, user_id: str = "u1", consents=("ONBOARDING_MESSAGES",)) -> str:
    users.register(
        runtime, users.Registration(id=user_id, role="analyst", consents=list(consents), at=datetime.now(UTC))
    )
    return user_id


def decisions(runtime: Runtime) -> int:
    return len(list(runtime.store.quads(predicate=vocab.RDF_TYPE, object=vocab.DECISION, graph=vocab.AUDIT_GRAPH)))


def run_until_settled(runtime: Runtime, delivery_id: str, timeout_s: float = 15) -> outbox.Message:
    """Run the worker until the message leaves PENDING (waiting out its backoffs)."""
    deadline = time.monotonic() + timeout_s
    with worker.client_for(runtime) as client:
        while True:
            worker.deliver_due(runtime, client)
            message = outbox.read_message(runtime.store, delivery_id)
            assert message is not None
            if message.state != outbox.PENDING:
                return message
            assert time.monotonic() < deadline, f"still pending after {timeout_s} s: {message}"
            time.sleep(0.02)


def message_events(runtime: Runtime, user_id: str) -> list[str]:
    """The user's message events, in the order the service recorded them: MESSAGE_DELIVERED or MESSAGE_FAILED."""
    kinds = {vocab.WF_NS + "MessageDelivered": "MESSAGE_DELIVERED", vocab.WF_NS + "MessageFailed": "MESSAGE_FAILED"}
    graph = vocab.user_graph(user_id)
    found = []
    for q in runtime.store.quads(predicate=vocab.RDF_TYPE, graph=graph):
        if q.object.value in kinds:
            (at,) = runtime.store.quads(subject=q.subject, predicate=vocab.RECORDED_AT, graph=graph)
            found.append((at.object.value, kinds[q.object.value]))
    return [kind for _, kind in sorted(found)]


def test_a_delivered_decision_writes_its_message_in_the_same_transaction_as_its_record(knowledge_quads, tmp_path):
    runtime = runtime_for(knowledge_quads, tmp_path, "http://127.0.0.1:9/hook")
    with_user(runtime)
    rec = next_steps(runtime, "u1", channel="EMAIL", limit=2, locale="pt-BR", deliver=True)
    assert rec.delivery_id is not None and len(rec.steps) == 2
    message = outbox.read_message(runtime.store, rec.delivery_id)
    assert message is not None and message.state == outbox.PENDING and message.attempts == 0
    assert message.decision_id == rec.decision_id and message.channel == vocab.WF_NS + "Email"
    # what the sender will get: the shown steps in rank order with the content the decision recorded
    payload = message.payload
    assert [s["stepId"] for s in payload["steps"]] == [vocab.local_id(s.step) for s in rec.steps]
    first = rec.contents[rec.steps[0].step]
    assert payload["steps"][0]["headline"] == first.headline and payload["steps"][0]["locale"] == "pt-BR"
    assert payload["steps"][0]["contentVersion"] == first.version
    # no user ID in the outbox: only the pseudonym the decision names
    stored = " ".join(str(q) for q in runtime.store.quads(graph=vocab.OUTBOX_GRAPH))
    assert "u1" not in stored.replace(rec.delivery_id, "").replace(rec.decision_id, "")
    # the chained record names its message, and the chain verifies
    assert read_decision(runtime, rec.decision_id).delivery_id == rec.delivery_id
    assert verify(runtime.store, runtime.queries["audit-index"]).ok


def test_delivery_is_refused_by_name_and_changes_nothing(knowledge_quads, tmp_path):
    runtime = runtime_for(knowledge_quads, tmp_path, "http://127.0.0.1:9/hook")
    with_user(runtime, "u1")
    with_user(runtime, "u2", consents=("PERSONALIZATION", "MARKETING"))
    before = (decisions(runtime), len(list(runtime.store.quads(graph=vocab.OUTBOX_GRAPH))))
    with pytest.raises(InvalidInput) as web:
        next_steps(runtime, "u1", channel="WEB", deliver=True)
    assert web.value.field == "channel" and "no sender for WEB" in str(web.value)
    with pytest.raises(ConsentRequired) as refused:
        next_steps(runtime, "u2", channel="EMAIL", deliver=True)
    assert "ONBOARDING_MESSAGES" in str(refused.value)
    unconfigured = runtime_for(knowledge_quads, tmp_path, None)
    with_user(unconfigured)
    with pytest.raises(InvalidInput) as none:
        next_steps(unconfigured, "u1", channel="EMAIL", deliver=True)
    assert "WAYFINDER_SENDERS" in str(none.value)
    after = (decisions(runtime), len(list(runtime.store.quads(graph=vocab.OUTBOX_GRAPH))))
    assert after == before and decisions(unconfigured) == 0


def test_a_receiver_that_fails_twice_then_succeeds_gets_exactly_one_logical_delivery(knowledge_quads, tmp_path):
    with Receiver(SECRET, [Step(500), Step(503, headers={"Retry-After": "0"}), Step(200)]) as receiver:
        runtime = runtime_for(knowledge_quads, tmp_path, receiver.url)
        with_user(runtime)
        rec = next_steps(runtime, "u1", channel="MOBILE", limit=1, deliver=True)
        message = run_until_settled(runtime, rec.delivery_id)
    assert message.state == outbox.DELIVERED and message.attempts == 3
    assert [r.status for r in receiver.received] == [500, 503, 200]
    assert {r.key for r in receiver.received} == {rec.delivery_id}  # every attempt under one key
    assert all(r.signed for r in receiver.received)
    assert [r.body["attempt"] for r in receiver.received] == [1, 2, 3]
    (delivered,) = receiver.accepted()[rec.delivery_id]
    assert delivered.body["userId"] == "u1" and delivered.body["decisionId"] == rec.decision_id
    assert delivered.body["channel"] == "MOBILE"
    assert message_events(runtime, "u1") == ["MESSAGE_DELIVERED"]


def test_a_receiver_too_slow_to_answer_sees_the_repeat_under_the_same_key(knowledge_quads, tmp_path):
    """The first call is accepted but answered after the worker's time limit: the worker cannot know, so it sends
    again; the receiver keeps one logical delivery by its key."""
    with Receiver(SECRET, [Step(200, delay_s=1.5), Step(200)]) as receiver:
        runtime = runtime_for(knowledge_quads, tmp_path, receiver.url, delivery_timeout_s=0.3)
        with_user(runtime)
        rec = next_steps(runtime, "u1", channel="EMAIL", deliver=True)
        message = run_until_settled(runtime, rec.delivery_id)
        time.sleep(1.5)  # the slow first answer goes out after the worker gave up on it
    assert message.state == outbox.DELIVERED and message.attempts == 2 and message.last_error is None
    assert [r.key for r in receiver.received] == [rec.delivery_id, rec.delivery_id]
    assert list(receiver.accepted()) == [rec.delivery_id]  # two requests, one logical delivery
    assert message_events(runtime, "u1") == ["MESSAGE_DELIVERED"]


def test_after_its_attempts_a_message_is_dead_lettered_and_an_operator_can_requeue_it(knowledge_quads, tmp_path):
    with Receiver(SECRET, [Step(500), Step(500), Step(500), Step(200)]) as receiver:
        runtime = runtime_for(knowledge_quads, tmp_path, receiver.url, delivery_max_attempts=3)
        with_user(runtime)
        rec = next_steps(runtime, "u1", channel="EMAIL", deliver=True)
        message = run_until_settled(runtime, rec.delivery_id)
        assert message.state == outbox.DEAD_LETTERED and message.attempts == 3 and message.last_error == "HTTP 500"
        assert [m.id for m in outbox.messages(runtime.store, state=outbox.DEAD_LETTERED)] == [rec.delivery_id]
        assert message_events(runtime, "u1") == ["MESSAGE_FAILED"]
        with pytest.raises(InvalidInput):
            worker.requeue(runtime, str(__import__("uuid").uuid4()).replace("-", ""))
        requeued = worker.requeue(runtime, rec.delivery_id)
        assert requeued.state == outbox.PENDING and requeued.attempts == 0
        with pytest.raises(InvalidInput, match="only a dead-lettered"):
            worker.requeue(runtime, rec.delivery_id)
        message = run_until_settled(runtime, rec.delivery_id)
    assert message.state == outbox.DELIVERED and len(receiver.received) == 4
    assert message_events(runtime, "u1") == ["MESSAGE_FAILED", "MESSAGE_DELIVERED"]


def test_a_refusal_for_good_is_dead_lettered_at_once_and_a_rate_limit_is_retried(knowledge_quads, tmp_path):
    with Receiver(SECRET, [Step(429), Step(410)]) as receiver:
        runtime = runtime_for(knowledge_quads, tmp_path, receiver.url)
        with_user(runtime)
        rec = next_steps(runtime, "u1", channel="EMAIL", deliver=True)
        message = run_until_settled(runtime, rec.delivery_id)
    assert message.state == outbox.DEAD_LETTERED and message.attempts == 2 and message.last_error == "HTTP 410"


def test_a_message_whose_user_withdrew_or_was_erased_is_cancelled_unsent(knowledge_quads, tmp_path):
    with Receiver(SECRET) as receiver:
        runtime = runtime_for(knowledge_quads, tmp_path, receiver.url)
        with_user(runtime, "u1")
        with_user(runtime, "u2")
        withdrawn = next_steps(runtime, "u1", channel="EMAIL", deliver=True)
        erased = next_steps(runtime, "u2", channel="EMAIL", deliver=True)
        consent.set_consent(runtime, "u1", "ONBOARDING_MESSAGES", granted=False)
        erasure.erase(runtime, "u2", requested_by="dpo")
        first = run_until_settled(runtime, withdrawn.delivery_id)
        second = run_until_settled(runtime, erased.delivery_id)
    assert receiver.received == []
    assert (first.state, first.last_error) == (outbox.CANCELLED, "the user has no ONBOARDING_MESSAGES consent now")
    assert (second.state, second.last_error) == (outbox.CANCELLED, "the user was erased")


def test_a_sender_reports_a_bounce_as_an_event_about_its_message_and_only_its_users(knowledge_quads, tmp_path):
    runtime = runtime_for(knowledge_quads, tmp_path, "http://127.0.0.1:9/hook")
    with_user(runtime, "u1", consents=("ONBOARDING_MESSAGES", "ANALYTICS"))
    with_user(runtime, "u2")
    rec = next_steps(runtime, "u1", channel="EMAIL", deliver=True)
    (bounce,) = users.record_events(
        runtime, [users.EventReport("u1", "MESSAGE_FAILED", channel="EMAIL", delivery_id=rec.delivery_id)]
    )
    about = list(runtime.store.quads(subject=ox.NamedNode(bounce.iri), predicate=vocab.ABOUT_DELIVERY))
    assert [q.object.value for q in about] == [vocab.DELIVERY_BASE + rec.delivery_id]
    with pytest.raises(NotFound, match="inputs\\[0\\].deliveryId"):
        users.record_events(runtime, [users.EventReport("u2", "MESSAGE_FAILED", delivery_id=rec.delivery_id)])
    with pytest.raises(InvalidInput, match="deliveryId: required"):
        users.record_events(runtime, [users.EventReport("u1", "MESSAGE_DELIVERED")])
    with pytest.raises(InvalidInput, match="deliveryId: not allowed"):
        users.record_events(runtime, [users.EventReport("u1", "ACTIVATED", delivery_id=rec.delivery_id)])


def test_signatures_and_backoff():
    body = webhooks.body_of({"b": 1, "a": "ç"})
    assert body == '{"a":"ç","b":1}'.encode()
    assert webhooks.signature(b"k", 1700000000, body) == webhooks.signature(b"k", 1700000000, body)
    assert webhooks.signature(b"k", 1700000000, body) != webhooks.signature(b"k", 1700000001, body)
    waits = [webhooks.backoff_s(n, base_s=2, max_s=60) for n in range(1, 10)]
    assert 1 <= waits[0] <= 2 and 8 <= waits[3] <= 16 and all(w <= 60 for w in waits) and waits[-1] >= 30
    assert webhooks.backoff_s(1, base_s=2, max_s=60, retry_after_s=30) >= 30
    assert webhooks.backoff_s(1, base_s=2, max_s=60, retry_after_s=3600) <= 60


def test_a_keyed_delivery_retried_is_decided_and_sent_once(knowledge_quads, tmp_path):
    from service.decisions.idempotency import scoped_key
    from service.errors import Conflict

    runtime = runtime_for(knowledge_quads, tmp_path, "http://127.0.0.1:9/hook")
    with_user(runtime)
    key = scoped_key("send-tour-1", scope=["backend", ""])
    first = next_steps(runtime, "u1", channel="EMAIL", limit=2, locale="pt-BR", deliver=True, idempotency=key)
    again = next_steps(runtime, "u1", channel="EMAIL", limit=2, locale="pt-BR", deliver=True, idempotency=key)
    assert (again.decision_id, again.delivery_id) == (first.decision_id, first.delivery_id)
    assert [s.step for s in again.steps] == [s.step for s in first.steps]
    assert decisions(runtime) == 1 and len(outbox.messages(runtime.store)) == 1
    with pytest.raises(Conflict):  # the same key for another request
        next_steps(runtime, "u1", channel="EMAIL", limit=3, deliver=True, idempotency=key)
    with pytest.raises(InvalidInput):  # only deliveries take keys
        next_steps(runtime, "u1", idempotency=scoped_key("k2", scope=["backend", ""]))
    other = next_steps(runtime, "u1", channel="EMAIL", deliver=True, idempotency=scoped_key("k3", scope=["b", ""]))
    assert other.decision_id != first.decision_id and decisions(runtime) == 2
