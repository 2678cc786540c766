"""Consent as W3C DPV consent records: granted and withdrawn, with their history, never overwritten.

The consent flow's one home: recording a grant or a withdrawal, reading the history and the
current state, and what a consent record fed (decisions, model versions).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import pyoxigraph as ox

from service.analytics import feed
from service.clock import datetime_literal, now, parse_datetime
from service.decisions.subjects import require_user, user_node
from service.decisions.writes import commit_validated
from service.errors import InvalidInput
from service.knowledge import vocab
from service.knowledge.queries import Query
from service.knowledge.store import GraphStore, Row, bound, rows, value
from service.runtime import Runtime


@dataclass(frozen=True)
class ConsentState:
    """One consent record: for which purpose, granted or not, when indicated and when recorded."""

    record: str
    purpose: str  # the API code, e.g. PERSONALIZATION
    granted: bool
    at: datetime  # when the consent was indicated, as the client stated it
    recorded_at: datetime | None = None  # when the service wrote the record; None for records from before it kept it


def consent_history(store: GraphStore, user: ox.NamedNode, query: Query) -> list[ConsentState]:
    """Return every consent record of a user in the order they were recorded (``query``: consent-records.rq)."""
    return [_state(row, bound(row, "code").value) for row in store.select(query.bind(user=user))]


def current_records(store: GraphStore, user: ox.NamedNode, query: Query) -> dict[str, ConsentState]:
    """Return the user's current consent record per purpose code (``query``: consent-current.rq, the rule)."""
    current: dict[str, ConsentState] = {}
    for row in store.select(query.bind(user=user)):
        code = value(row, "code")
        if code is not None:
            current[code] = _state(row, code)
    return current


def current_among(
    records: Iterable[ox.Quad], query: Query, purposes: Mapping[str, str]
) -> dict[ox.NamedNode, dict[str, ConsentState]]:
    """Return each user's current consent record per purpose code, judged among the given records only.

    For a write that has read its users' consent records already (its neighbourhood):
    the same rule (``query``: consent-current.rq) in one query over those few quads in
    memory, instead of one query per user over the whole store. ``purposes`` maps each
    purpose code to its IRI, as the ontology declares them.
    """
    scratch = ox.Store()
    scratch.extend(ox.Quad(q.subject, q.predicate, q.object) for q in records)
    scratch.extend(ox.Quad(ox.NamedNode(iri), vocab.PURPOSE_CODE, ox.Literal(code)) for code, iri in purposes.items())
    solutions = scratch.query(query.bind())
    assert isinstance(solutions, ox.QuerySolutions)  # a SELECT
    current: dict[ox.NamedNode, dict[str, ConsentState]] = {}
    for row in rows(solutions):
        code = value(row, "code")
        user = bound(row, "user")
        if code is not None and isinstance(user, ox.NamedNode):
            current.setdefault(user, {})[code] = _state(row, code)
    return current


def _state(row: Row, code: str) -> ConsentState:
    recorded_at = value(row, "recordedAt")
    return ConsentState(
        record=bound(row, "record").value,
        purpose=code,
        granted=row["status"] == vocab.CONSENT_GIVEN,
        at=parse_datetime(bound(row, "at").value),
        recorded_at=parse_datetime(recorded_at) if recorded_at is not None else None,
    )


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
    store: GraphStore, user: ox.NamedNode, purpose: ox.NamedNode, queries: Mapping[str, Query]
) -> tuple[list[str], list[str]]:
    """Return the decisions and model versions that used the user's consent records for a purpose."""
    records = [
        q.subject
        for q in store.quads(predicate=vocab.HAS_DATA_SUBJECT, object=user, graph=vocab.CONSENT_GRAPH)
        if isinstance(q.subject, ox.NamedNode)
        and any(store.quads(subject=q.subject, predicate=vocab.HAS_PURPOSE, object=purpose, graph=vocab.CONSENT_GRAPH))
    ]
    decisions: dict[str, None] = {}
    models: dict[str, None] = {}
    for record in records:
        for row in store.select(queries["lineage/decisions-using-consent"].bind(consent=record)):
            decisions[bound(row, "decision").value.removeprefix(vocab.DECISION_BASE)] = None
        for row in store.select(queries["lineage/models-using-consent"].bind(consent=record)):
            models[bound(row, "version").value] = None
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


# -- the consent flow: what clients ask of it -------------------------------------


def consents(runtime: Runtime, user_id: str) -> list[ConsentState]:
    return consent_history(runtime.store, user_node(user_id, "id"), runtime.queries["consent-records"])


def current_consents(runtime: Runtime, user_id: str) -> dict[str, ConsentState]:
    """Return the user's current consent record per purpose code: the one that holds now."""
    return current_records(runtime.store, user_node(user_id, "id"), runtime.queries["consent-current"])


def active_purposes(runtime: Runtime, user_id: str) -> set[str]:
    """Return the purposes the user's current records grant."""
    return {code for code, state in current_consents(runtime, user_id).items() if state.granted}


def affected_by_consent(runtime: Runtime, user_id: str, purpose: str) -> tuple[list[str], list[str]]:
    """Return the decision IDs and model versions that used data under the user's consent for a purpose."""
    codes = runtime.knowledge.codes
    if purpose not in codes.purposes:
        raise InvalidInput("purpose", f"unknown purpose {purpose!r}")
    return affected_by(runtime.store, user_node(user_id), ox.NamedNode(codes.purposes[purpose]), runtime.queries)


def set_consent(runtime: Runtime, user_id: str, purpose: str, *, granted: bool) -> ConsentState:
    """Record a grant or a withdrawal of consent for one purpose, keeping the history."""
    node = require_user(runtime, user_id)
    codes = runtime.knowledge.codes
    if purpose not in codes.purposes:
        raise InvalidInput("purpose", f"unknown purpose {purpose!r}")
    at = now()
    record, quads = consent_record(node, ox.NamedNode(codes.purposes[purpose]), granted=granted, at=at, recorded_at=at)
    with runtime.store.write_lock:
        # Minimisation: a withdrawal deletes, in the same commit, the profile data held only for that purpose.
        held = [] if granted else held_only_for(runtime, user_id, codes.purposes[purpose])
        commit_validated(runtime, quads, users=[node], remove=held, source="consent")
    feed.consent_changed(runtime, node.value, quads)
    return ConsentState(record.value, purpose, granted, at, recorded_at=at)


def held_only_for(runtime: Runtime, user_id: str, purpose: str) -> list[ox.Quad]:
    """Return the user's profile quads whose property the ontology says is collected for ``purpose`` (an IRI)
    and for no other purpose the user consents to now (``wf:collectedFor`` on a property: a protected group)."""
    node, graph = user_node(user_id, "userId"), vocab.user_graph(user_id)
    purposes = runtime.knowledge.codes.purposes
    others = {purposes[code] for code in active_purposes(runtime, user_id) if code in purposes} - {purpose}
    collected: dict[ox.NamedNode, set[str]] = {}
    for quad in runtime.store.quads(predicate=vocab.COLLECTED_FOR, graph=vocab.ONTOLOGY_GRAPH):
        if isinstance(quad.subject, ox.NamedNode) and isinstance(quad.object, ox.NamedNode):
            collected.setdefault(quad.subject, set()).add(quad.object.value)
    return [
        quad
        for prop, collected_for in collected.items()
        if purpose in collected_for and not collected_for & others
        for quad in runtime.store.quads(subject=node, predicate=prop, graph=graph)
    ]
