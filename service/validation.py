"""SHACL validation against the shapes in ``shapes/``.

SHACL Core constraints run in pyshacl. SHACL-SPARQL constraints (``sh:sparql``
with ``sh:select``) run in Oxigraph, once per constraint for all focus nodes,
instead of once per focus node in rdflib: the same SELECT, with ``$this``
bound by a VALUES clause and the shape's target classes. A test checks that both
engines agree on every shape test case.

Full validation is for knowledge (ontology, catalog, policies: small, rarely
changed). Writes about users validate their delta: the new triples plus the
neighbourhood the shapes reach, with the new subjects as focus nodes. (pyshacl
also filters the value nodes of sh:or/sh:and/sh:not members by the focus nodes,
so shapes checked under a focus must not use logical constraints; today only
catalog shapes do, and knowledge is validated without focus.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pyoxigraph as ox
import pyshacl
import rdflib
from rdflib.namespace import RDF, SH

from .errors import SyntaxProblem, Violation
from .terms import from_rdflib_term

_THIS = re.compile(r"\$this\b")
_WHERE = re.compile(r"\bWHERE\s*\{", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"\{[$?]([A-Za-z_][A-Za-z0-9_]*)\}")


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

    def __init__(self, shapes_dir: Path) -> None:
        self.shapes_dir = shapes_dir
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

    def validate(self, data: rdflib.Graph, *, focus: list[rdflib.URIRef] | None = None) -> list[Violation]:
        """Return every violation of the shapes in ``data`` (empty when it conforms)."""
        if focus is not None and not focus:
            return []
        found = self._core(data, focus) + self._sparql(data, focus)
        return sorted(set(found), key=lambda v: (v.focus, v.shape or "", v.path or "", v.message))

    def _core(self, data: rdflib.Graph, focus: list[rdflib.URIRef] | None) -> list[Violation]:
        conforms, report, _ = pyshacl.validate(
            data,
            shacl_graph=self.core,
            inference="none",
            allow_warnings=True,
            focus_nodes=focus,
        )
        return [] if conforms else _violations(report)

    def _sparql(self, data: rdflib.Graph, focus: list[rdflib.URIRef] | None) -> list[Violation]:
        if not self.sparql:
            return []
        store = ox.Store()
        store.extend(
            ox.Quad(from_rdflib_term(s), from_rdflib_term(p), from_rdflib_term(o), ox.DefaultGraph())
            for s, p, o in data
        )
        values = "" if focus is None else "VALUES ?this { " + " ".join(f"<{f}>" for f in focus) + " } "
        found = []
        for c in self.sparql:
            targets = " ".join(f"<{t}>" for t in c.target_classes)
            slot = values + f"VALUES ?wfTarget {{ {targets} }} ?this a/<{rdflib.RDFS.subClassOf}>* ?wfTarget . "
            solutions = store.query(c.query.replace("{FOCUS}", slot))
            names = [v.value for v in solutions.variables]
            for solution in solutions:
                bound = {name: solution[name] for name in names if solution[name] is not None}
                this = bound.get("this")
                path = bound.get("path")
                value = bound.get("value") or this
                found.append(Violation(
                    focus=this.value if this is not None else "",
                    message=_fill(c.message, bound),
                    shape=c.shape,
                    path=path.value if isinstance(path, ox.NamedNode) else None,
                    value=value.value if value is not None else None,
                ))
        return found


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
