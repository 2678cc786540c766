"""What the API edge must not give away (user IDs in logs, the schema, the store's address) and
bodies that must not crash it."""

from __future__ import annotations

import logging
import re
import uuid

import pytest
from starlette.testclient import TestClient

from service.api.app import create_app
from service.runtime import Runtime
from service.settings import Settings
from tests.api.test_limits import oxigraph  # noqa: F401  (fixture)
from tests.graphql_client import RECORD, REGISTER, GraphQLClient

SECRET_ID = "maya-7f3a9c"
KEY = "k" * 16


def records_naming(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    found = []
    for record in caplog.records:
        rendered = record.getMessage() + " " + repr({k: v for k, v in vars(record).items() if k not in ("msg", "args")})
        if text in rendered or (record.args and text in repr(record.args)):
            found.append(rendered)
    return found


def test_a_duplicate_registration_leaves_no_user_id_in_the_logs(client, caplog):
    caplog.set_level(logging.DEBUG)
    client.data(REGISTER, {"input": {"id": SECRET_ID, "role": "analyst"}})
    error = client.error(REGISTER, {"input": {"id": SECRET_ID, "role": "analyst"}})
    assert error["extensions"]["code"] == "CONFLICT"
    assert records_naming(caplog, SECRET_ID) == []
    assert any("CONFLICT" in r.getMessage() for r in caplog.records), "the refusal is still logged"


def test_a_consent_refusal_leaves_no_user_id_in_the_logs(client, caplog):
    caplog.set_level(logging.DEBUG)
    client.data(REGISTER, {"input": {"id": SECRET_ID, "role": "analyst", "consents": []}})
    error = client.error(RECORD, {"input": {"userId": SECRET_ID, "type": "ACTIVATED"}})
    assert error["extensions"]["code"] == "CONSENT_REQUIRED"
    assert records_naming(caplog, SECRET_ID) == []
    refusals = [r.getMessage() for r in caplog.records if "CONSENT_REQUIRED" in r.getMessage()]
    assert refusals and "input.type" in refusals[0]


def operation_labels(text: str) -> set[str]:
    return set(re.findall(r'wayfinder_request_seconds_count\{operation="([^"]*)"\}', text))


def test_unknown_paths_share_one_metrics_label(runtime):
    with TestClient(create_app(runtime)) as http:
        http.get("/healthz")
        http.get("/metrics")
        before = operation_labels(http.get("/metrics").text)
        paths = [f"/{uuid.uuid4().hex}/{n}" for n in range(50)]
        for path in paths:
            assert http.get(path).status_code == 404
        after = operation_labels(http.get("/metrics").text)
    assert after - before <= {"other"}
    assert "other" in after and "/healthz" in after
    assert not any(path in after for path in paths)


def keyed_client(runtime: Runtime) -> TestClient:
    settings = Settings(store=":memory:", models_dir=runtime.settings.models_dir, api_keys=f"{KEY}:client")
    return TestClient(
        create_app(Runtime(settings=settings, store=runtime.store)), headers={"authorization": f"Bearer {KEY}"}
    )


def test_with_keys_a_misspelt_name_gets_no_suggestion(runtime):
    with keyed_client(runtime) as http:
        client = GraphQLClient(http)
        error = client.error('{ nextStep(userId: "x") { decisionId } }')
        assert "Did you mean" not in error["message"] and "nextSteps" not in error["message"], error
        enum = client.error('query($c: Channel!) { nextSteps(userId: "x", channel: $c) { decisionId } }', {"c": "WBE"})
        assert "Did you mean" not in enum["message"] and "WEB" not in enum["message"], enum
        field = client.error(
            "mutation($i: EventInput!) { recordEvent(input: $i) { id } }",
            {"i": {"userId": "x", "type": "ACTIVATED", "stepID": "s"}},
        )
        assert "Did you mean" not in field["message"] and "'stepId'" not in field["message"], field


def test_in_development_mode_a_misspelt_name_gets_a_suggestion(client):
    error = client.error('{ nextStep(userId: "x") { decisionId } }')
    assert "Did you mean 'nextSteps'?" in error["message"]


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000,
        '{"a":' * 100_000,
        '{"query": "{ steps { id } }", "variables": {"deep": ' + "[" * 100_000 + "]" * 100_000 + "}}",
    ],
    ids=["lists", "objects", "variables"],
)
def test_deeply_nested_json_is_a_400_not_a_crash(runtime, body):
    with TestClient(create_app(runtime), raise_server_exceptions=False) as http:
        answer = http.post("/graphql", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400, answer.text[:300]
    assert "Unable to parse request body as JSON" in answer.text


def test_a_store_outage_tells_the_client_no_address(oxigraph, tmp_path, caplog):  # noqa: F811
    url, process = oxigraph
    runtime = Runtime(settings=Settings(store=url, models_dir=tmp_path / "models"))
    with TestClient(create_app(runtime)) as http:
        client = GraphQLClient(http)
        client.data(REGISTER, {"input": {"id": "s1", "role": "analyst", "consents": ["PERSONALIZATION"]}})
        process.terminate()
        process.wait(timeout=10)
        caplog.set_level(logging.INFO)
        error = client.error('{ nextSteps(userId: "s1") { decisionId } }')
    address = url.removeprefix("http://")
    assert error["extensions"]["code"] == "STORE_UNAVAILABLE"
    assert address not in error["message"] and "http" not in error["message"].lower(), error
    assert "127.0.0.1" not in str(error) and address.split(":")[1] not in error["message"]
    assert any(address in r.getMessage() for r in caplog.records), "the full detail goes to the log"


def test_access_log_lines_carry_no_query_string():
    """uvicorn logs each request line; a /sparql GET carries the auditor's query, which can name users."""
    import logging

    from service.telemetry import configure_logging

    configure_logging("text")
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/sparql?query=SELECT+*+WHERE+%7B+%3Cuser%2Fmaya%3E", "1.1", 200),
        None,
    )
    for log_filter in logging.getLogger("uvicorn.access").filters:
        log_filter.filter(record)
    assert "maya" not in record.getMessage() and "/sparql?" in record.getMessage()
