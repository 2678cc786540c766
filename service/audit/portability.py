"""Access and portability (GDPR Art. 15 and 20): everything held about one user, as one JSON-LD document.

The document is JSON-LD 1.1 in flattened form, one named graph per place the data
is kept, exactly as stored, so that parsing it yields the stored quads::

    {
      "@context": {"wf": ..., "dpv": ..., "prov": ..., "rdf": ..., "rdfs": ..., "xsd": ...},
      "@graph": [
        {"@id": ".../graph/user/ID", "@graph": [...]},   # the profile (wf:User) and every event
        {"@id": ".../graph/consent", "@graph": [...]},   # every consent record, current and past:
                                                         #   purpose, status, dpv:isIndicatedAtTime, wf:recordedAt
        {"@id": ".../graph/audit", "@graph": [...]}      # every decision made for the user (found by their
      ]                                                  #   pseudonym): time, channel, policy and model version,
    }                                                    #   candidates (wf:candidates) and shown steps' ranks

A graph with nothing in it is left out. Each node is ``{"@id", "@type", property:
[values]}``; terms of the prefixes above are written as compact IRIs (``wf:occurredAt``),
other IRIs in full; a value is ``{"@id": ...}`` or ``{"@value": lexical form}`` with its
``@type`` (any datatype but xsd:string) or ``@language``. Nodes, properties and values
are sorted, so the same data gives the same document.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyoxigraph as ox

from service.audit import sealed
from service.audit.chain import record_triples
from service.decisions.subjects import require_user
from service.knowledge import vocab
from service.knowledge.store import plain
from service.runtime import Runtime

MEDIA_TYPE = "application/ld+json"
CONTEXT = {
    "wf": vocab.WF_NS,
    "dpv": vocab.DPV_NS,
    "prov": vocab.PROV_NS,
    "rdf": vocab.RDF_NS,
    "rdfs": vocab.RDFS_NS,
    "xsd": vocab.XSD_NS,
}


def held_quads(runtime: Runtime, user_id: str) -> list[ox.Quad]:
    """Return every quad held about the user: their graph, consent records, decision records (in the store and
    in the sealed segments)."""
    user = require_user(runtime, user_id)
    store = runtime.store
    quads = list(store.graph(vocab.user_graph(user_id)))
    for link in store.quads(predicate=vocab.HAS_DATA_SUBJECT, object=user, graph=vocab.CONSENT_GRAPH):
        quads.extend(store.quads(subject=link.subject, graph=vocab.CONSENT_GRAPH))
    pseudonyms = [q.object for q in quads if q.subject == user and q.predicate == vocab.PSEUDONYM]
    for pseudonym in pseudonyms:
        for link in store.quads(predicate=vocab.SUBJECT_PSEUDONYM, object=pseudonym, graph=vocab.AUDIT_GRAPH):
            quads.extend(record_triples(store, plain(link.subject)))
        if isinstance(pseudonym, ox.Literal):  # and those sealed out of the store
            for _, record in sealed.records_naming(runtime.sealed, vocab.SUBJECT_PSEUDONYM, pseudonym):
                quads.extend(record)
    return list(dict.fromkeys(quads))


def export_user(runtime: Runtime, user_id: str) -> dict:
    """Return everything held about the user as one JSON-LD document (NotFound for an unknown user)."""
    return as_json_ld(held_quads(runtime, user_id))


def as_json_ld(quads: Iterable[ox.Quad]) -> dict:
    """Return quads as a flattened JSON-LD document with one entry per named graph."""
    graphs: dict[str, dict[str, dict[str, list]]] = {}
    for quad in quads:
        if isinstance(quad.graph_name, ox.DefaultGraph):
            raise TypeError(f"a quad in the default graph, where the service keeps none: {quad}")
        subjects = graphs.setdefault(quad.graph_name.value, {})
        node = subjects.setdefault(_node_id(plain(quad.subject)), {})
        if quad.predicate == vocab.RDF_TYPE and isinstance(quad.object, ox.NamedNode):
            node.setdefault("@type", []).append(_compact(quad.object.value))
        else:
            node.setdefault(_compact(quad.predicate.value), []).append(_value(plain(quad.object)))
    entries = []
    for name in sorted(graphs):
        nodes = []
        for subject, properties in sorted(graphs[name].items()):
            item: dict = {"@id": subject}
            for key in sorted(properties):
                values = properties[key]
                item[key] = sorted(values) if key == "@type" else sorted(values, key=_sort_key)
            nodes.append(item)
        entries.append({"@id": name, "@graph": nodes})
    return {"@context": dict(CONTEXT), "@graph": entries}


def _compact(iri: str) -> str:
    for prefix, namespace in CONTEXT.items():
        local = iri.removeprefix(namespace)
        # Only a plain local name: anything else would not read back as the same IRI.
        if local != iri and local and all(c.isalnum() or c in "_-." for c in local):
            return f"{prefix}:{local}"
    return iri


def _node_id(term: ox.NamedNode | ox.BlankNode) -> str:
    return f"_:{term.value}" if isinstance(term, ox.BlankNode) else _compact(term.value)


def _value(term: ox.NamedNode | ox.BlankNode | ox.Literal) -> dict:
    if not isinstance(term, ox.Literal):
        return {"@id": _node_id(term)}
    if term.language:
        return {"@value": term.value, "@language": term.language}
    if term.datatype == vocab.XSD_STRING:
        return {"@value": term.value}
    return {"@value": term.value, "@type": _compact(term.datatype.value)}


def _sort_key(value: dict) -> tuple[str, str, str]:
    return (value.get("@id", ""), value.get("@value", ""), value.get("@type", value.get("@language", "")))
