"""SHACL validation with pyshacl against the shapes in ``shapes/``.

Full validation is for knowledge (ontology, catalog, policies: small, rarely
changed). Writes about users validate their delta: the new triples plus the
neighbourhood the shapes reach (the ontology and catalog, the user's graph and
consent records), with the new subjects as focus nodes.
"""

from __future__ import annotations

from pathlib import Path

import pyshacl
import rdflib
from rdflib.namespace import SH

from .errors import SyntaxProblem, Violation


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

    def validate(self, data: rdflib.Graph, *, focus: list[rdflib.URIRef] | None = None) -> list[Violation]:
        """Return every violation of the shapes in ``data`` (empty when it conforms)."""
        if focus is not None and not focus:
            return []
        conforms, report, _ = pyshacl.validate(
            data,
            shacl_graph=self.shapes,
            inference="none",
            advanced=True,
            allow_warnings=True,
            focus_nodes=focus,
        )
        if conforms:
            return []
        return sorted(_violations(report), key=lambda v: (v.focus, v.shape or "", v.path or "", v.message))


def _violations(report: rdflib.Graph) -> list[Violation]:
    found = []
    for result in report.subjects(rdflib.RDF.type, SH.ValidationResult):
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
