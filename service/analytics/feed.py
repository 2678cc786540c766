"""Feeding the analytics log from the store's commits, and rebuilding it from the store.

The store is the source of truth. Each flow, once its commit has landed, hands this
module what it wrote (a registration, events, a first exposure, an erasure, a consent
change, a purge); the log then holds, keyed by pseudonym:

- every user's signup covariates;
- the events of necessary types (no ``wf:collectedFor``), and the events of types
  collected for a purpose only while the user consents to ANALYTICS, the purpose the
  log serves (a withdrawal takes them out, a new grant brings them back);
- every first exposure to an experiment;
- every consent record (purpose, grant or withdrawal, when recorded), which the console counts by day.

A log that may have missed a commit (not closed cleanly since it was opened: a crash
or kill between a commit and its append; an append that failed; a log made just now
beside an existing store) is rebuilt from the store before it is read (:func:`log`).
An append that fails is logged and marks the log behind; the write it follows stands.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import datetime
from weakref import WeakKeyDictionary

import pyoxigraph as ox

from service.analytics.log import AnalyticsReader, ConsentRow, EventLog, EventRow, ExposureRow, SubjectRow
from service.analytics.segments import SharedLog
from service.clock import parse_datetime
from service.knowledge import vocab
from service.knowledge.store import Row, bound, plain, value
from service.runtime import Runtime

log_ = logging.getLogger("wayfinder.analytics")
_locks: WeakKeyDictionary[Runtime, threading.Lock] = WeakKeyDictionary()
_locks_lock = threading.Lock()


def log(runtime: Runtime) -> EventLog:
    """The runtime's analytics log, rebuilt from the store first when it may have missed a commit."""
    elog = runtime.log
    if elog.needs_catch_up:
        with _locks_lock:
            lock = _locks.setdefault(runtime, threading.Lock())
        with lock:
            if elog.needs_catch_up:
                rebuild(runtime, elog)
    return elog


def for_analysis(runtime: Runtime) -> EventLog:
    """The log to analyse, complete with every process's writes.

    On a shared store with ``analytics_dir``, every process's segments (:mod:`service.analytics.segments`)
    are read in before each read of the log. Without it, each process of a shared store keeps its own log
    in memory, which sees only its own writes, and an analysis rebuilds it from the whole store first
    (complete, but a full read of the store each time).
    """
    elog = log(runtime)
    if runtime.store.url is not None and not isinstance(elog, SharedLog):
        with _locks_lock:
            lock = _locks.setdefault(runtime, threading.Lock())
        with lock:
            rebuild(runtime, elog)
    return elog


def rebuild(runtime: Runtime, elog: EventLog) -> dict[str, int]:
    """Replace the log's rows with what the store holds now; return the rows per table."""
    store, queries = runtime.store, runtime.queries
    codes = runtime.knowledge.codes
    bulk = runtime.settings.store_bulk_timeout_s  # reads of every user, not of one request
    token = elog.begin_rebuild()
    pseudonyms: dict[str, str] = {}
    subjects: list[SubjectRow] = []
    channels = {iri: code for code, iri in codes.channels.items()}
    for row in store.select(queries["analytics/subjects"], timeout_s=bulk):
        user, pseudonym = bound(row, "user").value, bound(row, "pseudonym").value
        pseudonyms[user] = pseudonym
        subjects.append(
            SubjectRow(
                pseudonym,
                parse_datetime(bound(row, "registeredAt").value),
                role=_local(value(row, "role")),
                industry=_local(value(row, "industry")),
                plan=_local(value(row, "plan")),
                signup_channel=channels.get(value(row, "channel") or ""),
            )
        )
    analytics_on = {
        bound(row, "user").value
        for row in store.select(queries["consent-current"].bind(purpose=vocab.ANALYTICS), timeout_s=bulk)
        if bound(row, "status").value == vocab.dpv("ConsentGiven").value
    }
    type_codes = {iri: code for code, iri in codes.events.items()}
    events: list[EventRow] = []
    for row in store.select(queries["analytics/events"], timeout_s=bulk):
        user = bound(row, "user").value
        code = type_codes.get(bound(row, "type").value)
        if code is None or user not in pseudonyms or not _kept(runtime, code, user in analytics_on):
            continue
        events.append(_event_row(row, pseudonyms[user], code))
    exposures = _exposures(runtime)
    consents = [
        consent_row(row, pseudonyms[user])
        for row in store.select(queries["analytics/consents"], timeout_s=bulk)
        if (user := bound(row, "user").value) in pseudonyms
    ]
    elog.replace_all(token, subjects, events, exposures, consents)
    refresh_value_features(runtime, elog)
    elog.flush()  # writes queued while the store was read: idempotent on what it held, needed for what came after
    elog.caught_up()
    counts = elog.counts()
    log_.info("analytics log rebuilt from the store", extra={"rows": counts})
    return counts


def _exposures(runtime: Runtime) -> list[ExposureRow]:
    """Every first exposure, from the decision records in the hot store and in the sealed segments: a user's
    exposure counts from their first decision in the experiment, wherever that record is now."""
    from service.audit import sealed

    query = runtime.queries["analytics/exposures"]
    found = runtime.store.select(query, timeout_s=runtime.settings.store_bulk_timeout_s)
    segments = sealed.chosen(runtime.sealed)
    if segments:
        found += sealed.select(runtime.store, segments, query, graphs=[vocab.EXPERIMENTS_GRAPH])
    first: dict[tuple[str, str, str, int], datetime] = {}
    for row in found:
        key = (
            bound(row, "id").value,
            bound(row, "arm").value,
            bound(row, "pseudonym").value,
            int(bound(row, "bucket").value),
        )
        at = parse_datetime(bound(row, "exposedAt").value)
        if key not in first or at < first[key]:
            first[key] = at
    return [ExposureRow(*key, at) for key, at in first.items()]


def refresh_value_features(runtime: Runtime, elog: AnalyticsReader) -> None:
    """Copy the catalog's value moments into the log (a knowledge engineer may have changed them)."""
    elog.set_value_features(
        _local(bound(row, "feature").value) or ""
        for row in runtime.store.select(runtime.queries["analytics/value-features"])
    )


def registered(
    runtime: Runtime,
    pseudonym: str,
    at: datetime,
    *,
    role: str | None,
    industry: str | None,
    plan: str | None,
    channel: str | None,
    consents: Iterable[ox.Quad] = (),
) -> None:
    """A user registered (``role``, ``industry`` and ``plan`` are IRIs, ``channel`` an API code), with the quads of
    the consent records the registration wrote."""
    row = SubjectRow(pseudonym, at, _local(role), _local(industry), _local(plan), channel)
    _append(runtime, "subjects", [row])
    _consents_written(runtime, pseudonym, consents)


def recorded(runtime: Runtime, rows: Iterable[EventRow]) -> None:
    """Events were stored; the caller passes those :func:`keeps` says the log keeps."""
    listed = list(rows)
    if listed:
        _append(runtime, "events", listed)


def keeps(runtime: Runtime, code: str, active_purposes: set[str]) -> bool:
    """Whether the log keeps an event of type ``code`` for a user whose consents grant ``active_purposes``."""
    analytics = runtime.knowledge.codes.purpose_code(vocab.ANALYTICS.value)
    return _kept(runtime, code, analytics in active_purposes)


def _kept(runtime: Runtime, code: str, analytics_on: bool) -> bool:
    return analytics_on or not runtime.knowledge.codes.collected_for.get(code)


def exposed(runtime: Runtime, experiment: str, arm: str, pseudonym: str, bucket: int, at: datetime) -> None:
    """A user's first decision in an experiment was stored."""
    _append(runtime, "exposures", [ExposureRow(experiment, arm, pseudonym, bucket, at)])


def erased(runtime: Runtime, pseudonym: str) -> None:
    """A user was erased: their subject and event rows go (exposures stay, pseudonymous like decision records)."""
    _append(runtime, "erase_subject", pseudonym)


def consent_changed(runtime: Runtime, user: str, record: Iterable[ox.Quad] = ()) -> None:
    """A user's consent changed, by the record whose quads are ``record``: the log keeps that record, and the
    user's events in it become the ones it keeps under their consent now."""
    store, queries = runtime.store, runtime.queries
    node = ox.NamedNode(user)
    pseudonym = next((plain(q.object).value for q in store.quads(subject=node, predicate=vocab.PSEUDONYM)), None)
    if pseudonym is None:
        return
    _consents_written(runtime, pseudonym, record)
    analytics_on = any(
        bound(row, "status").value == vocab.dpv("ConsentGiven").value
        for row in store.select(queries["consent-current"].bind(user=node, purpose=vocab.ANALYTICS))
    )
    type_codes = {iri: code for code, iri in runtime.knowledge.codes.events.items()}
    rows = []
    for row in store.select(queries["analytics/events"].bind(user=node)):
        code = type_codes.get(bound(row, "type").value)
        if code is not None and _kept(runtime, code, analytics_on):
            rows.append(_event_row(row, pseudonym, code))
    _append(runtime, "replace_subject_events", (pseudonym, list(type_codes.values()), rows))


def purged(runtime: Runtime, records: Iterable[str]) -> None:
    """Records were removed by retention: any that are events or consent records leave the log."""
    iris = [r for r in records if r.startswith((vocab.EVENT_BASE, vocab.CONSENT_BASE))]
    if iris:
        _append(runtime, "remove_records", iris)


def _consents_written(runtime: Runtime, pseudonym: str, quads: Iterable[ox.Quad]) -> None:
    """Queue the consent records among ``quads`` (as :func:`service.decisions.consent.consent_quads` writes them)."""
    fields: dict[str, dict[str, str]] = {}
    for q in quads:
        if isinstance(q.subject, ox.NamedNode) and isinstance(q.object, ox.NamedNode | ox.Literal):
            fields.setdefault(q.subject.value, {})[q.predicate.value] = q.object.value
    rows = [
        ConsentRow(
            record,
            pseudonym,
            vocab.local_id(f[vocab.HAS_PURPOSE.value]),
            f[vocab.HAS_CONSENT_STATUS.value] == vocab.CONSENT_GIVEN.value,
            parse_datetime(f.get(vocab.RECORDED_AT.value) or f[vocab.IS_INDICATED_AT_TIME.value]),
        )
        for record, f in fields.items()
        if f.get(vocab.RDF_TYPE.value) == vocab.CONSENT_RECORD.value
    ]
    if rows:
        _append(runtime, "consents", rows)


def consent_row(row: Row, pseudonym: str) -> ConsentRow:
    """The log's row of a consent record, from a row of ``queries/analytics/consents.rq``."""
    return ConsentRow(
        bound(row, "record").value,
        pseudonym,
        vocab.local_id(bound(row, "purpose").value),
        bound(row, "status").value == vocab.CONSENT_GIVEN.value,
        parse_datetime(bound(row, "recorded").value),
    )


def _append(runtime: Runtime, operation: str, payload: object) -> None:
    """Queue one change for the log after its commit (``EventLog.defer``); a failure to apply it marks the log
    behind instead of failing the write it follows."""
    elog = log(runtime)
    try:
        elog.defer(operation, payload)
    except Exception:
        log_.exception("analytics log append failed: it is rebuilt from the store when next opened")
        elog.mark_behind()


def event(
    iri: str,
    pseudonym: str,
    code: str,
    *,
    at: datetime,
    recorded_at: datetime,
    step: str | None = None,
    feature: str | None = None,
) -> EventRow:
    """The log's row of an event (``step`` and ``feature`` are IRIs; the log keeps their local IDs)."""
    return EventRow(iri, pseudonym, code, at, recorded_at, step=_local(step), feature=_local(feature))


def _event_row(row: Row, pseudonym: str, code: str) -> EventRow:
    at = parse_datetime(bound(row, "at").value)
    recorded_at = value(row, "recordedAt")
    return event(
        bound(row, "event").value,
        pseudonym,
        code,
        at=at,
        recorded_at=parse_datetime(recorded_at) if recorded_at else at,
        step=value(row, "step"),
        feature=value(row, "feature"),
    )


def _local(iri: str | None) -> str | None:
    return vocab.local_id(iri) if iri else None
