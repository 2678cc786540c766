"""The audit trail: decision records as PROV-O activities, chained by hash.

Each record holds no blank node, so its canonical form is simply its triples
in N-Triples syntax, sorted by code point and joined by newlines (what RDF
Dataset Canonicalization, RDFC-1.0, yields for a graph without blank nodes).
``wf:contentHash`` is the SHA-256 of that form, computed over every triple of
the record except the ``wf:contentHash`` triple itself; it covers
``wf:sequence`` and ``wf:previousHash``, so the records form a chain.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyoxigraph as ox

from service.audit.sealed import GENESIS, BrokenSegment, Sealed, check_segments, sealed_hash, sealed_record
from service.clock import now
from service.errors import BrokenAnchors, Conflict
from service.knowledge import vocab
from service.knowledge.canonical import content_hash, stored_form
from service.knowledge.queries import Query
from service.knowledge.store import GraphStore, bound, plain

_CHUNK = 2_000  # records a worker hashes per task
_UNCERTAIN_KEPT = 1024  # records whose commit raised that a retry is recognised for


@dataclass
class ChainHead:
    sequence: int
    hash: str


class AuditTrail:
    """Appends chained records to the audit graph, one at a time."""

    def __init__(
        self,
        store: GraphStore,
        head_query: str,
        *,
        chain: str = "main",
        anchor_file: Path | None = None,
        checkpoint_every: int = 1000,
    ) -> None:
        self.store = store
        self.chain = chain
        self._head_query = head_query if isinstance(head_query, Query) else Query(head_query, name="audit-head")
        self.anchor_file = anchor_file
        self.checkpoint_every = checkpoint_every
        self._head: ChainHead | None = None
        self._unsealed: int | None = None  # a checkpoint whose commit raised: it may have landed unsealed
        self._uncertain: dict[str, None] = {}  # records whose commit raised, oldest first: they may have landed
        self._lock = threading.RLock()  # re-entered by append inside exclusive()
        self._sealing = threading.Lock()  # one anchor line at a time

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the trail and the store's write lock, in the order append takes them, across a read-then-append."""
        with self._lock, self.store.write_lock:
            yield

    def head(self) -> ChainHead:
        rows = self.store.select(self._head_query.bind(chain=ox.Literal(self.chain)))
        if not rows:
            return ChainHead(0, GENESIS)
        return ChainHead(int(bound(rows[0], "sequence").value), bound(rows[0], "hash").value)

    def append(
        self,
        record: ox.NamedNode,
        triples: list[ox.Triple],
        *,
        extra: Sequence[ox.Quad] = (),
        remove: Sequence[ox.Quad] = (),
        drop: Sequence[ox.NamedNode] = (),
    ) -> ChainHead:
        """Chain and store one record, with other changes in the same transaction.

        Every ``checkpoint_every`` records the new head is sealed in the anchor file
        before this returns, but after the locks are released: the flush that comes
        first takes up to hundreds of milliseconds, and other writers need not wait.

        Appending a record that is stored already with the same content changes nothing.
        """
        late: ChainHead | None = None  # a checkpoint that landed although its commit raised
        stored: ChainHead | None = None
        appended = ChainHead(0, GENESIS)
        with self._lock, self.store.write_lock:
            if self._head is None or record.value in self._uncertain:
                # Only a record whose commit raised can be stored without this trail knowing (it
                # landed, the reply did not), so only then is it looked up: one read on a rare path
                # makes retrying such an append safe, where a blind retry would chain it twice.
                stored = self._stored(record, triples)
                self._uncertain.pop(record.value, None)
            if self._head is None:
                self._head = self.head()
                if self._unsealed is not None and self._head.sequence >= self._unsealed:
                    late = self._head
                self._unsealed = None
            if stored is None:
                head = self._head
                chained = self._chained(record, triples, after=head)
                appended = ChainHead(head.sequence + 1, plain(chained[-1].object).value)
                quads = [ox.Quad(t.subject, t.predicate, t.object, vocab.AUDIT_GRAPH) for t in chained]
                try:
                    self.store.commit(add=[*quads, *extra], remove=list(remove), drop=list(drop))
                except BaseException:
                    # The commit may have landed although it raised (a reply lost on its way back, a
                    # flush failing after the write): from now on only the store knows the head.
                    self._head = None
                    self._uncertain[record.value] = None
                    if len(self._uncertain) > _UNCERTAIN_KEPT:  # a long outage must not grow it without end
                        del self._uncertain[next(iter(self._uncertain))]
                    if appended.sequence % self.checkpoint_every == 0:
                        self._unsealed = appended.sequence
                    raise
                self._head = appended
        if self.anchor_file is not None:
            if late is not None:
                self._seal(late)
            if stored is None and appended.sequence % self.checkpoint_every == 0:
                self._seal(appended)
        return stored if stored is not None else appended

    def _chained(self, record: ox.NamedNode, triples: list[ox.Triple], *, after: ChainHead) -> list[ox.Triple]:
        """Return the record's triples chained after ``after``, as stored, its content hash last."""
        chained = [
            *triples,
            ox.Triple(record, vocab.CHAIN, ox.Literal(self.chain)),
            ox.Triple(record, vocab.SEQUENCE, ox.Literal(str(after.sequence + 1), datatype=vocab.XSD_INTEGER)),
            ox.Triple(record, vocab.PREVIOUS_HASH, ox.Literal(after.hash)),
        ]
        # Hash the terms as the store will keep them: Oxigraph normalises typed
        # literals (e.g. "…:55.660450Z" is kept as "…:55.66045Z").
        chained = stored_form(chained)
        chained.append(ox.Triple(record, vocab.CONTENT_HASH, ox.Literal(content_hash(chained))))
        return chained

    def _stored(self, record: ox.NamedNode, triples: list[ox.Triple]) -> ChainHead | None:
        """Return the record's place in the chain when it is stored already with this content, else None."""
        own = {
            q.predicate: plain(q.object).value
            for q in self.store.quads(subject=record, graph=vocab.AUDIT_GRAPH)
            if q.predicate in (vocab.SEQUENCE, vocab.PREVIOUS_HASH, vocab.CONTENT_HASH)
        }
        if vocab.CONTENT_HASH not in own:
            return None
        digest, sequence = own[vocab.CONTENT_HASH], own.get(vocab.SEQUENCE, "")
        if sequence.isdigit() and vocab.PREVIOUS_HASH in own:
            after = ChainHead(int(sequence) - 1, own[vocab.PREVIOUS_HASH])
            if plain(self._chained(record, triples, after=after)[-1].object).value == digest:
                return ChainHead(int(sequence), digest)
        raise Conflict(f"audit record {record.value} is stored already with other content")

    def checkpoint(self) -> ChainHead:
        """Seal the current head in the anchor file outside the store (one JSON line)."""
        head = self._head or self.head()
        if self.anchor_file is not None and head.sequence:
            self._seal(head)
        return head

    def anchor(self, chain: str, sequence: int, digest: str) -> None:
        """Seal one record of any chain in the anchor file (a sealed segment's last record), after a flush."""
        self._seal(ChainHead(sequence, digest), chain=chain)

    def _seal(self, head: ChainHead, *, chain: str | None = None) -> None:
        anchor_file = self.anchor_file
        if anchor_file is None:  # callers seal only a trail that has an anchor file
            return
        # The flush first, so that an anchor never names a record a power loss could still take.
        # Records appended meanwhile are flushed too, and sealed by a later anchor.
        self.store.flush()
        with self._sealing:
            anchor_file.parent.mkdir(parents=True, exist_ok=True)
            with anchor_file.open("a") as out:
                out.write(
                    json.dumps(
                        {
                            "chain": chain or self.chain,
                            "sequence": head.sequence,
                            "hash": head.hash,
                            "at": now().isoformat(),
                        }
                    )
                    + "\n"
                )
                out.flush()
                os.fsync(out.fileno())

    def anchors(self) -> list[dict]:
        """Return the anchors sealed in the anchor file (none without a file); raise BrokenAnchors on a bad line."""
        if self.anchor_file is None or not self.anchor_file.exists():
            return []
        return read_anchors(self.anchor_file)

    def require_anchors(self, chains: Mapping[str, int], anchors: list[dict]) -> None:
        """Return nothing if each chain long enough to have been sealed has an anchor; raise BrokenAnchors if not."""
        if self.anchor_file is None:
            return
        sealed = {anchor.get("chain", "main") for anchor in anchors}
        for chain, records in sorted(chains.items()):
            if records >= self.checkpoint_every and chain not in sealed:
                state = "holds no anchor for it" if self.anchor_file.exists() else "is absent"
                raise BrokenAnchors(
                    str(self.anchor_file),
                    f"anchors expected: chain {chain} holds {records} records, one is sealed every "
                    f"{self.checkpoint_every} (WAYFINDER_AUDIT_CHECKPOINT_EVERY), but this file {state}; "
                    "it may have been deleted or emptied, or not restored with a backup",
                )

    def forget_head(self) -> None:
        """Re-read the chain head from the store on the next append (another writer appended)."""
        self._head = None


_HASH = re.compile(r"[0-9a-f]{64}")


def read_anchors(path: Path) -> list[dict]:
    """Return the anchors of an anchor file, one JSON object a line; raise BrokenAnchors naming a bad line."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise BrokenAnchors(str(path), f"cannot be read: {exc.strerror or exc}") from exc
    anchors = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            anchor = json.loads(line)
        except ValueError as exc:  # JSON that does not parse, or bytes that are not UTF-8
            raise BrokenAnchors(str(path), "not an anchor: the line is not JSON", line=number) from exc
        problem = _anchor_problem(anchor)
        if problem:
            raise BrokenAnchors(str(path), f"not an anchor: {problem}", line=number)
        anchors.append(anchor)
    return anchors


def _anchor_problem(anchor: object) -> str | None:
    if not isinstance(anchor, dict):
        return "the line is not a JSON object"
    sequence = anchor.get("sequence")
    if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 1:
        return "the field 'sequence' is missing or not a positive integer"
    if not isinstance(anchor.get("hash"), str) or not _HASH.fullmatch(anchor["hash"]):
        return "the field 'hash' is missing or not a SHA-256 in hex"
    if not isinstance(anchor.get("chain", "main"), str):
        return "the field 'chain' is not a string"
    return None


@dataclass
class Verification:
    """The result of checking the whole chain."""

    records: int
    ok: bool
    broken_sequence: int | None = None
    broken_record: str | None = None
    reason: str | None = None
    anchors_checked: int = 0
    chains: dict[str, int] = field(default_factory=dict)  # records checked in each chain


def verify(
    store: GraphStore,
    index_query: str,
    *,
    anchors: list[dict] | None = None,
    workers: int = 1,
    sealed: Sealed | None = None,
) -> Verification:
    """Recompute every record's hash and links, chain by chain; name the first broken record.

    With ``sealed``, each chain starts in its sealed segments (:func:`service.audit.sealed.check_segments` re-hashes
    every sealed record) and goes on in the hot store after the last one; a record of a sealed range that is also in
    the hot store (the records that stay hot once sealed, or a decision an interrupted seal left) must hash to its
    sealed copy's hash.

    With ``workers`` above 1 on an embedded store on disk, the records' triples are read back and hashed by that
    many processes (:class:`Hashers`), which start while the index query runs; the links and sequences are checked
    here, in chain order, as without them.
    """
    with Hashers(store, workers) as hashers:
        return _verify(hashers.store, index_query, anchors, hashers, sealed, workers)


def _verify(
    store: GraphStore,
    index_query: str,
    anchors: list[dict] | None,
    hashers: Hashers,
    sealed: Sealed | None,
    workers: int,
) -> Verification:
    rows = store.select(index_query)
    # The sealed hashes this check compares with: the anchors', and those of records kept in both tiers.
    try:
        sealed_ends = {chain: end.last for chain, end in (sealed.ends() if sealed is not None else {}).items()}
    except BrokenSegment:
        sealed_ends = {}  # check_segments names the manifest
    keep = {(a.get("chain", "main"), int(a["sequence"])) for a in anchors or []}
    for row in rows:
        named, numbered = row["chain"], row["sequence"]
        if named is not None and numbered is not None and numbered.value.isdigit():
            if int(numbered.value) <= sealed_ends.get(named.value, 0):
                keep.add((named.value, int(numbered.value)))
    segments = check_segments(sealed, full=True, workers=workers, keep=keep)
    if segments.problem is not None:
        at, where, reason = segments.problem
        return _broken(segments.records, at, where, reason)
    chains: dict[str, list] = {chain: [] for chain in segments.ends}
    for row in rows:
        if row["chain"] is None:
            return _broken(0, 0, bound(row, "record").value, "chain missing")
        chains.setdefault(row["chain"].value, []).append(row)
    digests = iter(hashers.hashes([row["record"] for _, chain_rows in sorted(chains.items()) for row in chain_rows]))
    hashes: dict[tuple[str, int], str] = dict(segments.hashes)
    sizes: dict[str, int] = {}
    checked_records = segments.records
    for chain, chain_rows in sorted(chains.items()):
        sealed_up_to, expected_previous = segments.end(chain)
        position = sealed_up_to + 1  # the sequence the next hot record past the sealed ones must have
        before = None
        sizes[chain] = sealed_up_to
        for row in chain_rows:
            record = row["record"]
            digest = next(digests)
            if row["sequence"] is None or row["hash"] is None or row["previous"] is None:
                missing = [n for n in ("sequence", "hash", "previous") if row[n] is None]
                return _broken(checked_records, position, record.value, f"{', '.join(missing)} missing (chain {chain})")
            try:
                sequence = int(row["sequence"].value)
            except ValueError:
                return _broken(
                    checked_records,
                    position,
                    record.value,
                    f"sequence {row['sequence'].value!r} is not an integer (chain {chain})",
                )
            if 0 < sequence <= sealed_up_to:  # sealed, and kept hot as well: it must be its sealed copy
                if digest != row["hash"].value or hashes.get((chain, sequence)) != digest:
                    return _broken(
                        checked_records,
                        sequence,
                        record.value,
                        f"differs from its sealed copy: record {sequence} of chain {chain} was changed in the hot "
                        "store or in its segment",
                    )
                continue
            if before is not None and sequence == position - 1:
                return _broken(
                    checked_records,
                    sequence,
                    record.value,
                    f"duplicate sequence {sequence} in chain {chain}: records {before.value} and "
                    f"{record.value} (a commit was applied twice or a reply was lost)",
                )
            if sequence > position:
                hint = ""
                if position == 1 and sealed is not None and not sealed.folder.exists():
                    hint = f"; its sealed segments may not have been restored (none in {sealed.folder})"
                return _broken(
                    checked_records,
                    position,
                    record.value,
                    f"record {position} missing: a record was removed (chain {chain}){hint}",
                )
            if sequence != position:
                return _broken(
                    checked_records,
                    position,
                    record.value,
                    f"sequence {sequence} where {position} was expected in chain {chain}",
                )
            if row["previous"].value != expected_previous:
                return _broken(
                    checked_records, sequence, record.value, "previous hash does not match the record before"
                )
            if digest != row["hash"].value:
                return _broken(
                    checked_records,
                    sequence,
                    record.value,
                    "content hash does not match: a triple was added, removed or changed",
                )
            hashes[(chain, sequence)] = digest
            expected_previous = digest
            before = record
            checked_records += 1
            sizes[chain] = sequence
            position += 1
    checked = 0
    for anchor in anchors or []:
        key = (anchor.get("chain", "main"), int(anchor["sequence"]))
        if hashes.get(key) != anchor["hash"]:
            return _broken(
                checked_records,
                key[1],
                None,
                f"record {key[1]} of chain {key[0]} is missing or differs from its external anchor "
                "(the chain was cut or rewritten)",
            )
        checked += 1
    return Verification(records=checked_records, ok=True, anchors_checked=checked, chains=sizes)


def verify_since_anchors(
    store: GraphStore, head_query: str, anchors: list[dict], *, sealed: Sealed | None = None
) -> Verification:
    """Check each chain from its last external anchor (or its first record) to its head, in index lookups only.

    Each chain starts at the record its last anchor names, which must be stored with the anchored hash and must
    hash to it; from there each record is found by its predecessor's hash (``wf:previousHash``), its sequence must
    follow and its content must hash to its ``wf:contentHash``; the walk must end at the chain's head (``head_query``:
    the record with the highest sequence), so a record removed from the tail's middle is found. Earlier anchors must name stored records with their hashes. What lies before the last
    anchor is not hashed again: that is the full :func:`verify`, to run from time to time; this one answers in
    seconds after a checkpoint, however long the chains.

    With ``sealed``, each segment's file must match its manifest's SHA-256 and the segments must follow each other
    in their chains (their records are re-hashed by the full check); an anchor in a sealed range must name its
    sealed record's hash; and a chain whose last anchor falls in its sealed range is walked from its last segment.
    """
    segments = check_segments(sealed, full=False)
    if segments.problem is not None:
        at, named, reason = segments.problem
        return _broken(0, at, named, reason)
    chains = {chain for _, named in _linked_to(store, GENESIS) for chain in named} | set(segments.ends)
    last: dict[str, dict] = {}
    for anchor in anchors:
        chain = anchor.get("chain", "main")
        chains.add(chain)
        if chain not in last or int(anchor["sequence"]) > int(last[chain]["sequence"]):
            last[chain] = anchor
    head_of = head_query if isinstance(head_query, Query) else Query(head_query, name="audit-head")
    checked_records = checked_anchors = 0
    sizes: dict[str, int] = {}
    for chain in sorted(chains):
        sealed_up_to, sealed_hash_ = segments.end(chain)
        for anchor in anchors:
            if anchor.get("chain", "main") != chain:
                continue
            if int(anchor["sequence"]) <= sealed_up_to:
                key = (chain, int(anchor["sequence"]))
                known = segments.hashes.get(key) or sealed_hash(sealed, *key)
                if known != anchor["hash"]:
                    return _broken(
                        checked_records,
                        key[1],
                        None,
                        f"record {key[1]} of chain {chain} is sealed, and its sealed copy is missing or differs "
                        "from its external anchor (the chain was cut or rewritten)",
                    )
                checked_anchors += 1
                continue
            found = _at(store, chain, int(anchor["sequence"]))
            if len(found) != 1 or _own(store, found[0]).get(vocab.CONTENT_HASH) != anchor["hash"]:
                return _broken(
                    checked_records,
                    int(anchor["sequence"]),
                    found[0].value if len(found) == 1 else None,
                    f"record {anchor['sequence']} of chain {chain} is missing or differs from its external anchor "
                    "(the chain was cut or rewritten)",
                )
            checked_anchors += 1
        sequence, digest = (int(last[chain]["sequence"]), last[chain]["hash"]) if chain in last else (0, GENESIS)
        if sequence <= sealed_up_to:  # walk on from the last segment, whose records the full check re-hashes
            sequence, digest = sealed_up_to, sealed_hash_
        elif sequence:
            (anchored,) = _at(store, chain, sequence)
            if content_hash(record_triples(store, anchored)) != digest:
                return _broken(
                    checked_records,
                    sequence,
                    anchored.value,
                    "content hash does not match: a triple was added, removed or changed",
                )
            checked_records += 1
        while True:
            following = [record for record, named in _linked_to(store, digest) if chain in named]
            if not following:
                break
            if len(following) > 1:
                return _broken(
                    checked_records,
                    sequence + 1,
                    following[1].value,
                    f"two records follow record {sequence} of chain {chain} (a commit was applied twice)",
                )
            record = following[0]
            own = _own(store, record)
            if own.get(vocab.SEQUENCE) != str(sequence + 1):
                return _broken(
                    checked_records,
                    sequence + 1,
                    record.value,
                    f"sequence {own.get(vocab.SEQUENCE)} where {sequence + 1} was expected in chain {chain}",
                )
            recomputed = content_hash(record_triples(store, record))
            if recomputed != own.get(vocab.CONTENT_HASH):
                return _broken(
                    checked_records,
                    sequence + 1,
                    record.value,
                    "content hash does not match: a triple was added, removed or changed",
                )
            sequence, digest = sequence + 1, recomputed
            checked_records += 1
        rows = store.select(head_of.bind(chain=ox.Literal(chain)))
        head = int(bound(rows[0], "sequence").value) if rows else 0
        if head != sequence:
            beyond = _at(store, chain, sequence + 1)
            return _broken(
                checked_records,
                sequence + 1,
                beyond[0].value if beyond else None,
                f"record {sequence + 1} of chain {chain} does not follow record {sequence}: previous hash does not "
                "match the record before"
                if beyond
                else f"record {sequence + 1} missing: a record was removed (chain {chain} goes on to {head})",
            )
        sizes[chain] = sequence
    return Verification(records=checked_records, ok=True, anchors_checked=checked_anchors, chains=sizes)


def _linked_to(store: GraphStore, previous: str) -> list[tuple[ox.NamedNode, set[str]]]:
    """The records whose wf:previousHash is ``previous``, each with the chains it names."""
    return [
        (link.subject, _chains_of(store, link.subject))
        for link in store.quads(predicate=vocab.PREVIOUS_HASH, object=ox.Literal(previous), graph=vocab.AUDIT_GRAPH)
        if isinstance(link.subject, ox.NamedNode)
    ]


def _at(store: GraphStore, chain: str, sequence: int) -> list[ox.NamedNode]:
    """The records of ``chain`` numbered ``sequence``."""
    number = ox.Literal(str(sequence), datatype=vocab.XSD_INTEGER)
    return [
        q.subject
        for q in store.quads(predicate=vocab.SEQUENCE, object=number, graph=vocab.AUDIT_GRAPH)
        if isinstance(q.subject, ox.NamedNode) and chain in _chains_of(store, q.subject)
    ]


def _chains_of(store: GraphStore, record: ox.NamedNode) -> set[str]:
    return {plain(q.object).value for q in store.quads(subject=record, predicate=vocab.CHAIN, graph=vocab.AUDIT_GRAPH)}


def _own(store: GraphStore, record: ox.NamedNode) -> dict:
    """A record's chain fields: sequence, content hash, previous hash (by predicate)."""
    wanted = (vocab.SEQUENCE, vocab.CONTENT_HASH, vocab.PREVIOUS_HASH)
    return {
        q.predicate: plain(q.object).value
        for q in store.quads(subject=record, graph=vocab.AUDIT_GRAPH)
        if q.predicate in wanted
    }


def _broken(records: int, sequence: int, record: str | None, reason: str) -> Verification:
    return Verification(records=records, ok=False, broken_sequence=sequence, broken_record=record, reason=reason)


def record_triples(store: GraphStore, record: ox.NamedNode | ox.BlankNode) -> list[ox.Quad]:
    """Return every triple of a record: its own and those of its candidates."""
    own = list(store.quads(subject=record, graph=vocab.AUDIT_GRAPH))
    parts = [q.object for q in own if q.predicate == vocab.HAS_CANDIDATE and isinstance(q.object, ox.NamedNode)]
    for part in parts:
        own.extend(store.quads(subject=part, graph=vocab.AUDIT_GRAPH))
    return own


class Hashers:
    """Hashes records' triples (:func:`content_hash` of :func:`record_triples`), here or in worker processes.

    With ``workers`` above 1 on an embedded store on disk, the check reads a snapshot: a checkpoint of the store
    (RocksDB hard links, in a folder beside it, removed on exit), which this process and that many worker processes
    open read-only. Reading a record's triples back is what a full check spends its time on, and it holds the
    interpreter, so threads would not share it; each worker hashes a share of the records. The checkpoint keeps the
    files the workers read from being deleted by the store's own compactions, and makes the check one consistent
    view: the index and every record as they were when it was taken. The workers start as the context opens (about a
    second), which :func:`verify` overlaps with its index query. A check whose index names a blank-node record
    (never written by the service; a tampered store may hold one) hashes every record here, in the snapshot.
    """

    def __init__(self, store: GraphStore, workers: int = 1) -> None:
        from service.knowledge.embedded import Store

        self.store = self._source = store  # what the check reads: the store, or its snapshot
        self._pool: ProcessPoolExecutor | None = None
        self._snapshot: Path | None = None
        location = getattr(store, "location", None)
        if workers <= 1 or location is None or not isinstance(store, Store):
            return
        self._snapshot = location.with_name(f".{location.name}.verify-{uuid.uuid4().hex[:12]}")
        try:
            store.backup(self._snapshot)
            self.store = Store(self._snapshot, read_only=True)
            self._pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),  # a forked child would share the open RocksDB
                initializer=_open_for_hashing,
                initargs=(str(self._snapshot),),
            )
            for _ in range(workers):
                self._pool.submit(_hash_chunk, [])  # start them now
        except BaseException:
            self.__exit__()
            raise

    def __enter__(self) -> Hashers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        if self._snapshot is not None:
            if self.store is not self._source:
                self.store.close()  # the snapshot's read-only Store
            shutil.rmtree(self._snapshot, ignore_errors=True)

    def hashes(self, records: Sequence[ox.NamedNode | ox.BlankNode]) -> list[str]:
        """The content hash of each record, in the order given."""
        if self._pool is None or not all(isinstance(r, ox.NamedNode) for r in records):
            return [content_hash(record_triples(self.store, record)) for record in records]
        iris = [r.value for r in records]
        chunks = [iris[i : i + _CHUNK] for i in range(0, len(iris), _CHUNK)]
        return [digest for part in self._pool.map(_hash_chunk, chunks) for digest in part]


_hashing_store: GraphStore | None = None  # a hashing worker's read-only store


def _open_for_hashing(location: str) -> None:
    from service.knowledge.embedded import Store

    global _hashing_store
    _hashing_store = Store(location, read_only=True)


def _hash_chunk(iris: list[str]) -> list[str]:
    assert _hashing_store is not None, "the worker's store is opened by its initializer"
    return [content_hash(record_triples(_hashing_store, ox.NamedNode(iri))) for iri in iris]


@dataclass(frozen=True)
class RecordCheck:
    """One record's standing in its chain: its own hash, its links to its neighbours, and the anchor that seals it."""

    record: str
    chain: str | None
    sequence: int | None
    content_ok: bool  # its stored hash is the hash of its triples
    linked_before: bool  # its previous hash is the stored hash of the record before it (the genesis hash for the first)
    linked_after: bool | None  # the record after it names its hash; None where it is the newest
    anchor: int | None = None  # the sequence of the first external anchor at or after it, in its chain

    @property
    def ok(self) -> bool:
        return self.content_ok and self.linked_before and self.linked_after is not False


def check_record(
    store: GraphStore, record: ox.NamedNode, *, anchors: list[dict] | None = None, sealed: Sealed | None = None
) -> RecordCheck:
    """Check one record against its neighbours, as ``verify`` does for each (the whole chain needs ``verify``); a
    neighbour that is not in the hot store is looked for in the ``sealed`` segments."""
    own = _own(store, record)
    chains = sorted(_chains_of(store, record))
    chain = chains[0] if len(chains) == 1 else None
    try:
        sequence = int(own[vocab.SEQUENCE]) if vocab.SEQUENCE in own else None
    except ValueError:
        sequence = None
    stored = own.get(vocab.CONTENT_HASH)
    content_ok = stored is not None and content_hash(record_triples(store, record)) == stored
    if chain is None or sequence is None:
        return RecordCheck(record.value, chain, sequence, content_ok, False, None)
    if sequence == 1:
        linked_before = own.get(vocab.PREVIOUS_HASH) == GENESIS
    else:
        before = _at(store, chain, sequence - 1)
        if before:
            linked_before = len(before) == 1 and _own(store, before[0]).get(vocab.CONTENT_HASH) == own.get(
                vocab.PREVIOUS_HASH
            )
        else:
            linked_before = sealed_hash(sealed, chain, sequence - 1) == own.get(vocab.PREVIOUS_HASH)
    after = _at(store, chain, sequence + 1)
    if after:
        linked_after = len(after) == 1 and _own(store, after[0]).get(vocab.PREVIOUS_HASH) == stored
    else:
        following = sealed_record(sealed, chain, sequence + 1)
        linked_after = None if following is None else following.previous == stored
    sealing = sorted(
        int(a["sequence"]) for a in anchors or [] if a.get("chain", "main") == chain and int(a["sequence"]) >= sequence
    )
    return RecordCheck(
        record.value, chain, sequence, content_ok, linked_before, linked_after, sealing[0] if sealing else None
    )
