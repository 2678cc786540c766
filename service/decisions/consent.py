"""Consent as W3C DPV consent records: granted and withdrawn, with their history, never overwritten."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import pyoxigraph as ox

from service.clock import consent_order, datetime_literal, now, parse_datetime
from service.knowledge import vocab
from service.knowledge.queries import Query
from service.knowledge.store import GraphStore


@dataclass(frozen=True)
class ConsentState:
    """One consent record: for which purpose, granted or not, when indicated and when recorded."""

    record: str
    purpose: str  # the API code, e.g. PERSONALIZATION
    granted: bool
    at: datetime  # when the consent was indicated, as the client stated it
    recorded_at: datetime | None = None  # when the service wrote the record; None for records from before it kept it


def consent_history(store: GraphStore, user: ox.NamedNode, query: Query) -> list[ConsentState]:
    """Return every consent record of a user in the order they took effect (``query``: consent-records.rq)."""
    keyed: list[tuple[tuple[datetime, bool, str], ConsentState]] = []
    for row in store.select(query.bind(user=user)):
        state = ConsentState(
            record=row["record"].value,
            purpose=row["code"].value,
            granted=row["status"] == vocab.CONSENT_GIVEN,
            at=parse_datetime(row["at"].value),
            recorded_at=parse_datetime(row["recordedAt"].value) if row["recordedAt"] is not None else None,
        )
        key = consent_order(parse_datetime(row["orderedAt"].value), granted=state.granted, record=state.record)
        keyed.append((key, state))
    return [state for _, state in sorted(keyed, key=lambda pair: pair[0])]


def current_consents(history: list[ConsentState]) -> dict[str, ConsentState]:
    """Return the latest record per purpose (``history`` in the order of :func:`consent_history`)."""
    latest: dict[str, ConsentState] = {}
    for state in history:
        latest[state.purpose] = state
    return latest


def active_purposes(history: list[ConsentState]) -> set[str]:
    """Return the purposes the user's latest records grant."""
    return {code for code, state in current_consents(history).items() if state.granted}


def consent_record(
    user: ox.NamedNode, purpose: ox.NamedNode, *, granted: bool, at: datetime, recorded_at: datetime | None = None
) -> tuple[ox.NamedNode, list[ox.Quad]]:
    """Return a new DPV consent record and its quads in the consent graph.

    ``at`` is when the consent was indicated; ``recorded_at`` (default: now, by the
    service's clock) is what orders the user's records, so it is never a client's time.
    """
    record = ox.NamedNode(vocab.CONSENT_BASE + str(uuid.uuid4()))
    return record, consent_quads(record, user, purpose, granted=granted, at=at, recorded_at=recorded_at or now())


def affected_by(
    store: GraphStore, user: ox.NamedNode, purpose: ox.NamedNode, queries: dict[str, str]
) -> tuple[list[str], list[str]]:
    """Return the decisions and model versions that used the user's consent records for a purpose."""
    records = [
        q.subject
        for q in store.quads(predicate=vocab.HAS_DATA_SUBJECT, object=user, graph=vocab.CONSENT_GRAPH)
        if any(store.quads(subject=q.subject, predicate=vocab.HAS_PURPOSE, object=purpose, graph=vocab.CONSENT_GRAPH))
    ]
    decisions: dict[str, None] = {}
    models: dict[str, None] = {}
    for record in records:
        for row in store.select(queries["lineage/decisions-using-consent"].bind(consent=record)):
            decisions[row["decision"].value.removeprefix(vocab.DECISION_BASE)] = None
        for row in store.select(queries["lineage/models-using-consent"].bind(consent=record)):
            models[row["version"].value] = None
    return list(decisions), list(models)


def consent_quads(
    record: ox.NamedNode,
    user: ox.NamedNode,
    purpose: ox.NamedNode,
    *,
    granted: bool,
    at: datetime,
    recorded_at: datetime,
) -> list[ox.Quad]:
    """Return the quads of one DPV consent record in the consent graph, as the service stores it."""
    g = vocab.CONSENT_GRAPH
    status = vocab.CONSENT_GIVEN if granted else vocab.CONSENT_WITHDRAWN
    return [
        ox.Quad(record, vocab.RDF_TYPE, vocab.CONSENT_RECORD, g),
        ox.Quad(record, vocab.HAS_DATA_SUBJECT, user, g),
        ox.Quad(record, vocab.HAS_PURPOSE, purpose, g),
        ox.Quad(record, vocab.HAS_CONSENT_STATUS, status, g),
        ox.Quad(record, vocab.HAS_LEGAL_BASIS, vocab.CONSENT_LEGAL_BASIS, g),
        ox.Quad(record, vocab.IS_INDICATED_AT_TIME, datetime_literal(at), g),
        ox.Quad(record, vocab.RECORDED_AT, datetime_literal(recorded_at), g),
    ]
