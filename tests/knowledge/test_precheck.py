"""The quick test of writes (service/knowledge/precheck.py): never says "conforms" where pyshacl finds a violation.

Three ways: against pyshacl on every shape test case; against pyshacl on random data for
shapes that use every constraint it translates; and through the delta validator, which
runs pyshacl only when the quick test finds something.
"""

from __future__ import annotations

import logging
import random

import pyoxigraph as ox
import pytest
import rdflib
from pyshacl.graph_abstraction import DataGraph
from rdflib.namespace import RDF, RDFS, SH

from service.knowledge import precheck
from service.knowledge.terms import from_rdflib_term, to_rdflib_graph
from service.knowledge.validation import Validator, _FocusSet, _violations, shapes_targeting, strings_as_stored
from tests.knowledge.test_shapes import CASES, load_case
from tests.paths import ROOT

WF = "https://w3id.org/wayfinder/ontology#"


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator(ROOT / "shapes")


def store_of(graph: rdflib.Graph) -> ox.Store:
    store = ox.Store()
    store.extend(ox.Quad(*(from_rdflib_term(t) for t in triple), ox.DefaultGraph()) for triple in graph)  # type: ignore[misc]
    return store


def instances(store: ox.Store, focus: list[str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    values = " ".join(str(ox.NamedNode(f)) for f in focus)
    query = f"SELECT ?this ?class WHERE {{ VALUES ?this {{ {values} }} ?this a/<{RDFS}subClassOf>* ?class }}"
    for row in store.query(query):  # type: ignore[union-attr]
        found.setdefault(row["class"].value, set()).add(row["this"].value)
    return found


def pyshacl_finds(shapes: rdflib.Graph, store: ox.Store, focus: list[str]) -> set[tuple[str, str | None]]:
    """What pyshacl reports, reading the store as the delta validator has it read a write."""
    options = {"inference": "none", "allow_warnings": True, "focus_nodes": [rdflib.URIRef(f) for f in focus]}
    conforms, report, _ = _FocusSet(DataGraph.from_oxigraph_store(store), shacl_graph=shapes, options=options).run()
    return set() if conforms else {(v.focus, v.shape) for v in _violations(report)}


def compare(shapes: rdflib.Graph, data: rdflib.Graph, focus: list[str]) -> tuple[int, int]:
    """Check each translated shape on each focus node alone against pyshacl; return (checked, clean) counts.

    One at a time, so that another violation in the same data cannot hide a missed one.
    """
    store = store_of(data)
    found = pyshacl_finds(shapes, store, focus)
    checked = clean_count = 0
    for shape in sorted({s for s in shapes.subjects(SH.path, None) if isinstance(s, rdflib.URIRef)}):
        translated = precheck.translate(shapes, shape)
        ignored = (
            shapes.value(shape, SH.severity) not in (None, SH.Violation) or (shape, SH.deactivated, None) in shapes
        )
        if translated is None or ignored:  # plan() leaves these out: they never refuse a write
            continue
        for f in focus:
            query = precheck.Plan((translated,)).query(instances(store, [f]))
            clean = query is None or not store.query(query)
            assert not (clean and (f, str(shape)) in found), (f, str(shape))  # sound: never a missed violation
            assert clean or (f, str(shape)) in found, (f, str(shape))  # exact, on these shapes and data
            checked += 1
            clean_count += clean
    return checked, clean_count


@pytest.mark.parametrize("path", CASES, ids=[p.name.removesuffix(".test.ttl") for p in CASES])
def test_each_translated_shape_agrees_with_pyshacl_on_each_shape_test_case(validator, path):
    data = to_rdflib_graph(
        [ox.Triple(*(from_rdflib_term(t) for t in triple)) for triple in load_case(path).data]  # type: ignore[misc]
    )
    subjects = sorted({str(s) for s in data.subjects() if isinstance(s, rdflib.URIRef)})
    shapes = shapes_targeting(validator._for_writes, set(instances(store_of(data), subjects)))
    compare(shapes, data, subjects)


def test_the_event_shapes_have_a_plan_and_a_decision_record_has_none(validator):
    events = shapes_targeting(validator._for_writes, {WF + "Event", WF + "StepCompleted", WF + "FeatureUsed"})
    plan = precheck.plan(events)
    assert plan is not None
    assert {s.shape.rsplit("#", 1)[1] for s in plan.shapes} >= {
        "EventByUser",
        "EventOccurredAt",
        "EventViaChannel",
        "StepEventAboutStep",
        "FeatureUsedAboutFeature",
    }
    # A feedback shape has sh:or, a message event sh:pattern: pyshacl alone checks those writes.
    assert precheck.plan(shapes_targeting(validator._for_writes, {WF + "Event", WF + "FeedbackGiven"})) is None
    assert precheck.plan(shapes_targeting(validator._for_writes, {WF + "Event", WF + "MessageDelivered"})) is None


# -- random data against shapes that use every translated constraint ----------------------------

EX = "https://example.org/"
SHAPES = f"""
@prefix sh: <http://www.w3.org/ns/shacl#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
@prefix rdf: <http://www.w3.org/1999/02/22-rdf-syntax-ns#> .
@prefix ex: <{EX}> .
ex:A sh:path ex:a ; sh:targetClass ex:Thing ; sh:minCount 1 ; sh:maxCount 1 ; sh:datatype xsd:dateTime .
ex:B sh:path ex:b ; sh:targetClass ex:Thing ; sh:maxCount 2 ; sh:class ex:Kind .
ex:C sh:path ex:c ; sh:targetClass ex:Other ; sh:minCount 2 ; sh:in ( ex:x "x" 1 ) .
ex:D sh:path ex:d ; sh:targetClass ex:Thing , ex:Other ; sh:nodeKind sh:IRI ; sh:maxCount 0 .
ex:E sh:path ex:e ; sh:targetClass ex:Thing ; sh:hasValue "yes" ; sh:datatype xsd:string .
ex:F sh:path ex:f ; sh:targetClass ex:Thing ; sh:datatype rdf:langString ; sh:nodeKind sh:Literal .
ex:G sh:path ex:g ; sh:targetClass ex:Thing ; sh:datatype xsd:integer ; sh:nodeKind sh:BlankNodeOrLiteral .
ex:W sh:path ex:w ; sh:targetClass ex:Thing ; sh:minCount 1 ; sh:severity sh:Warning .
ex:Off sh:path ex:a ; sh:targetClass ex:Thing ; sh:maxCount 0 ; sh:deactivated true .
"""
XSD = "http://www.w3.org/2001/XMLSchema#"
VALUES = [
    ox.NamedNode(EX + "x"),
    ox.NamedNode(EX + "k1"),  # an ex:Kind
    ox.NamedNode(EX + "k2"),  # an ex:SubKind, a subclass of ex:Kind
    ox.BlankNode("b0"),
    ox.Literal("x"),
    ox.Literal("yes"),
    ox.Literal("yes", language="en"),
    ox.Literal("1", datatype=ox.NamedNode(XSD + "integer")),
    ox.Literal("01", datatype=ox.NamedNode(XSD + "integer")),
    ox.Literal("one", datatype=ox.NamedNode(XSD + "integer")),
    ox.Literal("2025-03-01T09:30:00Z", datatype=ox.NamedNode(XSD + "dateTime")),
    ox.Literal("2025-03-01T09:30:00", datatype=ox.NamedNode(XSD + "dateTime")),
    ox.Literal("yesterday", datatype=ox.NamedNode(XSD + "dateTime")),
    ox.Literal("2025-03-01", datatype=ox.NamedNode(XSD + "date")),
]


def random_world(rng: random.Random) -> tuple[rdflib.Graph, list[str]]:
    node = lambda name: ox.NamedNode(EX + name)  # noqa: E731
    triples = [
        ox.Triple(node("k1"), ox.NamedNode(str(RDF.type)), node("Kind")),
        ox.Triple(node("k2"), ox.NamedNode(str(RDF.type)), node("SubKind")),
        ox.Triple(node("SubKind"), ox.NamedNode(str(RDFS.subClassOf)), node("Kind")),
    ]
    focus = []
    for i in range(rng.randint(1, 4)):
        this = node(f"n{i}")
        focus.append(this.value)
        triples.append(ox.Triple(this, ox.NamedNode(str(RDF.type)), node(rng.choice(["Thing", "Other", "None"]))))
        for predicate in "abcdefgw":
            for value in rng.sample(VALUES, rng.choice([0, 0, 1, 1, 1, 2, 3])):
                triples.append(ox.Triple(this, node(predicate), value))
    return to_rdflib_graph(triples), focus


def test_each_translated_constraint_agrees_with_pyshacl_on_random_data():
    shapes = strings_as_stored(rdflib.Graph().parse(data=SHAPES, format="turtle"))  # as writes are checked
    assert precheck.plan(shapes) is not None
    logging.getLogger("rdflib.term").setLevel(logging.ERROR)  # rdflib warns of each ill-formed literal
    rng = random.Random(11)
    checked = clean = 0
    for _ in range(150):
        data, focus = random_world(rng)
        c, k = compare(shapes, data, focus)
        checked, clean = checked + c, clean + k
    assert clean > 100 and checked - clean > 100  # both outcomes, many times


def test_shapes_it_cannot_translate_leave_the_write_to_pyshacl():
    base = f"@prefix sh: <http://www.w3.org/ns/shacl#> . @prefix ex: <{EX}> . "
    untranslated = [
        "ex:S sh:path ex:p ; sh:targetClass ex:T ; sh:pattern '^a' .",
        "ex:S sh:path ex:p ; sh:targetNode ex:n ; sh:minCount 1 .",
        "ex:S sh:path [ sh:inversePath ex:p ] ; sh:targetClass ex:T ; sh:minCount 1 .",
        "ex:S a sh:NodeShape ; sh:targetClass ex:T ; sh:closed true .",
        "ex:S sh:path ex:p ; sh:minCount 1 .",  # referred to from elsewhere, or an implicit target
        "ex:S sh:path ex:p ; sh:targetClass ex:T ; sh:datatype ex:OwnType .",
    ]
    for text in untranslated:
        assert precheck.plan(rdflib.Graph().parse(data=base + text, format="turtle")) is None, text


# -- through the delta validator: pyshacl runs only for a write the quick test does not pass ---------


def test_a_valid_write_skips_pyshacl_and_an_invalid_one_gets_its_report(validator, monkeypatch):
    case = load_case(next(p for p in CASES if p.name == "event-bad-time.test.ttl"))
    knowledge = rdflib.Graph()
    knowledge += ((s, p, o) for s, p, o in case.data if not str(s).startswith("https://w3id.org/wayfinder/event/"))
    delta = validator.for_knowledge(knowledge)
    runs = []
    original = _FocusSet.run
    monkeypatch.setattr(_FocusSet, "run", lambda self: runs.append(1) or original(self))
    event = ox.NamedNode("https://w3id.org/wayfinder/event/ok")
    typed = lambda p, o: ox.Triple(event, ox.NamedNode(WF + p), o)  # noqa: E731
    good = [
        ox.Triple(event, ox.NamedNode(str(RDF.type)), ox.NamedNode(WF + "StepCompleted")),
        typed("byUser", ox.NamedNode("https://w3id.org/wayfinder/user/u1")),
        typed("aboutStep", ox.NamedNode("https://w3id.org/wayfinder/demo/connectData")),
        typed("occurredAt", ox.Literal("2025-03-01T10:00:00Z", datatype=ox.NamedNode(XSD + "dateTime"))),
    ]
    assert delta.validate(good, focus=[event]) == []
    assert runs == []
    bad = [*good[:3], typed("occurredAt", ox.Literal("yesterday", datatype=ox.NamedNode(XSD + "dateTime")))]
    found = delta.validate(bad, focus=[event])
    assert runs == [1]
    assert [(v.shape, v.value) for v in found] == [("https://w3id.org/wayfinder/shapes#EventOccurredAt", "yesterday")]
