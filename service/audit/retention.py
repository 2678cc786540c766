"""Retention: records whose period under the retention rules has run out are purged.

The rules are knowledge (``ontology/policies/retention.ttl``, checked by
``shapes/retention.ttl``): a kind of record, a purpose or both, a period, and the
time it runs from. Events run from ``wf:occurredAt``; consent records from
``wf:supersededAt``, when the service recorded a later record for the same user
and purpose, so the record that holds a user's current state is never purged.
Where several rules govern one record the shortest period wins: rules are
applied shortest first and a record counts under the first that expires it.

A purge removes the records and appends a chained ``wf:Purge`` record in one
transaction. The record says when, under which rules (``prov:used``), each rule's
cutoff and how many records of each kind went; never whom or which. Decision
records stay: they name users by pseudonym, and their ``prov:used`` links to
purged records dangle, as after an erasure. A purge with nothing expired writes
nothing. Write receipts whose idempotency window has passed go too; they hold no
personal data, so they alone make no audit record.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pyoxigraph as ox
from rdflib.xsd_datetime import parse_xsd_duration

from service.analytics import feed
from service.clock import as_utc, datetime_literal
from service.clock import now as clock_now
from service.decisions import showings
from service.decisions.idempotency import expired_receipts
from service.errors import SyntaxProblem
from service.knowledge import vocab
from service.knowledge.store import Row, bound, value
from service.runtime import Runtime
from service.schedule import every

log = logging.getLogger("wayfinder.retention")
Record = ox.NamedNode | ox.BlankNode  # a record that a rule expires: the subject of its triples


@dataclass(frozen=True)
class RetentionRule:
    """One rule as the knowledge states it, with the event classes it governs (none for consent rules)."""

    iri: str
    period: str
    measured_from: str
    kind: str | None
    purpose: str | None
    event_classes: tuple[str, ...] = ()


@dataclass
class RuleOutcome:
    """What one rule expired: its cutoff, and the records per kind (class IRI -> count)."""

    rule: str
    period: str
    cutoff: datetime
    removed: dict[str, int] = field(default_factory=dict)

    @property
    def records(self) -> int:
        return sum(self.removed.values())


@dataclass
class PurgeReport:
    """The outcome of one purge; ``purge_id`` is None when no record was written (dry run, nothing expired)."""

    at: datetime
    dry_run: bool
    rules: list[RuleOutcome]
    triples_removed: int = 0
    receipts_removed: int = 0  # write receipts past the idempotency window (service/decisions/idempotency.py)
    purge_id: str | None = None

    @property
    def records_removed(self) -> int:
        return sum(outcome.records for outcome in self.rules)


def cutoff(now: datetime, period: str) -> datetime:
    """Return the instant one period before ``now`` (years and months by the calendar, the rest exactly)."""
    try:
        limit = now - parse_xsd_duration(period)
    except (ValueError, TypeError):
        limit = now
    if limit >= now:
        raise SyntaxProblem("wf:retentionPeriod", f"{period!r} is not a positive xsd:duration")
    return limit


def rules(runtime: Runtime) -> list[RetentionRule]:
    """Return the store's retention rules, by IRI."""
    heads: dict[str, tuple[str, str, str | None, str | None]] = {}
    classes: dict[str, list[str]] = {}
    for row in runtime.store.select(runtime.queries["retention-rules"]):
        iri = bound(row, "rule").value
        heads.setdefault(
            iri,
            (bound(row, "period").value, bound(row, "measuredFrom").value, value(row, "kind"), value(row, "purpose")),
        )
        if row["eventClass"] is not None:
            classes.setdefault(iri, []).append(row["eventClass"].value)
    return [RetentionRule(iri, *heads[iri], event_classes=tuple(classes.get(iri, ()))) for iri in sorted(heads)]


def _expired(runtime: Runtime, rule: RetentionRule, limit: datetime) -> dict[Record, tuple[str, ox.NamedNode]]:
    """Return what the rule expires: record -> (its kind, the graph that holds it)."""
    stamp = datetime_literal(limit)
    found: dict[Record, tuple[str, ox.NamedNode]] = {}
    if rule.measured_from == vocab.SUPERSEDED_AT.value:
        for row in runtime.store.select(runtime.queries["retention-expired-consent"].bind(cutoff=stamp)):
            if rule.purpose is None or bound(row, "purpose").value == rule.purpose:
                found[_record(row, "record")] = (vocab.CONSENT_RECORD.value, vocab.CONSENT_GRAPH)
        return found
    for event_class in rule.event_classes:
        query = runtime.queries["retention-expired-events"].bind(eventClass=ox.NamedNode(event_class), cutoff=stamp)
        for row in runtime.store.select(query):
            graph = bound(row, "graph")
            if not isinstance(graph, ox.NamedNode):  # the query keeps only user graphs, by their IRIs
                raise TypeError(f"?graph is {graph}, where the query binds a user graph's IRI")
            found[_record(row, "event")] = (event_class, graph)
    return found


def _record(row: Row, name: str) -> Record:
    """Return the record a row binds to ``name``: a subject, so an IRI or a blank node, never a literal."""
    term = bound(row, name)
    if isinstance(term, ox.Literal):
        raise TypeError(f"?{name} is the literal {term}, where the query binds a record")
    return term


def purge(runtime: Runtime, *, now: datetime | None = None, dry_run: bool = False) -> PurgeReport:
    """Remove every record whose retention period has run out, and record the purge."""
    at = as_utc(now) if now is not None else clock_now()
    # Shortest period (latest cutoff) first, so that a record counts under the rule that wins.
    applied = sorted(
        ((cutoff(at, r.period), r) for r in rules(runtime)), key=lambda pair: (-pair[0].timestamp(), pair[1].iri)
    )
    outcomes: list[RuleOutcome] = []
    claimed: dict[Record, ox.NamedNode] = {}  # record -> its graph, under the first rule that expires it
    for limit, rule in applied:
        outcome = RuleOutcome(rule.iri, rule.period, limit)
        for record, (kind, graph) in _expired(runtime, rule, limit).items():
            if record not in claimed:
                claimed[record] = graph
                outcome.removed[kind] = outcome.removed.get(kind, 0) + 1
        outcomes.append(outcome)
    remove = [q for record, graph in claimed.items() for q in runtime.store.quads(subject=record, graph=graph)]
    receipts = expired_receipts(runtime.store, before=at - timedelta(seconds=runtime.settings.idempotency_ttl_s))
    report = PurgeReport(
        at=at,
        dry_run=dry_run,
        rules=outcomes,
        triples_removed=len(remove),
        receipts_removed=len({q.subject for q in receipts}),
    )
    if dry_run:
        return report
    if not claimed:
        if receipts:  # the service's own bookkeeping, no personal data: removed without an audit record
            runtime.store.commit(remove=receipts)
        return report
    report.purge_id = str(uuid.uuid4())
    node = ox.NamedNode(vocab.PURGE_BASE + report.purge_id)
    runtime.trail.append(node, _purge_record(node, report, [rule for _, rule in applied]), remove=[*remove, *receipts])
    feed.purged(runtime, (record.value for record in claimed))
    showings.purged(runtime)  # what pacing keeps in memory is read again from what remains
    return report


def _purge_record(node: ox.NamedNode, report: PurgeReport, applied: list[RetentionRule]) -> list[ox.Triple]:
    """Return the triples of a purge record: when, which rules, their cutoffs and counts; no user, no record."""
    by_iri = {rule.iri: rule for rule in applied}
    counts = [
        {
            "rule": o.rule,
            "kind": by_iri[o.rule].kind,
            "purpose": by_iri[o.rule].purpose,
            "period": o.period,
            "cutoff": datetime_literal(o.cutoff).value,
            "removed": o.removed,
        }
        for o in report.rules
    ]
    T = ox.Triple
    integer = lambda n: ox.Literal(str(n), datatype=vocab.XSD_INTEGER)  # noqa: E731
    return [
        # Also a wf:Erasure, its superclass: what the audit index lists and verification checks.
        T(node, vocab.RDF_TYPE, vocab.PURGE),
        T(node, vocab.RDF_TYPE, vocab.ERASURE),
        T(node, vocab.RDF_TYPE, vocab.PROV_ACTIVITY),
        T(node, vocab.PROV_STARTED_AT, datetime_literal(report.at)),
        *(T(node, vocab.PROV_USED, ox.NamedNode(rule.iri)) for rule in applied),
        T(node, vocab.RECORDS_REMOVED, integer(report.records_removed)),
        T(node, vocab.TRIPLES_REMOVED, integer(report.triples_removed)),
        T(node, vocab.PURGE_COUNTS, ox.Literal(json.dumps(counts, sort_keys=True))),
    ]


async def purge_periodically(runtime: Runtime, interval_s: float) -> None:
    """Purge every ``interval_s`` seconds, the first time one interval from now, until cancelled."""
    await every(
        interval_s,
        lambda: purge(runtime),
        name="retention purge",
        log=log,
        report=lambda r: {
            "records_removed": r.records_removed,
            "purge_id": r.purge_id,
            "per_rule": {vocab.local_id(o.rule): o.records for o in r.rules},
        },
    )
