"""Pacing over GraphQL: a snooze recorded on one channel, held back on the others, with its reason and end."""

from __future__ import annotations

from tests.graphql_client import REGISTER, register

RECORD = "mutation E($input: EventInput!) { recordEvent(input: $input) { id type stepId } }"
NEXT = (
    "query N($user: ID!, $channel: Channel! = WEB) { nextSteps(userId: $user, channel: $channel, limit: 10) "
    "{ decisionId policyVersion steps { step { id } } heldBack { step { id } reason until } } }"
)
DECISION = "query D($id: ID!) { decision(id: $id) { heldBack { step { id } reason until } } }"


def test_a_step_snoozed_on_mobile_is_held_back_on_the_web_with_its_reason(client):
    register(client, "u1", timeZone="Europe/Lisbon")
    first = client.data(NEXT, {"user": "u1"})["nextSteps"]
    assert first["heldBack"] == [] and first["policyVersion"] == "default@1.2.0"
    top = first["steps"][0]["step"]["id"]
    stored = client.data(
        RECORD, {"input": {"userId": "u1", "type": "STEP_SNOOZED", "stepId": top, "channel": "MOBILE"}}
    )
    assert stored["recordEvent"]["type"] == "STEP_SNOOZED"
    rec = client.data(NEXT, {"user": "u1"})["nextSteps"]
    assert top not in [s["step"]["id"] for s in rec["steps"]]
    (hold,) = rec["heldBack"]
    assert hold["step"]["id"] == top and hold["reason"].startswith("Held back: snoozed on MOBILE until ")
    assert hold["until"] is not None
    assert client.data(DECISION, {"id": rec["decisionId"]})["decision"]["heldBack"] == [hold]


def test_a_time_zone_or_channel_that_is_none_is_refused_by_name(client):
    error = client.error(REGISTER, {"input": {"id": "u2", "timeZone": "Mars/Olympus_Mons"}})
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "input.timeZone" in error["message"]
    register(client, "u3")
    error = client.error(
        RECORD, {"input": {"userId": "u3", "type": "STEP_SNOOZED", "stepId": "take-product-tour", "channel": "FAX"}}
    )
    assert "FAX" in error["message"]
    error = client.error(RECORD, {"input": {"userId": "u3", "type": "STEP_SNOOZED"}})
    assert "input.stepId" in error["message"]
