"""The one way the service binds query parameters: typed terms written into the query text.

Every shipped ``.rq`` file declares its parameters; ``Query.bind`` checks the terms
against them and writes them in, projected parameters and GROUP BY / ORDER BY
conditions included, so that the bound text still parses and answers.
"""

from __future__ import annotations

import pyoxigraph as ox
import pytest

from service.knowledge import vocab
from service.knowledge.queries import Parameter, Queries, Query, inline
from tests.paths import ROOT

SHIPPED = Queries(ROOT / "queries")
EXAMPLE = {
    "IRI": ox.NamedNode("https://w3id.org/wayfinder/user/example"),
    "ANY": ox.Literal("x"),
    vocab.XSD_NS + "dateTime": ox.Literal("2026-01-01T00:00:00Z", datatype=vocab.XSD_DATETIME),
    vocab.XSD_NS + "string": ox.Literal("main"),
    vocab.XSD_NS + "integer": ox.Literal("7", datatype=vocab.XSD_INTEGER),
}


# -- writing terms into a query -----------------------------------------------


def test_terms_are_written_in_their_n_triples_form():
    query = "SELECT ?x WHERE { ?user <http://example.org/p> ?x ; <http://example.org/q> $label }"
    text = inline(query, user=ox.NamedNode("http://example.org/u?id=1"), label=ox.Literal('a "b" } c', language="en"))
    assert text == (
        "SELECT ?x WHERE { <http://example.org/u?id=1> <http://example.org/p> ?x ; "
        '<http://example.org/q> "a \\"b\\" } c"@en }'
    )


def test_iris_strings_and_comments_that_look_like_variables_are_left_alone():
    query = '# ?user in a comment\nSELECT ?userName WHERE { ?user <http://example.org/?user> "?user" . BIND (?user AS ?userName) }'
    text = inline(query, user=ox.NamedNode("http://example.org/u"))
    assert text == (
        "# ?user in a comment\nSELECT ?userName WHERE { <http://example.org/u> <http://example.org/?user> "
        '"?user" . BIND (<http://example.org/u> AS ?userName) }'
    )


def test_a_literal_cannot_escape_into_the_query():
    store = ox.Store()
    hostile = ox.Literal('"} ; DROP ALL ; SELECT * WHERE {"')
    rows = list(store.query(inline("SELECT ?x WHERE { BIND (?value AS ?x) }", value=hostile)))
    assert [row["x"] for row in rows] == [hostile]


def test_only_iris_and_literals_are_written_and_every_name_must_occur():
    with pytest.raises(TypeError):
        inline("SELECT ?x WHERE { ?user ?p ?x }", user=ox.BlankNode())
    with pytest.raises(ValueError, match=r"\?usr"):
        inline("SELECT ?x WHERE { ?user ?p ?x }", usr=ox.NamedNode("http://example.org/u"))


# -- typed queries --------------------------------------------------------------


def test_every_shipped_query_declares_the_parameters_it_names():
    declared = {name: sorted(q.parameters) for name, q in SHIPPED.items() if q.parameters}
    assert declared["profile"] == ["user", "userGraph"]
    assert declared["candidates"] == ["channel", "user", "userGraph"]
    assert declared["retention-expired-events"] == ["cutoff", "eventClass"]
    assert declared["lineage/why-decision"] == ["decision"]
    assert SHIPPED["retention-expired-consent"].parameters["cutoff"].kind == vocab.XSD_NS + "dateTime"
    for name, query in SHIPPED.items():
        body = "\n".join(line for line in query.splitlines() if not line.lstrip().startswith("#"))
        for parameter in query.parameters:
            assert f"?{parameter}" in body, (name, parameter)


@pytest.mark.parametrize("name", sorted(n for n, q in SHIPPED.items() if q.parameters))
def test_every_shipped_query_still_parses_and_runs_once_bound(name):
    query = SHIPPED[name]
    text = query.bind(**{p.name: EXAMPLE[p.kind] for p in query.parameters.values()})
    for parameter in query.parameters:
        assert f"?{parameter} " not in text.split("WHERE", 1)[-1], f"?{parameter} left in the pattern"
    ox.Store().query(text, use_default_graph_as_union=True)  # raises on a syntax error


def test_a_projected_parameter_keeps_its_column():
    store = ox.Store()
    iri = ox.NamedNode("http://example.org/s")
    store.add(ox.Quad(iri, iri, ox.Literal("o")))
    query = Query("SELECT ?s ?o WHERE { ?s ?p ?o }", parameters={"s": Parameter("s", "IRI")})
    rows = list(store.query(query.bind(s=iri)))
    assert [(row["s"], row["o"]) for row in rows] == [(iri, ox.Literal("o"))]


def test_a_parameter_in_group_by_and_order_by_is_bracketed():
    query = Query(
        "SELECT ?g (COUNT(*) AS ?n) WHERE { ?g ?p ?o } GROUP BY ?g ORDER BY ?g DESC(?g)",
        parameters={"g": Parameter("g", "IRI")},
    )
    text = query.bind(g=ox.NamedNode("http://example.org/g"))
    assert text.endswith(
        "GROUP BY (<http://example.org/g>) ORDER BY (<http://example.org/g>) DESC(<http://example.org/g>)"
    )
    ox.Store().query(text)


def test_bind_refuses_unknown_missing_and_mistyped_terms():
    query = SHIPPED["retention-expired-events"]
    cutoff = EXAMPLE[vocab.XSD_NS + "dateTime"]
    with pytest.raises(ValueError, match=r"no parameter \?event\b"):
        query.bind(event=EXAMPLE["IRI"], eventClass=EXAMPLE["IRI"], cutoff=cutoff)
    with pytest.raises(ValueError, match=r"needs \?cutoff"):
        query.bind(eventClass=EXAMPLE["IRI"])
    with pytest.raises(TypeError, match=r"\?cutoff: a literal of type"):
        query.bind(eventClass=EXAMPLE["IRI"], cutoff=ox.Literal("2026-01-01"))
    with pytest.raises(TypeError, match=r"\?eventClass: an IRI is expected"):
        query.bind(eventClass=ox.Literal("x"), cutoff=cutoff)


def test_an_optional_parameter_left_out_stays_a_variable():
    query = Query("# param ?user: IRI, optional - one user, or all\nSELECT ?o WHERE { ?user ?p ?o }", name="optional")
    assert query.parameters == {"user": Parameter("user", "IRI", optional=True)}
    assert query.bind().endswith("{ ?user ?p ?o }")
    assert query.bind(user=None).endswith("{ ?user ?p ?o }")


def test_an_alias_cannot_be_a_parameter():
    query = Query("SELECT (1 AS ?n) WHERE { ?s ?p ?n }", parameters={"n": Parameter("n", "ANY")})
    with pytest.raises(ValueError, match="AS"):
        query.bind(n=ox.Literal("1"))


def test_an_unknown_datatype_prefix_is_refused_when_the_query_is_read():
    with pytest.raises(ValueError, match="unknown type prefix 'ex'"):
        Query("# param ?x: ex:thing - no\nSELECT * WHERE { ?s ?p ?x }", name="bad")
