"""The SHACL shapes in ``shapes/``, tested in the style of the pySHACL test suite.

Each case is one file ``tests/shapes/<name>.test.ttl``. It holds the data of the
case (any prefixes: ``wf:``, ``demo: <https://w3id.org/wayfinder/demo/>``,
``dpv:``, ...) and, about the file itself (``<>``), the expected outcome in the
test vocabulary ``t: <https://w3id.org/wayfinder/test#>``::

    <> a t:ShapeTest ;
        rdfs:comment "What the case checks." ;
        t:expectConforms false ;                # required, true or false
        t:expectViolation [                     # one per expected result; only when false
            t:focus demo:s1 ;                   # required: the result's sh:focusNode
            t:sourceShape wfsh:StepLabel ;      # required: the result's sh:sourceShape
            t:path rdfs:label ;                 # optional: the result's sh:resultPath
            t:value 42 ;                        # optional: the result's sh:value
            t:messageContains "text"            # optional, repeatable: each is a substring
        ] .                                     #   of one sh:resultMessage of the result

The data graph of a case is ``ontology/wayfinder.ttl`` plus the file, minus the
description of ``<>`` (every triple about it and about the blank nodes under
it). It is validated, as the service does, with pyshacl against all of
``shapes/*.ttl`` and ``inference="none"``.

- ``t:expectConforms true``: the report conforms and has no result at all.
- ``t:expectConforms false``: every expected violation matches a result, and
  every result is expected, that is, has the focus node and source shape (and
  the path, where the expectation states one) of some expectation.

Coverage (``test_every_shape_has_a_failing_and_a_passing_case``): every
property shape, and every node shape or one of its property shapes, is the
``t:sourceShape`` of an expectation in a failing case, and every node shape has
a focus node in a conforming case. A SPARQL constraint is alone in its node
shape, so this covers each of them too.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from pyshacl import validate
from rdflib import RDF, RDFS, BNode, Graph, Literal, Namespace, URIRef
from rdflib.namespace import SH
from rdflib.term import Node

from tests.paths import ROOT

ONTOLOGY = ROOT / "ontology" / "wayfinder.ttl"
SHAPES_DIR = ROOT / "shapes"
CASES_DIR = ROOT / "tests" / "shapes"
CASES = sorted(CASES_DIR.glob("*.test.ttl"))

T = Namespace("https://w3id.org/wayfinder/test#")


@cache
def ontology() -> Graph:
    return Graph().parse(ONTOLOGY)


@cache
def shapes() -> Graph:
    graph = Graph()
    for path in sorted(SHAPES_DIR.glob("*.ttl")):
        graph.parse(path)
    return graph


@dataclass(frozen=True)
class Expected:
    focus: Node
    shape: Node
    path: Node | None
    value: Node | None
    contains: tuple[str, ...]


@dataclass(frozen=True)
class Result:
    focus: Node
    shape: Node
    path: Node | None
    value: Node | None
    messages: tuple[str, ...]

    def __str__(self) -> str:
        return f"focus={self.focus} shape={self.shape} path={self.path} value={self.value} messages={self.messages}"


@dataclass
class Case:
    name: str
    data: Graph
    conforms: bool
    expected: list[Expected]


def _description(graph: Graph, node: Node) -> set[tuple[Node, Node, Node]]:
    """The triples about ``node`` and, recursively, about the blank nodes it points to."""
    triples, todo, seen = set(), [node], set()
    while todo:
        subject = todo.pop()
        if subject in seen:
            continue
        seen.add(subject)
        for triple in graph.triples((subject, None, None)):
            triples.add(triple)
            if isinstance(triple[2], BNode):
                todo.append(triple[2])
    return triples


def load_case(path: Path) -> Case:
    graph = Graph().parse(path, format="turtle")
    heads = set(graph.subjects(T.expectConforms, None))
    assert len(heads) == 1, f"{path.name}: one node (<>) must state t:expectConforms"
    head = heads.pop()
    (conforms,) = graph.objects(head, T.expectConforms)
    assert isinstance(conforms, Literal) and isinstance(conforms.value, bool), "t:expectConforms takes a boolean"

    expected = []
    for node in graph.objects(head, T.expectViolation):
        focus = graph.value(node, T.focus)
        shape = graph.value(node, T.sourceShape)
        assert focus is not None and shape is not None, f"{path.name}: an expectation needs t:focus and t:sourceShape"
        contains = tuple(sorted(str(m) for m in graph.objects(node, T.messageContains)))
        expected.append(Expected(focus, shape, graph.value(node, T.path), graph.value(node, T.value), contains))

    description = _description(graph, head)
    data = Graph()
    data += ontology()
    for triple in graph:
        if triple not in description:
            data.add(triple)
    stray = [tr for tr in data if str(tr[1]).startswith(str(T)) or str(tr[2]).startswith(str(T))]
    assert not stray, f"{path.name}: test vocabulary outside the description of <>: {stray}"
    return Case(path.name, data, bool(conforms.value), expected)


def results_of(report: Graph) -> list[Result]:
    results = []
    for node in report.subjects(RDF.type, SH.ValidationResult):
        results.append(
            Result(
                focus=report.value(node, SH.focusNode),
                shape=report.value(node, SH.sourceShape),
                path=report.value(node, SH.resultPath),
                value=report.value(node, SH.value),
                messages=tuple(str(m) for m in report.objects(node, SH.resultMessage)),
            )
        )
    return results


def matches(expected: Expected, result: Result) -> bool:
    return (
        expected.focus == result.focus
        and expected.shape == result.shape
        and (expected.path is None or expected.path == result.path)
        and (expected.value is None or expected.value == result.value)
        and all(any(text in message for message in result.messages) for text in expected.contains)
    )


def is_expected(result: Result, expected: list[Expected]) -> bool:
    return any(
        e.focus == result.focus and e.shape == result.shape and (e.path is None or e.path == result.path)
        for e in expected
    )


def shape_nodes(graph: Graph) -> tuple[set[Node], set[Node], set[Node]]:
    """Node shapes, property shapes and SPARQL constraints of a shapes graph."""
    node_shapes = set(graph.subjects(RDF.type, SH.NodeShape))
    property_shapes = set(graph.objects(None, SH.property)) | set(graph.subjects(RDF.type, SH.PropertyShape))
    constraints = set(graph.objects(None, SH.sparql))
    return node_shapes, property_shapes, constraints


@pytest.mark.parametrize("path", CASES, ids=[p.name.removesuffix(".test.ttl") for p in CASES])
def test_case(path: Path) -> None:
    case = load_case(path)
    known = set().union(*shape_nodes(shapes()))
    for e in case.expected:
        assert e.shape in known, f"t:sourceShape {e.shape} is not a shape of shapes/*.ttl"

    conforms, report, text = validate(case.data, shacl_graph=shapes(), inference="none")
    results = results_of(report)

    if case.conforms:
        assert not case.expected, "a conforming case states no t:expectViolation"
        assert conforms and not results, text
        return

    assert case.expected, "a failing case states at least one t:expectViolation"
    assert not conforms, "expected violations, but the data conforms"
    listing = "\n".join(f"  {r}" for r in results)
    for e in case.expected:
        assert any(matches(e, r) for r in results), f"expected violation not reported: {e}\nresults:\n{listing}"
    unexpected = [r for r in results if not is_expected(r, case.expected)]
    assert not unexpected, "unexpected results:\n" + "\n".join(f"  {r}" for r in unexpected)


@pytest.mark.parametrize("path", sorted(SHAPES_DIR.glob("*.ttl")), ids=lambda p: p.name)
def test_shapes_file_is_well_formed(path: Path) -> None:
    """Each shapes file parses alone; every shape and SPARQL constraint has an IRI and a message."""
    graph = Graph().parse(path)
    node_shapes, property_shapes, constraints = shape_nodes(graph)
    assert node_shapes, "no sh:NodeShape"

    def messages(node: Node) -> set[Literal]:
        found = set(graph.objects(node, SH.message))
        assert found, f"{node} has no sh:message"
        for message in found:
            assert isinstance(message, Literal) and str(message).strip(), f"{node}: empty sh:message"
        return found

    for node in node_shapes | property_shapes | constraints:
        assert isinstance(node, URIRef), f"a shape or SPARQL constraint without an IRI: {graph.cbd(node).serialize()}"
        messages(node)
    for node in node_shapes | property_shapes:
        assert set(graph.objects(node, SH.severity)) == {SH.Violation}, f"{node}: sh:severity must be sh:Violation"
    for node in constraints:
        assert graph.value(node, SH.select) is not None, f"{node}: no sh:select"
        assert graph.value(node, SH.prefixes) is not None, f"{node}: no sh:prefixes"
    for node in node_shapes:
        sparql = set(graph.objects(node, SH.sparql))
        if sparql:
            # One SPARQL constraint per node shape, and the same message on both, so that a
            # result names its rule in sh:sourceShape and pyshacl reports one message.
            assert len(sparql) == 1, f"{node}: more than one sh:sparql"
            assert not set(graph.objects(node, SH.property)), f"{node}: sh:sparql and sh:property in one shape"
            assert messages(node) == messages(next(iter(sparql))), f"{node}: message differs from its constraint's"


def focus_nodes(shape: Node, shapes_graph: Graph, data: Graph) -> set[Node]:
    """Focus nodes of a node shape; only the target kinds these shapes use are supported."""
    targets = {p for p in shapes_graph.predicates(shape, None) if str(p).startswith(str(SH)) and "target" in str(p)}
    assert targets <= {SH.targetClass, SH.targetNode}, f"{shape}: unsupported target {targets}"
    found: set[Node] = set(shapes_graph.objects(shape, SH.targetNode))
    for cls in shapes_graph.objects(shape, SH.targetClass):
        for sub in data.transitive_subjects(RDFS.subClassOf, cls):
            found.update(data.subjects(RDF.type, sub))
    return found


def test_every_shape_has_a_failing_and_a_passing_case() -> None:
    assert CASES, f"no *.test.ttl under {CASES_DIR}"
    graph = shapes()
    node_shapes, property_shapes, _ = shape_nodes(graph)
    failing: dict[Node, list[str]] = defaultdict(list)
    passing: dict[Node, list[str]] = defaultdict(list)
    for path in CASES:
        case = load_case(path)
        for e in case.expected:
            failing[e.shape].append(case.name)
        if case.conforms:
            for shape in node_shapes:
                if focus_nodes(shape, graph, case.data):
                    passing[shape].append(case.name)
    # A node shape that only groups property shapes fails through them.
    for shape in node_shapes:
        for prop in graph.objects(shape, SH.property):
            failing[shape].extend(failing.get(prop, []))
    without_failing = sorted(str(s) for s in node_shapes | property_shapes if not failing.get(s))
    without_passing = sorted(str(s) for s in node_shapes if s not in passing)
    assert not without_failing, f"shapes that no failing case names in t:sourceShape: {without_failing}"
    assert not without_passing, f"node shapes without a focus node in any conforming case: {without_passing}"
