"""Delivery over GraphQL with API keys: a client key hands a decision to the e-mail sender, the service's own worker
sends it to a real local receiver, auditors see it, operators requeue the dead-lettered; an app token cannot send."""

from __future__ import annotations

import time

from starlette.testclient import TestClient

from service.api.app import create_app
from service.knowledge.embedded import Store
from service.runtime import Runtime
from service.settings import Settings
from tests.api.test_credentials import APP_SECRET, AUDITOR, KEYS, OPERATOR, SERVER, app_token, call, code_of
from tests.conftest import approve_policies
from tests.delivery.receiver import Receiver, Step

SECRET = b"api-test-secret"
REGISTER = "mutation($id: ID!) { registerUser(input: {id: $id, consents: [ONBOARDING_MESSAGES]}) { id } }"
DELIVER = (
    'mutation($u: ID!, $c: Channel!) { deliverNextSteps(userId: $u, channel: $c, limit: 2, locale: "pt-BR") '
    "{ decisionId steps { rank step { id } content { locale headline version } } "
    "delivery { id decisionId channel state attempts } } }"
)
DELIVERY = "query($id: ID!) { delivery(id: $id) { id state attempts lastError nextAttemptAt } }"
DELIVERIES = "query($s: DeliveryState) { deliveries(state: $s) { id state channel } }"
DECISION = "query($id: ID!) { decision(id: $id) { delivery { id state } } }"
REQUEUE = "mutation($id: ID!) { requeueDelivery(id: $id) { id state attempts } }"
BOUNCE = (
    "mutation($u: ID!, $d: ID!) { recordEvent(input: {userId: $u, type: MESSAGE_FAILED, channel: EMAIL, "
    "deliveryId: $d}) { id type } }"
)


def client_with(knowledge_quads, tmp_path, receiver: Receiver, **settings) -> TestClient:
    store = Store(":memory:")
    store.commit(add=knowledge_quads)
    config = Settings(
        store=":memory:",
        api_keys=KEYS,
        models_dir=tmp_path / "models",
        senders={"EMAIL": receiver.url},
        sender_secret=SECRET.decode(),
        delivery_interval_s=0.05,
        delivery_backoff_s=0.01,
        delivery_backoff_max_s=0.02,
        **settings,
    )
    runtime = Runtime(settings=config, store=store)
    approve_policies(runtime)
    return TestClient(create_app(runtime))


def settled(http, delivery_id: str, timeout_s: float = 15) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        found = call(http, AUDITOR, DELIVERY, id=delivery_id).json()["data"]["delivery"]
        if found["state"] != "PENDING":
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.05)


def test_the_service_delivers_a_decision_through_its_own_worker(knowledge_quads, tmp_path):
    with Receiver(SECRET) as receiver, client_with(knowledge_quads, tmp_path, receiver) as http:
        assert call(http, SERVER, REGISTER, id="ann").status_code == 200
        answer = call(http, SERVER, DELIVER, u="ann", c="EMAIL").json()["data"]["deliverNextSteps"]
        delivery = answer["delivery"]
        assert delivery["state"] == "PENDING" and delivery["channel"] == "EMAIL"
        assert delivery["decisionId"] == answer["decisionId"]
        assert all(s["content"]["locale"] == "pt-BR" for s in answer["steps"])
        done = settled(http, delivery["id"])
        assert done["state"] == "DELIVERED" and done["attempts"] == 1 and done["nextAttemptAt"] is None
        (sent,) = receiver.accepted()[delivery["id"]]
        assert sent.signed and [s["stepId"] for s in sent.body["steps"]] == [s["step"]["id"] for s in answer["steps"]]
        assert [s["contentVersion"] for s in sent.body["steps"]] == [s["content"]["version"] for s in answer["steps"]]
        decision = call(http, AUDITOR, DECISION, id=answer["decisionId"]).json()["data"]["decision"]
        assert decision["delivery"] == {"id": delivery["id"], "state": "DELIVERED"}
        listed = call(http, OPERATOR, DELIVERIES, s="DELIVERED").json()["data"]["deliveries"]
        assert [d["id"] for d in listed] == [delivery["id"]]
        # the sender later reports a bounce, as an event about that message
        bounced = call(http, SERVER, BOUNCE, u="ann", d=delivery["id"]).json()
        assert bounced["data"]["recordEvent"]["type"] == "MESSAGE_FAILED", bounced


def test_roles_and_refusals(knowledge_quads, tmp_path):
    with (
        Receiver(SECRET, [Step(500)]) as receiver,
        client_with(knowledge_quads, tmp_path, receiver, delivery_max_attempts=2) as http,
    ):
        assert call(http, SERVER, REGISTER, id="ann").status_code == 200
        # an app token acts for one user in the product; it cannot send them messages
        token = app_token("ann", secret=APP_SECRET)
        assert code_of(call(http, token, DELIVER, u="ann", c="EMAIL")) == "FORBIDDEN"
        assert code_of(call(http, AUDITOR, DELIVER, u="ann", c="EMAIL")) == "FORBIDDEN"
        web = call(http, SERVER, DELIVER, u="ann", c="WEB").json()["errors"][0]
        assert web["extensions"]["code"] == "BAD_USER_INPUT" and "channel" in web["message"]
        push = call(http, SERVER, DELIVER, u="ann", c="MOBILE").json()["errors"][0]  # no webhook configured
        assert "WAYFINDER_SENDERS" in push["message"]
        delivery = call(http, SERVER, DELIVER, u="ann", c="EMAIL").json()["data"]["deliverNextSteps"]["delivery"]
        dead = settled(http, delivery["id"])
        assert dead["state"] == "DEAD_LETTERED" and dead["attempts"] == 2 and dead["lastError"] == "HTTP 500"
        listed = call(http, AUDITOR, DELIVERIES, s="DEAD_LETTERED").json()["data"]["deliveries"]
        assert [d["id"] for d in listed] == [delivery["id"]]
        assert code_of(call(http, AUDITOR, REQUEUE, id=delivery["id"])) == "FORBIDDEN"
        receiver.script = [Step(200)]
        requeued = call(http, OPERATOR, REQUEUE, id=delivery["id"]).json()["data"]["requeueDelivery"]
        assert requeued["state"] == "PENDING" and requeued["attempts"] == 0
        assert settled(http, delivery["id"])["state"] == "DELIVERED"
        again = call(http, OPERATOR, REQUEUE, id=delivery["id"]).json()["errors"][0]
        assert again["extensions"]["code"] == "BAD_USER_INPUT"
