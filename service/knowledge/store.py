"""What the service asks of a store, embedded (:mod:`service.knowledge.embedded`) or shared (:mod:`service.knowledge.shared`).

Both implement :class:`GraphStore`; the rest of the service is written against it
and never asks which one it holds, but for ``url`` (None on the embedded store),
which names the shared store's server, and ``location`` (None on a shared or an
in-memory store), the embedded store's folder.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol, overload, runtime_checkable

import pyoxigraph as ox

Term = ox.NamedNode | ox.BlankNode | ox.Literal
Row = dict[str, Term | None]
# What pyoxigraph says a quad's subject and object may be: RDF 1.2 allows a quoted triple there.
Subject = ox.NamedNode | ox.BlankNode | ox.Triple
Object = Term | ox.Triple


@runtime_checkable
class GraphStore(Protocol):
    """Named graphs read as one union default graph; writes as one transaction each."""

    # Read-only here, so that a store may narrow them (the shared store's url is always a str).
    @property
    def location(self) -> Path | None: ...
    @property
    def url(self) -> str | None: ...

    write_lock: threading.RLock
    removals: int  # commits that removed quads or dropped graphs since the store opened
    commits: int  # commits since the store opened (the auditors' endpoint reads its snapshots at a count)
    sole_writer: bool  # every commit to the store is this object's, so ``commits`` counts all its changes

    # Query texts with their parameters written in (service.knowledge.queries.Query.bind). ``timeout_s`` replaces,
    # for one bulk read, the time limit of a request to a shared store; an embedded store has no request to limit.
    def query(self, query: str, /, *, timeout_s: float | None = None): ...
    def select(self, query: str, /, *, timeout_s: float | None = None) -> list[Row]: ...
    def ask(self, query: str, /) -> bool: ...
    def quads(
        self,
        *,
        subject: Subject | None = None,
        predicate: ox.NamedNode | None = None,
        object: Object | None = None,
        graph: ox.NamedNode | None = None,
    ) -> Iterator[ox.Quad]: ...
    def graph(self, name: ox.NamedNode) -> list[ox.Quad]: ...
    def has_graph(self, name: ox.NamedNode) -> bool: ...
    def named_graphs(self) -> list[ox.NamedNode]: ...
    def __len__(self) -> int: ...
    def commit(
        self, *, add: Iterable[ox.Quad] = (), remove: Iterable[ox.Quad] = (), drop: Iterable[ox.NamedNode] = ()
    ) -> None: ...
    def replace_graph(self, name: ox.NamedNode, triples: Iterable[ox.Quad | ox.Triple]) -> None: ...
    def bulk_load(self, source: Path | bytes, *, format: ox.RdfFormat) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...
    def backup(self, target: str | Path) -> None: ...


def rows(solutions: ox.QuerySolutions) -> list[Row]:
    """Return the solutions of a SELECT as dicts keyed by variable name (None where a variable is unbound)."""
    names = [v.value for v in solutions.variables]
    return [{name: solution[name] for name in names} for solution in solutions]


def bound(row: Row, name: str) -> Term:
    """Return the term a row binds to ``name``; a query that must bind it and did not is a bug, said so."""
    term = row[name]
    if term is None:
        raise ValueError(f"?{name} is unbound in a row where the query always binds it")
    return term


def value(row: Row, name: str) -> str | None:
    """Return the lexical value (IRI or literal text) a row binds to ``name``, or None when unbound."""
    term = row[name]
    return None if term is None else term.value


@overload
def plain(term: Subject) -> ox.NamedNode | ox.BlankNode: ...
@overload
def plain(term: Object) -> Term: ...
def plain(term: Object) -> Term:
    """Return a quad's subject or object as the term it is; the service stores no quoted triples, so one is a bug, said so."""
    if isinstance(term, ox.Triple):
        raise TypeError(f"a quoted triple where the service stores only IRIs, blank nodes and literals: {term}")
    return term


def update_text(add: list[ox.Quad], remove: list[ox.Quad], drop: list[ox.NamedNode]) -> str:
    """Return one SPARQL update that drops graphs, then deletes, then inserts quads.

    Terms serialise themselves in N-Triples syntax, escaping included, so the
    update is built from typed terms, never from caller-supplied strings.
    """
    parts = [f"DROP SILENT GRAPH {g}" for g in drop]
    if remove:
        parts.append("DELETE DATA { " + " ".join(_quad_data(q) for q in remove) + " }")
    if add:
        parts.append("INSERT DATA { " + " ".join(_quad_data(q) for q in add) + " }")
    return " ;\n".join(parts)


def _quad_data(quad: ox.Quad) -> str:
    triple = f"{quad.subject} {quad.predicate} {quad.object} ."
    if isinstance(quad.graph_name, ox.DefaultGraph):
        return triple
    return f"GRAPH {quad.graph_name} {{ {triple} }}"
