"""Retention: expired events and superseded consent records are purged under the rules of
ontology/policies/retention.ttl, with a chained purge record; current consent and decisions stay."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pyoxigraph as ox
import pytest
from typer.testing import CliRunner

from service.audit.chain import verify
from service.audit.retention import purge
from service.cli import app
from service.clock import now as clock_now
from service.decisions import consent, decide, users
from service.decisions.consent import consent_record
from service.decisions.writes import commit_validated
from service.knowledge import vocab
from service.runtime import Runtime
from service.settings import Settings

RET = "https://w3id.org/wayfinder/retention/"
NOW = clock_now()
PURGE_RECORDS = f"SELECT ?p WHERE {{ GRAPH <{vocab.AUDIT_GRAPH.value}> {{ ?p a <{vocab.PURGE.value}> }} }}"


def ago(days: int) -> datetime:
    return NOW - timedelta(days=days)


def change_consent(runtime: Runtime, user_id: str, purpose: str, *, granted: bool, at: datetime) -> str:
    """Record a consent change as if the service had recorded it at a past time, through the validated write path."""
    node = vocab.user_iri(user_id)
    purpose_iri = ox.NamedNode(runtime.knowledge.codes.purposes[purpose])
    record, quads = consent_record(node, purpose_iri, granted=granted, at=at, recorded_at=at)
    commit_validated(runtime, quads, users=[node], source="test consent")
    return record.value


def event(user_id: str, kind: str, days: int, **about: str) -> users.EventReport:
    return users.EventReport(user_id, kind, at=ago(days), **about)


def setup_history(runtime: Runtime) -> dict:
    """Two users with old and fresh events and a consent history; return what each part is."""
    users.register(runtime, users.Registration(id="ana", role="analyst", plan="team", at=ago(1200)))
    users.register(runtime, users.Registration(id="bo", role="manager", plan="free", at=ago(1200)))
    grants = {
        "ana-personalization": change_consent(runtime, "ana", "PERSONALIZATION", granted=True, at=ago(1200)),
        "ana-analytics": change_consent(runtime, "ana", "ANALYTICS", granted=True, at=ago(1200)),
        "bo-analytics": change_consent(runtime, "bo", "ANALYTICS", granted=True, at=ago(1200)),
    }
    # Ana withdrew analytics 1150 days ago and gave it again 1100 days ago: both older records
    # were superseded more than 3 years ago. Bo withdrew 1000 days ago: his grant stays.
    withdrawn = change_consent(runtime, "ana", "ANALYTICS", granted=False, at=ago(1150))
    regiven = change_consent(runtime, "ana", "ANALYTICS", granted=True, at=ago(1100))
    bo_withdrawal = change_consent(runtime, "bo", "ANALYTICS", granted=False, at=ago(1000))
    stored = users.record_events(
        runtime,
        [
            event("ana", "FEATURE_USED", 400, feature_id="charts"),  # past 180 days (and past 365)
            event("ana", "FEATURE_USED", 200, feature_id="charts"),  # past 180 days only: the shorter rule wins
            event("ana", "FEATURE_USED", 10, feature_id="charts"),
            event("ana", "STEP_COMPLETED", 800, step_id="explore-sample-data"),  # past 2 years
            event("ana", "STEP_COMPLETED", 100, step_id="upload-spreadsheet"),
            event("ana", "ACTIVATED", 500),  # past 365 days (analytics)
            event("ana", "ACTIVATED", 30),
        ],
    )
    decision = decide.next_steps(runtime, "ana")
    # Ana withdraws personalisation today: her grant is superseded now, and stays.
    consent.set_consent(runtime, "ana", "PERSONALIZATION", granted=False)
    return {
        "expired_events": {stored[i].iri for i in (0, 1, 3, 5)},
        "fresh_events": {stored[i].iri for i in (2, 4, 6)},
        "expired_consent": {grants["ana-analytics"], withdrawn},
        "kept_consent": {regiven, grants["ana-personalization"], grants["bo-analytics"], bo_withdrawal},
        "decision": decision.decision_id,
    }


def subjects(runtime: Runtime, iris: set[str]) -> set[str]:
    return {iri for iri in iris if any(runtime.store.quads(subject=ox.NamedNode(iri)))}


def purge_records(runtime: Runtime) -> list[ox.NamedNode]:
    return [row["p"] for row in runtime.store.select(PURGE_RECORDS)]


def test_expired_events_and_superseded_consent_records_are_purged(runtime):
    parts = setup_history(runtime)
    report = purge(runtime, now=NOW)
    assert subjects(runtime, parts["expired_events"]) == set()
    assert subjects(runtime, parts["expired_consent"]) == set()
    assert subjects(runtime, parts["fresh_events"]) == parts["fresh_events"]
    assert subjects(runtime, parts["kept_consent"]) == parts["kept_consent"]
    assert report.records_removed == 6
    removed = {outcome.rule.removeprefix(RET): outcome.removed for outcome in report.rules}
    assert removed["feature-use"] == {vocab.FEATURE_USED.value: 2}
    assert removed["step-completed"] == {vocab.STEP_COMPLETED.value: 1}
    assert removed["analytics"] == {vocab.ACTIVATED.value: 1}
    assert removed["superseded-consent"] == {vocab.CONSENT_RECORD.value: 2}


def test_each_user_keeps_their_current_consent(runtime):
    setup_history(runtime)
    before = {u: consent.consents(runtime, u)[-1] for u in ("ana", "bo")}
    purge(runtime, now=NOW + timedelta(days=10_000))
    after = {u: {c.purpose: c for c in consent.consents(runtime, u)} for u in ("ana", "bo")}
    assert after["bo"]["ANALYTICS"] == before["bo"]
    assert after["ana"]["PERSONALIZATION"].granted is False
    assert after["ana"]["ANALYTICS"].granted is True
    assert users.events(runtime, "ana") == []


def test_the_purge_is_a_chained_record_naming_rules_and_counts_never_users(runtime):
    parts = setup_history(runtime)
    report = purge(runtime, now=NOW)
    (record,) = purge_records(runtime)
    assert record.value.endswith(report.purge_id)
    triples = list(runtime.store.quads(subject=record, graph=vocab.AUDIT_GRAPH))
    used = {q.object.value.removeprefix(RET) for q in triples if q.predicate == vocab.PROV_USED}
    assert used == {"feature-use", "step-completed", "step-dismissed", "analytics", "superseded-consent"}
    assert {vocab.PURGE, vocab.PROV_ACTIVITY} <= {q.object for q in triples if q.predicate == vocab.RDF_TYPE}
    values = {q.predicate: q.object for q in triples}
    assert values[vocab.RECORDS_REMOVED].value == "6"
    assert values[vocab.PROV_STARTED_AT].value.startswith(NOW.strftime("%Y-%m-%dT%H:%M"))
    counts = json.loads(values[vocab.PURGE_COUNTS].value)
    by_rule = {entry["rule"].removeprefix(RET): entry for entry in counts}
    assert by_rule["feature-use"]["removed"] == {vocab.FEATURE_USED.value: 2}
    assert by_rule["feature-use"]["cutoff"] == (NOW - timedelta(days=180)).isoformat().replace("+00:00", "Z")
    text = " ".join(str(q.object) for q in triples)
    for named in (vocab.USER_BASE, vocab.EVENT_BASE, vocab.CONSENT_BASE, '"ana"', '"bo"'):
        assert named not in text
    assert verify(runtime.store, runtime.queries["audit-index"]).ok
    assert decide.read_decision(runtime, parts["decision"]).steps


def test_a_second_purge_removes_nothing_and_writes_nothing(runtime):
    setup_history(runtime)
    purge(runtime, now=NOW)
    size = len(runtime.store)
    again = purge(runtime, now=NOW)
    assert again.records_removed == 0 and again.purge_id is None
    assert len(runtime.store) == size
    assert len(purge_records(runtime)) == 1
    assert verify(runtime.store, runtime.queries["audit-index"]).ok


def test_a_dry_run_counts_and_changes_nothing(runtime):
    parts = setup_history(runtime)
    size = len(runtime.store)
    report = purge(runtime, now=NOW, dry_run=True)
    assert report.records_removed == 6 and report.purge_id is None
    assert len(runtime.store) == size
    assert subjects(runtime, parts["expired_events"]) == parts["expired_events"]
    assert purge_records(runtime) == []


def test_decisions_stay_readable_after_their_inputs_are_purged(runtime):
    parts = setup_history(runtime)
    before = decide.read_decision(runtime, parts["decision"])
    purge(runtime, now=NOW + timedelta(days=10_000))
    after = decide.read_decision(runtime, parts["decision"])
    assert [s.step for s in after.steps] == [s.step for s in before.steps]
    assert verify(runtime.store, runtime.queries["audit-index"]).ok


def test_the_purge_command_prints_counts_per_rule(disk_runtime):
    setup_history(disk_runtime)
    store_path = disk_runtime.settings.store
    disk_runtime.store.close()  # the command opens the folder itself
    dry = CliRunner().invoke(app, ["purge", "--store", store_path, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "feature-use" in dry.output and "dry run" in dry.output
    result = CliRunner().invoke(app, ["purge", "--store", store_path])
    assert result.exit_code == 0, result.output
    assert "feature-use" in result.output and "6 records" in result.output
    result = CliRunner().invoke(app, ["purge", "--store", store_path])
    assert result.exit_code == 0 and "nothing expired" in result.output


def _periodic_runtime(runtime: Runtime, interval_s: float, tmp_path) -> Runtime:
    settings = Settings(store=":memory:", models_dir=tmp_path / "models", retention_interval_s=interval_s)
    return Runtime(settings=settings, store=runtime.store)


def test_the_service_purges_periodically(runtime, tmp_path):
    from starlette.testclient import TestClient

    from service.api.app import create_app

    setup_history(runtime)
    periodic = _periodic_runtime(runtime, 0.2, tmp_path)
    with TestClient(create_app(periodic)) as http:
        assert http.get("/healthz").status_code == 200
        deadline = time.monotonic() + 10
        while not purge_records(periodic) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert purge_records(periodic), "no purge within 10 s"
    assert verify(runtime.store, runtime.queries["audit-index"]).ok


def test_a_failing_periodic_purge_is_logged_and_the_schedule_carries_on(runtime, tmp_path):
    import logging
    import shutil

    from starlette.testclient import TestClient

    from service.api.app import create_app

    queries = tmp_path / "queries"
    shutil.copytree(runtime.settings.queries_dir, queries)
    (queries / "service" / "retention-rules.rq").unlink()  # every purge now fails
    settings = Settings(store=":memory:", models_dir=tmp_path / "models", queries_dir=queries, retention_interval_s=0.1)
    failures: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = failures.append
    logger = logging.getLogger("wayfinder.retention")
    logger.addHandler(handler)
    try:
        with TestClient(create_app(Runtime(settings=settings, store=runtime.store))) as http:
            deadline = time.monotonic() + 10
            while len(failures) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert http.get("/healthz").status_code == 200
    finally:
        logger.removeHandler(handler)
    assert len(failures) >= 2, "the schedule stopped after a failure"
    assert all(r.levelno == logging.ERROR and r.exc_info for r in failures)


def test_the_first_periodic_purge_waits_one_interval(runtime, tmp_path):
    from starlette.testclient import TestClient

    from service.api.app import create_app

    setup_history(runtime)
    with TestClient(create_app(_periodic_runtime(runtime, 3600, tmp_path))) as http:
        assert http.get("/healthz").status_code == 200
        time.sleep(0.3)
        assert purge_records(runtime) == []


@pytest.mark.parametrize(
    ("period", "expected"),
    [
        ("P180D", datetime(2026, 6, 4, 12, tzinfo=UTC)),
        ("P1Y", datetime(2025, 12, 1, 12, tzinfo=UTC)),
        ("P1M", datetime(2026, 11, 1, 12, tzinfo=UTC)),
        ("P2W", datetime(2026, 11, 17, 12, tzinfo=UTC)),
        ("PT36H", datetime(2026, 11, 30, 0, tzinfo=UTC)),
        ("P1Y9M1DT0.5S", datetime(2025, 2, 28, 11, 59, 59, 500000, tzinfo=UTC)),
    ],
)
def test_a_cutoff_is_the_period_before_now(period, expected):
    from service.audit.retention import cutoff

    assert cutoff(datetime(2026, 12, 1, 12, tzinfo=UTC), period) == expected


def test_the_purge_works_on_a_shared_store(server, tmp_path):
    from service.audit.portability import held_quads
    from service.demo import knowledge_files

    shared = Runtime(settings=Settings(store=server, models_dir=tmp_path / "models"))
    shared.ensure_ontology()
    shared.load(knowledge_files(shared))
    parts = setup_history(shared)
    report = purge(shared, now=NOW)
    assert report.records_removed == 6 and report.purge_id
    assert subjects(shared, parts["expired_events"] | parts["expired_consent"]) == set()
    assert (
        subjects(shared, parts["fresh_events"] | parts["kept_consent"]) == parts["fresh_events"] | parts["kept_consent"]
    )
    assert purge(shared, now=NOW).purge_id is None
    assert verify(shared.store, shared.queries["audit-index"]).ok
    held = {q.subject.value for q in held_quads(shared, "ana")}
    assert held & parts["expired_events"] == set() and parts["fresh_events"] <= held
