"""A kill -9 of the service loses no delivery: neither one committed and not yet sent, nor one cut off mid-call.

The real service runs as a subprocess over a store folder, with a real local webhook receiver;
after SIGKILL, ``wayfinder delivery run --once`` over the same folder sends what is left.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from service.delivery.outbox import read_message
from service.knowledge.embedded import Store
from tests.delivery.receiver import Receiver, Step
from tests.paths import ROOT
from tests.service_process import Service, closed_store

SECRET = "crash-test-secret"
REGISTER = "mutation R($input: RegisterUserInput!) { registerUser(input: $input) { id } }"
DELIVER = (
    'mutation D($u: ID!) { deliverNextSteps(userId: $u, channel: EMAIL, locale: "pt-BR") '
    "{ decisionId steps { step { id } } delivery { id state attempts } } }"
)


@pytest.fixture
def store_folder(knowledge_quads, tmp_path) -> Path:
    return closed_store(tmp_path / "store", knowledge_quads)


def settings_env(receiver: Receiver, **more: str) -> dict[str, str]:
    return {
        "WAYFINDER_SENDERS": f'{{"EMAIL": "{receiver.url}"}}',
        "WAYFINDER_SENDER_SECRET": SECRET,
        "WAYFINDER_DELIVERY_BACKOFF_S": "0.05",
        **more,
    }


def graphql(url: str, query: str, variables: dict) -> dict:
    response = httpx.post(url + "/graphql", json={"query": query, "variables": variables}, timeout=30, trust_env=False)
    body = response.json()
    assert not body.get("errors"), body
    return body["data"]


def deliver_once(store: Path, env: dict[str, str], workdir: Path) -> str:
    """``wayfinder delivery run --once`` over the store, as an operator would after the crash."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("WAYFINDER_")} | env | {"TMPDIR": str(workdir)}
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "delivery", "run", "--once", "--store", str(store)],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def decided(service: Service) -> tuple[str, str]:
    graphql(service.url, REGISTER, {"input": {"id": "u1", "consents": ["ONBOARDING_MESSAGES"]}})
    answer = graphql(service.url, DELIVER, {"u": "u1"})["deliverNextSteps"]
    assert answer["delivery"]["state"] == "PENDING" and answer["steps"]
    return answer["decisionId"], answer["delivery"]["id"]


def test_a_delivery_committed_but_not_yet_sent_survives_kill_9(store_folder, tmp_path):
    with Receiver(SECRET.encode()) as receiver:
        # the service's worker looks once at start and then not for an hour: nothing is sent before the kill
        env = settings_env(receiver, WAYFINDER_DELIVERY_INTERVAL_S="3600")
        service = Service(store_folder, tmp_path, env=env)
        service.start()
        try:
            decision_id, delivery_id = decided(service)
        finally:
            service.kill()
        assert receiver.received == []
        printed = deliver_once(store_folder, env, tmp_path)
        assert delivery_id in printed and "DELIVERED" in printed
    (accepted,) = receiver.accepted()[delivery_id]
    assert accepted.signed and accepted.body["decisionId"] == decision_id and accepted.body["userId"] == "u1"
    assert accepted.body["steps"][0]["locale"] == "pt-BR"


def test_a_delivery_cut_off_mid_call_by_kill_9_is_sent_again_under_the_same_key(store_folder, tmp_path):
    # the receiver holds the first call open; the service is killed while its worker waits for the answer
    with Receiver(SECRET.encode(), [Step(200, delay_s=30), Step(200)]) as receiver:
        env = settings_env(receiver, WAYFINDER_DELIVERY_INTERVAL_S="0.1", WAYFINDER_DELIVERY_TIMEOUT_S="1")
        service = Service(store_folder, tmp_path, env=env)
        service.start()
        try:
            _, delivery_id = decided(service)
            receiver.wait_for(1)
            service.kill()
        finally:
            service.kill()
        # the lease of the attempt under way (3 x 1 s + 1 s from the claim) has to run out first
        time.sleep(4.5)
        printed = deliver_once(store_folder, env, tmp_path)
        assert "DELIVERED" in printed
    assert [r.key for r in receiver.received] == [delivery_id, delivery_id]
    assert [r.body["attempt"] for r in receiver.received] == [1, 2]
    store = Store(store_folder)  # every process that had it open has ended
    stored = read_message(store, delivery_id)
    store.close()
    assert stored is not None and stored.state == "DELIVERED" and stored.attempts == 2
