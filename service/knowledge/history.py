"""Knowledge history: every version of a catalog or policy graph, kept as a restorable snapshot.

Each load that changes a catalog or policy graph records a version of it (``wf:KnowledgeVersion``,
a PROV entity): its graph, its number (1, 2, ... per graph), the content hash of its triples as the
store keeps them, who loaded it and when (the service's clock), the version it revises, and its
content as canonical N-Triples text. The text is a literal, not quads, because reads see the union
of all named graphs: a snapshot stored as quads would read as current knowledge. A graph loaded
before there was a history gets its content recorded as version 1 when it is first replaced.

A rollback (:func:`restore`) loads a recorded version's content through the same validation as
any load, and records it as a new version that restores the old one. Decisions name the version of
every catalog and policy graph they used (:func:`current`), so a past decision can be re-derived
from the trail after the catalog changed (``service.decisions.rederive``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import pyoxigraph as ox

from service.clock import datetime_literal, now, parse_datetime
from service.errors import InvalidInput, NotFound
from service.knowledge import vocab
from service.knowledge.canonical import canonical_form, content_hash, stored_form
from service.knowledge.store import GraphStore

UNKNOWN_LOADER = "unknown (loaded before the history)"
MAX_LOADER = 200


@dataclass(frozen=True)
class Version:
    iri: str
    graph: str
    number: int
    content_hash: str
    loaded_by: str
    loaded_at: datetime | None
    revises: str | None
    restores: str | None

    @property
    def name(self) -> str:
        """The graph's short name: ``catalog/demo``, ``policies/default``."""
        return self.graph.removeprefix(vocab.GRAPH_BASE)


def versioned(graph: ox.NamedNode) -> bool:
    """Catalog and policy graphs keep a history; the ontology changes with the service's own releases."""
    return graph.value.startswith((vocab.CATALOG_GRAPH_BASE, vocab.POLICY_GRAPH_BASE))


def version_iri(graph: ox.NamedNode, number: int) -> ox.NamedNode:
    return ox.NamedNode(f"{vocab.KNOWLEDGE_VERSION_BASE}{graph.value.removeprefix(vocab.GRAPH_BASE)}/{number}")


# What a version records besides its snapshot: read one predicate at a time, so that listing versions (at every
# knowledge refresh, in every process) never carries the snapshots' text.
_FIELDS = (
    vocab.OF_GRAPH,
    vocab.VERSION_NUMBER,
    vocab.CONTENT_HASH,
    vocab.LOADED_BY,
    vocab.PROV_GENERATED_AT,
    vocab.PROV_WAS_REVISION_OF,
    vocab.RESTORES,
)


def versions(store: GraphStore, graph: ox.NamedNode | None = None, *, iri: str | None = None) -> list[Version]:
    """Every recorded version, oldest first; of one graph when ``graph`` is given, the one version ``iri`` names."""
    subject = ox.NamedNode(iri) if iri is not None else None
    fields: dict[str, dict[str, str]] = {}
    for predicate in _FIELDS:
        for q in store.quads(subject=subject, predicate=predicate, graph=vocab.HISTORY_GRAPH):
            if isinstance(q.subject, ox.NamedNode) and isinstance(q.object, ox.NamedNode | ox.Literal):
                fields.setdefault(q.subject.value, {})[predicate.value] = q.object.value
    found = []
    for node, f in fields.items():
        if graph is not None and f[vocab.OF_GRAPH.value] != graph.value:
            continue
        at = f.get(vocab.PROV_GENERATED_AT.value)
        found.append(
            Version(
                iri=node,
                graph=f[vocab.OF_GRAPH.value],
                number=int(f[vocab.VERSION_NUMBER.value]),
                content_hash=f[vocab.CONTENT_HASH.value],
                loaded_by=f[vocab.LOADED_BY.value],
                loaded_at=parse_datetime(at) if at is not None else None,
                revises=f.get(vocab.PROV_WAS_REVISION_OF.value),
                restores=f.get(vocab.RESTORES.value),
            )
        )
    return sorted(found, key=lambda v: (v.graph, v.number))


def current(store: GraphStore) -> dict[str, str]:
    """The latest version of each catalog and policy graph: graph IRI -> version IRI."""
    latest: dict[str, Version] = {}
    for v in versions(store):
        if v.graph not in latest or v.number > latest[v.graph].number:
            latest[v.graph] = v
    return {g: v.iri for g, v in latest.items()}


def content(store: GraphStore, version: Version) -> list[ox.Triple]:
    """The triples of a recorded version, parsed from its snapshot."""
    found = next(store.quads(subject=ox.NamedNode(version.iri), predicate=vocab.SNAPSHOT, graph=vocab.HISTORY_GRAPH))
    assert isinstance(found.object, ox.Literal)
    return [q.triple for q in ox.parse(found.object.value.encode(), format=ox.RdfFormat.N_TRIPLES)]


def find(store: GraphStore, graph: ox.NamedNode, number: int | None) -> Version:
    """A graph's version by number; None: the one before the current version."""
    recorded = versions(store, graph)
    if not recorded:
        raise NotFound(f"{graph.value.removeprefix(vocab.GRAPH_BASE)} has no recorded versions")
    if number is None:
        if len(recorded) < 2:
            raise InvalidInput("version", f"{recorded[0].name} has only one version: nothing to roll back to")
        return recorded[-2]
    for v in recorded:
        if v.number == number:
            return v
    numbers = ", ".join(str(v.number) for v in recorded)
    raise NotFound(f"{recorded[0].name} has no version {number} (it has {numbers})")


def changes(
    store: GraphStore,
    replacing: Mapping[ox.NamedNode, list[ox.Triple]],
    *,
    by: str,
    restores: Mapping[ox.NamedNode, str] | None = None,
) -> list[ox.Quad]:
    """The history quads that record a load of ``replacing``: a new version of each versioned graph whose
    content changes (and, for a graph loaded before the history, its old content as version 1)."""
    if len(by) > MAX_LOADER or not by.strip():
        raise InvalidInput("by", f"names who loads the knowledge, 1 to {MAX_LOADER} characters")
    at = now()
    add: list[ox.Quad] = []
    for graph, triples in replacing.items():
        if not versioned(graph):
            continue
        new = stored_form(triples)
        recorded = versions(store, graph)
        previous = recorded[-1] if recorded else None
        if previous is None and store.has_graph(graph):
            old = [q.triple for q in store.graph(graph)]
            previous = _version(graph, 1, old, by=UNKNOWN_LOADER, at=None, revises=None, restores=None, into=add)
        if previous is not None and previous.content_hash == content_hash(new):
            continue
        number = previous.number + 1 if previous else 1
        restored = (restores or {}).get(graph)
        _version(graph, number, new, by=by, at=at, revises=previous, restores=restored, into=add)
    return add


def _version(
    graph: ox.NamedNode,
    number: int,
    triples: list[ox.Triple],
    *,
    by: str,
    at: datetime | None,
    revises: Version | None,
    restores: str | None,
    into: list[ox.Quad],
) -> Version:
    iri = version_iri(graph, number)
    digest = content_hash(triples)

    def q(p: ox.NamedNode, o: ox.NamedNode | ox.Literal) -> None:
        into.append(ox.Quad(iri, p, o, vocab.HISTORY_GRAPH))

    q(vocab.RDF_TYPE, vocab.KNOWLEDGE_VERSION)
    q(vocab.RDF_TYPE, vocab.PROV_ENTITY)
    q(vocab.OF_GRAPH, graph)
    q(vocab.VERSION_NUMBER, ox.Literal(str(number), datatype=vocab.XSD_INTEGER))
    q(vocab.CONTENT_HASH, ox.Literal(digest))
    q(vocab.LOADED_BY, ox.Literal(by))
    q(vocab.SNAPSHOT, ox.Literal(canonical_form(triples)))
    if at is not None:
        q(vocab.PROV_GENERATED_AT, datetime_literal(at))
    if revises is not None:
        q(vocab.PROV_WAS_REVISION_OF, ox.NamedNode(revises.iri))
    if restores is not None:
        q(vocab.RESTORES, ox.NamedNode(restores))
    return Version(iri.value, graph.value, number, digest, by, at, revises.iri if revises else None, restores)


def version_of(store: GraphStore, iri: str) -> Version:
    """A recorded version by its IRI."""
    found = versions(store, iri=iri)
    if not found:
        raise NotFound(f"no knowledge version {iri}")
    return found[0]
