"""The analytics log of a shared store: Parquet segments in one folder, written by every process, read by any.

On a shared store several processes write, and a DuckDB file admits one writer. So each
process (a *writer*, named by its audit chain) writes what its flows hand the log as
immutable Parquet files in a folder of its own, and every process reads the union of all
writers' files into an in-memory DuckDB log that the KPI SQL runs on unchanged
(:class:`SharedLog`, an :class:`~service.analytics.log.EventLog`). The folder is
``WAYFINDER_ANALYTICS_DIR``; every process of the store must see the same one.

Layout::

    <root>/generation.json            which rebuild is current, and the files it superseded
    <root>/scrub.lock                 held while files are rewritten (erasure, purge, compaction)
    <root>/<writer>/lock              held (flock) by the live writer for its lifetime
    <root>/<writer>/closed            written by a clean close
    <root>/<writer>/<seq>-<table>.parquet

Tables in the files: ``subjects``, ``events`` (with ``replacement``: the consent change that
wrote the row, or NULL), ``exposures``, ``consents`` and ``removals`` (``kind`` erase, event (a record retention removed: an event or a consent record) or replace;
``id``; ``subject``; ``type``; ``at_s``: a consent change is a row per event type it covers). What the union means does not depend on the order
the files are read in, so processes need no common clock for it:

- a subject's first row counts; an exposure's earliest one (as the embedded log keeps them);
- a consent record counts once, unless its subject was erased or it was removed (retention);
- an event counts once, unless its subject was erased, it was removed (retention), or the
  latest consent change (``replace``, by its ``at_s``) covering its subject and type was
  recorded after it and did not list it among the events it kept.

Erasure, retention and consent withdrawal do more than hide rows: every file holding a
removed row is rewritten without it, under ``scrub.lock``, so no file keeps the person's
data. The erasure's own tombstone names the pseudonym only, as exposures do (both are
unlinkable once the profile is gone).

A writer queues its writes as the embedded log does and writes a segment when
``FLUSH_ROWS`` rows wait, when its oldest write is ``FLUSH_AFTER_S`` old (a background
flusher sees to that), before any read and on close; so other processes see a write within
about a second. A writer killed before it flushed loses its queue: whoever next opens the
log finds its folder not closed and its lock free, and the log is rebuilt from the store
(:mod:`service.analytics.feed`), as an embedded log not closed cleanly is. A rebuild writes a
new base folder and a ``generation.json`` that supersedes every file listed before the
rebuild read the store; files written since stay. Each writer merges its own files once it
has ``COMPACT_FILES`` of them. The file locks are ``flock``: the processes must share one
host, or a file system whose locks work across hosts.

Backups: copy the folder (its files are replaced atomically, never edited in place).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from service.analytics.log import (
    SCHEMA_VERSION,
    ConsentRow,
    EventLog,
    EventRow,
    ExposureRow,
    SubjectRow,
    _objects,
    _required,
    _strings,
    consent_columns,
    event_columns,
    exposure_columns,
    subject_columns,
)
from service.clock import now
from service.errors import InvalidInput, StoreUnavailable
from service.filelock import exclusive

log = logging.getLogger("wayfinder.analytics")

TABLES = ("removals", "subjects", "events", "exposures", "consents")  # the order a refresh reads new files in
GENERATION = "generation.json"
WRITER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
BASE_PREFIX = "base-"

# The in-memory tables a SharedLog reads into: the log's own, with events keyed by the ingest (no primary key:
# indexing 2M events took 7 s where the insert alone took 0.4 s) and a replacement column, and the tombstones.
_SHARED_DDL = (
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    """CREATE TABLE IF NOT EXISTS subjects (
        subject VARCHAR PRIMARY KEY, registered_s DOUBLE NOT NULL,
        role VARCHAR, industry VARCHAR, plan VARCHAR, signup_channel VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS events (
        event VARCHAR NOT NULL, subject VARCHAR NOT NULL, type VARCHAR NOT NULL, step VARCHAR, feature VARCHAR,
        occurred_s DOUBLE NOT NULL, recorded_s DOUBLE NOT NULL, replacement VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS exposures (
        experiment VARCHAR NOT NULL, arm VARCHAR NOT NULL, subject VARCHAR NOT NULL, bucket INTEGER NOT NULL,
        exposed_s DOUBLE NOT NULL, PRIMARY KEY (experiment, subject))""",
    """CREATE TABLE IF NOT EXISTS consents (
        record VARCHAR PRIMARY KEY, subject VARCHAR NOT NULL, purpose VARCHAR NOT NULL, granted BOOLEAN NOT NULL,
        recorded_s DOUBLE NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS value_features (feature VARCHAR PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS analysis_clock (now_s DOUBLE NOT NULL)",
    "INSERT INTO analysis_clock SELECT 0.0 WHERE NOT EXISTS (SELECT 1 FROM analysis_clock)",
    "INSERT OR IGNORE INTO meta VALUES ('schema_version', '" + SCHEMA_VERSION + "')",
    "CREATE TABLE IF NOT EXISTS erased (subject VARCHAR PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS removed (event VARCHAR PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS replacements (subject VARCHAR, type VARCHAR, id VARCHAR, at_s DOUBLE)",
)
SCHEMAS: dict[str, tuple[tuple[str, str], ...]] = {
    "subjects": (
        ("subject", "VARCHAR"),
        ("registered_s", "DOUBLE"),
        ("role", "VARCHAR"),
        ("industry", "VARCHAR"),
        ("plan", "VARCHAR"),
        ("signup_channel", "VARCHAR"),
    ),
    "events": (
        ("event", "VARCHAR"),
        ("subject", "VARCHAR"),
        ("type", "VARCHAR"),
        ("step", "VARCHAR"),
        ("feature", "VARCHAR"),
        ("occurred_s", "DOUBLE"),
        ("recorded_s", "DOUBLE"),
        ("replacement", "VARCHAR"),
    ),
    "exposures": (
        ("experiment", "VARCHAR"),
        ("arm", "VARCHAR"),
        ("subject", "VARCHAR"),
        ("bucket", "INTEGER"),
        ("exposed_s", "DOUBLE"),
    ),
    "consents": (
        ("record", "VARCHAR"),
        ("subject", "VARCHAR"),
        ("purpose", "VARCHAR"),
        ("granted", "BOOLEAN"),
        ("recorded_s", "DOUBLE"),
    ),
    "removals": (
        ("kind", "VARCHAR"),
        ("id", "VARCHAR"),
        ("subject", "VARCHAR"),
        ("type", "VARCHAR"),
        ("at_s", "DOUBLE"),
    ),
}


def _typed(table: str, source: str) -> str:
    """A SELECT of the table's columns from ``source``, each cast to its type (a column of NULLs has none)."""
    return "SELECT " + ", ".join(f"CAST({c} AS {t}) AS {c}" for c, t in SCHEMAS[table]) + f" FROM {source}"


def _empty(table: str) -> str:
    """A SELECT of no rows with the table's columns."""
    return "SELECT " + ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t in SCHEMAS[table]) + " WHERE false"


# A latest consent change covering (subject, type) hides the events recorded before it that it did not keep.
_HIDDEN = """EXISTS (
    SELECT 1 FROM (SELECT subject, type, arg_max(id, at_s) AS id, max(at_s) AS at_s FROM replacements
                   GROUP BY subject, type) r
    WHERE r.subject = {e}.subject AND r.type = {e}.type AND {e}.recorded_s <= r.at_s
      AND {e}.replacement IS DISTINCT FROM r.id)"""


def _files_sql(files: Sequence[Path]) -> str:
    """A read_parquet over these files (paths the log itself named, quoted as SQL strings)."""
    return "read_parquet([" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "])"


class SharedLog(EventLog):
    """The analytics log of one process of a shared store, over the segment folder ``root``."""

    DDL = _SHARED_DDL
    FLUSH_AFTER_S = 1.0
    COMPACT_FILES = 64

    def __init__(self, root: Path, writer: str) -> None:
        self.root = Path(root)
        if not WRITER_NAME.fullmatch(writer) or writer.startswith(BASE_PREFIX):
            raise InvalidInput("writer", f"{writer!r} is not a folder name of letters, digits, '.', '_' and '-'")
        self.writer = writer
        self.folder = self.root / self.writer
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / "closed").unlink(missing_ok=True)
            self._lock_file = (self.folder / "lock").open("a+")
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise StoreUnavailable(f"another live process writes the analytics segments {self.folder}") from e
        except OSError as e:
            raise StoreUnavailable(f"cannot use the analytics folder {self.root}: {e}") from e
        self._seq = 0
        self._ingested: set[str] = set()
        self._generation: str | None = None
        self._oldest: float | None = None  # when the oldest queued write was queued
        super().__init__(None)
        # A folder never rebuilt, rebuilt by a release with another schema (whose files may lack a table), or with
        # a writer that died mid-queue is rebuilt from the store before it is read.
        schema = _read_json(self.root / GENERATION).get("schema", "1" if (self.root / GENERATION).exists() else None)
        self.needs_catch_up = schema != SCHEMA_VERSION or bool(self.dead_writers())
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_periodically, name="wayfinder-segments", daemon=True)
        self._flusher.start()

    # -- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        if getattr(self, "_stop", None) is not None:
            self._stop.set()
        super().close()
        if not self._lock_file.closed:
            with contextlib.suppress(OSError):
                if not self.needs_catch_up:
                    (self.folder / "closed").write_text("closed cleanly\n")
            self._lock_file.close()  # releases the flock

    def dead_writers(self) -> list[Path]:
        """Writer folders not closed cleanly whose lock no live process holds (a writer killed mid-queue)."""
        dead = []
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(BASE_PREFIX)):
            if folder == self.folder or (folder / "closed").exists() or not (folder / "lock").exists():
                continue
            with (folder / "lock").open("a+") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # alive
                fcntl.flock(handle, fcntl.LOCK_UN)
                dead.append(folder)
        return dead

    # -- writes: queued, then written as segment files -------------------------------

    def defer(self, operation: str, payload: Any) -> None:
        with self._deferred_lock:
            if self._oldest is None:
                self._oldest = time.monotonic()
        super().defer(operation, payload)

    def _apply_queue(self) -> None:
        with self._deferred_lock:
            self._oldest = None
        super()._apply_queue()

    def _flush_periodically(self) -> None:
        while not self._stop.wait(self.FLUSH_AFTER_S / 4):
            oldest = self._oldest
            if oldest is not None and time.monotonic() - oldest >= self.FLUSH_AFTER_S:
                try:
                    self._apply_queue()
                except Exception:  # noqa: BLE001 - logged; the log is marked behind and rebuilt when next opened
                    log.exception("writing analytics segments failed")

    def flush(self) -> None:
        """Write the queued writes as segments, then read every writer's new segments into memory."""
        self._apply_queue()
        self.refresh()

    def add_subjects(self, rows: Iterable[SubjectRow]) -> int:
        columns = subject_columns(rows)
        if columns is None:
            return 0
        self._segment({"subjects": columns})
        return len(columns["subject"])

    def add_events(self, rows: Iterable[EventRow]) -> int:
        columns = event_columns(rows)
        if columns is None:
            return 0
        _replaced_by(columns, None)
        self._segment({"events": columns})
        return len(columns["event"])

    def add_exposures(self, rows: Iterable[ExposureRow]) -> int:
        columns = exposure_columns(rows)
        if columns is None:
            return 0
        self._segment({"exposures": columns})
        return len(columns["subject"])

    def add_consents(self, rows: Iterable[ConsentRow]) -> int:
        columns = consent_columns(rows)
        if columns is None:
            return 0
        self._segment({"consents": columns})
        return len(columns["record"])

    def remove_records(self, record_ids: Iterable[str]) -> int:
        listed = _strings(record_ids, "record_ids")
        if not listed:
            return 0
        self._segment({"removals": _removals([("event", e, None, None, None) for e in listed])})
        self.scrub("events", "event IN (SELECT unnest(?::VARCHAR[]))", [listed])
        self.scrub("consents", "record IN (SELECT unnest(?::VARCHAR[]))", [listed])
        return len(listed)

    def remove_subject_events(self, subject: str, types: Iterable[str]) -> int:
        self.replace_subject_events(subject, types, [])
        return 0

    def replace_subject_events(self, subject: str, types: Iterable[str], rows: Iterable[EventRow]) -> None:
        _required(subject, "subject")
        listed = _strings(types, "types")
        if not listed:
            return
        replacement, at_s = uuid.uuid4().hex, now().timestamp()  # the service's clock, as recorded_s
        tables: dict[str, dict[str, np.ndarray]] = {
            "removals": _removals([("replace", replacement, subject, kind, at_s) for kind in listed])
        }
        columns = event_columns(rows)
        if columns is not None:
            _replaced_by(columns, replacement)
            tables["events"] = columns
        self._segment(tables)
        kept = [] if columns is None else list(columns["event"])
        self.scrub(
            "events",
            "subject = ? AND type IN (SELECT unnest(?::VARCHAR[])) AND recorded_s <= ?"
            " AND event NOT IN (SELECT unnest(?::VARCHAR[]))",
            [subject, listed, at_s, kept],
        )

    def erase_subject(self, subject: str) -> int:
        _required(subject, "subject")
        self._segment({"removals": _removals([("erase", None, subject, None, None)])})
        self.scrub("subjects", "subject = ?", [subject])
        self.scrub("events", "subject = ?", [subject])
        self.scrub("consents", "subject = ?", [subject])
        self.scrub("removals", "kind = 'replace' AND subject = ?", [subject])
        return 0

    def _segment(self, tables: dict[str, dict[str, np.ndarray]]) -> None:
        """Write one segment: a file per table, each made whole under a temporary name and then renamed."""
        seq = max(time.time_ns(), self._seq + 1)
        self._seq = seq
        with duckdb.connect() as conn:
            for table in TABLES:  # removals first: a reader that sees the events also sees what hides others
                if table not in tables:
                    continue
                target = self.folder / f"{seq:020d}-{table}.parquet"
                _write_parquet(conn, table, tables[table], target)
        self._compact_if_due()

    # -- rewriting files: erasure, purge, compaction ---------------------------------

    def _rewriting(self) -> contextlib.AbstractContextManager[None]:
        return exclusive(self.root / "scrub.lock")

    def scrub(self, table: str, where: str, params: list[object]) -> int:
        """Rewrite every file of ``table`` (any writer's) that holds a row matching ``where``, without those rows;
        return the files rewritten. ``where`` is the log's own SQL with values only as ``?`` parameters."""
        rewritten = 0
        with self._rewriting(), duckdb.connect() as conn:
            for path in self.files(table):
                try:
                    found = conn.execute(f"SELECT count(*) FROM {_files_sql([path])} WHERE {where}", params).fetchone()
                except duckdb.IOException:
                    continue  # superseded and deleted meanwhile
                if not found or not found[0]:
                    continue
                temporary = path.with_name(path.name + f".{uuid.uuid4().hex}.tmp")
                conn.execute(
                    f"COPY (SELECT * FROM {_files_sql([path])} WHERE NOT ({where})) TO '{_quoted(temporary)}'"
                    " (FORMAT parquet)",
                    params,
                )
                os.replace(temporary, path)
                rewritten += 1
        return rewritten

    def _compact_if_due(self) -> None:
        """Merge this writer's files of a table into one once it has COMPACT_FILES of them, leaving out the rows
        of subjects erased meanwhile (rows another process had queued when the erasure scrubbed the files)."""
        for table in TABLES:
            if len(list(self.folder.glob(f"*-{table}.parquet"))) < self.COMPACT_FILES:
                continue
            with self._rewriting(), duckdb.connect() as conn:
                own = sorted(self.folder.glob(f"*-{table}.parquet"))  # as scrubbed meanwhile
                keep = ""
                if table in ("subjects", "events", "consents") and (removals := self.files("removals")):
                    keep = f" WHERE subject NOT IN (SELECT subject FROM {_files_sql(removals)} WHERE kind = 'erase')"
                self._seq = max(time.time_ns(), self._seq + 1)
                target = self.folder / f"{self._seq:020d}-{table}.parquet"
                temporary = target.with_name(target.name + ".tmp")
                conn.execute(f"COPY (SELECT * FROM {_files_sql(own)}{keep}) TO '{_quoted(temporary)}' (FORMAT parquet)")
                os.replace(temporary, target)
                for path in own:
                    path.unlink(missing_ok=True)

    # -- rebuild -----------------------------------------------------------------------

    def begin_rebuild(self) -> object:
        """Flush, then list the files a rebuild from the store (read after this) supersedes."""
        self._apply_queue()
        return [str(p.relative_to(self.root)) for t in TABLES for p in self.files(t)]

    def replace_all(
        self,
        token: object,
        subjects: Iterable[SubjectRow],
        events: Iterable[EventRow],
        exposures: Iterable[ExposureRow],
        consents: Iterable[ConsentRow] = (),
    ) -> None:
        """Write the store's rows as a new base folder and make it current; delete the files it supersedes."""
        superseded = list(token) if isinstance(token, list) else []
        base = self.root / f"{BASE_PREFIX}{uuid.uuid4().hex}"
        base.mkdir()
        tables: dict[str, dict[str, np.ndarray]] = {}
        if (columns := subject_columns(subjects)) is not None:
            tables["subjects"] = columns
        if (columns := event_columns(events)) is not None:
            _replaced_by(columns, None)
            tables["events"] = columns
        if (columns := exposure_columns(exposures)) is not None:
            tables["exposures"] = columns
        if (columns := consent_columns(consents)) is not None:
            tables["consents"] = columns
        with duckdb.connect() as conn:
            for table, columns in tables.items():
                _write_parquet(conn, table, columns, base / f"{time.time_ns():020d}-{table}.parquet")
        dead = self.dead_writers()
        with self._rewriting():
            _write_json(self.root / GENERATION, {"base": base.name, "superseded": superseded, "schema": SCHEMA_VERSION})
            for name in superseded:
                (self.root / name).unlink(missing_ok=True)
            for folder in dead:  # their files were listed above: recovered by this rebuild
                (folder / "closed").write_text("recovered by a rebuild from the store\n")
            for old in self.root.glob(f"{BASE_PREFIX}*"):
                if old != base and not any(old.iterdir()):
                    old.rmdir()

    # -- reads ---------------------------------------------------------------------------

    def files(self, table: str) -> list[Path]:
        """The current files of one table, every writer's, oldest first within each writer."""
        return sorted(p for p in self.root.glob(f"*/*-{table}.parquet") if p.is_file())

    def refresh(self) -> None:
        """Read every file not read yet into the in-memory tables (all of them again after a rebuild)."""
        with self._flush_lock:
            for attempt in range(3):
                try:
                    self._refresh()
                    return
                except duckdb.IOException:  # a file superseded or merged between listing and reading
                    if attempt == 2:
                        raise
                    self._generation = None  # start over from what the folder holds now

    def _refresh(self) -> None:
        generation = _read_json(self.root / GENERATION).get("base")
        if generation != self._generation:
            self._write(lambda conn: [conn.execute(f"DELETE FROM {t}") for t in _RESET])
            self._ingested = set()
        new = {t: [p for p in self.files(t) if str(p) not in self._ingested] for t in TABLES}
        if not any(new.values()):
            self._generation = generation
            return
        self._write(lambda conn: self._ingest(conn, new))
        self._ingested.update(str(p) for paths in new.values() for p in paths)
        self._generation = generation
        if self.dead_writers():
            self.needs_catch_up = True

    @staticmethod
    def _ingest(conn: duckdb.DuckDBPyConnection, new: dict[str, list[Path]]) -> None:
        def source(table: str) -> str:
            return _files_sql(new[table]) if new[table] else f"({_empty(table)})"

        removals = source("removals")
        conn.execute(f"INSERT OR IGNORE INTO erased SELECT DISTINCT subject FROM {removals} WHERE kind = 'erase'")
        conn.execute(f"INSERT OR IGNORE INTO removed SELECT DISTINCT id FROM {removals} WHERE kind = 'event'")
        conn.execute(f"INSERT INTO replacements SELECT subject, type, id, at_s FROM {removals} WHERE kind = 'replace'")
        conn.execute("DELETE FROM subjects WHERE subject IN (SELECT subject FROM erased)")
        conn.execute(
            "DELETE FROM events e WHERE e.subject IN (SELECT subject FROM erased)"
            " OR e.event IN (SELECT event FROM removed) OR " + _HIDDEN.format(e="e")
        )
        conn.execute(
            f"INSERT OR IGNORE INTO subjects SELECT subject, any_value(registered_s), any_value(role),"
            f" any_value(industry), any_value(plan), any_value(signup_channel) FROM {source('subjects')} s"
            " WHERE s.subject NOT IN (SELECT subject FROM erased) GROUP BY subject"
        )
        conn.execute(
            "INSERT INTO events SELECT event, any_value(subject), any_value(type), any_value(step),"
            " any_value(feature), any_value(occurred_s), any_value(recorded_s), any_value(replacement)"
            f" FROM {source('events')} n"
            " WHERE n.subject NOT IN (SELECT subject FROM erased) AND n.event NOT IN (SELECT event FROM removed)"
            " AND NOT " + _HIDDEN.format(e="n") + " AND NOT EXISTS (SELECT 1 FROM events x WHERE x.event = n.event)"
            " GROUP BY event"
        )
        conn.execute(
            "INSERT INTO exposures SELECT experiment, arg_min(arm, exposed_s), subject, arg_min(bucket, exposed_s),"
            f" min(exposed_s) FROM {source('exposures')} GROUP BY experiment, subject"
            " ON CONFLICT (experiment, subject) DO UPDATE SET"
            " arm = excluded.arm, bucket = excluded.bucket, exposed_s = excluded.exposed_s"
            " WHERE excluded.exposed_s < exposures.exposed_s"
        )
        conn.execute(
            "DELETE FROM consents WHERE subject IN (SELECT subject FROM erased) OR record IN (SELECT event FROM removed)"
        )
        conn.execute(
            "INSERT OR IGNORE INTO consents SELECT record, any_value(subject), any_value(purpose), any_value(granted),"
            f" any_value(recorded_s) FROM {source('consents')} c"
            " WHERE c.subject NOT IN (SELECT subject FROM erased) AND c.record NOT IN (SELECT event FROM removed)"
            " GROUP BY record"
        )

    def clear(self) -> None:
        raise NotImplementedError("a shared log is rebuilt through begin_rebuild and replace_all")


_RESET = ("subjects", "events", "exposures", "consents", "erased", "removed", "replacements")
_REMOVAL_KINDS = ("erase", "event", "replace")


def _replaced_by(columns: dict[str, np.ndarray], replacement: str | None) -> None:
    """Tag event columns with the consent change that wrote them (None: a plain append)."""
    columns["replacement"] = _objects([replacement] * len(columns["event"]))


def _removals(rows: list[tuple[str, str | None, str | None, str | None, float | None]]) -> dict[str, np.ndarray]:
    """Removal rows as columns: (kind, id, subject, type, at_s)."""
    assert all(kind in _REMOVAL_KINDS for kind, *_ in rows)
    return {
        "kind": _objects([r[0] for r in rows]),
        "id": _objects([r[1] for r in rows]),
        "subject": _objects([r[2] for r in rows]),
        "type": _objects([r[3] for r in rows]),
        "at_s": np.array([np.nan if r[4] is None else r[4] for r in rows], dtype=np.float64),
    }


def _write_parquet(conn: duckdb.DuckDBPyConnection, table: str, columns: dict[str, np.ndarray], target: Path) -> None:
    temporary = target.with_name(target.name + ".tmp")
    conn.register("_segment", columns)
    try:
        conn.execute(f"COPY ({_typed(table, '_segment')}) TO '{_quoted(temporary)}' (FORMAT parquet)")
    finally:
        conn.unregister("_segment")
    os.replace(temporary, target)


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


def _write_json(path: Path, data: dict) -> None:
    temporary = path.with_name(path.name + f".{uuid.uuid4().hex}.tmp")
    temporary.write_text(json.dumps(data, sort_keys=True))
    os.replace(temporary, path)


def _read_json(path: Path) -> dict:
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return {}
