"""The auditors' SPARQL endpoint over real HTTP, with a standard client (SPARQLWrapper)."""

from __future__ import annotations

import csv
import io

import httpx
import pytest
from SPARQLWrapper import CSV, JSON, TSV, XML, SPARQLWrapper

from service.audit.sparql import refusal
from service.decisions import decide, users

COUNT_STEPS = "PREFIX wf: <https://w3id.org/wayfinder/ontology#> SELECT (COUNT(?s) AS ?n) WHERE { ?s a wf:Step }"


@pytest.fixture
def server(live_server, disk_runtime):
    users.register(disk_runtime, users.Registration(id="u1", role="analyst", plan="team", consents=["PERSONALIZATION"]))
    decide.next_steps(disk_runtime, "u1")
    return live_server


def wrapper(url: str, query: str, fmt) -> SPARQLWrapper:
    client = SPARQLWrapper(url + "/sparql")
    client.setQuery(query)
    client.setReturnFormat(fmt)
    return client


def test_select_as_json_xml_csv_and_tsv_through_sparqlwrapper(server):
    result = wrapper(server, COUNT_STEPS, JSON).query().convert()
    assert result["results"]["bindings"][0]["n"]["value"] == "31"
    xml = wrapper(server, COUNT_STEPS, XML).query().convert()
    assert xml.getElementsByTagName("literal")[0].firstChild.data == "31"
    text = wrapper(server, COUNT_STEPS, CSV).query().convert().decode()
    assert list(csv.reader(io.StringIO(text))) == [["n"], ["31"]]
    tsv = wrapper(server, COUNT_STEPS, TSV).query().convert().decode()
    assert tsv.splitlines()[0] == "?n" and tsv.splitlines()[1].startswith('"31"')


def test_post_forms_and_direct_bodies_and_ask(server):
    form = httpx.post(
        server + "/sparql", data={"query": "ASK { ?s ?p ?o }"}, headers={"accept": "application/sparql-results+json"}
    )
    assert form.status_code == 200 and form.json()["boolean"] is True
    direct = httpx.post(
        server + "/sparql",
        content=COUNT_STEPS,
        headers={"content-type": "application/sparql-query", "accept": "text/csv"},
    )
    assert direct.status_code == 200 and direct.text.splitlines()[1] == "31"


def test_construct_negotiates_an_rdf_syntax(server):
    query = "CONSTRUCT { ?s ?p ?o } WHERE { ?s a <https://w3id.org/wayfinder/ontology#Plan> ; ?p ?o }"
    turtle = httpx.get(server + "/sparql", params={"query": query}, headers={"accept": "text/turtle"})
    assert turtle.status_code == 200 and turtle.headers["content-type"].startswith("text/turtle")
    ntriples = httpx.get(server + "/sparql", params={"query": query}, headers={"accept": "application/n-triples"})
    assert ntriples.text.count(" .\n") >= 9


def test_an_unacceptable_format_is_406(server):
    response = httpx.get(server + "/sparql", params={"query": COUNT_STEPS}, headers={"accept": "image/png"})
    assert response.status_code == 406


def test_the_lineage_is_readable_by_sparql(server):
    query = (
        "PREFIX wf: <https://w3id.org/wayfinder/ontology#> PREFIX prov: <http://www.w3.org/ns/prov#> "
        "SELECT ?d ?policy WHERE { ?d a wf:Decision ; wf:policyVersion ?policy ; prov:used ?c }"
    )
    rows = wrapper(server, query, JSON).query().convert()["results"]["bindings"]
    assert rows and rows[0]["policy"]["value"].endswith("default-1.2.0")


@pytest.mark.parametrize(
    "query",
    [
        "INSERT DATA { <urn:a> <urn:b> <urn:c> }",
        "PREFIX x: <urn:x#> DELETE WHERE { ?s ?p ?o }",
        "LOAD <http://example.org/data.ttl>",
        "DROP ALL",
        "SELECT * WHERE { SERVICE <http://127.0.0.1:1/sparql> { ?s ?p ?o } }",
    ],
)
def test_updates_load_and_service_are_refused_and_change_nothing(server, disk_runtime, query):
    before = len(disk_runtime.store)
    response = httpx.get(server + "/sparql", params={"query": query})
    assert response.status_code == 403
    update = httpx.post(server + "/sparql", content=query, headers={"content-type": "application/sparql-update"})
    assert update.status_code == 403
    form = httpx.post(server + "/sparql", data={"update": query})
    assert form.status_code == 403
    assert len(disk_runtime.store) == before


def test_a_slow_query_is_stopped_at_the_time_limit_and_next_steps_keeps_answering(server, disk_runtime):
    import threading

    slow = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i . ?j ?k ?l }"
    answers = {}

    def audit():
        answers["slow"] = httpx.get(server + "/sparql", params={"query": slow}, timeout=60)

    thread = threading.Thread(target=audit)
    thread.start()
    body = {"query": '{ nextSteps(userId: "u1") { decisionId } }'}
    for _ in range(5):
        response = httpx.post(server + "/graphql", json=body, timeout=5)
        assert response.status_code == 200 and response.json()["data"]["nextSteps"]["decisionId"]
    thread.join(timeout=disk_runtime.settings.sparql_timeout_s + 20)
    assert answers["slow"].status_code == 503
    assert "time limit" in answers["slow"].text


def test_rows_are_capped_and_the_cap_is_announced(live_server, disk_runtime):
    cap = disk_runtime.settings.sparql_max_rows
    assert len(disk_runtime.store) > cap
    response = httpx.get(
        live_server + "/sparql",
        params={"query": "SELECT ?s WHERE { ?s ?p ?o }"},
        headers={"accept": "application/sparql-results+json"},
    )
    assert len(response.json()["results"]["bindings"]) == cap
    assert response.headers["x-wayfinder-truncated"].startswith("true")
    small = httpx.get(live_server + "/sparql", params={"query": COUNT_STEPS})
    assert "x-wayfinder-truncated" not in small.headers


def test_a_syntax_error_is_400_and_a_missing_query_too(server):
    assert httpx.get(server + "/sparql", params={"query": "SELEKT nothing"}).status_code == 400
    assert httpx.get(server + "/sparql").status_code == 400


def test_refusal_ignores_keywords_inside_names_strings_and_comments():
    assert refusal('SELECT * WHERE { ?s ?p "SERVICE" } # INSERT') is None
    assert (
        refusal("PREFIX demo: <https://w3id.org/wayfinder/demo/> SELECT * WHERE { ?s ?p demo:add-calculated-field }")
        is None
    )
    assert refusal("select * { service <urn:x> { ?s ?p ?o } }") is not None
