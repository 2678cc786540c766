"""SHACL validation against the shapes in ``shapes/``.

SHACL Core constraints run in pyshacl. SHACL-SPARQL constraints (``sh:sparql``
with ``sh:select``) run in Oxigraph, once per constraint for all focus nodes,
instead of once per focus node in rdflib: the same SELECT, with ``$this``
bound by a VALUES clause and the shape's target classes. A test checks that both
engines agree on every shape test case.

Full validation (:meth:`Validator.validate`) is for knowledge (ontology, catalog,
policies: small, rarely changed). Writes about users validate their delta
(:class:`DeltaValidator`): the new triples plus the neighbourhood the shapes
reach, with the new subjects as focus nodes, in time that follows the write and
not the knowledge. (pyshacl also filters the value nodes of sh:or/sh:and/sh:not
members by the focus nodes, so shapes checked under a focus must not use logical
constraints; today only catalog shapes do, and knowledge is validated without
focus.) The validator's own queries are ``queries/validation/*.rq``; the focus nodes
and target classes are written into their VALUES blocks as IRIs.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyoxigraph as ox
import pyshacl
import rdflib
from pyshacl.constraints import ALL_CONSTRAINT_PARAMETERS
from pyshacl.graph_abstraction import DataGraph
from rdflib.collection import Collection
from rdflib.namespace import OWL, RDF, RDFS, SH

from service.errors import SyntaxProblem, Violation
from service.knowledge import precheck
from service.knowledge.terms import from_rdflib_term

QUERIES = Path(__file__).resolve().parents[2] / "queries" / "validation"
_THIS = re.compile(r"\$this\b")
_WHERE = re.compile(r"\bWHERE\s*\{", re.IGNORECASE)
_BODY = re.compile(r"\bWHERE\s*\{(?P<body>.*)\}\s*$", re.IGNORECASE | re.DOTALL)
_PLACEHOLDER = re.compile(r"\{[$?]([A-Za-z_][A-Za-z0-9_]*)\}")
_TARGETS = precheck.TARGETS
_SCRATCH = ox.NamedNode("urn:x-wayfinder:validated-write")


@dataclass(frozen=True)
class SparqlConstraint:
    """A SHACL-SPARQL constraint, rewritten to run for many focus nodes at once."""

    shape: str
    constraint: str
    target_classes: tuple[str, ...]
    query: str  # with PREFIX lines, ?this for $this, and a {FOCUS} slot after WHERE {
    message: str


class Validator:
    """Validates rdflib graphs against a fixed set of shapes files."""

    def __init__(self, shapes_dir: Path, *, queries_dir: Path = QUERIES) -> None:
        self.shapes_dir = shapes_dir
        # The classes of each focus node of a write, and the focus nodes of a SPARQL constraint.
        self.focus_classes = (queries_dir / "focus-classes.rq").read_text()
        self.constraint_targets = _where_body(queries_dir / "constraint-targets.rq")
        self.shapes = rdflib.Graph()
        for path in sorted(shapes_dir.glob("*.ttl")):
            try:
                self.shapes.parse(path, format="turtle")
            except Exception as exc:  # rdflib raises several unrelated types for bad syntax
                raise SyntaxProblem(str(path), str(exc)) from exc
        self.sparql = _sparql_constraints(self.shapes)
        # The same shapes without their sh:sparql links: what pyshacl checks.
        self.core = rdflib.Graph()
        self.core += self.shapes
        self.core.remove((None, SH.sparql, None))
        # The same again, with property shapes lifted out of their node shapes: what writes check.
        self.lifted = lift_property_shapes(self.core)
        self._for_writes = strings_as_stored(self.lifted)

    def validate(self, data: rdflib.Graph, *, focus: list[rdflib.URIRef] | None = None) -> list[Violation]:
        """Return every violation of the shapes in ``data`` (empty when it conforms)."""
        if focus is not None and not focus:
            return []
        store = ox.Store()
        store.extend(_quad(s, p, o) for s, p, o in data)
        found = self._core(data, focus) + self._sparql(store, [str(f) for f in focus] if focus is not None else None)
        return _in_order(found)

    def for_knowledge(self, knowledge: rdflib.Graph) -> DeltaValidator:
        """Return a validator of writes over this knowledge (ontology, catalog, policies)."""
        return DeltaValidator(self, knowledge)

    def _core(self, data: rdflib.Graph, focus: list[rdflib.URIRef] | None) -> list[Violation]:
        nodes: list[str | rdflib.URIRef] | None = list(focus) if focus is not None else None
        conforms, report, _ = pyshacl.validate(
            data,
            shacl_graph=self.core,
            inference="none",
            allow_warnings=True,
            focus_nodes=nodes,
        )
        return [] if conforms else _violations(report)

    def _sparql(
        self,
        store: ox.Store,
        focus: list[str] | None,
        *,
        union: bool = False,
        instances: dict[str, set[str]] | None = None,
    ) -> list[Violation]:
        """Run the SPARQL constraints in Oxigraph, on the focus nodes among their targets.

        With ``instances`` (class -> the focus nodes that are its instances, read from
        the same data), the targets are looked up there instead of in each query.
        """
        values = "" if focus is None else _values("this", focus) + " "
        found = []
        for c in self.sparql:
            if instances is None:
                slot = values + with_values(self.constraint_targets, "wfTarget", c.target_classes) + " "
            else:
                targeted = sorted({f for t in c.target_classes for f in instances.get(t, ())})
                if not targeted:
                    continue
                slot = _values("this", targeted) + " "
            solutions = store.query(c.query.replace("{FOCUS}", slot), use_default_graph_as_union=union)
            assert isinstance(solutions, ox.QuerySolutions)  # a SELECT
            names = [v.value for v in solutions.variables]
            for solution in solutions:
                bound = {name: solution[name] for name in names if solution[name] is not None}
                this = bound.get("this")
                path = bound.get("path")
                value = bound.get("value") or this
                found.append(
                    Violation(
                        focus=this.value if this is not None else "",
                        message=_fill(c.message, bound),
                        shape=c.shape,
                        path=path.value if isinstance(path, ox.NamedNode) else None,
                        value=value.value if value is not None else None,
                    )
                )
        return found


class DeltaValidator:
    """Validates writes against fixed knowledge, in time that follows the write.

    The knowledge is copied once into an in-memory Oxigraph store. Each write adds
    its quads (the new ones and the neighbourhood the caller read) in a scratch
    graph, is checked with only the shapes that can target its new subjects, and
    leaves the scratch graph empty. pyshacl reads the store through its Oxigraph
    data graph, so nothing is converted to rdflib but what the shapes touch.
    """

    # Oxigraph's in-memory store keeps what is removed from it as history, which every
    # later scan walks: the store starts afresh once this many quads have passed through.
    REFRESH_AFTER = 10_000

    def __init__(self, validator: Validator, knowledge: rdflib.Graph) -> None:
        self.validator = validator
        self._knowledge = [_quad(s, p, o) for s, p, o in knowledge]
        # Per set of focus classes: the shapes aimed at them, and their quick test (None: pyshacl only).
        self._shapes: dict[frozenset[str], tuple[rdflib.Graph, precheck.Plan | None]] = {}
        self._lock = threading.Lock()  # one write at a time in the scratch graph
        self._fresh_store()

    def _fresh_store(self) -> None:
        self._store = ox.Store()
        self._store.extend(self._knowledge)
        self._data = DataGraph.from_oxigraph_store(self._store)
        self._passed = 0

    def validate(self, data: Iterable[ox.Quad | ox.Triple], *, focus: Iterable[ox.NamedNode]) -> list[Violation]:
        """Return every violation by the focus nodes, in the knowledge plus ``data`` (empty when they conform)."""
        nodes = sorted({f.value for f in focus})
        if not nodes:
            return []
        with self._lock:
            if self._passed > self.REFRESH_AFTER:
                self._fresh_store()
            # A quad of a named graph goes in as it is: the knowledge is all in the default graph, so removing it
            # afterwards removes nothing of the knowledge. Triples, and quads of the default graph, go in a scratch graph.
            scratch = [
                q
                if isinstance(q, ox.Quad) and isinstance(q.graph_name, ox.NamedNode)
                else ox.Quad(q.subject, q.predicate, q.object, _SCRATCH)
                for q in data
            ]
            self._passed += len(scratch)
            self._store.extend(scratch)
            try:
                instances: dict[str, set[str]] = {}
                rows = self._store.query(
                    with_values(self.validator.focus_classes, "this", nodes), use_default_graph_as_union=True
                )
                assert isinstance(rows, ox.QuerySolutions)  # a SELECT
                for row in rows:
                    if isinstance(row["class"], ox.NamedNode):
                        instances.setdefault(row["class"].value, set()).add(row["this"].value)
                found = self._core(instances, nodes) + self.validator._sparql(
                    self._store, nodes, union=True, instances=instances
                )
            finally:
                for quad in scratch:  # one by one: clear_graph is slower, and slows every later write
                    self._store.remove(quad)
        return _in_order(found)

    def _core(self, instances: dict[str, set[str]], focus: list[str]) -> list[Violation]:
        key = frozenset(instances)
        cached = self._shapes.get(key)
        if cached is None:
            shapes = shapes_targeting(self.validator._for_writes, set(instances))
            cached = self._shapes[key] = (shapes, precheck.plan(shapes))
        shapes, quick = cached
        if not shapes:
            return []
        if quick is not None:  # every shape translated: pyshacl runs only if the quick test finds something
            ask = quick.query(instances)
            if ask is None or not self._store.query(ask, use_default_graph_as_union=True):
                return []
        validator = _FocusSet(
            self._data,
            shacl_graph=shapes,
            options={"inference": "none", "allow_warnings": True, "focus_nodes": [rdflib.URIRef(f) for f in focus]},
        )
        conforms, report, _ = validator.run()
        return [] if conforms else _violations(report)


class _FocusSet(pyshacl.Validator):
    """pyshacl's validator with the focus nodes in a set: pyshacl tests membership in a list, for every node."""

    def make_executor(self):
        executor = super().make_executor()
        if executor.focus_nodes:
            executor.focus_nodes = frozenset(executor.focus_nodes)  # type: ignore[assignment]  # read by membership only
        return executor


def lift_property_shapes(shapes: rdflib.Graph) -> rdflib.Graph:
    """Return the shapes with the property shapes of each targeted node shape as shapes with its targets.

    Same results, checked faster: pyshacl checks a node shape's property shapes one
    focus node at a time, and a shape with targets for all its focus nodes at once;
    the property shape is the result's source shape either way. A closed node shape
    keeps its property paths as ignored properties. A node shape that another shape
    refers to (sh:node, sh:or, ...), or that is deactivated, is left as it is.
    """
    lifted = rdflib.Graph()
    lifted += shapes
    for node in set(shapes.subjects(SH.property, None)):
        targets = [(p, o) for p, o in shapes.predicate_objects(node) if p in _TARGETS]
        properties = list(shapes.objects(node, SH.property))
        paths = [list(shapes.objects(p, SH.path)) for p in properties]
        if (
            not targets
            or (node, SH.deactivated, None) in shapes
            or (None, None, node) in shapes
            or any(len(p) != 1 for p in paths)
        ):
            continue
        for prop in properties:
            lifted.remove((node, SH.property, prop))
            for predicate, target in targets:
                lifted.add((prop, predicate, target))
        if (node, SH.closed, None) in shapes:
            ignored = rdflib.BNode()
            Collection(lifted, ignored, [p[0] for p in paths if isinstance(p[0], rdflib.URIRef)])
            lifted.add((node, SH.ignoredProperties, ignored))
    return lifted


def strings_as_stored(shapes: rdflib.Graph) -> rdflib.Graph:
    """Return the shapes with the simple literals they compare values with (sh:in, sh:hasValue) as xsd:string.

    In RDF 1.1 a simple literal is an xsd:string, and Oxigraph gives every one back
    typed; rdflib tells the two apart. pyshacl reads a write through Oxigraph's terms,
    so the shapes' constants must be typed too (``terms.to_rdflib_term`` does the
    converse for the rdflib graphs of full validation).
    """
    typed = rdflib.Graph()
    typed += shapes
    constants: list[tuple[rdflib.term.Node, rdflib.URIRef, rdflib.term.Node | None]] = [
        (s, SH.hasValue, o) for s, o in shapes.subject_objects(SH.hasValue)
    ]
    for members in shapes.objects(None, SH["in"]):
        for node in _list_nodes(shapes, members):
            constants.append((node, RDF.first, shapes.value(node, RDF.first)))
    for s, p, o in constants:
        if isinstance(o, rdflib.Literal) and o.datatype is None and o.language is None:
            typed.remove((s, p, o))
            typed.add((s, p, rdflib.Literal(str(o), datatype=rdflib.XSD.string)))
    return typed


def _list_nodes(graph: rdflib.Graph, head: rdflib.term.Node | None) -> list[rdflib.term.Node]:
    nodes = []
    while head != RDF.nil and head is not None and head not in nodes:
        nodes.append(head)
        head = graph.value(head, RDF.rest)
    return nodes


def shapes_targeting(shapes: rdflib.Graph, classes: set[str]) -> rdflib.Graph:
    """Return the shapes that may report an instance of these classes, and all they refer to.

    Those are the shapes with a constraint and one of these target classes, a target
    that is not a class, or a class of their own (implicit targets). A shape left out
    has no focus node among the instances of ``classes``, or nothing to check.
    """
    start = {s for s, c in shapes.subject_objects(SH.targetClass) if str(c) in classes}
    start |= {s for p in (*_TARGETS[1:], SH.target) for s in shapes.subjects(p, None)}
    start |= {
        s
        for s, t in shapes.subject_objects(RDF.type)
        if t in (RDFS.Class, OWL.Class) or (t, RDFS.subClassOf, None) in shapes
    }
    start = {s for s in start if any(p in ALL_CONSTRAINT_PARAMETERS for p in shapes.predicates(s, None))}
    part = rdflib.Graph(bind_namespaces="none")  # pyshacl copies every prefix into each report
    seen, todo = set(start), list(start)
    while todo:
        for triple in shapes.triples((todo.pop(), None, None)):
            part.add(triple)
            o = triple[2]
            if o not in seen and (isinstance(o, rdflib.BNode) or (o, None, None) in shapes):
                seen.add(o)
                todo.append(o)
    return part


def _quad(s: rdflib.term.Node, p: rdflib.term.Node, o: rdflib.term.Node) -> ox.Quad:
    subject, predicate = from_rdflib_term(s), from_rdflib_term(p)
    if isinstance(subject, ox.Literal) or not isinstance(predicate, ox.NamedNode):
        raise TypeError(f"not an RDF triple: {s!r} {p!r} {o!r}")
    return ox.Quad(subject, predicate, from_rdflib_term(o), ox.DefaultGraph())


def with_values(query: str, variable: str, iris: Iterable[str]) -> str:
    """Return the query with its empty ``VALUES ?variable { }`` block holding these IRIs.

    Each IRI is written as pyoxigraph writes a NamedNode (checked, in angle brackets).
    """
    empty = re.compile(r"VALUES\s+\?" + re.escape(variable) + r"\s*\{\s*\}")
    if len(empty.findall(query)) != 1:
        raise SyntaxProblem("queries/validation", f"the query needs one empty VALUES ?{variable} {{ }} block")
    return empty.sub(lambda _: _values(variable, iris), query, count=1)


def _values(variable: str, iris: Iterable[str]) -> str:
    return f"VALUES ?{variable} {{ " + " ".join(str(ox.NamedNode(i)) for i in iris) + " }"


def _where_body(path: Path) -> str:
    """Return the group pattern of a query's WHERE clause, to run inside another query."""
    match = _BODY.search(path.read_text())
    if match is None:
        raise SyntaxProblem(str(path), "the query needs a WHERE { ... } clause at its end")
    return match.group("body").strip()


def _in_order(found: list[Violation]) -> list[Violation]:
    return sorted(set(found), key=lambda v: (v.focus, v.shape or "", v.path or "", v.message, v.value or ""))


def _fill(message: str, bound: dict) -> str:
    def value(match: re.Match) -> str:
        term = bound.get(match.group(1))
        return term.value if term is not None else match.group(0)

    return _PLACEHOLDER.sub(value, message)


def _sparql_constraints(shapes: rdflib.Graph) -> list[SparqlConstraint]:
    constraints = []
    for shape, constraint in shapes.subject_objects(SH.sparql):
        select = shapes.value(constraint, SH.select)
        if select is None:
            continue
        targets = tuple(sorted(str(t) for t in shapes.objects(shape, SH.targetClass)))
        if not targets:
            raise SyntaxProblem(str(shape), "a shape with a SPARQL constraint needs sh:targetClass")
        prefixes = "".join(
            f"PREFIX {shapes.value(d, SH.prefix)}: <{shapes.value(d, SH.namespace)}>\n"
            for source in shapes.objects(constraint, SH.prefixes)
            for d in shapes.objects(source, SH.declare)
        )
        text = _THIS.sub("?this", str(select))
        if not _WHERE.search(text):
            raise SyntaxProblem(str(constraint), "a SPARQL constraint needs a WHERE { ... } clause")
        text = _WHERE.sub(lambda m: m.group(0) + " {FOCUS}", text, count=1)
        message = shapes.value(constraint, SH.message) or shapes.value(shape, SH.message) or f"breaks {shape}"
        constraints.append(SparqlConstraint(str(shape), str(constraint), targets, prefixes + text, str(message)))
    return sorted(constraints, key=lambda c: c.constraint)


def _violations(report: rdflib.Graph) -> list[Violation]:
    found = []
    for result in report.subjects(RDF.type, SH.ValidationResult):
        if (None, SH.detail, result) in report:
            continue  # why a value failed an sh:node shape: the result it details names the focus node
        severity = report.value(result, SH.resultSeverity)
        if severity is not None and severity != SH.Violation:
            continue
        messages = sorted(str(m) for m in report.objects(result, SH.resultMessage))
        path = report.value(result, SH.resultPath)
        value = report.value(result, SH.value)
        shape = report.value(result, SH.sourceShape)
        found.append(
            Violation(
                focus=str(report.value(result, SH.focusNode)),
                message="; ".join(messages) or "breaks " + str(shape),
                shape=str(shape) if isinstance(shape, rdflib.URIRef) else None,
                path=str(path) if isinstance(path, rdflib.URIRef) else None,
                value=str(value) if value is not None else None,
            )
        )
    return found
