"""Loading knowledge files (ontology, catalog, policies) into the store.

A load parses every file, validates the knowledge as it would be after the
load (shapes over ontology + every catalog and policy graph, the new files in
place of the graphs they replace), recomputes the OWL 2 RL entailments, and
commits graphs and entailments in one transaction. A refused load stores
nothing and lists every violation.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyoxigraph as ox
import rdflib

from service.errors import InvalidInput, RefusedWrite, SyntaxProblem
from service.knowledge import history, vocab
from service.knowledge.canonical import content_hash
from service.knowledge.reasoning import entailments
from service.knowledge.store import GraphStore
from service.knowledge.terms import to_rdflib_graph
from service.knowledge.validation import Validator

FORMATS = {
    ".ttl": ox.RdfFormat.TURTLE,
    ".turtle": ox.RdfFormat.TURTLE,
    ".nt": ox.RdfFormat.N_TRIPLES,
    ".jsonld": ox.RdfFormat.JSON_LD,
    ".json": ox.RdfFormat.JSON_LD,
    ".rdf": ox.RdfFormat.RDF_XML,
    ".owl": ox.RdfFormat.RDF_XML,
}

# Who a load names when no one is named: a load from code or the CLI on the operator's own machine.
LOCAL_OPERATOR = "local operator"


@dataclass
class LoadReport:
    """What a load stored: triples per graph and the number of entailed triples."""

    graphs: dict[str, int] = field(default_factory=dict)
    entailed: int = 0

    @property
    def triples(self) -> int:
        return sum(self.graphs.values())


def read_rdf(path: Path) -> list[ox.Triple]:
    """Parse an RDF file into triples; a syntax error names file, line and column."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise SyntaxProblem(str(path), f"unknown RDF format {path.suffix!r}; use one of {', '.join(sorted(FORMATS))}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SyntaxProblem(str(path), f"cannot read: {exc.strerror}") from exc
    try:
        return [q.triple for q in ox.parse(data, format=fmt, base_iri=path.resolve().as_uri())]
    except SyntaxError as exc:
        raise SyntaxProblem(str(path), _without_position(str(exc)), line=exc.lineno, column=exc.offset) from exc


def _without_position(message: str) -> str:
    # "Parser error at line 3 between columns 3 and 10: The prefix foo: ..." -> the reason alone
    return message.split(": ", 1)[1] if message.startswith("Parser error at") and ": " in message else message


def graph_for(path: Path, triples: list[ox.Triple]) -> ox.NamedNode:
    """Return the named graph a knowledge file goes to, by what it declares."""
    types = {t.object for t in triples if t.predicate == vocab.RDF_TYPE}
    if ox.NamedNode("http://www.w3.org/2002/07/owl#Ontology") in types:
        return vocab.ONTOLOGY_GRAPH
    if vocab.POLICY_VERSION in types:
        return ox.NamedNode(vocab.POLICY_GRAPH_BASE + path.stem)
    return vocab.catalog_graph(path.stem)


def graph_named(name: str) -> ox.NamedNode:
    """Return the knowledge graph for a short name (``catalog/demo``) or a full IRI."""
    iri = name if "://" in name else vocab.GRAPH_BASE + name.strip("/")
    node = ox.NamedNode(iri)
    if not vocab.is_knowledge_graph(node):
        raise SyntaxProblem(name, "a knowledge graph is 'ontology', 'catalog/NAME' or 'policies/NAME'")
    return node


def knowledge_graphs(store: GraphStore) -> list[ox.NamedNode]:
    """The ontology, catalog and policy graphs: from the knowledge index that each load writes, or, in a store
    loaded before there was one, by walking every named graph."""
    indexed = sorted(
        {q.subject for q in store.quads(predicate=vocab.RDF_TYPE, graph=vocab.KNOWLEDGE_INDEX_GRAPH)}, key=str
    )
    if indexed:
        return [g for g in indexed if isinstance(g, ox.NamedNode)]
    return [g for g in store.named_graphs() if vocab.is_knowledge_graph(g)]


def revision(store: GraphStore) -> str | None:
    """The knowledge revision: a token that changes with every load and every policy approval, in any process."""
    found = [q.object.value for q in revision_quads(store) if isinstance(q.object, ox.Literal)]
    return min(found) if found else None


def revision_quads(store: GraphStore) -> list[ox.Quad]:
    return list(store.quads(subject=vocab.STORE_NODE, predicate=vocab.KNOWLEDGE_REVISION, graph=vocab.META_GRAPH))


def revision_quad() -> ox.Quad:
    """A new knowledge revision, to commit with a change (removing the old ones: ``revision_quads``)."""
    return ox.Quad(vocab.STORE_NODE, vocab.KNOWLEDGE_REVISION, ox.Literal(uuid.uuid4().hex), vocab.META_GRAPH)


def _index(names: Iterable[ox.NamedNode]) -> list[ox.Quad]:
    return [
        ox.Quad(g, vocab.RDF_TYPE, vocab.KNOWLEDGE_GRAPH, vocab.KNOWLEDGE_INDEX_GRAPH)
        for g in sorted(set(names), key=str)
    ]


def check(
    store: GraphStore, validator: Validator, replacing: dict[ox.NamedNode, list[ox.Triple]]
) -> tuple[rdflib.Graph, list]:
    """Return the knowledge as it would be after replacing graphs, and its violations."""
    graph = rdflib.Graph()
    for name in knowledge_graphs(store):
        if name not in replacing:
            to_rdflib_graph(store.graph(name), graph)
    for triples in replacing.values():
        to_rdflib_graph(triples, graph)
    return graph, validator.validate(graph)


def load_files(
    paths: Iterable[Path],
    *,
    store: GraphStore,
    validator: Validator,
    graph: str | None = None,
    by: str = LOCAL_OPERATOR,
) -> LoadReport:
    """Validate and load knowledge files; each file replaces the graph it goes to, ``by`` names who loads them."""
    paths = list(paths)
    replacing: dict[ox.NamedNode, list[ox.Triple]] = {}
    for path in paths:
        triples = read_rdf(path)
        name = graph_named(graph) if graph else graph_for(path, triples)
        replacing.setdefault(name, []).extend(triples)
    return replace_knowledge(replacing, store=store, validator=validator, source=", ".join(map(str, paths)), by=by)


def replace_knowledge(
    replacing: dict[ox.NamedNode, list[ox.Triple]],
    *,
    store: GraphStore,
    validator: Validator,
    source: str | None = None,
    by: str = LOCAL_OPERATOR,
    restores: dict[ox.NamedNode, str] | None = None,
) -> LoadReport:
    """Validate, reason and commit new content for knowledge graphs, all or nothing, with the catalog and
    policy versions it makes (:mod:`service.knowledge.history`)."""
    replacing = {
        name: seal_policies(triples) if name.value.startswith(vocab.POLICY_GRAPH_BASE) else triples
        for name, triples in replacing.items()
    }
    with store.write_lock:
        graph, violations = check(store, validator, replacing)
        if violations:
            raise RefusedWrite(violations, source=source)
        versions = history.changes(store, replacing, by=by, restores=restores)
        inferred = entailments(graph)
        add = [ox.Quad(t.subject, t.predicate, t.object, name) for name, ts in replacing.items() for t in ts]
        index = _index([*knowledge_graphs(store), *replacing])
        store.commit(
            drop=[*replacing, vocab.ENTAILMENTS_GRAPH, vocab.KNOWLEDGE_INDEX_GRAPH],
            add=[*add, *inferred, *index, *versions, revision_quad()],
            remove=revision_quads(store),
        )
    report = LoadReport({name.value: len(set(ts)) for name, ts in replacing.items()}, len(inferred))
    return report


def rollback(
    name: str, number: int | None = None, *, store: GraphStore, validator: Validator, by: str = LOCAL_OPERATOR
) -> history.Version:
    """Restore a recorded version of a catalog or policy graph (None: the one before the current) through the
    same validation as a load; return the version it restored. A refused restore stores nothing."""
    graph = graph_named(name)
    if not history.versioned(graph):
        raise InvalidInput("name", "only catalog and policy graphs keep versions to roll back to")
    version = history.find(store, graph, number)
    replace_knowledge(
        {graph: history.content(store, version)},
        store=store,
        validator=validator,
        source=f"{version.name} version {version.number}",
        by=by,
        restores={graph: version.iri},
    )
    return version


def ensure_ontology(store: GraphStore, *, ontology_file: Path, validator: Validator) -> bool:
    """Load the ontology when the store has none; return whether it loaded."""
    if store.has_graph(vocab.ONTOLOGY_GRAPH):
        return False
    load_files([ontology_file], store=store, validator=validator, graph="ontology")
    return True


def check_store(store: GraphStore, validator: Validator) -> list:
    """Return every violation in the whole store (knowledge, users, consent): an offline check."""
    graph = rdflib.Graph()
    for name in store.named_graphs():
        if name.value not in (
            vocab.ENTAILMENTS_GRAPH.value,
            vocab.AUDIT_GRAPH.value,
            vocab.KNOWLEDGE_INDEX_GRAPH.value,
            vocab.HISTORY_GRAPH.value,
        ):
            to_rdflib_graph(store.graph(name), graph)
    return validator.validate(graph)


def seal_policies(triples: list[ox.Triple]) -> list[ox.Triple]:
    """Return the triples with a wf:contentHash on each policy version, over it, its rules, its pacing (with
    the pacing's caps and quiet hours) and its feedback pressure, where they are in the same file."""

    kept = [t for t in triples if t.predicate != vocab.CONTENT_HASH]
    versions = {t.subject for t in kept if t.predicate == vocab.RDF_TYPE and t.object == vocab.POLICY_VERSION}
    sealed = list(kept)
    for version in sorted(versions, key=str):
        parts = {
            t.object
            for t in kept
            if t.subject == version and t.predicate in (vocab.HAS_RULE, vocab.PACING, vocab.FEEDBACK_PRESSURE)
        }
        # a pacing's caps and quiet hours are its parts too
        parts |= {t.object for t in kept if t.subject in parts and t.predicate in vocab.PACING_PARTS}
        content = [t for t in kept if t.subject == version or t.subject in parts]
        sealed.append(ox.Triple(version, vocab.CONTENT_HASH, ox.Literal(content_hash(content))))
    return sealed
