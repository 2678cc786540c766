"""/sparql reads its writes and keeps its workers warm: a query sent after a mutation returned sees the mutation (a
decision, an erasure, a consent withdrawal), one worker serves query after query, and one stopped at the time limit
is replaced."""

from __future__ import annotations

import httpx

from tests.audit.test_sparql_safety import RUNAWAY, runtime_with, sparql_workers
from tests.conftest import serving

JSON = {"accept": "application/sparql-results+json"}
REGISTER = 'mutation { registerUser(input: {id: "fresh-7c1e", consents: [PERSONALIZATION, ANALYTICS]}) { id } }'
NEXT = '{ nextSteps(userId: "fresh-7c1e") { decisionId } }'
WITHDRAW = 'mutation { withdrawConsent(userId: "fresh-7c1e", purpose: ANALYTICS) { granted } }'
ERASE = 'mutation { eraseUser(userId: "fresh-7c1e") { erasureId } }'


def graphql(url: str, query: str) -> dict:
    response = httpx.post(url + "/graphql", json={"query": query}, timeout=30)
    assert response.status_code == 200 and "errors" not in response.json(), response.text
    return response.json()["data"]


def rows(url: str, query: str) -> list[dict]:
    response = httpx.get(url + "/sparql", params={"query": query}, headers=JSON, timeout=30)
    assert response.status_code == 200, response.text
    return [{k: v["value"] for k, v in b.items()} for b in response.json()["results"]["bindings"]]


def test_a_query_after_a_mutation_sees_it(disk_runtime):
    with serving(disk_runtime) as url:
        graphql(url, REGISTER)
        assert rows(url, "SELECT ?s WHERE { ?s a <https://w3id.org/wayfinder/ontology#Decision> }") == []
        decision = graphql(url, NEXT)["nextSteps"]["decisionId"]
        found = rows(url, f"SELECT ?p WHERE {{ <https://w3id.org/wayfinder/decision/{decision}> ?p ?o }}")
        assert found, "the decision just returned is not visible over /sparql"

        withdrawals = (
            "PREFIX dpv: <https://w3id.org/dpv#> SELECT ?r WHERE { GRAPH ?g { ?r a dpv:ConsentRecord ; "
            "dpv:hasConsentStatus ?status } FILTER (?status != dpv:ConsentGiven) }"
        )
        before = len(rows(url, withdrawals))
        assert graphql(url, WITHDRAW)["withdrawConsent"]["granted"] is False
        assert len(rows(url, withdrawals)) == before + 1  # the withdrawal, at once

        naming = 'SELECT ?s WHERE { ?s ?p ?o FILTER(CONTAINS(STR(?s), "fresh-7c1e")) }'
        assert rows(url, naming)
        graphql(url, ERASE)
        assert rows(url, naming) == []  # the erasure, at once


def test_one_warm_worker_serves_query_after_query_and_a_stopped_one_is_replaced(disk_runtime):
    runtime = runtime_with(disk_runtime, sparql_timeout_s=2)
    with serving(runtime) as url:
        for _ in range(5):
            assert httpx.get(url + "/sparql", params={"query": "ASK {}"}, headers=JSON, timeout=30).json()["boolean"]
        workers = sparql_workers()
        assert len(workers) == 1  # the same process answered all five
        first = workers[0].pid
        stopped = httpx.get(url + "/sparql", params={"query": RUNAWAY}, timeout=30)
        assert stopped.status_code == 503 and "time limit" in stopped.text
        assert httpx.get(url + "/sparql", params={"query": "ASK {}"}, headers=JSON, timeout=30).json()["boolean"]
        assert [w.pid for w in sparql_workers()] != [first]  # killed at the limit; a fresh one answered
