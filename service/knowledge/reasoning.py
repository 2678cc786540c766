"""OWL 2 RL entailments of the ontology and catalog, computed at load with owlrl.

User-level inference stays in SPARQL property paths (``wf:requires+``,
``wf:includesPlan*``), so that writes about users never wait for a reasoner.
"""

from __future__ import annotations

from collections.abc import Iterable

import owlrl
import pyoxigraph as ox
import rdflib

from service.knowledge import vocab
from service.knowledge.terms import from_rdflib_graph, to_rdflib_graph

# Built-in vocabularies whose own axioms owlrl restates for every graph.
_BUILTIN = (
    str(rdflib.OWL),
    str(rdflib.RDF),
    str(rdflib.RDFS),
    str(rdflib.XSD),
)


_REFLEXIVE = {
    rdflib.OWL.sameAs,
    rdflib.OWL.equivalentClass,
    rdflib.OWL.equivalentProperty,
    rdflib.RDFS.subClassOf,
    rdflib.RDFS.subPropertyOf,
}


def entailments(asserted: rdflib.Graph | Iterable[ox.Quad | ox.Triple]) -> list[ox.Quad]:
    """Return the OWL 2 RL triples that follow from ``asserted`` and are not in it."""
    graph = rdflib.Graph()
    if isinstance(asserted, rdflib.Graph):
        graph += asserted
    else:
        to_rdflib_graph(asserted, graph)
    before = set(graph)
    owlrl.DeductiveClosure(owlrl.OWLRL_Semantics, axiomatic_triples=False, datatype_axioms=False).expand(graph)
    inferred = rdflib.Graph()
    for s, p, o in graph:
        if (s, p, o) in before or not _worth_keeping(s, p, o):
            continue
        inferred.add((s, p, o))
    return from_rdflib_graph(inferred, vocab.ENTAILMENTS_GRAPH)


def _worth_keeping(s: rdflib.term.Node, p: rdflib.term.Node, o: rdflib.term.Node) -> bool:
    if not isinstance(s, rdflib.URIRef) or str(s).startswith(_BUILTIN):
        return False
    if s == o and p in _REFLEXIVE:
        return False
    if isinstance(o, rdflib.URIRef) and str(o).startswith(_BUILTIN) and p != rdflib.RDF.type:
        return False
    if p == rdflib.RDF.type and o in (rdflib.OWL.Thing, rdflib.RDFS.Resource, rdflib.OWL.NamedIndividual):
        return False
    return True
