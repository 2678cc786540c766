"""The audit trail: decision records as PROV-O activities, chained by hash.

Each record holds no blank node, so its canonical form is simply its triples
in N-Triples syntax, sorted by code point and joined by newlines (what RDF
Dataset Canonicalization, RDFC-1.0, yields for a graph without blank nodes).
``wf:contentHash`` is the SHA-256 of that form, computed over every triple of
the record except the ``wf:contentHash`` triple itself; it covers
``wf:sequence`` and ``wf:previousHash``, so the records form a chain.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import pyoxigraph as ox

from . import vocab
from .store import Store

GENESIS = "0" * 64


def canonical_form(triples: Iterable[ox.Triple | ox.Quad]) -> str:
    """Return the canonical N-Triples text of a blank-node-free set of triples."""
    lines = {f"{t.subject} {t.predicate} {t.object} ." for t in triples}
    return "\n".join(sorted(lines)) + "\n"


def content_hash(triples: Iterable[ox.Triple | ox.Quad]) -> str:
    hashable = [t for t in triples if t.predicate != vocab.CONTENT_HASH]
    return hashlib.sha256(canonical_form(hashable).encode()).hexdigest()


@dataclass
class ChainHead:
    sequence: int
    hash: str


class AuditTrail:
    """Appends chained records to the audit graph, one at a time."""

    def __init__(self, store: Store, head_query: str) -> None:
        self.store = store
        self._head_query = head_query
        self._head: ChainHead | None = None
        self._lock = threading.Lock()

    def head(self) -> ChainHead:
        rows = self.store.select(self._head_query)
        if not rows:
            return ChainHead(0, GENESIS)
        return ChainHead(int(rows[0]["sequence"].value), rows[0]["hash"].value)

    def append(self, record: ox.NamedNode, triples: list[ox.Triple], *, extra: list[ox.Quad] = ()) -> ChainHead:
        """Chain and store one record (plus ``extra`` quads in the same transaction)."""
        with self._lock, self.store.write_lock:
            head = self._head or self.head()
            chained = [
                *triples,
                ox.Triple(record, vocab.SEQUENCE, ox.Literal(str(head.sequence + 1), datatype=vocab.XSD_INTEGER)),
                ox.Triple(record, vocab.PREVIOUS_HASH, ox.Literal(head.hash)),
            ]
            digest = content_hash(chained)
            chained.append(ox.Triple(record, vocab.CONTENT_HASH, ox.Literal(digest)))
            quads = [ox.Quad(t.subject, t.predicate, t.object, vocab.AUDIT_GRAPH) for t in chained]
            self.store.commit(add=[*quads, *extra])
            self._head = ChainHead(head.sequence + 1, digest)
            return self._head

    def forget_head(self) -> None:
        """Re-read the chain head from the store on the next append (another writer appended)."""
        self._head = None
