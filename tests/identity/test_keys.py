"""Keys and roles, GraphQL limits, metrics: what lets a team put the service on the internet."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from service.api.app import create_app
from service.cli import app as cli
from service.errors import InvalidInput
from service.identity.keys import parse_keys
from service.runtime import Runtime
from service.settings import Settings
from tests.conftest import approve_policies

KEYS = {"client": "c" * 24, "engineer": "e" * 24, "operator": "o" * 24, "auditor": "a" * 24}


@pytest.fixture
def secured(knowledge_quads, tmp_path):
    from service.knowledge.embedded import Store

    store = Store(":memory:")
    store.commit(add=knowledge_quads)
    settings = Settings(
        store=":memory:",
        api_keys=",".join(f"{k}:{r}" for r, k in KEYS.items()),
        models_dir=tmp_path / "models",
        max_query_depth=6,
        max_aliases=3,
        max_fields=40,
    )
    runtime = Runtime(settings=settings, store=store)
    approve_policies(runtime)
    with TestClient(create_app(runtime)) as http:
        yield http


def gql(http, query, role=None, variables=None):
    headers = {"Authorization": f"Bearer {KEYS[role]}"} if role else {}
    return http.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)


def test_a_missing_or_unknown_key_is_401(secured):
    assert gql(secured, "{ steps { id } }").status_code == 401
    response = secured.post("/graphql", json={"query": "{ steps { id } }"}, headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401 and "unknown API key" in response.json()["error"]
    assert secured.get("/healthz").status_code == 200  # liveness needs no key


def test_each_role_reaches_only_its_part(secured):
    register = 'mutation { registerUser(input: {id: "k1", consents: [PERSONALIZATION]}) { id } }'
    denied = gql(secured, register, "auditor")
    assert denied.status_code == 403
    error = denied.json()["errors"][0]
    assert error["extensions"]["code"] == "FORBIDDEN" and "client" in error["message"]
    assert gql(secured, register, "client").json()["data"]["registerUser"]["id"] == "k1"
    next_steps = gql(secured, '{ nextSteps(userId: "k1") { decisionId } }', "client").json()["data"]["nextSteps"]
    decision = '{ decision(id: "' + next_steps["decisionId"] + '") { id } }'
    assert gql(secured, decision, "client").status_code == 403
    assert gql(secured, decision, "auditor").json()["data"]["decision"]["id"] == next_steps["decisionId"]
    sparql = {"query": "ASK { ?s ?p ?o }"}
    assert (
        secured.get("/sparql", params=sparql, headers={"Authorization": f"Bearer {KEYS['client']}"}).status_code == 403
    )
    assert (
        secured.get("/sparql", params=sparql, headers={"Authorization": f"Bearer {KEYS['auditor']}"}).status_code == 200
    )
    assert secured.get("/metrics", headers={"Authorization": f"Bearer {KEYS['client']}"}).status_code == 403
    metrics = secured.get("/metrics", headers={"Authorization": f"Bearer {KEYS['operator']}"})
    assert metrics.status_code == 200 and "wayfinder_decisions_total" in metrics.text


def test_introspection_and_graphiql_are_off_with_keys(secured):
    body = gql(secured, "{ __schema { types { name } } }", "client").json()
    assert body["errors"] and body.get("data") is None
    page = secured.get("/graphql", headers={"Authorization": f"Bearer {KEYS['client']}", "accept": "text/html"})
    assert "graphiql" not in page.text.lower()


def test_depth_alias_and_field_limits_refuse_before_any_resolver_runs(secured):
    runtime = secured.app.app.state.runtime
    gql(secured, 'mutation { registerUser(input: {id: "lim", consents: []}) { id } }', "client")
    before = len(runtime.store)
    deep = '{ nextSteps(userId: "lim") { steps { step { requires { requires { requires { requires { id } } } } } } } }'
    body = gql(secured, deep, "client").json()
    assert "depth" in body["errors"][0]["message"] and body.get("data") is None
    aliases = '{ a: nextSteps(userId: "lim") { decisionId } b: nextSteps(userId: "lim") { decisionId } c: steps { id } d: steps { id } }'
    assert "aliases" in gql(secured, aliases, "client").json()["errors"][0]["message"].lower()
    through_fragments = (
        'query { ...F ...G } fragment F on Query { a: nextSteps(userId: "lim") { decisionId } '
        "b: steps { id } } fragment G on Query { c: steps { id } d: steps { id } }"
    )
    assert "aliases" in gql(secured, through_fragments, "client").json()["errors"][0]["message"].lower()
    fields = "steps { id title channels introduces { id title } requires { id title channels } }"
    wide = 'query { nextSteps(userId: "lim") { decisionId } ...W } fragment W on Query { ' + fields + " }"
    assert (
        gql(secured, wide, "client").json().get("errors") is None
    )  # 13 fields: within the budget of 40; four fragments make 46
    too_wide = 'query { nextSteps(userId: "lim") { decisionId } ...W ...X ...Y ...Z } ' + " ".join(
        f"fragment {n} on Query {{ {fields} }}" for n in "WXYZ"
    )
    body = gql(secured, too_wide, "client").json()
    assert "more than 40 fields" in body["errors"][0]["message"]
    assert body["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    # Only the one accepted nextSteps wrote a decision: refused operations ran no resolver.
    decisions = runtime.store.select(
        "SELECT (COUNT(?d) AS ?n) WHERE { ?d a <https://w3id.org/wayfinder/ontology#Decision> }"
    )
    assert int(decisions[0]["n"].value) == 1
    assert len(runtime.store) > before


def test_keys_must_name_a_known_role_and_be_long_enough():
    with pytest.raises(InvalidInput):
        parse_keys("short:client")
    with pytest.raises(InvalidInput):
        parse_keys("x" * 20 + ":admin")
    assert parse_keys("k" * 20 + ":auditor").role_of("k" * 20) == "auditor"


def test_an_open_service_refuses_to_listen_beyond_loopback(tmp_path):
    result = CliRunner().invoke(cli, ["serve", "--store", str(tmp_path / "s"), "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "loopback" in result.output
