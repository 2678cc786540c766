"""The sealed tier of the audit trail: old decision records moved out of the hot store into immutable segments.

Decisions are most of the trail (one record each, for ever) and serving reads only recent ones, so a chain's
prefix of records older than a configured age is sealed: written, whole, into a segment file, and its decision
records are then removed from the hot store. The other records in that range (changes, approvals, reports,
erasures, purges: few, and read while serving) are sealed too but stay in the hot store, where they must equal
their sealed copies. A chain's newest record is never sealed, so its head stays in the hot store.

A segment is three files in the sealed folder (beside an embedded store, ``<store>.sealed``):

- ``NAME.nt.gz``: gzip of the records in chain order, each record its canonical N-Triples lines (the sorted,
  distinct lines that its content hash is over, its ``wf:contentHash`` line among them), records separated by
  one blank line;
- ``NAME.json``: its manifest: the chain, the first and last sequence, the hash the first record follows and the
  last record's hash (the segment's anchors in its chain), the records and decisions it holds, the oldest and
  newest decision time, the external anchors that fell in its range, and the file's size and SHA-256;
- ``NAME.ids``: the UUIDs of its decision records, 16 bytes each, sorted: what a lookup of one decision searches
  before it reads a segment (derived from the segment, so not covered by the manifest's digest).

Sealing writes the segment file, its index, then its manifest (each synced and renamed into place), then removes the decision
records from the hot store, then appends an external anchor for the segment's last record. A crash between leaves
records both sealed and hot: equal copies, which the next seal removes. A segment file without a manifest is an
interrupted seal: its records are all still hot, and the next seal replaces it.

Reading: :func:`check_segments` re-hashes every sealed record (the full ``audit verify``) or checks the files'
digests (``--since-anchor``); :func:`archive` builds a store for lineage queries over sealed records (a
checkpoint of the hot store with the chosen segments loaded into its audit graph); :func:`select` runs one query
over each segment in turn, with graphs of the hot store beside it.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import multiprocessing
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

import pyoxigraph as ox

from service.clock import datetime_literal, now, parse_datetime
from service.errors import Conflict
from service.filelock import exclusive
from service.knowledge import vocab
from service.knowledge.canonical import canonical_form, content_hash
from service.knowledge.embedded import Store
from service.knowledge.queries import Queries
from service.knowledge.store import GraphStore, Row, bound, plain
from service.schedule import every

if TYPE_CHECKING:
    from service.runtime import Runtime

log = logging.getLogger("wayfinder.audit")
FORMAT = "wayfinder-sealed/1"
GENESIS = "0" * 64  # the hash a chain's first record follows
SEGMENT_RECORDS = 10_000  # records in one segment at most: what one query over a segment loads into memory
_REMOVE_BATCH = 1_000  # decision records removed from the hot store in one commit


@dataclass(frozen=True)
class Segment:
    """One sealed segment, as its manifest describes it."""

    name: str
    folder: Path
    chain: str
    first: int
    last: int
    previous: str  # the hash of the record before the first (the genesis hash for a chain's first segment)
    hash: str  # the last record's content hash
    records: int
    decisions: int
    oldest: str | None  # the earliest and latest decision time (prov:startedAtTime), None without decisions
    newest: str | None
    anchors: dict[int, str]  # the external anchors in its range: sequence -> hash
    bytes: int
    sha256: str
    sealed_at: str

    @property
    def path(self) -> Path:
        return self.folder / f"{self.name}.nt.gz"

    def overlaps(self, since: datetime | None, until: datetime | None) -> bool:
        """Whether it may hold a decision made in [since, until) (every segment does, without bounds)."""
        if self.oldest is None or self.newest is None:
            return since is None and until is None
        if since is not None and parse_datetime(self.newest) < since:
            return False
        return not (until is not None and parse_datetime(self.oldest) >= until)

    def manifest(self) -> dict:
        return {
            "format": FORMAT,
            "chain": self.chain,
            "first": self.first,
            "last": self.last,
            "previous": self.previous,
            "hash": self.hash,
            "records": self.records,
            "decisions": self.decisions,
            "oldest": self.oldest,
            "newest": self.newest,
            "anchors": [{"sequence": s, "hash": h} for s, h in sorted(self.anchors.items())],
            "file": self.path.name,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "sealedAt": self.sealed_at,
        }


class BrokenSegment(Exception):
    """A segment's manifest does not parse; what a check reports as a broken trail."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


@dataclass
class SealedRecord:
    """One record as a segment holds it."""

    iri: str
    chain: str | None
    sequence: int | None
    previous: str | None
    hash: str | None  # its stored wf:contentHash
    recomputed: str  # the hash of its triples


class Sealed:
    """The sealed segments in one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def segments(self) -> list[Segment]:
        """Every complete segment (one with a manifest), by chain and first sequence; BrokenSegment on a bad manifest."""
        if not self.folder.is_dir():
            return []
        found = [_read_manifest(self.folder, path) for path in sorted(self.folder.glob("*.json"))]
        return sorted(found, key=lambda s: (s.chain, s.first))

    def ends(self) -> dict[str, Segment]:
        """Each chain's last segment."""
        return {segment.chain: segment for segment in self.segments()}

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Hold the folder's lock: one seal at a time, across processes."""
        self.folder.mkdir(parents=True, exist_ok=True)
        return exclusive(self.folder / ".lock")

    def copy_to(self, target: Path) -> int:
        """Copy every complete segment (file, index and manifest) to a new folder; return how many."""
        segments = self.segments()
        target.mkdir(parents=True)
        for segment in segments:
            shutil.copy2(segment.path, target / segment.path.name)
            index = self.folder / f"{segment.name}.ids"
            if index.exists():
                shutil.copy2(index, target / index.name)
            shutil.copy2(self.folder / f"{segment.name}.json", target / f"{segment.name}.json")
        return len(segments)


def _read_manifest(folder: Path, path: Path) -> Segment:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise BrokenSegment(path, "the manifest is not readable JSON") from exc
    try:
        if data["format"] != FORMAT:
            raise BrokenSegment(path, f"unknown format {data['format']!r}")
        if data["file"] != f"{path.stem}.nt.gz":
            raise BrokenSegment(path, f"the manifest names another file, {data['file']!r}")
        return Segment(
            name=path.stem,
            folder=folder,
            chain=str(data["chain"]),
            first=int(data["first"]),
            last=int(data["last"]),
            previous=str(data["previous"]),
            hash=str(data["hash"]),
            records=int(data["records"]),
            decisions=int(data["decisions"]),
            oldest=data["oldest"],
            newest=data["newest"],
            anchors={int(a["sequence"]): str(a["hash"]) for a in data["anchors"]},
            bytes=int(data["bytes"]),
            sha256=str(data["sha256"]),
            sealed_at=str(data["sealedAt"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BrokenSegment(path, f"the manifest lacks or garbles a field ({exc})") from exc


def file_digest(path: Path) -> str | None:
    """The SHA-256 of a file's bytes; None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as source:
            while chunk := source.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def records(segment: Segment) -> Iterator[SealedRecord]:
    """Parse a segment's records in file order; SyntaxError or OSError where the file is not what sealing wrote."""
    for text in _texts(segment):
        yield _parsed(text)


def _texts(segment: Segment) -> Iterator[str]:
    """Each record's lines, as one text, in file order."""
    with gzip.open(segment.path, "rt", encoding="utf-8", newline="\n") as text:
        lines: list[str] = []
        for line in text:
            if line != "\n":
                lines.append(line)
                continue
            if lines:
                yield "".join(lines)
            lines = []
        if lines:
            yield "".join(lines)


def records_naming(
    sealed: Sealed | None, predicate: ox.NamedNode, term: ox.NamedNode | ox.Literal
) -> Iterator[tuple[ox.NamedNode, list[ox.Quad]]]:
    """Each sealed record that says ``predicate term`` of itself (a decision's ``wf:subjectPseudonym``), with the
    quads of the audit graph it held. Only records whose text holds that triple's line are parsed."""
    line = f" {predicate} {term} .\n"
    for segment in sealed.segments() if sealed is not None else []:
        for text in _texts(segment):
            if line not in text:
                continue
            record, triples = _read(text)
            if record is not None and ox.Triple(record, predicate, term) in triples:
                yield record, _in_audit_graph(triples)


def _read(text: str) -> tuple[ox.NamedNode | None, list[ox.Triple]]:
    """A record's text parsed: the record (the one subject with a ``wf:sequence``; None without exactly one) and
    its triples."""
    triples = [q.triple for q in ox.parse(text, format=ox.RdfFormat.N_TRIPLES)]
    chained = [t.subject for t in triples if t.predicate == vocab.SEQUENCE]
    record = chained[0] if len(chained) == 1 and isinstance(chained[0], ox.NamedNode) else None
    return record, triples


def _in_audit_graph(triples: Iterable[ox.Triple]) -> list[ox.Quad]:
    return [ox.Quad(t.subject, t.predicate, t.object, vocab.AUDIT_GRAPH) for t in triples]


def _parsed(text: str) -> SealedRecord:
    record, triples = _read(text)
    subject = record if record is not None else (plain(triples[0].subject) if triples else None)
    own = {t.predicate: plain(t.object).value for t in triples if t.subject == subject}
    sequence = own.get(vocab.SEQUENCE)
    return SealedRecord(
        iri=subject.value if subject is not None else "",
        chain=own.get(vocab.CHAIN),
        sequence=int(sequence) if record is not None and sequence is not None and sequence.isdigit() else None,
        previous=own.get(vocab.PREVIOUS_HASH),
        hash=own.get(vocab.CONTENT_HASH),
        recomputed=content_hash(triples),
    )


# -- sealing ---------------------------------------------------------------


@dataclass
class SealReport:
    """What one seal did."""

    cutoff: datetime
    segments: list[Segment] = field(default_factory=list)
    decisions_removed: int = 0  # decision records taken out of the hot store (sealed now or by an interrupted seal)

    @property
    def records(self) -> int:
        return sum(s.records for s in self.segments)


def seal(
    store: GraphStore,
    sealed: Sealed,
    queries: Queries,
    *,
    cutoff: datetime,
    anchors: Sequence[dict] = (),
    anchor: Callable[[str, int, str], None] | None = None,
    segment_records: int = SEGMENT_RECORDS,
) -> SealReport:
    """Seal, chain by chain, the records up to the newest decision made before ``cutoff`` (never a chain's head).

    ``queries`` gives the shipped queries (``audit-chains``, ``audit-head``, ``sealable``, ``audit-range``);
    ``anchors`` are the external anchors so far (a segment's manifest keeps those in its range), and
    ``anchor(chain, sequence, hash)`` appends one for each new segment's last record. Every record is checked (its
    hash, its link to the one before) before it is sealed: a broken chain is refused, naming the record, and
    nothing is sealed from there on.
    """
    report = SealReport(cutoff=cutoff)
    with sealed.locked():
        for interrupted in [*sealed.folder.glob("*.nt.gz"), *sealed.folder.glob("*.ids")]:
            stem = interrupted.name.removesuffix(".nt.gz").removesuffix(".ids")
            if not (sealed.folder / f"{stem}.json").exists():
                interrupted.unlink()  # a seal that stopped before its manifest: its records are all still hot
        ends = sealed.ends()
        for last_segment in ends.values():  # a seal that stopped after its manifest: its decisions may still be hot
            report.decisions_removed += _remove_sealed(store, queries, last_segment)
        chains = [bound(r, "chain").value for r in store.select(queries["audit-chains"])]
        for chain in chains:
            end = ends.get(chain)
            after, previous = (end.last, end.hash) if end is not None else (0, GENESIS)
            head_rows = store.select(queries["audit-head"].bind(chain=ox.Literal(chain)))
            head = int(bound(head_rows[0], "sequence").value) if head_rows else 0
            rows = store.select(
                queries["sealable"].bind(
                    chain=ox.Literal(chain),
                    after=_integer(after),
                    before=datetime_literal(cutoff),
                )
            )
            upto = rows[0]["upto"] if rows else None
            if upto is None:
                continue
            upto_n = min(int(upto.value), head - 1)  # the head stays hot: appends read it
            while after < upto_n:
                last = min(upto_n, after + segment_records)
                known = {
                    int(a["sequence"]): str(a["hash"])
                    for a in anchors
                    if a.get("chain", "main") == chain and after < int(a["sequence"]) <= last
                }
                segment, decisions = _seal_range(store, sealed, queries, chain, after, last, previous, known)
                report.segments.append(segment)
                report.decisions_removed += _remove(store, decisions)
                if anchor is not None:
                    anchor(chain, segment.last, segment.hash)
                after, previous = segment.last, segment.hash
    return report


def _seal_range(
    store: GraphStore,
    sealed: Sealed,
    queries: Queries,
    chain: str,
    after: int,
    upto: int,
    previous: str,
    anchors: dict[int, str],
) -> tuple[Segment, list[list[ox.Quad]]]:
    """Write the records after ``after`` up to ``upto`` of ``chain``, which follow ``previous``, into a new
    segment; return it with the quads of each decision record in it (what leaves the hot store once the segment is
    durable). ``anchors`` are the external anchors in that range: each must name its record's hash."""
    from service.audit.chain import record_triples  # the chain module reads segments too

    rows = store.select(
        queries["audit-range"].bind(chain=ox.Literal(chain), after=_integer(after), upto=_integer(upto))
    )
    expected = after + 1
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", chain)[:40]
    name = f"{safe}-{after + 1:012d}-{upto:012d}-{uuid.uuid4().hex[:8]}"
    partial = sealed.folder / f"{name}.nt.gz.partial"
    decisions: list[list[ox.Quad]] = []
    named: list[ox.NamedNode] = []  # the decision records, for the segment's index
    times: list[str] = []
    start = previous
    try:
        with partial.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as out:
            for row in rows:
                record, sequence = bound(row, "record"), int(bound(row, "sequence").value)
                if sequence != expected or not isinstance(record, ox.NamedNode):
                    raise Conflict(
                        f"chain {chain} has no single record {expected} to seal ({record.value} is numbered "
                        f"{sequence}); run `wayfinder audit verify`"
                    )
                triples = record_triples(store, record)
                own = {q.predicate: plain(q.object).value for q in triples if q.subject == record}
                digest = content_hash(triples)
                if own.get(vocab.CONTENT_HASH) != digest or own.get(vocab.PREVIOUS_HASH) != previous:
                    raise Conflict(
                        f"record {sequence} of chain {chain} ({record.value}) does not verify, so it is not sealed; "
                        "run `wayfinder audit verify`"
                    )
                if sequence in anchors and anchors[sequence] != digest:
                    raise Conflict(
                        f"record {sequence} of chain {chain} ({record.value}) differs from its external anchor, so it "
                        "is not sealed; run `wayfinder audit verify`"
                    )
                if any(q.predicate == vocab.RDF_TYPE and q.object == vocab.DECISION for q in triples):
                    decisions.append(triples)
                    named.append(record)
                    if vocab.PROV_STARTED_AT in own:
                        times.append(own[vocab.PROV_STARTED_AT])
                out.write(canonical_form(triples).encode("utf-8"))
                out.write(b"\n")
                previous, expected = digest, expected + 1
        if expected != upto + 1:
            raise Conflict(f"chain {chain} ends at record {expected - 1}, not {upto}; run `wayfinder audit verify`")
        with partial.open("rb") as written:
            os.fsync(written.fileno())
        segment_path = sealed.folder / f"{name}.nt.gz"
        os.replace(partial, segment_path)
    finally:
        partial.unlink(missing_ok=True)
    parsed = sorted(times, key=parse_datetime)
    segment = Segment(
        name=name,
        folder=sealed.folder,
        chain=chain,
        first=after + 1,
        last=upto,
        previous=start,
        hash=previous,
        records=upto - after,
        decisions=len(decisions),
        oldest=parsed[0] if parsed else None,
        newest=parsed[-1] if parsed else None,
        anchors=anchors,
        bytes=segment_path.stat().st_size,
        sha256=file_digest(segment_path) or "",
        sealed_at=now().isoformat(),
    )
    _write_index(sealed.folder / f"{name}.ids", named)
    manifest = json.dumps(segment.manifest(), indent=1, sort_keys=True) + "\n"
    _write_durably(sealed.folder / f"{name}.json", manifest.encode())
    return segment, decisions


def _write_index(path: Path, records: Sequence[ox.NamedNode]) -> None:
    """Write a segment's index: the UUIDs of its decision records, 16 bytes each, sorted (what :func:`sealed_quads`
    searches before it reads a segment). It is derived from the segment, so it is not in the manifest's digest."""
    _write_durably(path, b"".join(sorted(k for r in records if (k := _key(r)) is not None)))


def _key(record: ox.NamedNode) -> bytes | None:
    """A decision record's UUID as 16 bytes; None for a record not named by one."""
    if not record.value.startswith(vocab.DECISION_BASE):
        return None
    try:
        return uuid.UUID(record.value.removeprefix(vocab.DECISION_BASE)).bytes
    except ValueError:
        return None


def _indexed(segment: Segment, key: bytes) -> bool | None:
    """Whether the segment's index holds the key; None where the segment has no index."""
    try:
        data = (segment.folder / f"{segment.name}.ids").read_bytes()
    except FileNotFoundError:
        return None
    low, high = 0, len(data) // 16
    while low < high:
        middle = (low + high) // 2
        found = data[middle * 16 : middle * 16 + 16]
        if found == key:
            return True
        if found < key:
            low = middle + 1
        else:
            high = middle
    return False


def _write_durably(path: Path, data: bytes) -> None:
    """Write a file whole or not at all: synced under a temporary name, renamed into place, the folder synced."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _remove_sealed(store: GraphStore, queries: Queries, segment: Segment) -> int:
    """Remove the decision records of a segment's range that are still in the hot store; return how many were."""
    from service.audit.chain import record_triples

    rows = store.select(
        queries["audit-range"].bind(
            chain=ox.Literal(segment.chain), after=_integer(segment.first - 1), upto=_integer(segment.last)
        )
    )
    decisions = (
        record_triples(store, plain_record(bound(r, "record"))) for r in rows if bound(r, "decision").value == "true"
    )
    return _remove(store, decisions)


def _remove(store: GraphStore, decisions: Iterable[list[ox.Quad]]) -> int:
    """Remove decision records (each its quads) from the hot store, a batch a commit; return how many."""
    removed, batch = 0, []
    for quads in decisions:
        batch.extend(quads)
        removed += 1
        if removed % _REMOVE_BATCH == 0:
            store.commit(remove=batch)
            batch = []
    if batch:
        store.commit(remove=batch)
    return removed


def plain_record(term: ox.NamedNode | ox.BlankNode | ox.Literal) -> ox.NamedNode:
    """A record's IRI as a query binds it; the service names every record by IRI."""
    if not isinstance(term, ox.NamedNode):
        raise Conflict(f"an audit record named {term}, not by an IRI; run `wayfinder audit verify`")
    return term


def _integer(n: int) -> ox.Literal:
    return ox.Literal(str(n), datatype=vocab.XSD_INTEGER)


# -- checking --------------------------------------------------------------


@dataclass
class SealedChains:
    """What the segments hold, once checked: each chain's sealed end, and the hashes known of its sealed records."""

    ends: dict[str, tuple[int, str]] = field(default_factory=dict)  # chain -> (last sequence, its hash)
    # (chain, sequence) -> hash: the manifests' (each segment's last, its anchors) and the re-hashed ones asked for
    hashes: dict[tuple[str, int], str] = field(default_factory=dict)
    records: int = 0  # sealed records re-hashed
    segments: int = 0
    problem: tuple[int, str | None, str] | None = None  # (sequence, record, reason) of the first break

    def end(self, chain: str) -> tuple[int, str]:
        return self.ends.get(chain, (0, GENESIS))


def check_segments(
    sealed: Sealed | None, *, full: bool, workers: int = 1, keep: set[tuple[str, int]] | None = None
) -> SealedChains:
    """Check every segment's file against its manifest and the segments' order in each chain; with ``full``, also
    parse and re-hash every sealed record, its sequence and its link to the one before (in ``workers`` processes,
    a segment each at a time). The hashes kept are the manifests' (each segment's last, the anchors in its range)
    and, of the re-hashed ones, those in ``keep`` (all of them without it)."""
    checked = SealedChains()
    if sealed is None:
        return checked
    try:
        segments = sealed.segments()
    except BrokenSegment as exc:
        checked.problem = (0, None, f"sealed segment manifest {exc.path.name}: {exc.reason}")
        return checked
    sound: list[Segment] = []  # the segments before the first that does not fit its place or its manifest
    ends: dict[str, tuple[int, str]] = {}
    problem: tuple[int, str | None, str] | None = None
    for segment in segments:
        last, previous = ends.get(segment.chain, (0, GENESIS))
        where = f"sealed segment {segment.name} (chain {segment.chain})"
        if segment.first != last + 1 or segment.previous != previous:
            problem = (
                last + 1,
                None,
                f"{where} starts at record {segment.first} after hash {segment.previous[:12]}…, where record "
                f"{last + 1} after {previous[:12]}… was expected: a segment is missing or out of place",
            )
            break
        if file_digest(segment.path) != segment.sha256:
            state = "is missing" if not segment.path.exists() else "differs from its manifest's SHA-256"
            problem = (segment.first, None, f"{where}: the file {state}")
            break
        sound.append(segment)
        ends[segment.chain] = (segment.last, segment.hash)
    wanted = [
        None if keep is None else {s for c, s in keep if c == segment.chain and segment.first <= s <= segment.last}
        for segment in sound
    ]
    with contextlib.ExitStack() as stack:
        outcomes: Iterable[tuple[tuple[int, str | None, str] | None, list[tuple[int, str]], int]]
        if not full:
            outcomes = ((None, [], 0) for _ in sound)
        elif workers > 1 and len(sound) > 1:
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
            stack.callback(pool.shutdown, cancel_futures=True)
            outcomes = pool.map(_check_segment, sound, wanted)
        else:
            outcomes = map(_check_segment, sound, wanted)
        for segment, (broken, hashes, count) in zip(sound, outcomes, strict=True):
            if broken is not None:
                checked.problem = broken
                return checked
            checked.segments += 1
            checked.records += count
            checked.hashes.update({(segment.chain, s): h for s, h in segment.anchors.items()})
            checked.hashes[(segment.chain, segment.last)] = segment.hash
            checked.hashes.update({(segment.chain, s): h for s, h in hashes})
            checked.ends[segment.chain] = (segment.last, segment.hash)
    checked.problem = problem
    return checked


def _check_segment(
    segment: Segment, keep: set[int] | None
) -> tuple[tuple[int, str | None, str] | None, list[tuple[int, str]], int]:
    """Re-hash one segment's records: the first problem (or None), the hashes of those in ``keep`` (all without
    it), and how many records were checked."""
    expected, previous = segment.first, segment.previous
    where = f"in sealed segment {segment.name}"
    hashes: list[tuple[int, str]] = []
    try:
        for record in records(segment):
            if record.chain != segment.chain or record.sequence != expected:
                reason = (
                    f"sequence {record.sequence} of chain {record.chain} where {expected} of chain {segment.chain} "
                    f"was expected {where}"
                )
                return (expected, record.iri, reason), hashes, 0
            if record.previous != previous:
                return (expected, record.iri, f"previous hash does not match the record before ({where})"), hashes, 0
            if record.hash != record.recomputed:
                reason = f"content hash does not match: a triple was added, removed or changed ({where})"
                return (expected, record.iri, reason), hashes, 0
            if keep is None or expected in keep:
                hashes.append((expected, record.recomputed))
            previous, expected = record.recomputed, expected + 1
    except (SyntaxError, OSError, EOFError, UnicodeDecodeError) as exc:
        return (expected, None, f"{where}: the file does not read as sealed records ({exc})"), hashes, 0
    if expected != segment.last + 1 or previous != segment.hash:
        reason = f"{where}: it ends at record {expected - 1}, its manifest says {segment.last}"
        return (expected, None, reason), hashes, 0
    return None, hashes, expected - segment.first


def sealed_hash(sealed: Sealed | None, chain: str, sequence: int) -> str | None:
    """The stored hash of one sealed record, read from its segment; None where no segment holds it."""
    if sealed is None:
        return None
    for segment in sealed.segments():
        if segment.chain != chain or not segment.first <= sequence <= segment.last:
            continue
        if sequence == segment.last:
            return segment.hash
        if sequence in segment.anchors:
            return segment.anchors[sequence]
    found = sealed_record(sealed, chain, sequence)
    return found.hash if found is not None else None


def sealed_record(sealed: Sealed | None, chain: str, sequence: int) -> SealedRecord | None:
    """One sealed record, parsed from its segment; None where no segment holds it."""
    for segment in sealed.segments() if sealed is not None else []:
        if segment.chain == chain and segment.first <= sequence <= segment.last:
            return next((r for r in records(segment) if r.sequence == sequence), None)
    return None


def sealed_quads(sealed: Sealed | None, record: ox.NamedNode) -> list[ox.Quad]:
    """One sealed record's quads, as the audit graph held them (none where no segment holds it). A decision is looked
    up in the segments' indexes first, and only the segment that holds it is read."""
    key = _key(record)
    head = f"{record} "
    for segment in sealed.segments() if sealed is not None else []:
        if key is not None and _indexed(segment, key) is False:
            continue
        for text in _texts(segment):
            if not (text.startswith(head) or f"\n{head}" in text):
                continue
            found, triples = _read(text)
            if found == record:
                return _in_audit_graph(triples)
    return []


# -- reading for lineage ---------------------------------------------------


def chosen(sealed: Sealed | None, since: datetime | None = None, until: datetime | None = None) -> list[Segment]:
    """The segments that may hold decisions made in [since, until)."""
    return [s for s in (sealed.segments() if sealed else []) if s.overlaps(since, until)]


def load(target: Store, segments: Sequence[Segment]) -> int:
    """Load the segments' records into an embedded store's audit graph; return the records loaded."""
    for segment in segments:
        with gzip.open(segment.path, "rb") as source:
            target.load_triples(cast(IO[bytes], source), graph=vocab.AUDIT_GRAPH)
    return sum(s.records for s in segments)


@contextlib.contextmanager
def archive(
    store: GraphStore, segments: Sequence[Segment], target: Path | None = None, *, quads: Sequence[ox.Quad] = ()
) -> Iterator[GraphStore]:
    """A store that answers like the hot one with the given segments' records (and ``quads``: one sealed record's,
    :func:`sealed_quads`) back in its audit graph.

    It starts as a checkpoint of the embedded store (hard links: seconds, whatever its size), into which the
    segments are bulk-loaded; with ``target`` it is kept there (an archive to query again, or to serve with
    ``oxigraph serve --location``), else removed on exit. The hot store is not changed.
    """
    location = store.location
    if location is None:
        raise ValueError("an archive starts from an embedded store on disk")
    folder = target or location.with_name(f".{location.name}.archive-{uuid.uuid4().hex[:12]}")
    store.backup(folder)
    opened = Store(folder)
    try:
        load(opened, segments)
        opened.commit(add=quads)
        yield opened
    finally:
        opened.close()
        if target is None:
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def holding(store: GraphStore, sealed: Sealed | None, record: ox.NamedNode) -> Iterator[GraphStore]:
    """A store to read one record's lineage from: the store itself while the record is in it; for a sealed record, an
    :func:`archive` of the embedded store with that record back in it, or on a shared store the record alone (what
    it used is then named, not described)."""
    if any(True for _ in store.quads(subject=record, predicate=vocab.SEQUENCE, graph=vocab.AUDIT_GRAPH)):
        yield store
        return
    quads = sealed_quads(sealed, record)
    if store.location is None:
        yield scratch(quads)
        return
    with archive(store, [], quads=quads) as archived:
        yield archived


def scratch(quads: Sequence[ox.Quad] = ()) -> Store:
    """A store in memory holding ``quads`` (a sealed record's, or a segment's with graphs of the hot store)."""
    made = Store(":memory:")
    made.commit(add=quads)
    return made


def select(
    store: GraphStore, segments: Sequence[Segment], query: str, *, graphs: Sequence[ox.NamedNode] = ()
) -> Iterator[Row]:
    """Run a SELECT over each segment in turn, in memory, with the hot store's ``graphs`` copied beside it."""
    for each in stores(segments, beside=[q for g in graphs for q in store.graph(g)]):
        yield from each.select(query)


def stores(segments: Sequence[Segment], *, beside: Sequence[ox.Quad] = ()) -> Iterator[Store]:
    """Each segment's records in a store of their own, in memory, one at a time in the order given (with
    ``beside``, quads of the hot store, in each)."""
    for segment in segments:
        each = scratch(beside)
        load(each, [segment])
        yield each


# -- as the service runs it ------------------------------------------------


def seal_trail(runtime: Runtime, *, after_days: float | None = None) -> SealReport:
    """Seal the decision records older than ``after_days`` (WAYFINDER_AUDIT_SEAL_AFTER_DAYS without it), by the
    service's clock; anchor each segment's end in the runtime's anchor file."""
    from service.decisions import showings
    from service.errors import InvalidInput

    if runtime.sealed is None:
        raise InvalidInput(
            "sealedDir", "a store in memory has nowhere to seal to; set WAYFINDER_SEALED_DIR or use a store folder"
        )
    days = runtime.settings.audit_seal_after_days if after_days is None else after_days
    if not days > 0:
        raise InvalidInput("afterDays", f"seal records older than a positive number of days, not {days}")
    trail = runtime.trail
    report = seal(
        runtime.store,
        runtime.sealed,
        runtime.queries,
        cutoff=now() - timedelta(days=days),
        anchors=trail.anchors(),
        anchor=trail.anchor if trail.anchor_file is not None else None,
    )
    if report.decisions_removed:
        showings.purged(runtime)  # the showings a user's next decision is paced by are read again, as after a purge
    return report


async def seal_periodically(runtime: Runtime, interval_s: float) -> None:
    """Seal every ``interval_s`` seconds, the first time one interval from now, until cancelled."""
    await every(
        interval_s,
        lambda: seal_trail(runtime),
        name="audit seal",
        log=log,
        report=lambda r: {"segments": len(r.segments), "records": r.records, "decisions": r.decisions_removed},
    )
