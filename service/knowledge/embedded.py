"""The store: pyoxigraph on disk (one folder) or in memory, named graphs, atomic commits.

Reads see the union of all named graphs as the default graph, so a query can
walk from a user's graph into the catalog without naming graphs. Writes go
through :meth:`Store.commit`, which applies removals, graph drops and additions
as one SPARQL update: either all of it is stored or none of it.

A commit is in RocksDB's write-ahead log, not synced, when it returns: it
survives the death of the process, not a power loss. With
``flush_each_commit`` each commit is followed by :meth:`Store.flush`, after
which it survives a power loss too (bench/durability/README.md: +35 to 55 ms a
commit).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import pyoxigraph as ox

from service.errors import StoreUnavailable, SyntaxProblem
from service.knowledge.shared import RemoteStore
from service.knowledge.store import GraphStore, Object, Row, Subject, rows, update_text
from service.settings import get_settings


class Store:
    """The embedded store: pyoxigraph in a folder or in memory, one process at a time."""

    url: str | None = None  # an embedded store has no server

    def __init__(
        self, location: str | Path | None = None, *, flush_each_commit: bool = False, read_only: bool = False
    ) -> None:
        """Open the store in ``location`` (in memory without one); ``read_only`` opens a folder that another process
        may hold for writing, as it stands at the opening (what parallel verification reads)."""
        self.location = None if location in (None, "", ":memory:") else Path(location)
        self.read_only = read_only
        self.sole_writer = not read_only  # RocksDB lets one process open a folder for writing
        self.flush_each_commit = flush_each_commit
        self.flushes = 0  # flushes of an on-disk store since it opened
        self.removals = (
            0  # commits that removed quads or dropped graphs since it opened: snapshots older than one are stale
        )
        self.commits = 0  # commits since it opened: a snapshot taken at one count holds every commit counted
        self._counts_lock = threading.Lock()
        try:
            if self.location is None:
                self._ox = ox.Store()
            elif read_only:
                self._ox = ox.Store.read_only(str(self.location))
            else:
                self.location.mkdir(parents=True, exist_ok=True)
                self._ox = ox.Store(str(self.location))
        except OSError as exc:
            raise StoreUnavailable(f"cannot open the store at {self.location}: {exc}") from exc
        # pyoxigraph transactions are atomic but not serialised against each other's
        # reads; the lock keeps read-then-write sequences (the audit chain) consistent.
        self.write_lock = threading.RLock()

    @property
    def oxigraph(self) -> ox.Store:
        return self._ox

    # -- reads -------------------------------------------------------------

    def query(self, query: str, /, *, timeout_s: float | None = None):
        """Return pyoxigraph's raw result (solutions, boolean or triples) of a query text.

        Parameters are written into the text first, by ``Query.bind`` (service.knowledge.queries). ``timeout_s``
        is a shared store's; an embedded store has no request to limit.
        """
        try:
            return self._ox.query(query, use_default_graph_as_union=True)
        except SyntaxError as exc:
            raise SyntaxProblem("query", str(exc)) from exc

    def select(self, query: str, /, *, timeout_s: float | None = None) -> list[Row]:
        """Return the rows of a SELECT query as dicts keyed by variable name."""
        return rows(self.query(query))

    def ask(self, query: str, /) -> bool:
        return bool(self.query(query))

    def quads(
        self,
        *,
        subject: Subject | None = None,
        predicate: ox.NamedNode | None = None,
        object: Object | None = None,
        graph: ox.NamedNode | None = None,
    ) -> Iterator[ox.Quad]:
        return self._ox.quads_for_pattern(subject, predicate, object, graph)

    def graph(self, name: ox.NamedNode) -> list[ox.Quad]:
        return list(self._ox.quads_for_pattern(None, None, None, name))

    def has_graph(self, name: ox.NamedNode) -> bool:
        return self._ox.contains_named_graph(name)

    def named_graphs(self) -> list[ox.NamedNode]:
        return [g for g in self._ox.named_graphs() if isinstance(g, ox.NamedNode)]

    def __len__(self) -> int:
        return len(self._ox)

    # -- writes ------------------------------------------------------------

    def commit(
        self,
        *,
        add: Iterable[ox.Quad] = (),
        remove: Iterable[ox.Quad] = (),
        drop: Iterable[ox.NamedNode] = (),
    ) -> None:
        """Apply drops, removals and additions in one transaction."""
        add, remove, drop = list(add), list(remove), list(drop)
        if not remove and not drop:
            if not add:
                return
            self._ox.extend(add)
            with self._counts_lock:  # counted after the commit is stored, so a snapshot that saw the count saw it
                self.commits += 1
        else:
            self._ox.update(update_text(add, remove, drop))
            with self._counts_lock:
                self.removals += 1
                self.commits += 1
        if self.flush_each_commit:
            self.flush()

    def replace_graph(self, name: ox.NamedNode, triples: Iterable[ox.Quad | ox.Triple]) -> None:
        """Replace the content of one named graph atomically."""
        quads = [ox.Quad(t.subject, t.predicate, t.object, name) for t in triples]
        self.commit(add=quads, drop=[name])

    def flush(self) -> None:
        """Write every commit so far to synced files: it then survives a power loss. A closed store was flushed."""
        store = self.__dict__.get("_ox")  # an audit checkpoint flushes outside the write lock: the store may be closing
        if self.location is not None and store is not None:
            store.flush()
            self.flushes += 1

    def close(self) -> None:
        """Release the store (and its folder's lock); the object is unusable afterwards."""
        if not self.read_only:
            self.flush()
        self.__dict__.pop("_ox", None)  # closing twice is harmless

    def backup(self, target: str | Path) -> None:
        self._ox.backup(str(target))

    def bulk_load(self, source: Path | bytes, *, format: ox.RdfFormat) -> None:
        """Load a file's (or a text's) quads fast, without transaction or checks (generated data into a new store)."""
        if isinstance(source, bytes):
            self._ox.bulk_load(source, format=format)
        else:
            self._ox.bulk_load(path=str(source), format=format)
        with self._counts_lock:
            self.commits += 1

    def load_triples(self, source: IO[bytes] | bytes, *, graph: ox.NamedNode) -> None:
        """Load N-Triples (a text, or a binary stream such as a gzip file) into one named graph, fast and unchecked:
        records read back from an archive of the store's own (sealed audit segments); an embedded store only."""
        self._ox.bulk_load(source, format=ox.RdfFormat.N_TRIPLES, to_graph=graph)
        with self._counts_lock:
            self.commits += 1

    def optimize(self) -> None:
        """Compact the folder's files (RocksDB), as after a bulk load; an embedded store only."""
        self._ox.optimize()


def open_store(
    location: str | Path | None, *, flush_each_commit: bool | None = None, timeout_s: float | None = None
) -> GraphStore:
    """Return the embedded store for a folder (or ':memory:'), or the shared store for an http(s) URL.

    ``flush_each_commit`` applies to the embedded store; None takes WAYFINDER_FLUSH_EACH_COMMIT.
    A shared store's durability is its server's. ``timeout_s`` limits each request to a
    shared store; None takes WAYFINDER_STORE_TIMEOUT_S.
    """
    if isinstance(location, str) and location.startswith(("http://", "https://")):
        if timeout_s is None:
            timeout_s = get_settings().store_timeout_s
        return RemoteStore(location, timeout_s=timeout_s)
    if flush_each_commit is None:
        flush_each_commit = get_settings().flush_each_commit
    return Store(location, flush_each_commit=flush_each_commit)
