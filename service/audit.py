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
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyoxigraph as ox

from . import vocab
from .clock import now
from .store import Store

GENESIS = "0" * 64


def canonical_form(triples: Iterable[ox.Triple | ox.Quad]) -> str:
    """Return the canonical N-Triples text of a blank-node-free set of triples."""
    lines = {f"{t.subject} {t.predicate} {t.object} ." for t in triples}
    return "\n".join(sorted(lines)) + "\n"


def content_hash(triples: Iterable[ox.Triple | ox.Quad]) -> str:
    hashable = [t for t in triples if t.predicate != vocab.CONTENT_HASH]
    return hashlib.sha256(canonical_form(hashable).encode()).hexdigest()


def stored_form(triples: list[ox.Triple]) -> list[ox.Triple]:
    """Return the triples as Oxigraph stores them (typed literals in canonical form)."""
    scratch = ox.Store()
    scratch.extend(ox.Quad(t.subject, t.predicate, t.object) for t in triples)
    return [q.triple for q in scratch]


@dataclass
class ChainHead:
    sequence: int
    hash: str


class AuditTrail:
    """Appends chained records to the audit graph, one at a time."""

    def __init__(self, store: Store, head_query: str, *, chain: str = "main", anchor_file: Path | None = None,
                 checkpoint_every: int = 1000) -> None:
        self.store = store
        self.chain = chain
        self._head_query = head_query
        self.anchor_file = anchor_file
        self.checkpoint_every = checkpoint_every
        self._head: ChainHead | None = None
        self._lock = threading.Lock()
        self._sealing = threading.Lock()  # one anchor line at a time

    def head(self) -> ChainHead:
        rows = self.store.select(self._head_query, chain=ox.Literal(self.chain))
        if not rows:
            return ChainHead(0, GENESIS)
        return ChainHead(int(rows[0]["sequence"].value), rows[0]["hash"].value)

    def append(
        self,
        record: ox.NamedNode,
        triples: list[ox.Triple],
        *,
        extra: list[ox.Quad] = (),
        remove: list[ox.Quad] = (),
        drop: list[ox.NamedNode] = (),
    ) -> ChainHead:
        """Chain and store one record, with other changes in the same transaction.

        Every ``checkpoint_every`` records the new head is sealed in the anchor file
        before this returns, but after the locks are released: the flush that comes
        first takes up to hundreds of milliseconds, and other writers need not wait.
        """
        with self._lock, self.store.write_lock:
            head = self._head or self.head()
            chained = [
                *triples,
                ox.Triple(record, vocab.CHAIN, ox.Literal(self.chain)),
                ox.Triple(record, vocab.SEQUENCE, ox.Literal(str(head.sequence + 1), datatype=vocab.XSD_INTEGER)),
                ox.Triple(record, vocab.PREVIOUS_HASH, ox.Literal(head.hash)),
            ]
            # Hash the terms as the store will keep them: Oxigraph normalises typed
            # literals (e.g. "…:55.660450Z" is kept as "…:55.66045Z").
            chained = stored_form(chained)
            digest = content_hash(chained)
            chained.append(ox.Triple(record, vocab.CONTENT_HASH, ox.Literal(digest)))
            quads = [ox.Quad(t.subject, t.predicate, t.object, vocab.AUDIT_GRAPH) for t in chained]
            self.store.commit(add=[*quads, *extra], remove=list(remove), drop=list(drop))
            self._head = appended = ChainHead(head.sequence + 1, digest)
        if self.anchor_file is not None and appended.sequence % self.checkpoint_every == 0:
            self._seal(appended)
        return appended

    def checkpoint(self) -> ChainHead:
        """Seal the current head in the anchor file outside the store (one JSON line)."""
        head = self._head or self.head()
        if self.anchor_file is not None and head.sequence:
            self._seal(head)
        return head

    def _seal(self, head: ChainHead) -> None:
        # The flush first, so that an anchor never names a record a power loss could still take.
        # Records appended meanwhile are flushed too, and sealed by a later anchor.
        self.store.flush()
        with self._sealing:
            self.anchor_file.parent.mkdir(parents=True, exist_ok=True)
            with self.anchor_file.open("a") as out:
                out.write(json.dumps({"chain": self.chain, "sequence": head.sequence, "hash": head.hash,
                                      "at": now().isoformat()}) + "\n")
                out.flush()
                os.fsync(out.fileno())

    def anchors(self) -> list[dict]:
        if self.anchor_file is None or not self.anchor_file.exists():
            return []
        return [json.loads(line) for line in self.anchor_file.read_text().splitlines() if line.strip()]

    def forget_head(self) -> None:
        """Re-read the chain head from the store on the next append (another writer appended)."""
        self._head = None


@dataclass
class Verification:
    """The result of checking the whole chain."""

    records: int
    ok: bool
    broken_sequence: int | None = None
    broken_record: str | None = None
    reason: str | None = None
    anchors_checked: int = 0


def verify(store: Store, index_query: str, *, anchors: list[dict] | None = None) -> Verification:
    """Recompute every record's hash and links, chain by chain; name the first broken record."""
    rows = store.select(index_query)
    chains: dict[str, list] = {}
    for row in rows:
        if row["chain"] is None:
            return _broken(0, 0, row["record"].value, "chain missing")
        chains.setdefault(row["chain"].value, []).append(row)
    hashes: dict[tuple[str, int], str] = {}
    checked_records = 0
    for chain, chain_rows in sorted(chains.items()):
        expected_previous = GENESIS
        for position, row in enumerate(chain_rows, start=1):
            record = row["record"]
            if row["sequence"] is None or row["hash"] is None or row["previous"] is None:
                missing = [n for n in ("sequence", "hash", "previous") if row[n] is None]
                return _broken(checked_records, position, record.value, f"{', '.join(missing)} missing (chain {chain})")
            sequence = int(row["sequence"].value)
            if sequence != position:
                return _broken(checked_records, position, record.value,
                               f"sequence {sequence} where {position} was expected in chain {chain} "
                               "(a record was removed or added)")
            if row["previous"].value != expected_previous:
                return _broken(checked_records, sequence, record.value, "previous hash does not match the record before")
            digest = content_hash(record_triples(store, record))
            if digest != row["hash"].value:
                return _broken(checked_records, sequence, record.value,
                               "content hash does not match: a triple was added, removed or changed")
            hashes[(chain, sequence)] = digest
            expected_previous = digest
            checked_records += 1
    checked = 0
    for anchor in anchors or []:
        key = (anchor.get("chain", "main"), int(anchor["sequence"]))
        if hashes.get(key) != anchor["hash"]:
            return _broken(checked_records, key[1], None,
                           f"record {key[1]} of chain {key[0]} is missing or differs from its external anchor "
                           "(the chain was cut or rewritten)")
        checked += 1
    return Verification(records=checked_records, ok=True, anchors_checked=checked)


def _broken(records: int, sequence: int, record: str | None, reason: str) -> Verification:
    return Verification(records=records, ok=False, broken_sequence=sequence, broken_record=record, reason=reason)


def record_triples(store: Store, record: ox.NamedNode) -> list[ox.Quad]:
    """Return every triple of a record: its own and those of its candidates."""
    own = list(store.quads(subject=record, graph=vocab.AUDIT_GRAPH))
    parts = [q.object for q in own if q.predicate == vocab.HAS_CANDIDATE and isinstance(q.object, ox.NamedNode)]
    for part in parts:
        own.extend(store.quads(subject=part, graph=vocab.AUDIT_GRAPH))
    return own
