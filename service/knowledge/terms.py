"""Conversion between pyoxigraph terms (the store) and rdflib terms (pyshacl, owlrl)."""

from __future__ import annotations

from collections.abc import Iterable

import pyoxigraph as ox
import rdflib

from service.knowledge.store import plain

XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"


def to_rdflib_term(term: ox.NamedNode | ox.BlankNode | ox.Literal) -> rdflib.term.Node:
    if isinstance(term, ox.NamedNode):
        return rdflib.URIRef(term.value)
    if isinstance(term, ox.BlankNode):
        return rdflib.BNode(term.value)
    if term.language:
        return rdflib.Literal(term.value, lang=term.language)
    if term.datatype.value == XSD_STRING:
        # In RDF 1.1 a simple literal is an xsd:string; rdflib keeps them apart, so values
        # compared with a shape's plain literals (sh:in, sh:hasValue) would not match.
        return rdflib.Literal(term.value)
    return rdflib.Literal(term.value, datatype=rdflib.URIRef(term.datatype.value))


def from_rdflib_term(term: rdflib.term.Node) -> ox.NamedNode | ox.BlankNode | ox.Literal:
    if isinstance(term, rdflib.URIRef):
        return ox.NamedNode(str(term))
    if isinstance(term, rdflib.BNode):
        return ox.BlankNode(_bnode_id(term))
    if isinstance(term, rdflib.Literal):
        if term.language:
            return ox.Literal(str(term), language=term.language)
        if term.datatype is not None:
            return ox.Literal(str(term), datatype=ox.NamedNode(str(term.datatype)))
        return ox.Literal(str(term))
    raise TypeError(f"unsupported term {term!r}")


def _bnode_id(term: rdflib.BNode) -> str:
    value = str(term)
    return value if value.isalnum() else "b" + "".join(c for c in value if c.isalnum())


def to_rdflib_graph(triples: Iterable[ox.Quad | ox.Triple], graph: rdflib.Graph | None = None) -> rdflib.Graph:
    """Return an rdflib graph holding the given triples (graph names dropped)."""
    graph = graph if graph is not None else rdflib.Graph()
    add = graph.add
    for t in triples:
        add((to_rdflib_term(plain(t.subject)), to_rdflib_term(t.predicate), to_rdflib_term(plain(t.object))))
    return graph


def from_rdflib_graph(graph: rdflib.Graph, name: ox.NamedNode) -> list[ox.Quad]:
    return [ox.Quad(_subject(s), _predicate(p), from_rdflib_term(o), name) for s, p, o in graph]


def _subject(term: rdflib.term.Node) -> ox.NamedNode | ox.BlankNode:
    node = from_rdflib_term(term)
    if isinstance(node, ox.Literal):
        raise TypeError(f"a literal cannot be a subject: {term!r}")
    return node


def _predicate(term: rdflib.term.Node) -> ox.NamedNode:
    node = from_rdflib_term(term)
    if not isinstance(node, ox.NamedNode):
        raise TypeError(f"a predicate is an IRI, not {term!r}")
    return node
