"""Consent follows the order the service recorded it in, and no client time lies in the future."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyoxigraph as ox
import pytest
from starlette.testclient import TestClient

from embeddings.export import consent_records
from service.api.app import create_app
from service.clock import datetime_literal, now
from service.decisions import consent, decide, users
from service.decisions.consent import active_purposes
from service.decisions.writes import commit_validated
from service.demo import knowledge_files
from service.errors import ConsentRequired, RefusedWrite
from service.knowledge import vocab
from service.knowledge.embedded import Store
from service.runtime import Runtime
from service.settings import Settings
from tests.graphql_client import NEXT_STEPS, RECORD, RECORD_MANY, REGISTER, USER, WITHDRAW, GraphQLClient, register

CONSENTS = "query C($id: ID!) { user(id: $id) { consents { purpose granted at recordedAt } } }"


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture
def lenient(knowledge_quads, tmp_path) -> Runtime:
    """A runtime that takes client times up to 200 years ahead: how a store came to hold future-dated grants."""
    store = Store(":memory:")
    store.commit(add=knowledge_quads)
    settings = Settings(store=":memory:", models_dir=tmp_path / "models", max_clock_skew_s=200 * 365 * 86400)
    return Runtime(settings=settings, store=store)


@pytest.fixture
def lenient_client(lenient):
    with TestClient(create_app(lenient)) as http:
        yield GraphQLClient(http)


def withdraw_both(client, user_id="u1"):
    for purpose in ("PERSONALIZATION", "ANALYTICS"):
        assert client.data(WITHDRAW, {"u": user_id, "p": purpose})["withdrawConsent"]["granted"] is False


# Ordering by the service's record time


def test_withdrawals_after_a_future_dated_grant_end_the_consent(lenient_client, lenient):
    register(lenient_client, at="2126-01-01T00:00:00Z")
    withdraw_both(lenient_client)
    assert lenient_client.data(NEXT_STEPS, {"user": "u1"})["nextSteps"]["personalized"] is False
    error = lenient_client.error(RECORD, {"input": {"userId": "u1", "type": "FEATURE_USED", "featureId": "charts"}})
    assert error["extensions"]["code"] == "CONSENT_REQUIRED"
    assert vocab.user_iri("u1").value not in consent_records(lenient.store, purpose=vocab.ANALYTICS)


def test_the_write_gate_alone_refuses_an_event_after_withdrawals_of_a_future_dated_grant(lenient_client, lenient):
    register(lenient_client, at="2126-01-01T00:00:00Z")
    withdraw_both(lenient_client)
    user, graph = vocab.user_iri("u1"), vocab.user_graph("u1")
    event = ox.NamedNode(vocab.EVENT_BASE + "e1")
    quads = [
        ox.Quad(event, vocab.RDF_TYPE, vocab.ACTIVATED, graph),
        ox.Quad(event, vocab.BY_USER, user, graph),
        ox.Quad(event, vocab.OCCURRED_AT, datetime_literal(now()), graph),
    ]
    with pytest.raises(RefusedWrite) as refused:
        commit_validated(lenient, quads, users=[user], source="test")
    assert any((v.shape or "").endswith("EventConsentShape") for v in refused.value.violations)


def test_the_grant_keeps_its_indicated_time_and_gets_the_service_record_time(lenient_client):
    before = now()
    register(lenient_client, at="2126-01-01T00:00:00Z")
    withdraw_both(lenient_client)
    consents = lenient_client.data(CONSENTS, {"id": "u1"})["user"]["consents"]
    # Oldest first, by the service's record time: the grants, then the withdrawals.
    assert [c["granted"] for c in consents] == [True, True, False, False]
    assert {c["at"] for c in consents[:2]} == {"2126-01-01T00:00:00+00:00"}
    for record in consents:
        recorded = datetime.fromisoformat(record["recordedAt"])
        assert before - timedelta(seconds=5) <= recorded <= now() + timedelta(seconds=5)


def test_a_back_dated_registration_then_a_withdrawal_is_withdrawn(client, runtime):
    register(client, at="2020-01-01T00:00:00Z")
    withdraw_both(client)
    assert client.data(NEXT_STEPS, {"user": "u1"})["nextSteps"]["personalized"] is False
    assert vocab.user_iri("u1").value not in consent_records(runtime.store)


def test_a_training_export_leaves_out_a_user_who_withdrew_after_a_future_dated_grant(lenient_client, lenient):
    register(lenient_client, "kept", at="2126-01-01T00:00:00Z")
    register(lenient_client, "gone", at="2126-01-01T00:00:00Z")
    withdraw_both(lenient_client, "gone")
    exported = consent_records(lenient.store)
    assert set(exported) == {vocab.user_iri("kept").value}


# Client times in the future


def test_a_registration_an_hour_ahead_is_refused_and_nothing_is_stored(client, runtime):
    size = len(runtime.store)
    error = client.error(
        REGISTER, {"input": {"id": "u1", "consents": ["PERSONALIZATION"], "at": iso(now() + timedelta(hours=1))}}
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["message"] == "input.at: more than 300 s in the future by the service's clock"
    assert error["extensions"]["details"][0]["field"] == "input.at"
    assert client.data(USER, {"id": "u1"})["user"] is None
    assert len(runtime.store) == size


def test_a_far_future_registration_is_refused(client):
    error = client.error(
        REGISTER, {"input": {"id": "u1", "consents": ["PERSONALIZATION", "ANALYTICS"], "at": "2126-01-01T00:00:00Z"}}
    )
    assert error["extensions"]["details"][0]["field"] == "input.at"
    assert client.data(USER, {"id": "u1"})["user"] is None


def test_an_event_an_hour_ahead_is_refused_naming_the_field_and_none_is_stored(client, runtime):
    register(client)
    size = len(runtime.store)
    error = client.error(
        RECORD, {"input": {"userId": "u1", "type": "ACTIVATED", "at": iso(now() + timedelta(hours=1))}}
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["message"] == "input.at: more than 300 s in the future by the service's clock"
    error = client.error(
        RECORD_MANY,
        {
            "inputs": [
                {"userId": "u1", "type": "STEP_COMPLETED", "stepId": "explore-sample-data"},
                {"userId": "u1", "type": "ACTIVATED", "at": "2126-01-01T00:00:00Z"},
            ]
        },
    )
    assert error["extensions"]["details"][0]["field"] == "inputs[1].at"
    assert client.data(USER, {"id": "u1"})["user"]["eventCount"] == 0
    assert len(runtime.store) == size


def test_an_event_a_minute_ahead_is_within_the_clock_skew(client):
    register(client)
    event = client.data(
        RECORD, {"input": {"userId": "u1", "type": "ACTIVATED", "at": iso(now() + timedelta(seconds=60))}}
    )
    assert event["recordEvent"]["type"] == "ACTIVATED"
    assert client.data(USER, {"id": "u1"})["user"]["eventCount"] == 1


def test_the_allowed_clock_skew_is_a_setting(knowledge_quads, tmp_path):
    store = Store(":memory:")
    store.commit(add=knowledge_quads)
    strict = Runtime(settings=Settings(store=":memory:", models_dir=tmp_path / "m", max_clock_skew_s=10), store=store)
    with TestClient(create_app(strict)) as http:
        client = GraphQLClient(http)
        error = client.error(REGISTER, {"input": {"id": "u1", "at": iso(now() + timedelta(seconds=60))}})
        assert error["message"] == "input.at: more than 10 s in the future by the service's clock"


# Stores written before the service kept a record time


def legacy_record(user: str, purpose: ox.NamedNode, status: ox.NamedNode, at: str, name: str) -> list[ox.Quad]:
    """The quads of a consent record as the service wrote them before wf:recordedAt."""
    record, g = ox.NamedNode(vocab.CONSENT_BASE + name), vocab.CONSENT_GRAPH
    return [
        ox.Quad(record, vocab.RDF_TYPE, vocab.CONSENT_RECORD, g),
        ox.Quad(record, vocab.HAS_DATA_SUBJECT, vocab.user_iri(user), g),
        ox.Quad(record, vocab.HAS_PURPOSE, purpose, g),
        ox.Quad(record, vocab.HAS_CONSENT_STATUS, status, g),
        ox.Quad(record, vocab.HAS_LEGAL_BASIS, vocab.CONSENT_LEGAL_BASIS, g),
        ox.Quad(record, vocab.IS_INDICATED_AT_TIME, ox.Literal(at, datatype=vocab.XSD_DATETIME), g),
    ]


def test_records_without_a_record_time_are_ordered_by_their_indicated_time(client, runtime):
    register(client, "late", consents=[])
    register(client, "early", consents=[])
    quads = []
    for purpose in (vocab.PERSONALIZATION, vocab.ANALYTICS):
        code = vocab.local_id(purpose.value)
        # Written in the opposite order to the indicated times: only the times may decide.
        quads += legacy_record("late", purpose, vocab.CONSENT_WITHDRAWN, "2026-02-01T00:00:00Z", f"late-w-{code}")
        quads += legacy_record("late", purpose, vocab.CONSENT_GIVEN, "2026-01-01T00:00:00Z", f"late-g-{code}")
        quads += legacy_record("early", purpose, vocab.CONSENT_GIVEN, "2026-02-01T00:00:00Z", f"early-g-{code}")
        quads += legacy_record("early", purpose, vocab.CONSENT_WITHDRAWN, "2026-01-01T00:00:00Z", f"early-w-{code}")
    runtime.store.commit(add=quads)
    assert client.data(NEXT_STEPS, {"user": "late"})["nextSteps"]["personalized"] is False
    assert client.data(NEXT_STEPS, {"user": "early"})["nextSteps"]["personalized"] is True
    assert set(consent_records(runtime.store)) == {vocab.user_iri("early").value}
    consents = client.data(CONSENTS, {"id": "early"})["user"]["consents"]
    assert [c["granted"] for c in consents if c["purpose"] == "ANALYTICS"] == [False, True]
    assert all(c["recordedAt"] is None for c in consents)
    # A new withdrawal, recorded now, follows the old grant.
    client.data(WITHDRAW, {"u": "early", "p": "PERSONALIZATION"})
    assert client.data(NEXT_STEPS, {"user": "early"})["nextSteps"]["personalized"] is False


def test_a_record_time_is_written_on_every_consent_record(client, runtime):
    register(client, at="2020-01-01T00:00:00Z")
    client.data(WITHDRAW, {"u": "u1", "p": "ANALYTICS"})
    records = {
        q.subject
        for q in runtime.store.quads(predicate=vocab.RDF_TYPE, object=vocab.CONSENT_RECORD, graph=vocab.CONSENT_GRAPH)
    }
    assert len(records) == 3
    for record in records:
        stamps = list(runtime.store.quads(subject=record, predicate=vocab.RECORDED_AT, graph=vocab.CONSENT_GRAPH))
        assert len(stamps) == 1 and stamps[0].object.datatype == vocab.XSD_DATETIME
        assert stamps[0].object.value.endswith("Z")


def test_lineage_consent_history_follows_the_record_time(lenient_client, lenient):
    register(lenient_client, at="2126-01-01T00:00:00Z")
    withdraw_both(lenient_client)
    rows = lenient.store.select(lenient.queries["lineage/consent-history"].bind(user=vocab.user_iri("u1")))
    assert [r["status"] for r in rows] == [vocab.CONSENT_GIVEN] * 2 + [vocab.CONSENT_WITHDRAWN] * 2
    assert all(r["recordedAt"] is not None for r in rows)


def test_on_a_shared_store_withdrawals_after_a_future_dated_grant_end_the_consent(server, tmp_path):
    settings = Settings(store=server, models_dir=tmp_path / "models", max_clock_skew_s=200 * 365 * 86400)
    shared = Runtime(settings=settings)
    shared.ensure_ontology()
    shared.load(knowledge_files(shared))
    users.register(
        shared,
        users.Registration(id="s1", consents=["PERSONALIZATION", "ANALYTICS"], at=datetime(2126, 1, 1, tzinfo=UTC)),
    )
    for purpose in ("PERSONALIZATION", "ANALYTICS"):
        consent.set_consent(shared, "s1", purpose, granted=False)
    assert active_purposes(shared, "s1") == set()
    assert decide.next_steps(shared, "s1", limit=3).personalized is False
    with pytest.raises(ConsentRequired):
        users.record_events(shared, [users.EventReport("s1", "FEATURE_USED", feature_id="charts")])
    assert vocab.user_iri("s1").value not in consent_records(shared.store)
