"""Idempotency keys on event writes: a client that retries after a lost reply stores nothing twice."""

from __future__ import annotations

import threading

import pytest
from starlette.testclient import TestClient

from service.api.app import create_app
from service.knowledge.embedded import Store
from service.runtime import Runtime
from service.settings import Settings
from tests.graphql_client import GraphQLClient

MANY = "mutation($inputs: [EventInput!]!, $key: String) { recordEvents(inputs: $inputs, idempotencyKey: $key) }"
ONE = "mutation($input: EventInput!, $key: String) { recordEvent(input: $input, idempotencyKey: $key) { id at } }"
COUNT = "query($u: ID!) { user(id: $u) { eventCount } }"
REGISTER = "mutation($id: ID!) { registerUser(input: {id: $id, consents: [ANALYTICS]}) { id } }"


def events(n: int, user: str = "ida") -> list[dict]:
    return [{"userId": user, "type": "FEATURE_USED", "featureId": "dashboards"} for _ in range(n)]


@pytest.fixture
def gql(client):
    client.data(REGISTER, {"id": "ida"})
    return client


def event_count(gql, user: str = "ida") -> int:
    return gql.data(COUNT, {"u": user})["user"]["eventCount"]


def test_a_retried_batch_with_the_same_key_is_stored_once(gql):
    assert gql.data(MANY, {"inputs": events(50), "key": "batch-7"})["recordEvents"] == 50
    assert gql.data(MANY, {"inputs": events(50), "key": "batch-7"})["recordEvents"] == 50
    assert event_count(gql) == 50
    assert gql.data(MANY, {"inputs": events(50), "key": "batch-8"})["recordEvents"] == 50
    assert event_count(gql) == 100


def test_without_a_key_a_retry_stores_again(gql):
    gql.data(MANY, {"inputs": events(3)})
    gql.data(MANY, {"inputs": events(3)})
    assert event_count(gql) == 6


def test_the_same_key_with_other_events_is_a_conflict(gql):
    gql.data(MANY, {"inputs": events(2), "key": "k-1"})
    error = gql.error(MANY, {"inputs": events(3), "key": "k-1"})
    assert error["extensions"]["code"] == "CONFLICT" and "idempotencyKey" in error["message"]
    assert event_count(gql) == 2


def test_a_retried_single_event_returns_the_stored_event(gql):
    first = gql.data(ONE, {"input": events(1)[0], "key": "one-1"})["recordEvent"]
    again = gql.data(ONE, {"input": events(1)[0], "key": "one-1"})["recordEvent"]
    assert again == first
    assert event_count(gql) == 1


@pytest.mark.parametrize("key", ["", "x" * 201, "tab\there"])
def test_a_malformed_key_is_refused_naming_the_field(gql, key):
    error = gql.error(MANY, {"inputs": events(1), "key": key})
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "idempotencyKey" in error["message"]
    assert event_count(gql) == 0


def test_a_refused_batch_leaves_its_key_unused(gql):
    bad = events(1) + [{"userId": "nobody", "type": "ACTIVATED"}]
    assert gql.error(MANY, {"inputs": bad, "key": "k-2"})["extensions"]["code"] == "NOT_FOUND"
    assert gql.data(MANY, {"inputs": events(1), "key": "k-2"})["recordEvents"] == 1
    assert event_count(gql) == 1


def test_concurrent_retries_store_once(gql):
    answers: list[int] = []

    def send() -> None:
        answers.append(gql.data(MANY, {"inputs": events(200), "key": "race"})["recordEvents"])

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [200] * 4
    assert event_count(gql) == 200


def test_keys_are_scoped_to_the_principal(knowledge_quads, tmp_path):
    one, two = "1" * 24, "2" * 24
    store = Store(":memory:")
    store.commit(add=knowledge_quads)
    settings = Settings(
        store=":memory:", api_keys=f"{one}:client:app-one,{two}:client:app-two", models_dir=tmp_path / "models"
    )
    with TestClient(create_app(Runtime(settings=settings, store=store))) as http:
        as_one, as_two = GraphQLClient(http), GraphQLClient(http)
        http.headers["Authorization"] = f"Bearer {one}"
        as_one.data(REGISTER, {"id": "ida"})
        as_one.data(MANY, {"inputs": events(2), "key": "shared-name"})
        http.headers["Authorization"] = f"Bearer {two}"
        assert as_two.data(MANY, {"inputs": events(2), "key": "shared-name"})["recordEvents"] == 2
        assert as_two.data(COUNT, {"u": "ida"})["user"]["eventCount"] == 4


def test_an_expired_key_may_be_used_again(knowledge_quads, tmp_path):
    import time

    store = Store(":memory:")
    store.commit(add=knowledge_quads)
    settings = Settings(store=":memory:", models_dir=tmp_path / "models", idempotency_ttl_s=0.5)
    with TestClient(create_app(Runtime(settings=settings, store=store))) as http:
        gql = GraphQLClient(http)
        gql.data(REGISTER, {"id": "ida"})
        gql.data(MANY, {"inputs": events(1), "key": "old"})
        time.sleep(1.0)
        gql.data(MANY, {"inputs": events(1), "key": "old"})
        assert event_count(gql) == 2


def test_the_purge_removes_receipts_past_their_window(knowledge_quads, tmp_path):
    from datetime import timedelta

    from service.audit.retention import purge
    from service.clock import now
    from service.decisions import users
    from service.decisions.idempotency import scoped_key
    from service.knowledge import vocab

    store = Store(":memory:")
    store.commit(add=knowledge_quads)
    runtime = Runtime(
        settings=Settings(store=":memory:", models_dir=tmp_path / "models", idempotency_ttl_s=3600), store=store
    )
    users.register(runtime, users.Registration(id="ida", consents=["ANALYTICS"]))
    report = users.EventReport(user_id="ida", type="ACTIVATED")
    users.record_events(runtime, [report], idempotency=scoped_key("k", scope=["open"]))
    assert purge(runtime).receipts_removed == 0  # still honoured
    assert purge(runtime, now=now() + timedelta(hours=2), dry_run=True).receipts_removed == 1
    assert purge(runtime, now=now() + timedelta(hours=2)).receipts_removed == 1
    assert not list(runtime.store.quads(graph=vocab.IDEMPOTENCY_GRAPH))
    assert len(users.events(runtime, "ida")) == 1  # the event itself is governed by the retention rules alone
