"""A quick test, in Oxigraph, that a write's focus nodes break none of the SHACL Core shapes aimed at them.

pyshacl gives the exact report, but walks the data in Python, one value node at a time,
which is most of what a valid write of events costs. Most writes are valid. So the
shapes that target a write are first translated into one SPARQL ``ASK``, run over the
same data: it is true when some focus node *may* break a shape. When it is false, the
write conforms to those shapes and pyshacl is not run; when it is true, pyshacl runs as
before and its report is the answer. Refusals, and their messages, are therefore
pyshacl's, word for word.

The translation needs only to be sound for "conforms": every value that pyshacl would
report must make the ``ASK`` true; the ``ASK`` may be true for a write that conforms.
Each value test is wrapped in ``COALESCE(test, true)``, so an error while testing a
value (an ill-formed literal, say) counts as a possible violation.

Only property shapes that the validator lifted out of their node shapes are translated:
a shape with ``sh:targetClass`` targets only, one IRI as its path, and constraints among
``sh:minCount``, ``sh:maxCount``, ``sh:class``, ``sh:datatype`` (of a type SPARQL can cast,
or a string), ``sh:in``, ``sh:hasValue`` and ``sh:nodeKind``. If the shapes aimed at a
write hold anything else (``sh:pattern``, logical constraints, other targets, a closed
shape, ...), there is no plan for it and pyshacl checks the write alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pyoxigraph as ox
import rdflib
from pyshacl.constraints import ALL_CONSTRAINT_PARAMETERS
from rdflib.collection import Collection
from rdflib.namespace import RDF, RDFS, SH, XSD

from service.knowledge.terms import from_rdflib_term

_TRANSLATED = {SH.minCount, SH.maxCount, SH["class"], SH.datatype, SH["in"], SH.hasValue, SH.nodeKind}
# The SHACL target predicates (``validation`` lifts and selects shapes by them too); ``sh:target`` is SHACL-AF's.
TARGETS = (SH.targetClass, SH.targetNode, SH.targetSubjectsOf, SH.targetObjectsOf)
# Datatypes whose lexical forms SPARQL checks by casting (a cast of an ill-formed literal is an error).
_CASTS = {XSD.dateTime, XSD.date, XSD.integer, XSD.decimal, XSD.double, XSD.float, XSD.boolean}
_STRINGS = {XSD.string, RDF.langString}
_KINDS = {
    SH.IRI: "!isIRI(?v)",
    SH.BlankNode: "!isBlank(?v)",
    SH.Literal: "!isLiteral(?v)",
    SH.BlankNodeOrIRI: "isLiteral(?v)",
    SH.BlankNodeOrLiteral: "isIRI(?v)",
    SH.IRIOrLiteral: "isBlank(?v)",
}
_FOCUS = "{FOCUS}"  # where each pattern's VALUES ?this goes (an IRI cannot hold braces)
_SUBCLASS = f"<{RDF.type}>/<{RDFS.subClassOf}>*"


@dataclass(frozen=True)
class Translated:
    """One property shape: group patterns, each matching a focus node that may break it one way."""

    shape: str
    targets: tuple[str, ...]
    patterns: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """The translated shapes aimed at one set of classes."""

    shapes: tuple[Translated, ...]

    def query(self, instances: Mapping[str, set[str]]) -> str | None:
        """Return the ``ASK`` over these focus nodes (class -> its focus nodes), or None when no shape targets one."""
        groups: dict[tuple[str, ...], list[str]] = {}
        for shape in self.shapes:
            focus = sorted({f for t in shape.targets for f in instances.get(t, ())})
            if focus:
                groups.setdefault(tuple(focus), []).extend(shape.patterns)  # one VALUES text per focus set
        if not groups:
            return None
        blocks = []
        for nodes, patterns in groups.items():
            values = "VALUES ?this { " + " ".join(str(ox.NamedNode(f)) for f in nodes) + " }"
            blocks += [f"{{ {p.replace(_FOCUS, values)} }}" for p in patterns]
        return "ASK { " + " UNION ".join(blocks) + " }"


def plan(shapes: rdflib.Graph) -> Plan | None:
    """Return the translation of every shape in ``shapes`` that has constraints, or None if one cannot be translated."""
    translated = []
    for shape in sorted({s for p in ALL_CONSTRAINT_PARAMETERS for s in shapes.subjects(p, None)}, key=str):
        if shapes.value(shape, SH.deactivated) == rdflib.Literal(True):
            continue
        severity = shapes.value(shape, SH.severity)
        if severity is not None and severity != SH.Violation:
            continue  # reported, if at all, as a warning: never a violation that refuses a write
        one = translate(shapes, shape)
        if one is None:
            return None
        translated.append(one)
    return Plan(tuple(translated))


def translate(shapes: rdflib.Graph, shape: rdflib.term.Node) -> Translated | None:
    """Return one shape's translation, or None when it holds something the quick test does not translate."""
    if not isinstance(shape, rdflib.URIRef):
        return None
    parameters = {p for p in shapes.predicates(shape, None) if p in ALL_CONSTRAINT_PARAMETERS}
    targets = [t for t in shapes.objects(shape, SH.targetClass) if isinstance(t, rdflib.URIRef)]
    paths = list(shapes.objects(shape, SH.path))
    other_targets = any((shape, p, None) in shapes for p in (*TARGETS[1:], SH.target))
    if (
        not parameters <= _TRANSLATED
        or not targets
        or other_targets
        or len(paths) != 1
        or not isinstance(paths[0], rdflib.URIRef)
        or (shape, RDF.type, SH.NodeShape) in shapes
    ):
        return None
    path = str(ox.NamedNode(str(paths[0])))
    # A group pattern for each way to break the shape, each with its own VALUES of the focus nodes:
    # SPARQL evaluates a group on its own, so a pattern outside it would not bind ?this first.
    tests: list[str] = []  # each true for a value that breaks the shape
    for datatype in shapes.objects(shape, SH.datatype):
        if not isinstance(datatype, rdflib.URIRef) or datatype not in _CASTS | _STRINGS:
            return None
        iri = str(ox.NamedNode(str(datatype)))
        well_formed = f" && {iri}(STR(?v)) = ?v" if datatype in _CASTS else ""
        tests.append(f"COALESCE(!(isLiteral(?v) && sameTerm(datatype(?v), {iri}){well_formed}), true)")
    for kind in shapes.objects(shape, SH.nodeKind):
        if not isinstance(kind, rdflib.URIRef) or kind not in _KINDS:
            return None
        tests.append(_KINDS[kind])
    for members in shapes.objects(shape, SH["in"]):
        terms = [_term(m) for m in Collection(shapes, members)]
        if any(t is None for t in terms):
            return None
        tests.append("!(" + (" || ".join(f"sameTerm(?v, {t})" for t in terms) or "false") + ")")
    for cls in shapes.objects(shape, SH["class"]):
        if not isinstance(cls, rdflib.URIRef):
            return None
        tests.append(f"NOT EXISTS {{ ?v {_SUBCLASS} {ox.NamedNode(str(cls))} }}")
    lows = [_count(t) for t in shapes.objects(shape, SH.minCount)]
    highs = [_count(t) for t in shapes.objects(shape, SH.maxCount)]
    if None in lows or None in highs:
        return None
    low, high = (
        max((n for n in lows if n is not None), default=0),
        min((n for n in highs if n is not None), default=None),
    )
    patterns: list[str] = []
    if low == 1:  # no value at all, or a value that fails a test
        patterns.append(
            f"{_FOCUS} OPTIONAL {{ ?this {path} ?v }} FILTER(!BOUND(?v) || {' || '.join(tests or ['false'])})"
        )
    elif tests:
        patterns.append(f"{_FOCUS} ?this {path} ?v FILTER({' || '.join(tests)})")
    if low > 1:
        patterns.append(_counted(path, f"< {low}"))
    if high == 0:
        patterns.append(f"{_FOCUS} ?this {path} ?any")
    elif high == 1:
        patterns.append(f"{_FOCUS} ?this {path} ?a , ?b FILTER(!sameTerm(?a, ?b))")
    elif high is not None:
        patterns.append(_counted(path, f"> {high}"))
    for value in shapes.objects(shape, SH.hasValue):
        term = _term(value)
        if term is None:
            return None
        patterns.append(f"{_FOCUS} FILTER NOT EXISTS {{ ?this {path} {term} }}")
    return Translated(str(shape), tuple(sorted(str(t) for t in targets)), tuple(patterns))


def _counted(path: str, test: str) -> str:
    """A focus node whose number of distinct values fails ``test``."""
    return (
        f"{{ SELECT ?this WHERE {{ {_FOCUS} OPTIONAL {{ ?this {path} ?c }} }} "
        f"GROUP BY ?this HAVING (COUNT(DISTINCT ?c) {test}) }}"
    )


def _count(term: rdflib.term.Node) -> int | None:
    if not isinstance(term, rdflib.Literal) or not isinstance(term.value, int) or isinstance(term.value, bool):
        return None
    return term.value if term.value >= 0 else None


def _term(term: rdflib.term.Node) -> str | None:
    """The term as SPARQL writes it, or None for a blank node (which no value can be the same as in SPARQL)."""
    return None if isinstance(term, rdflib.BNode) else str(from_rdflib_term(term))
