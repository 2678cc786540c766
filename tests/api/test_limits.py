"""Slow or oversized work at the API edge: bodies capped before parsing, long lists refused early,
operations off the event loop, store calls with a time limit."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from service.api.app import create_app
from service.decisions import users
from service.knowledge.shared import RemoteStore
from service.runtime import Runtime
from service.settings import Settings
from tests.conftest import serving
from tests.graphql_client import RECORD_MANY, REGISTER
from tests.oxigraph_server import frozen, start_oxigraph

NEXT = '{ nextSteps(userId: "reader") { decisionId } }'
USERS = ("reader", "w1", "w2", "w3", "w4")


def register_users(runtime: Runtime) -> None:
    for uid in USERS:
        users.register(
            runtime, users.Registration(id=uid, role="analyst", plan="team", consents=["PERSONALIZATION", "ANALYTICS"])
        )


def events(count: int) -> list[dict]:
    return [
        {"userId": USERS[1 + i % 4], "type": "STEP_COMPLETED", "stepId": "explore-sample-data"} for i in range(count)
    ]


def raw_exchange(url: str, head: bytes, body_chunks: list[bytes], *, timeout_s: float = 5.0) -> bytes:
    """Send a request head and some body bytes on a plain socket, then read what the server answers."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout_s) as conn:
        conn.sendall(head)
        for chunk in body_chunks:
            try:
                conn.sendall(chunk)
            except OSError:  # the server answered and closed while the body was still coming
                break
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer) < answer.index(b"\r\n\r\n") + 4 + _length(answer):
            data = conn.recv(65536)
            if not data:
                break
            answer += data
    return answer


def _length(answer: bytes) -> int:
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def capped(runtime: Runtime) -> Runtime:
    """The same store, with a body cap of 64 KiB."""
    settings = Settings(store=":memory:", models_dir=runtime.settings.models_dir, max_body_bytes=64 * 1024)
    return Runtime(settings=settings, store=runtime.store)


def next_steps_during(url: str, body: str) -> tuple[dict, list[float], float]:
    """Post the write in one thread while another times nextSteps; return the write's answer, the latencies
    and the write's own duration."""
    with httpx.Client(base_url=url, timeout=60) as reads, httpx.Client(base_url=url, timeout=60) as writes:
        assert reads.post("/graphql", json={"query": NEXT}).json()["data"]["nextSteps"]["decisionId"]
        latencies: list[float] = []
        answer: dict = {}

        def write() -> None:
            started = time.perf_counter()
            answer["body"] = writes.post("/graphql", content=body, headers={"content-type": "application/json"}).json()
            answer["seconds"] = time.perf_counter() - started

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.05)  # the write is under way: its body is being read, parsed and coerced
        while writer.is_alive():
            started = time.perf_counter()
            assert reads.post("/graphql", json={"query": NEXT}).json()["data"]["nextSteps"]["decisionId"]
            latencies.append(time.perf_counter() - started)
        writer.join()
    return answer["body"], latencies, answer["seconds"]


def test_a_long_write_refused_at_its_last_event_does_not_hold_up_next_steps(runtime):
    # 20,000 events parsed, coerced and checked one by one, the last one naming no step: the
    # whole operation runs before the store's write lock is taken, so only the event loop
    # could hold nextSteps up.
    settings = Settings(store=":memory:", models_dir=runtime.settings.models_dir, max_events_per_request=20_000)
    runtime = Runtime(settings=settings, store=runtime.store)
    register_users(runtime)
    inputs = events(20_000)
    inputs[-1]["stepId"] = "no-such-step"
    body = json.dumps({"query": RECORD_MANY, "variables": {"inputs": inputs}})
    with serving(runtime) as url:
        answer, latencies, write_seconds = next_steps_during(url, body)
    assert answer["errors"][0]["extensions"]["code"] in ("NOT_FOUND", "BAD_USER_INPUT"), answer
    assert "inputs[19999].stepId" in answer["errors"][0]["message"]
    # Decisions go on being made while the write is checked: several answer, each in a fraction of the write's
    # time (a bound relative to the write, not in seconds, so a loaded machine does not make it fail).
    assert len(latencies) >= 3 and max(latencies) < 0.5 * write_seconds, (latencies, write_seconds)


def test_a_long_valid_write_lets_next_steps_through(runtime):
    register_users(runtime)
    cap = runtime.settings.max_events_per_request
    body = json.dumps({"query": RECORD_MANY, "variables": {"inputs": events(cap)}})
    with serving(runtime) as url:
        answer, latencies, write_seconds = next_steps_during(url, body)
    assert answer == {"data": {"recordEvents": cap}}
    # While the write is read, parsed, coerced and validated, decisions go on being made: the
    # shapes validate outside the store's write lock, which is held only for the commit itself.
    assert len(latencies) >= 3 and max(latencies) < 0.5 * write_seconds, (latencies, write_seconds)


def test_a_body_over_the_cap_is_refused_with_413_before_it_is_read(runtime):
    runtime = capped(runtime)
    register_users(runtime)
    with serving(runtime) as url:
        for path in (b"/graphql", b"/sparql", b"/healthz", b"/nowhere"):
            head = (
                b"POST " + path + b" HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                b"Content-Length: 3145728\r\n\r\n"
            )
            started = time.monotonic()
            answer = raw_exchange(url, head, [])  # no body sent at all: the length alone is refused
            assert time.monotonic() - started < 5
            status, _, rest = answer.partition(b"\r\n")
            assert b" 413 " in status, (path, answer[:300])
            payload = json.loads(rest.split(b"\r\n\r\n", 1)[1])
            assert payload["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
            assert "65536" in payload["errors"][0]["message"]
        with httpx.Client(base_url=url, timeout=5) as http:
            big = http.post("/graphql", content=b" " * (64 * 1024 + 1), headers={"content-type": "application/json"})
            assert big.status_code == 413 and big.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
            assert http.post("/graphql", json={"query": NEXT}).json()["data"]["nextSteps"]["decisionId"]
            assert http.get("/healthz").status_code == 200


def test_a_chunked_body_over_the_cap_is_refused_with_413_while_it_streams(runtime):
    runtime = capped(runtime)
    register_users(runtime)
    chunk = b" " * 16384
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    with serving(runtime) as url:
        for path, kind in ((b"/graphql", b"application/json"), (b"/sparql", b"application/sparql-query")):
            head = (
                b"POST " + path + b" HTTP/1.1\r\nHost: test\r\nContent-Type: " + kind + b"\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            answer = raw_exchange(url, head, [frame] * 6)  # 96 KiB and the body has not ended
            assert b" 413 " in answer.partition(b"\r\n")[0], (path, answer[:300])
            assert b"PAYLOAD_TOO_LARGE" in answer
        with httpx.Client(base_url=url, timeout=5) as http:
            small = http.post(
                "/graphql",
                content=iter([json.dumps({"query": NEXT}).encode()]),
                headers={"content-type": "application/json"},
            )
            assert small.json()["data"]["nextSteps"]["decisionId"]


def test_a_variables_list_over_the_cap_is_refused_before_coercion(client):
    cap = Settings().max_events_per_request
    # Items that would each fail coercion: the refusal must come first, and name the cap.
    error = client.error(RECORD_MANY, {"inputs": [1] * (cap + 1)})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "variables.inputs" in error["message"] and str(cap) in error["message"]
    nested = client.error(REGISTER, {"input": {"id": "x", "consents": ["ANALYTICS"] * (cap + 1)}})
    assert nested["extensions"]["code"] == "BAD_USER_INPUT" and "variables.input.consents" in nested["message"]
    assert client.post(RECORD_MANY, {"inputs": []}) == {"data": {"recordEvents": 0}}


def test_graphql_response_json_answers_the_early_refusal_with_400(runtime):
    cap = runtime.settings.max_events_per_request
    with TestClient(create_app(runtime)) as http:
        answer = http.post(
            "/graphql",
            json={"query": RECORD_MANY, "variables": {"inputs": [1] * (cap + 1)}},
            headers={"accept": "application/graphql-response+json"},
        )
    assert answer.status_code == 400 and "data" not in answer.json()


@pytest.fixture
def oxigraph(tmp_path, knowledge_quads):
    """A real `oxigraph serve` holding the demo knowledge; yields (url, process); always resumed at the end."""
    url, process = start_oxigraph(tmp_path / "shared")
    RemoteStore(url).commit(add=knowledge_quads)
    try:
        yield url, process
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            process.terminate()
            process.wait(timeout=10)


def shared_runtime(url: str, tmp_path: Path, *, store_timeout_s: float = 5) -> Runtime:
    runtime = Runtime(settings=Settings(store=url, models_dir=tmp_path / "models", store_timeout_s=store_timeout_s))
    users.register(runtime, users.Registration(id="reader", role="analyst", plan="team", consents=["PERSONALIZATION"]))
    return runtime


def test_healthz_answers_503_at_once_while_the_store_hangs(oxigraph, tmp_path):
    url, process = oxigraph
    runtime = shared_runtime(url, tmp_path, store_timeout_s=5)
    with serving(runtime) as base, httpx.Client(base_url=base, timeout=10) as http:
        assert http.get("/healthz").status_code == 200
        with frozen(process):
            for _ in range(4):  # checks while the store hangs do not pile up threads
                started = time.monotonic()
                health = http.get("/healthz")
                assert health.status_code == 503 and time.monotonic() - started < 2, health.text
                assert sum(t.name == "wayfinder-store-probe" for t in threading.enumerate()) <= 1
        deadline = time.monotonic() + 15
        while http.get("/healthz").status_code != 200:
            assert time.monotonic() < deadline, "/healthz did not recover after the store came back"
            time.sleep(0.2)


def test_a_store_that_does_not_answer_gives_store_unavailable_within_the_store_timeout(oxigraph, tmp_path):
    url, process = oxigraph
    runtime = shared_runtime(url, tmp_path, store_timeout_s=1)
    with serving(runtime) as base, httpx.Client(base_url=base, timeout=10) as http:
        assert http.post("/graphql", json={"query": NEXT}).json()["data"]["nextSteps"]["decisionId"]
        with frozen(process):
            started = time.monotonic()
            body = http.post("/graphql", json={"query": NEXT}).json()
            assert time.monotonic() - started < 1 + 3
            assert body["errors"][0]["extensions"]["code"] == "STORE_UNAVAILABLE", body
            assert http.get("/healthz").status_code == 503
        deadline = time.monotonic() + 15
        while http.get("/healthz").status_code != 200:
            assert time.monotonic() < deadline, "the service did not recover after the store came back"
            time.sleep(0.2)
        assert http.post("/graphql", json={"query": NEXT}).json()["data"]["nextSteps"]["decisionId"]


def _nested(levels: int) -> str:
    return "requires { " * levels + "id" + " }" * levels


def test_a_query_deeper_than_the_limit_is_refused_also_through_fragments(client):
    deep = client.post("{ steps { " + _nested(12) + " } }")
    assert deep["data"] is None and "exceeds maximum operation depth of 10" in deep["errors"][0]["message"]
    through = client.post("fragment F on Step { " + _nested(12) + " } { steps { ...F } }")
    assert "exceeds maximum operation depth" in through["errors"][0]["message"]
    assert client.data("{ steps { " + _nested(3) + " } }")["steps"]


def test_a_spread_of_a_fragment_never_defined_is_refused_naming_it_with_a_code(client):
    # found by tests/api/test_fuzz.py: strawberry's depth rule raised KeyError('B'), an error without a code
    answer = client.post("fragment A on A{...A}{A{...B}}")
    assert answer["data"] is None
    assert all(e["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED" for e in answer["errors"]), answer
    assert "Unknown fragment 'B'." in [e["message"] for e in answer["errors"]]
