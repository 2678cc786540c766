"""The consent rule is written once as a query and checked on writes by a shape: the two agree on every case.

``queries/service/consent-current.rq`` says which record holds per user and purpose (the
service and the training export read it); ``wfsh:EventConsentShape`` (shapes/privacy.ttl)
refuses an event of a user without an active consent for one of the event's purposes.
For every consent case of ``tests/shapes/`` (``consent-*.test.ttl``), each user of the
case is given a probe event for each purpose alone (an event class collected for that
purpose only): the shape must refuse the probe exactly when the query gives no current
granting record for that user and purpose. The case's own events must be refused
exactly when none of their purposes is granted.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pyoxigraph as ox
import pytest
from pyshacl import validate
from rdflib import RDF, RDFS, Graph, Literal, Namespace, URIRef

from service.decisions.consent import current_among
from service.knowledge import vocab
from service.knowledge.queries import Query
from service.knowledge.terms import from_rdflib_term
from tests.knowledge.test_shapes import CASES_DIR, load_case, results_of, shapes
from tests.paths import ROOT

CASES = sorted(CASES_DIR.glob("consent-*.test.ttl"))
CURRENT = Query.load(ROOT / "queries" / "service" / "consent-current.rq")
WF = Namespace(vocab.WF_NS)
DPV = Namespace(vocab.DPV_NS)
PROBE = Namespace("https://w3id.org/wayfinder/test/probe/")
CONSENT_SHAPE = URIRef("https://w3id.org/wayfinder/shapes#EventConsentShape")


def granted_by_the_query(data: Graph) -> set[tuple[str, str]]:
    """(user, purpose) pairs whose current record, by consent-current.rq, gives consent."""
    store = ox.Store()
    store.load(data.serialize(format="nt").encode(), format=ox.RdfFormat.N_TRIPLES)
    rows = store.query(CURRENT, use_default_graph_as_union=True)
    current = [(r["user"].value, r["purpose"].value, r["status"]) for r in rows]
    assert len({(u, p) for u, p, _ in current}) == len(current), f"more than one current record: {current}"
    return {(u, p) for u, p, status in current if status == vocab.CONSENT_GIVEN}


def granting_records(data: Graph) -> set[tuple[str, str, str]]:
    """(user, purpose, record) where the current record, by consent-current.rq, gives consent."""
    store = ox.Store()
    store.load(data.serialize(format="nt").encode(), format=ox.RdfFormat.N_TRIPLES)
    rows = store.query(CURRENT, use_default_graph_as_union=True)
    return {
        (r["user"].value, r["purpose"].value, r["record"].value) for r in rows if r["status"] == vocab.CONSENT_GIVEN
    }


def refused_by_the_shape(data: Graph) -> set[URIRef]:
    """The events the consent shape reports."""
    _, report, _ = validate(data, shacl_graph=shapes(), inference="none")
    return {URIRef(str(r.focus)) for r in results_of(report) if r.shape == CONSENT_SHAPE}


def purposes_of(data: Graph, event_class: URIRef) -> set[str]:
    """The purposes an event class is collected for, its superclasses' included."""
    return {
        str(p) for c in data.transitive_objects(event_class, RDFS.subClassOf) for p in data.objects(c, WF.collectedFor)
    }


@pytest.mark.parametrize("path", CASES, ids=[p.name.removesuffix(".test.ttl") for p in CASES])
def test_the_consent_query_and_the_write_shape_agree(path: Path) -> None:
    data = load_case(path).data
    granted = granted_by_the_query(data)
    purposes = sorted(data.subjects(RDF.type, WF.ConsentPurpose))
    users = sorted(set(data.subjects(RDF.type, WF.User)) | set(data.objects(None, DPV.hasDataSubject)))
    assert purposes
    cases: dict[URIRef, set[tuple[str, str]]] = {}
    for event, user in data.subject_objects(WF.byUser):  # the case's own events
        needs = {
            (str(user), p) for event_class in data.objects(event, RDF.type) for p in purposes_of(data, event_class)
        }
        if needs:
            cases[event] = needs
    probed = Graph()
    probed += data
    for k, purpose in enumerate(purposes):
        probe_class = PROBE[f"CollectedFor{k}"]
        probed.add((probe_class, RDFS.subClassOf, WF.Event))
        probed.add((probe_class, WF.collectedFor, purpose))
        for j, user in enumerate(users):
            probe = PROBE[f"event-{k}-{j}"]
            probed.add((probe, RDF.type, probe_class))
            probed.add((probe, WF.byUser, user))
            probed.add(
                (probe, WF.occurredAt, Literal("2025-03-05T10:00:00Z", datatype=URIRef(vocab.XSD_DATETIME.value)))
            )
            cases[probe] = {(str(user), str(purpose))}
    refused = refused_by_the_shape(probed)
    disagree = {
        str(event): sorted(needs) for event, needs in cases.items() if (event in refused) != (not needs & granted)
    }
    assert disagree == {}, f"query grants {sorted(granted)}; the shape refuses {sorted(map(str, refused))}"


@pytest.mark.parametrize("path", CASES, ids=[p.name.removesuffix(".test.ttl") for p in CASES])
def test_the_rule_over_a_writes_records_alone_agrees_with_the_rule_over_the_store(path: Path) -> None:
    """``consent.current_among`` (a write's own read of its users' records) grants what the query over all data does."""
    data = load_case(path).data
    purposes = {f"P{k}": str(p) for k, p in enumerate(sorted(data.subjects(RDF.type, WF.ConsentPurpose)))}
    records = [
        ox.Quad(from_rdflib_term(s), from_rdflib_term(p), from_rdflib_term(o))
        for record in set(data.subjects(DPV.hasDataSubject, None))
        for s, p, o in data.triples((record, None, None))
    ]
    current = current_among(records, CURRENT, purposes)
    among = {
        (user.value, purposes[code]) for user, states in current.items() for code, s in states.items() if s.granted
    }
    assert among == {(u, p) for u, p in granted_by_the_query(data) if p in purposes.values()}


def _ordered_time(data: Graph, record: URIRef) -> datetime | None:
    """A record's time as the log keeps it (``wf:recordedAt``, else ``dpv:isIndicatedAtTime``), None if unordered."""
    value = data.value(record, WF.recordedAt) or data.value(record, DPV.isIndicatedAtTime)
    try:
        at = datetime.fromisoformat(str(value)) if value is not None and "T" in str(value) else None
    except ValueError:
        return None
    return at if at is not None and at.tzinfo is not None else None


@pytest.mark.parametrize("path", CASES, ids=[p.name.removesuffix(".test.ttl") for p in CASES])
def test_the_log_twin_of_the_rule_agrees_with_the_query(path: Path) -> None:
    """``queries/export/log-users.sql`` (the rule over the analytics log's consents) grants what the query grants.

    The log holds only records the service wrote, each with its own UTC record time and one value per
    field, so a case with another record is not one the log can hold.
    """
    data = load_case(path).data
    records = sorted(set(data.subjects(DPV.hasDataSubject, None)))
    times = {r: _ordered_time(data, r) for r in records}
    if any(t is None for t in times.values()):
        pytest.skip("a record without an ordered time: the log holds only the service's own UTC times")
    fields = (DPV.hasDataSubject, DPV.hasPurpose, DPV.hasConsentStatus, DPV.isIndicatedAtTime)
    if any(len(set(data.objects(r, f))) != 1 for r in records for f in fields):
        pytest.skip("a record the shapes refuse (not one value per field): the log holds one row per stored record")
    conn = duckdb.connect()
    conn.execute(
        "CREATE TABLE consents (record VARCHAR, subject VARCHAR, purpose VARCHAR, granted BOOLEAN, recorded_s DOUBLE)"
    )
    conn.execute("CREATE TABLE subjects (subject VARCHAR, role VARCHAR, industry VARCHAR, plan VARCHAR)")
    for r in records:
        conn.execute(
            "INSERT INTO consents VALUES (?, ?, ?, ?, ?)",
            [
                str(r),
                str(data.value(r, DPV.hasDataSubject)),
                vocab.local_id(str(data.value(r, DPV.hasPurpose))),
                data.value(r, DPV.hasConsentStatus) == DPV.ConsentGiven,
                times[r].timestamp(),  # type: ignore[union-attr]
            ],
        )
    for user in {str(data.value(r, DPV.hasDataSubject)) for r in records}:
        conn.execute("INSERT INTO subjects VALUES (?, NULL, NULL, NULL)", [user])
    statement = (ROOT / "queries" / "export" / "log-users.sql").read_text()
    purposes = {str(data.value(r, DPV.hasPurpose)) for r in records}
    by_sql = {(row[0], p, row[4]) for p in purposes for row in conn.execute(statement, [vocab.local_id(p)]).fetchall()}
    assert by_sql == {(u, p, record) for u, p, record in granting_records(data) if p in purposes}
