"""The analytics log: a DuckDB copy of subjects, events and experiment exposures that KPIs run on.

The store stays the source of truth; this log is derived from it, written after each
commit, so that experiment analysis scans columns instead of the graph. It holds
pseudonymous data only: a user is keyed by their random pseudonym (``subject``),
never by user ID. Times are kept as epoch seconds (DOUBLE, UTC) so the KPI SQL in
``queries/kpi/`` needs no date functions and runs unchanged on other engines.

Tables (the KPI SQL depends on these names and columns):

- ``subjects``: one row per pseudonym, with the covariates captured at signup
  (local IDs of role, industry, plan and signup channel; any may be NULL).
- ``events``: one row per event; ``recorded_s`` is the server's record time, which
  KPI windows read (``occurred_s`` is what the client claims).
- ``exposures``: a user's first exposure to an experiment (the first decision the
  service returned to them in it).
- ``consents``: one row per consent record the store holds (a grant or a withdrawal of one
  purpose, by local ID); ``recorded_s`` is the service's record time. What the console's
  consent counts per day run on.
- ``value_features``: the features the catalog marks as value moments.
- ``analysis_clock``: exactly one row, the "now" of the KPI being run.
- ``meta``: the schema version and any watermarks a writer keeps.

Erasure removes a subject's ``subjects``, ``events`` and ``consents`` rows (the store's records go too). Exposures stay: like
the decision records they mirror, they name the user only by pseudonym, and once the
profile that links the pseudonym to a person is gone they are unlinkable to anyone.

Every write is one transaction (all rows or none); rows are checked before anything
is written. One connection serves all threads, guarded by a lock, since a DuckDB
connection is not safe for concurrent use. A file-backed log can be opened by one
process at a time (DuckDB locks the file).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

import duckdb
import numpy as np

from service.errors import InvalidInput, OutdatedStore, StoreUnavailable

SCHEMA_VERSION = "2"
# The versions this release upgrades in place: each adds tables only, which a rebuild from the store fills.
_UPGRADES = {"1": "2"}
COVARIATES = ("role", "industry", "plan", "signup_channel")
TABLES = ("subjects", "events", "exposures", "consents", "value_features", "analysis_clock", "meta")
DATA_TABLES = ("subjects", "events", "exposures", "consents", "value_features")

_DDL = (
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    """CREATE TABLE IF NOT EXISTS subjects (
        subject VARCHAR PRIMARY KEY,
        registered_s DOUBLE NOT NULL,
        role VARCHAR,
        industry VARCHAR,
        plan VARCHAR,
        signup_channel VARCHAR
    )""",
    """CREATE TABLE IF NOT EXISTS events (
        event VARCHAR PRIMARY KEY,
        subject VARCHAR NOT NULL,
        type VARCHAR NOT NULL,
        step VARCHAR,
        feature VARCHAR,
        occurred_s DOUBLE NOT NULL,
        recorded_s DOUBLE NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS exposures (
        experiment VARCHAR NOT NULL,
        arm VARCHAR NOT NULL,
        subject VARCHAR NOT NULL,
        bucket INTEGER NOT NULL,
        exposed_s DOUBLE NOT NULL,
        PRIMARY KEY (experiment, subject)
    )""",
    """CREATE TABLE IF NOT EXISTS consents (
        record VARCHAR PRIMARY KEY,
        subject VARCHAR NOT NULL,
        purpose VARCHAR NOT NULL,
        granted BOOLEAN NOT NULL,
        recorded_s DOUBLE NOT NULL
    )""",
    "CREATE TABLE IF NOT EXISTS value_features (feature VARCHAR PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS analysis_clock (now_s DOUBLE NOT NULL)",
    "INSERT INTO analysis_clock SELECT 0.0 WHERE NOT EXISTS (SELECT 1 FROM analysis_clock)",
    "INSERT OR IGNORE INTO meta VALUES ('schema_version', '" + SCHEMA_VERSION + "')",
)

# A batch travels as one numpy array per column, registered with the connection for one
# INSERT ... SELECT. Measured for 100,000 events: that statement 0.2 s (add_events, checks
# included, 0.7 s); unnesting list parameters 1 s; multi-row VALUES 6 s; executemany 25 s
# for a tenth of them.
_BATCH = "_analytics_batch"
_INSERT_SUBJECTS = (
    f"INSERT OR REPLACE INTO subjects SELECT subject, registered_s, role, industry, plan, signup_channel FROM {_BATCH}"
)
# Events are appended with a plain INSERT, and again with OR IGNORE only when one of them is already there
# (an append replayed after a crash): measured for 1,000 events into 2M, OR IGNORE took 0.1 to 0.2 s and the
# plain INSERT 0.01 s.
_APPEND_EVENTS = f"INSERT INTO events SELECT event, subject, type, step, feature, occurred_s, recorded_s FROM {_BATCH}"
_INSERT_EVENTS = _APPEND_EVENTS.replace("INSERT INTO", "INSERT OR IGNORE INTO", 1)
_INSERT_EXPOSURES = (
    f"INSERT INTO exposures SELECT experiment, arm, subject, bucket, exposed_s FROM {_BATCH}"
    " ON CONFLICT (experiment, subject) DO UPDATE SET"
    " arm = excluded.arm, bucket = excluded.bucket, exposed_s = excluded.exposed_s"
    " WHERE excluded.exposed_s < exposures.exposed_s"
)
# A consent record never changes once written: one replayed after a crash is ignored.
_INSERT_CONSENTS = f"INSERT OR IGNORE INTO consents SELECT record, subject, purpose, granted, recorded_s FROM {_BATCH}"

T = TypeVar("T")
_IN_USE = "in_use"  # meta: "1" from open to a clean close


class AnalyticsReader(Protocol):
    """What KPIs and experiment analysis read a log through: the service's :class:`EventLog`, or an export of it on
    another engine (:class:`service.analytics.spark.SparkLog`). Statements are the service's own, values only as
    ``?`` parameters; the ``_at`` forms set ``analysis_clock`` to ``now`` for that statement."""

    def query(self, statement: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]: ...

    def query_at(self, now: datetime, statement: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]: ...

    def query_numpy_at(self, now: datetime, statement: str, params: Sequence[object] = ()) -> dict[str, np.ndarray]: ...

    def set_value_features(self, features: Iterable[str]) -> None: ...


@dataclass(frozen=True)
class SubjectRow:
    """A user as signed up: pseudonym, registration time and covariates (local IDs, any may be None)."""

    subject: str
    registered_at: datetime
    role: str | None = None
    industry: str | None = None
    plan: str | None = None
    signup_channel: str | None = None


@dataclass(frozen=True)
class EventRow:
    """One event: its ID, whose, its API type code, the step or feature it is about, when it occurred and was recorded."""

    event: str
    subject: str
    type: str
    occurred_at: datetime
    recorded_at: datetime
    step: str | None = None
    feature: str | None = None


@dataclass(frozen=True)
class ExposureRow:
    """A user's exposure to an experiment: the arm and bucket the service decided, and when."""

    experiment: str
    arm: str
    subject: str
    bucket: int
    exposed_at: datetime


@dataclass(frozen=True)
class ConsentRow:
    """One consent record: its IRI, whose (pseudonym), the purpose's local ID, a grant or a withdrawal, and when the
    service recorded it."""

    record: str
    subject: str
    purpose: str
    granted: bool
    recorded_at: datetime


def _row(index: int | None) -> str:
    return "" if index is None else f"row {index}: "


def epoch_s(value: object, field_name: str, index: int | None = None) -> float:
    """Return an aware datetime as epoch seconds; refuse anything else, naming the field (and the batch row)."""
    if not isinstance(value, datetime):
        raise InvalidInput(field_name, f"{_row(index)}expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(field_name, f"{_row(index)}a naive datetime; give a timezone-aware time (UTC)")
    return value.timestamp()


def _required(value: object, field_name: str, index: int | None = None) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(field_name, f"{_row(index)}expected a non-empty string")
    return value


def _optional(value: object, field_name: str, index: int | None = None) -> str | None:
    return None if value is None else _required(value, field_name, index)


def _objects(values: list[str | None]) -> np.ndarray:
    """A string column as DuckDB scans it from numpy: an object array, None for NULL."""
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


def _checked(rows: Iterable[T], kind: type[T], name: str) -> list[T]:
    listed = list(rows)
    for i, row in enumerate(listed):
        if not isinstance(row, kind):
            raise InvalidInput(name, f"row {i}: expected a {kind.__name__}, got {type(row).__name__}")
    return listed


def _strings(values: Iterable[str], field_name: str) -> list[str]:
    if isinstance(values, str):
        raise InvalidInput(field_name, "expected a collection of strings, got one string")
    listed = list(values)
    for i, value in enumerate(listed):
        _required(value, field_name, i)
    return listed


def subject_columns(rows: Iterable[SubjectRow]) -> dict[str, np.ndarray] | None:
    """Check subject rows and return them as columns (the last row for a pseudonym wins), or None for no rows."""
    latest: dict[str, tuple[SubjectRow, float]] = {}
    for i, row in enumerate(_checked(rows, SubjectRow, "subjects")):
        subject = _required(row.subject, "subject", i)
        for name in COVARIATES:
            _optional(getattr(row, name), name, i)
        latest[subject] = (row, epoch_s(row.registered_at, "registered_at", i))
    if not latest:
        return None
    chosen = [row for row, _ in latest.values()]
    return {
        "subject": _objects(list(latest)),
        "registered_s": np.array([at for _, at in latest.values()], dtype=np.float64),
        **{name: _objects([getattr(r, name) for r in chosen]) for name in COVARIATES},
    }


def event_columns(rows: Iterable[EventRow]) -> dict[str, np.ndarray] | None:
    """Check event rows and return them as columns (the first of a batch's duplicates kept), or None for no rows."""
    kept: dict[str, EventRow] = {}
    occurred: list[float] = []
    recorded: list[float] = []
    for i, row in enumerate(_checked(rows, EventRow, "events")):
        event = _required(row.event, "event", i)
        _required(row.subject, "subject", i)
        _required(row.type, "type", i)
        _optional(row.step, "step", i)
        _optional(row.feature, "feature", i)
        o = epoch_s(row.occurred_at, "occurred_at", i)
        r = epoch_s(row.recorded_at, "recorded_at", i)
        if event not in kept:  # the first of a batch's duplicates, as the table keeps the first written
            kept[event] = row
            occurred.append(o)
            recorded.append(r)
    if not kept:
        return None
    chosen = list(kept.values())
    return {
        "event": _objects(list(kept)),
        "subject": _objects([r.subject for r in chosen]),
        "type": _objects([r.type for r in chosen]),
        "step": _objects([r.step for r in chosen]),
        "feature": _objects([r.feature for r in chosen]),
        "occurred_s": np.array(occurred, dtype=np.float64),
        "recorded_s": np.array(recorded, dtype=np.float64),
    }


def exposure_columns(rows: Iterable[ExposureRow]) -> dict[str, np.ndarray] | None:
    """Check exposure rows and return them as columns (the earliest per experiment and subject), or None."""
    first: dict[tuple[str, str], tuple[ExposureRow, float]] = {}
    for i, row in enumerate(_checked(rows, ExposureRow, "exposures")):
        key = (_required(row.experiment, "experiment", i), _required(row.subject, "subject", i))
        _required(row.arm, "arm", i)
        if isinstance(row.bucket, bool) or not isinstance(row.bucket, int) or not 0 <= row.bucket < 2**31:
            raise InvalidInput("bucket", f"row {i}: expected an integer from 0 to 2**31 - 1")
        at = epoch_s(row.exposed_at, "exposed_at", i)
        if key not in first or at < first[key][1]:
            first[key] = (row, at)
    if not first:
        return None
    chosen = [row for row, _ in first.values()]
    return {
        "experiment": _objects([r.experiment for r in chosen]),
        "arm": _objects([r.arm for r in chosen]),
        "subject": _objects([r.subject for r in chosen]),
        "bucket": np.array([r.bucket for r in chosen], dtype=np.int64),
        "exposed_s": np.array([at for _, at in first.values()], dtype=np.float64),
    }


def consent_columns(rows: Iterable[ConsentRow]) -> dict[str, np.ndarray] | None:
    """Check consent rows and return them as columns (the first of a batch's duplicates kept), or None."""
    kept: dict[str, tuple[ConsentRow, float]] = {}
    for i, row in enumerate(_checked(rows, ConsentRow, "consents")):
        record = _required(row.record, "record", i)
        _required(row.subject, "subject", i)
        _required(row.purpose, "purpose", i)
        if not isinstance(row.granted, bool):
            raise InvalidInput("granted", f"row {i}: expected true or false")
        at = epoch_s(row.recorded_at, "recorded_at", i)
        kept.setdefault(record, (row, at))
    if not kept:
        return None
    chosen = [row for row, _ in kept.values()]
    return {
        "record": _objects(list(kept)),
        "subject": _objects([r.subject for r in chosen]),
        "purpose": _objects([r.purpose for r in chosen]),
        "granted": np.array([r.granted for r in chosen], dtype=np.bool_),
        "recorded_s": np.array([at for _, at in kept.values()], dtype=np.float64),
    }


class EventLog:
    """The analytics log over one DuckDB database: a file, or memory when ``path`` is None."""

    DDL: tuple[str, ...] = _DDL

    def __init__(self, path: Path | None) -> None:
        path = None if path is None else Path(path)
        self.path = path
        self._lock = threading.Lock()
        self.needs_catch_up = True  # until the open below finds a log closed cleanly
        self._deferred: list[tuple[str, Any]] = []  # writes not applied yet, in order (see defer)
        self._deferred_rows = 0
        self._deferred_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        try:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            self._conn: duckdb.DuckDBPyConnection | None = duckdb.connect(":memory:" if path is None else str(path))
        except (duckdb.Error, OSError) as e:
            raise StoreUnavailable(f"cannot open the analytics log {path}: {e}") from e
        try:
            self._write(lambda conn: [conn.execute(statement) for statement in self.DDL])
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            upgraded = row is not None and row[0] in _UPGRADES
            # An upgrade: the DDL above has added the new tables, and the rebuild that follows the open fills them.
            if row is not None and upgraded:
                row = (_UPGRADES[row[0]],)
                self._write(lambda conn: conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", row))
        except BaseException:
            self.close()
            raise
        if row is None or row[0] != SCHEMA_VERSION:
            found = row[0] if row else None
            self.close()
            raise OutdatedStore(
                f"the analytics log {path} has schema version {found}, this release reads {SCHEMA_VERSION}:"
                " delete it and rebuild it from the store"
            )
        # A log that was not closed since it was last opened (a crash, a kill -9 between a store
        # commit and its append), or one made just now, may miss what the store holds: whoever
        # opens it catches it up from the store (service.analytics.feed) before trusting it.
        in_use = self.get_meta(_IN_USE)
        self.needs_catch_up = in_use != "0" or upgraded
        self._write(lambda conn: conn.execute("INSERT OR REPLACE INTO meta VALUES (?, '1')", [_IN_USE]))

    # -- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        """Apply the deferred writes and close the database, marked as closed cleanly; closing twice does nothing."""
        if self._conn is not None:
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - a log that cannot apply them stays marked for catch-up
                self.needs_catch_up = True
        with self._lock:
            if self._conn is not None:
                state = "1" if self.needs_catch_up else "0"  # a log known to be behind stays marked for catch-up
                with contextlib.suppress(duckdb.Error):
                    self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [_IN_USE, state])
                self._conn.close()
                self._conn = None

    def backup(self, target: Path) -> None:
        """Copy the log, with the deferred writes applied, to a new DuckDB file ``target``.

        The copy opens as closed cleanly when this log is caught up with its store (so a store restored
        with it needs no rebuild), and as needing a catch-up otherwise.
        """
        target = Path(target)
        if self.path is None:
            raise InvalidInput("log", "an analytics log in memory has no file to back up")
        if target.exists():
            raise InvalidInput("target", f"{target} exists already; name a new file")
        self.flush()
        with self._lock:
            conn = self._connection()
            source = conn.execute("SELECT current_database()").fetchone()
            assert source is not None
            conn.execute(f"ATTACH '{str(target).replace(chr(39), chr(39) * 2)}' AS wayfinder_backup")
            try:
                conn.execute(f'COPY FROM DATABASE "{source[0]}" TO wayfinder_backup')
                state = "1" if self.needs_catch_up else "0"
                conn.execute("INSERT OR REPLACE INTO wayfinder_backup.meta VALUES (?, ?)", [_IN_USE, state])
            finally:
                conn.execute("DETACH wayfinder_backup")

    def export_parquet(self, folder: Path) -> dict[str, int]:
        """Write the data tables, with the deferred writes applied, as Parquet files in the new folder ``folder``
        (``<table>.parquet`` each, and ``manifest.json``); return the rows written per table.

        The files are one snapshot (one transaction). They are what another engine reads: the KPI SQL runs on them
        unchanged on Spark (:mod:`service.analytics.spark`) and on DuckDB (:func:`open_parquet`). The folder is
        written beside its final name and renamed into place, so a reader never sees half an export.
        """
        folder = Path(folder)
        if folder.exists():
            raise InvalidInput("folder", f"{folder} exists already; name a new folder")
        self.flush()
        partial = folder.with_name(f".{folder.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:

            def copy(conn: duckdb.DuckDBPyConnection) -> dict[str, int]:
                counts = {}
                for table in DATA_TABLES:
                    target = str(partial / f"{table}.parquet").replace("'", "''")
                    conn.execute(f"COPY (SELECT * FROM {table} ORDER BY ALL) TO '{target}' (FORMAT parquet)")
                    counted = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
                    counts[table] = int(counted[0]) if counted else 0
                return counts

            counts: dict[str, int] = self._write(copy)
            manifest = {"schema_version": SCHEMA_VERSION, "tables": counts}
            (partial / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            os.replace(partial, folder)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        return counts

    def mark_behind(self) -> None:
        """Record that the log missed a write (an append failed after its commit): the next opener catches up."""
        self.needs_catch_up = True

    def caught_up(self) -> None:
        self.needs_catch_up = False

    def clear(self) -> None:
        """Delete every subject, event, exposure and consent (before a rebuild from the store; see :meth:`replace_all`)."""
        self._write(lambda conn: [conn.execute(f"DELETE FROM {t}") for t in _REBUILT])

    # -- deferred writes -----------------------------------------------------------
    #
    # A DuckDB statement costs milliseconds however few rows it writes, which a request that
    # registers a user or records one event must not pay. The service therefore defers its
    # writes: they queue in memory, in order, and are applied in batches (consecutive adds of a
    # kind as one insert) before any read of the log, when the queue reaches FLUSH_ROWS rows, when an
    # erasure is queued, and on close. A crash loses the queue, and the log, not closed cleanly, is rebuilt from the
    # store when next opened: the store holds everything the queue held.

    FLUSH_ROWS = 2_000

    def defer(self, operation: str, payload: Any) -> None:
        """Queue a write: ``subjects``, ``events``, ``exposures`` or ``consents`` (a list of rows), ``remove_records``
        (event and consent record IDs),
        ``remove_subject_events`` ((subject, types)), ``erase_subject`` (a subject) or ``replace_subject_events``
        ((subject, types, rows))."""
        if operation not in _DEFERRED:
            raise ValueError(f"unknown deferred operation {operation!r}")
        size = len(payload) if operation in _BATCHED else 1
        with self._deferred_lock:
            self._deferred.append((operation, payload))
            self._deferred_rows += size
            due = self._deferred_rows >= self.FLUSH_ROWS or operation in _AT_ONCE
        if due:
            self._apply_queue()

    def flush(self) -> None:
        """Apply the deferred writes in order; on failure the log is marked behind (caught up when next opened)."""
        self._apply_queue()

    def _apply_queue(self) -> None:
        with self._flush_lock:
            with self._deferred_lock:
                queued, self._deferred, self._deferred_rows = self._deferred, [], 0
            if not queued:
                return
            try:
                for operation, payload in _coalesced(queued):
                    _DEFERRED[operation](self, payload)
            except BaseException:
                self.needs_catch_up = True
                raise

    def __enter__(self) -> EventLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._conn is None:
            raise StoreUnavailable("the analytics log is closed")
        return self._conn

    def _write(self, work: Callable[[duckdb.DuckDBPyConnection], Any]) -> Any:
        """Run ``work`` in one transaction under the lock: all of it is written, or none."""
        with self._lock:
            conn = self._connection()
            conn.begin()
            try:
                result = work(conn)
                conn.commit()
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    conn.rollback()
                raise
            return result

    # -- meta ----------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """Return the value kept under ``key`` (a watermark, the schema version), or None."""
        _required(key, "key")
        with self._lock:
            row = self._connection().execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Keep ``value`` under ``key``, replacing what was there; the schema version is the log's own."""
        _required(key, "key")
        if key == "schema_version":
            raise InvalidInput("key", "schema_version is set by the log itself")
        if not isinstance(value, str):
            raise InvalidInput("value", f"expected a string, got {type(value).__name__}")
        self._write(lambda conn: conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value]))

    # -- writes --------------------------------------------------------------------

    def add_subjects(self, rows: Iterable[SubjectRow]) -> int:
        """Insert or replace subjects (the last row for a pseudonym wins); return the rows written."""
        columns = subject_columns(rows)
        if columns is None:
            return 0
        self._write(lambda conn: self._insert(conn, _INSERT_SUBJECTS, columns))
        return len(columns["subject"])

    def add_events(self, rows: Iterable[EventRow]) -> int:
        """Append events, ignoring any already present (appends are replayed after a crash); return the rows added."""
        columns = event_columns(rows)
        if columns is None:
            return 0
        try:
            return int(self._write(lambda conn: self._insert(conn, _APPEND_EVENTS, columns)))
        except duckdb.ConstraintException:  # some were there already: the transaction wrote nothing; keep the rest
            return int(self._write(lambda conn: self._insert(conn, _INSERT_EVENTS, columns)))

    def add_exposures(self, rows: Iterable[ExposureRow]) -> int:
        """Record first exposures; return the rows inserted or moved earlier.

        For an (experiment, subject) already present, in the table or earlier in the batch, the
        earlier exposure is kept with its arm and bucket (on a tie, the one written first).
        """
        columns = exposure_columns(rows)
        if columns is None:
            return 0
        return int(self._write(lambda conn: self._insert(conn, _INSERT_EXPOSURES, columns)))

    def add_consents(self, rows: Iterable[ConsentRow]) -> int:
        """Append consent records, ignoring any already present; return the rows added."""
        columns = consent_columns(rows)
        if columns is None:
            return 0
        return int(self._write(lambda conn: self._insert(conn, _INSERT_CONSENTS, columns)))

    def replace_subject_events(self, subject: str, types: Iterable[str], rows: Iterable[EventRow]) -> None:
        """Make ``rows`` the subject's events of these type codes (a consent changed): the others go, in one step."""
        self.remove_subject_events(subject, types)
        self.add_events(rows)

    def begin_rebuild(self) -> object:
        """Called before a rebuild reads the store; what it returns goes to :meth:`replace_all`."""
        return None

    def replace_all(
        self,
        token: object,
        subjects: Iterable[SubjectRow],
        events: Iterable[EventRow],
        exposures: Iterable[ExposureRow],
        consents: Iterable[ConsentRow] = (),
    ) -> None:
        """Replace every subject, event, exposure and consent with these rows (a rebuild from the store).

        Deferred writes stay queued: applied after the rebuild, they change nothing the store's rows do not
        already say (adds are idempotent, removals repeatable), and those that came after the rebuild read
        the store are kept.
        """
        self.clear()
        self.add_subjects(subjects)
        self.add_events(events)
        self.add_exposures(exposures)
        self.add_consents(consents)

    @staticmethod
    def _insert(conn: duckdb.DuckDBPyConnection, statement: str, columns: dict[str, np.ndarray]) -> int:
        """Run one INSERT ... SELECT over the batch ``columns``, registered for that statement only."""
        conn.register(_BATCH, columns)
        try:
            row = conn.execute(statement).fetchone()
        except BaseException:
            conn.rollback()  # an aborted transaction refuses everything, unregistering too, until rolled back
            conn.unregister(_BATCH)
            raise
        conn.unregister(_BATCH)
        return int(row[0]) if row else 0

    def set_value_features(self, features: Iterable[str]) -> None:
        """Replace the set of value-moment features with ``features``."""
        listed = sorted(set(_strings(features, "features")))

        def replace(conn: duckdb.DuckDBPyConnection) -> None:
            conn.execute("DELETE FROM value_features")
            if listed:
                conn.execute("INSERT INTO value_features SELECT unnest(?::VARCHAR[])", [listed])

        self._write(replace)

    def remove_records(self, record_ids: Iterable[str]) -> int:
        """Delete the events and consent records with these IDs (retention; unknown ones are skipped); return the
        rows removed."""
        listed = _strings(record_ids, "record_ids")
        if not listed:
            return 0
        events = "DELETE FROM events WHERE event IN (SELECT unnest(?::VARCHAR[]))"
        consents = "DELETE FROM consents WHERE record IN (SELECT unnest(?::VARCHAR[]))"
        return int(
            self._write(lambda conn: self._count(conn, events, [listed]) + self._count(conn, consents, [listed]))
        )

    def remove_subject_events(self, subject: str, types: Iterable[str]) -> int:
        """Delete the subject's events of these type codes (a consent withdrawn); return the rows removed."""
        _required(subject, "subject")
        listed = _strings(types, "types")
        if not listed:
            return 0
        statement = "DELETE FROM events WHERE subject = ? AND type IN (SELECT unnest(?::VARCHAR[]))"
        return int(self._write(lambda conn: self._count(conn, statement, [subject, listed])))

    def erase_subject(self, subject: str) -> int:
        """Delete the subject's ``subjects``, ``events`` and ``consents`` rows; return the rows removed.

        Exposures stay: they name the user only by pseudonym, as the decision records they mirror do,
        and those records outlive erasure too.
        """
        _required(subject, "subject")

        def erase(conn: duckdb.DuckDBPyConnection) -> int:
            return sum(
                self._count(conn, f"DELETE FROM {table} WHERE subject = ?", [subject])
                for table in ("events", "consents", "subjects")
            )

        return int(self._write(erase))

    @staticmethod
    def _count(conn: duckdb.DuckDBPyConnection, statement: str, params: Sequence[object]) -> int:
        row = conn.execute(statement, params).fetchone()
        return int(row[0]) if row else 0

    # -- reads ---------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Rows per data table: subjects, events, exposures, consents, value_features."""
        names = DATA_TABLES
        statement = "SELECT " + ", ".join(f"(SELECT count(*) FROM {name})" for name in names)
        self.flush()
        with self._lock:
            row = self._connection().execute(statement).fetchone()
        assert row is not None
        return dict(zip(names, (int(n) for n in row), strict=True))

    def subject_rows(self, subject: str) -> int:
        """Rows in any table that name the subject."""
        _required(subject, "subject")
        statement = (
            "SELECT (SELECT count(*) FROM subjects WHERE subject = ?) + (SELECT count(*) FROM events WHERE subject = ?)"
            " + (SELECT count(*) FROM exposures WHERE subject = ?) + (SELECT count(*) FROM consents WHERE subject = ?)"
        )
        self.flush()
        with self._lock:
            row = self._connection().execute(statement, [subject] * 4).fetchone()
        assert row is not None
        return int(row[0])

    def query(self, statement: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one of the service's own read statements (values only as ``?`` parameters); return its rows."""
        self.flush()
        with self._lock:
            return self._connection().execute(statement, list(params)).fetchall()

    def query_at(self, now: datetime, statement: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Set the analysis clock to ``now`` and run one read statement, both under the lock and in one transaction,
        so that no other thread's clock comes between them."""
        now_s = epoch_s(now, "now")
        self.flush()

        def run(conn: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
            conn.execute("UPDATE analysis_clock SET now_s = ?", [now_s])
            return conn.execute(statement, list(params)).fetchall()

        result: list[tuple[Any, ...]] = self._write(run)
        return result

    def query_numpy_at(self, now: datetime, statement: str, params: Sequence[object] = ()) -> dict[str, np.ndarray]:
        """As :meth:`query_at`, with the rows as one numpy array per column (masked where a value is NULL)."""
        now_s = epoch_s(now, "now")
        self.flush()

        def run(conn: duckdb.DuckDBPyConnection) -> dict[str, np.ndarray]:
            conn.execute("UPDATE analysis_clock SET now_s = ?", [now_s])
            return _numpy_result(conn, statement, list(params))

        columns: dict[str, np.ndarray] = self._write(run)
        return columns


def _numpy_result(conn: duckdb.DuckDBPyConnection, statement: str, params: list[object]) -> dict[str, np.ndarray]:
    return dict(conn.execute(statement, params).fetchnumpy())


def _replace_subject_events(log: EventLog, payload: tuple[str, list[str], list[EventRow]]) -> None:
    log.replace_subject_events(*payload)


# Each deferred operation calls the log's own method, so a log of another kind (service.analytics.segments) applies
# it its own way.
_DEFERRED: dict[str, Callable[[EventLog, Any], object]] = {
    "subjects": lambda log, rows: log.add_subjects(rows),
    "events": lambda log, rows: log.add_events(rows),
    "exposures": lambda log, rows: log.add_exposures(rows),
    "consents": lambda log, rows: log.add_consents(rows),
    "remove_records": lambda log, ids: log.remove_records(ids),
    "remove_subject_events": lambda log, payload: log.remove_subject_events(*payload),
    "erase_subject": lambda log, subject: log.erase_subject(subject),
    "replace_subject_events": _replace_subject_events,
}
_BATCHED = ("subjects", "events", "exposures", "consents")
_REBUILT = ("subjects", "events", "exposures", "consents")  # what a rebuild from the store replaces
_AT_ONCE = ("erase_subject",)  # an erasure leaves the log's files when it is queued, not at the next read


def _coalesced(queued: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The queue with each run of consecutive adds of one kind merged into one batch (order otherwise kept)."""
    merged: list[tuple[str, Any]] = []
    for operation, payload in queued:
        if operation in _BATCHED and merged and merged[-1][0] == operation:
            merged[-1] = (operation, [*merged[-1][1], *payload])
        else:
            merged.append((operation, list(payload) if operation in _BATCHED else payload))
    return merged


def open_log(path: Path | None) -> EventLog:
    """Open (creating if need be) the analytics log at ``path``, or one in memory when ``path`` is None."""
    return EventLog(path)


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of an export (:meth:`EventLog.export_parquet`), checked: its schema and every table's file."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise InvalidInput("folder", f"{folder} holds no readable export manifest: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("schema_version") != SCHEMA_VERSION:
        found = manifest.get("schema_version") if isinstance(manifest, dict) else None
        raise InvalidInput("folder", f"{folder} is an export of schema {found}, this release reads {SCHEMA_VERSION}")
    missing = [t for t in DATA_TABLES if not (folder / f"{t}.parquet").is_file()]
    if missing:
        raise InvalidInput("folder", f"{folder} lacks {', '.join(t + '.parquet' for t in missing)}")
    return manifest


def open_parquet(folder: Path) -> EventLog:
    """An analytics log in memory holding an export's rows: the KPI SQL on DuckDB over the exported files."""
    folder = Path(folder)
    read_manifest(folder)
    elog = open_log(None)

    def load(conn: duckdb.DuckDBPyConnection) -> None:
        for table in DATA_TABLES:
            source = str(folder / f"{table}.parquet").replace("'", "''")
            conn.execute(f"INSERT INTO {table} SELECT * FROM read_parquet('{source}')")

    try:
        elog._write(load)
    except BaseException:
        elog.close()
        raise
    elog.caught_up()
    return elog
