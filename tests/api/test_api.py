"""The GraphQL API end to end over HTTP: every query and mutation, and every refusal."""

from __future__ import annotations

from tests.graphql_client import GRANT, NEXT_STEPS, RECORD, RECORD_MANY, REGISTER, USER, WITHDRAW, register


def complete(client, user_id, *steps):
    for step in steps:
        client.data(RECORD, {"input": {"userId": user_id, "type": "STEP_COMPLETED", "stepId": step}})


def test_register_user_returns_the_profile_and_consents(client):
    user = register(client)
    assert {k: user[k] for k in ("id", "role", "industry", "plan", "eventCount")} == {
        "id": "u1",
        "role": "analyst",
        "industry": "retail",
        "plan": "team",
        "eventCount": 0,
    }
    assert all(c["granted"] for c in user["consents"])
    assert {c["purpose"] for c in user["consents"]} == {"PERSONALIZATION", "ANALYTICS"}


def test_user_query_reads_back_profile_events_and_completed_steps(client):
    register(client)
    complete(client, "u1", "explore-sample-data")
    client.data(RECORD, {"input": {"userId": "u1", "type": "FEATURE_USED", "featureId": "charts"}})
    user = client.data(USER, {"id": "u1"})["user"]
    assert user["eventCount"] == 2
    assert user["completedSteps"] == [{"id": "explore-sample-data"}]
    assert client.data(USER, {"id": "nobody"})["user"] is None


def test_steps_lists_the_catalog_with_channels_features_and_prerequisites(client):
    steps = client.data("{ steps { id title channels introduces { id } requires { id } } }")["steps"]
    assert len(steps) == 31
    chart = next(s for s in steps if s["id"] == "build-first-chart")
    assert chart["title"] == "Build your first chart"
    assert set(chart["channels"]) == {"WEB", "IN_APP"}
    assert chart["requires"] == [{"id": "explore-sample-data"}]
    assert chart["introduces"] == [{"id": "charts"}]


def test_next_steps_ranks_explains_and_records_the_decision(client):
    register(client)
    complete(client, "u1", "take-product-tour", "explore-sample-data")
    rec = client.data(NEXT_STEPS, {"user": "u1", "limit": 4})["nextSteps"]
    assert rec["personalized"] is True
    assert rec["policyVersion"] == "default@1.2.0"
    assert rec["modelVersion"] is None
    assert [s["rank"] for s in rec["steps"]] == [1, 2, 3, 4]
    scores = [s["score"] for s in rec["steps"]]
    assert scores == sorted(scores, reverse=True)
    for ranked in rec["steps"]:
        assert 1 <= len(ranked["reasons"]) <= 3
        assert "WEB" in ranked["step"]["channels"]
    ids = [s["step"]["id"] for s in rec["steps"]]
    assert "explore-sample-data" not in ids and "take-product-tour" not in ids
    # An analyst gets the analyst rule's reason on the SQL step (under Exploration).
    sql = next((s for s in rec["steps"] if s["step"]["id"] == "write-first-query"), None)
    assert sql is not None and "Analysts like you start by exploring data" in sql["reasons"]

    decision = client.data(
        "query D($id: ID!) { decision(id: $id) { id personalized policyVersion channel "
        "steps { rank score reasons step { id } } candidates { step { id } score } } }",
        {"id": rec["decisionId"]},
    )["decision"]
    assert decision["personalized"] is True and decision["channel"] == "WEB"
    assert [s["step"]["id"] for s in decision["steps"]] == ids
    assert [s["score"] for s in decision["steps"]] == scores
    for returned, recorded in zip(rec["steps"], decision["steps"], strict=True):
        assert set(returned["reasons"]) == set(recorded["reasons"])
    assert len(decision["candidates"]) >= len(ids)


def test_a_decision_that_does_not_exist_is_null_and_a_malformed_id_is_refused(client):
    assert client.data('{ decision(id: "8a5e0b3c-0000-4000-8000-000000000000") { id } }')["decision"] is None
    error = client.error('{ decision(id: "not-a-uuid") { id } }')
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


def test_without_personalisation_consent_the_journey_is_not_personalised(client):
    register(client, consents=["ANALYTICS"])
    rec = client.data(NEXT_STEPS, {"user": "u1", "limit": 10})["nextSteps"]
    assert rec["personalized"] is False
    reasons = [r for s in rec["steps"] for r in s["reasons"]]
    assert not any("Analysts like you" in r or "which you started using" in r for r in reasons)


def test_withdrawing_consent_stops_personalisation_on_the_next_request(client):
    register(client)
    client.data(RECORD, {"input": {"userId": "u1", "type": "FEATURE_USED", "featureId": "charts"}})
    assert client.data(NEXT_STEPS, {"user": "u1"})["nextSteps"]["personalized"] is True
    withdrawn = client.data(WITHDRAW, {"u": "u1", "p": "PERSONALIZATION"})["withdrawConsent"]
    assert withdrawn["granted"] is False and withdrawn["purpose"] == "PERSONALIZATION"
    rec = client.data(NEXT_STEPS, {"user": "u1", "limit": 10})["nextSteps"]
    assert rec["personalized"] is False
    assert not any(
        "which you started using" in r or "Analysts like you" in r for s in rec["steps"] for r in s["reasons"]
    )
    # The history is kept: granted, then withdrawn.
    consents = client.data(USER, {"id": "u1"})["user"]["consents"]
    personal = [c["granted"] for c in consents if c["purpose"] == "PERSONALIZATION"]
    assert personal == [True, False]
    client.data(GRANT, {"u": "u1", "p": "PERSONALIZATION"})
    assert client.data(NEXT_STEPS, {"user": "u1"})["nextSteps"]["personalized"] is True


def test_record_events_stores_all_of_a_batch(client):
    register(client)
    count = client.data(
        RECORD_MANY,
        {
            "inputs": [
                {
                    "userId": "u1",
                    "type": "STEP_COMPLETED",
                    "stepId": "explore-sample-data",
                    "at": "2026-11-20T10:00:00Z",
                },
                {"userId": "u1", "type": "FEATURE_USED", "featureId": "visual-explorer"},
                {"userId": "u1", "type": "ACTIVATED"},
            ]
        },
    )["recordEvents"]
    assert count == 3
    assert client.data(USER, {"id": "u1"})["user"]["eventCount"] == 3


def test_one_bad_event_in_a_batch_stores_none_of_it(client):
    register(client)
    error = client.error(
        RECORD_MANY,
        {
            "inputs": [
                {"userId": "u1", "type": "STEP_COMPLETED", "stepId": "explore-sample-data"},
                {"userId": "u1", "type": "STEP_COMPLETED", "stepId": "no-such-step"},
            ]
        },
    )
    assert error["extensions"]["code"] == "NOT_FOUND"
    assert "inputs[1].stepId" in error["message"]
    assert client.data(USER, {"id": "u1"})["user"]["eventCount"] == 0


def test_refusals_name_the_field_and_store_nothing(client):
    register(client, consents=[])
    cases = [
        (REGISTER, {"input": {"id": "u1"}}, "CONFLICT", "input.id"),
        (REGISTER, {"input": {"id": "bad id!"}}, "BAD_USER_INPUT", "input.id"),
        (REGISTER, {"input": {"id": "u2", "role": "astronaut"}}, "NOT_FOUND", "input.role"),
        (REGISTER, {"input": {"id": "u3", "plan": "platinum"}}, "NOT_FOUND", "input.plan"),
        (RECORD, {"input": {"userId": "ghost", "type": "ACTIVATED"}}, "NOT_FOUND", "input.userId"),
        (RECORD, {"input": {"userId": "u1", "type": "STEP_COMPLETED"}}, "BAD_USER_INPUT", "input.stepId"),
        (RECORD, {"input": {"userId": "u1", "type": "STEP_COMPLETED", "stepId": "nope"}}, "NOT_FOUND", "input.stepId"),
        (RECORD, {"input": {"userId": "u1", "type": "FEATURE_USED", "featureId": "nope"}}, "CONSENT_REQUIRED", "input"),
        (RECORD, {"input": {"userId": "u1", "type": "ACTIVATED"}}, "CONSENT_REQUIRED", "ANALYTICS"),
        (
            RECORD,
            {"input": {"userId": "u1", "type": "ACTIVATED", "stepId": "explore-sample-data"}},
            "CONSENT_REQUIRED",
            "ANALYTICS",
        ),
        (GRANT, {"u": "ghost", "p": "ANALYTICS"}, "NOT_FOUND", "userId"),
        (NEXT_STEPS, {"user": "ghost"}, "NOT_FOUND", "userId"),
        (NEXT_STEPS, {"user": "u1", "limit": 0}, "BAD_USER_INPUT", "limit"),
        (NEXT_STEPS, {"user": "u1", "limit": 500}, "BAD_USER_INPUT", "limit"),
    ]
    for query, variables, code, mention in cases:
        error = client.error(query, variables)
        assert error["extensions"]["code"] == code, (variables, error)
        assert mention in error["message"], (variables, error)
    assert client.data(USER, {"id": "u2"})["user"] is None
    assert client.data(USER, {"id": "u3"})["user"] is None
    assert client.data(USER, {"id": "u1"})["user"]["eventCount"] == 0


def test_an_event_with_the_wrong_reference_for_its_type_is_refused(client):
    register(client)
    error = client.error(RECORD, {"input": {"userId": "u1", "type": "ACTIVATED", "stepId": "explore-sample-data"}})
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "input.stepId" in error["message"]


def test_graphql_validation_errors_have_a_code(client):
    error = client.error("{ nextSteps(userId: 1, channel: TELEPATHY) { decisionId } }")
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


def test_health_answers_when_the_store_is_open(client):
    response = client.http.get("/healthz")
    assert response.status_code == 200
    assert response.json()["store"] == "open"
