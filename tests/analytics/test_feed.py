"""The analytics log kept by the service's writes: it equals a rebuild from the store after every kind of
write, holds nothing of an erased user, follows consent, and is caught up after a crash."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

from service.analytics import feed
from service.analytics.log import open_log
from service.audit import erasure, retention
from service.clock import now
from service.decisions import consent, decide, users
from service.experiments import registry
from service.knowledge import vocab
from service.knowledge.embedded import Store
from service.runtime import Runtime
from service.settings import Settings

TABLES = {
    "subjects": "SELECT * FROM subjects ORDER BY subject",
    "events": "SELECT * FROM events ORDER BY event",
    "exposures": "SELECT * FROM exposures ORDER BY experiment, subject",
    "consents": "SELECT * FROM consents ORDER BY record",
}


def contents(elog) -> dict[str, list[tuple]]:
    return {name: elog.query(sql) for name, sql in TABLES.items()}


def rebuilt(runtime: Runtime) -> dict[str, list[tuple]]:
    """What a log rebuilt from the store holds (a fresh in-memory log)."""
    fresh = open_log(None)
    feed.rebuild(runtime, fresh)
    return contents(fresh)


def pseudonym(runtime: Runtime, user_id: str) -> str:
    profile = users.profile(runtime, user_id)
    assert profile is not None
    return profile.pseudonym


def register(runtime, user_id, consents=("PERSONALIZATION", "ANALYTICS"), **fields):
    users.register(
        runtime,
        users.Registration(
            id=user_id,
            role=fields.get("role", "analyst"),
            industry=fields.get("industry", "retail"),
            plan=fields.get("plan", "team"),
            signup_channel="WEB",
            consents=list(consents),
        ),
    )


def start_experiment(runtime):
    registry.create(
        runtime,
        registry.ExperimentSpec(
            "feed-test",
            [registry.ArmSpec("control", "default@1.2.0", 1), registry.ArmSpec("rules", "default@1.3.0", 1)],
        ),
        by="test",
    )
    registry.start(runtime, "feed-test", by="test", needs_approval=False)


def workload(runtime):
    start_experiment(runtime)
    register(runtime, "ana")
    register(runtime, "bo", consents=("PERSONALIZATION",), role="engineer", plan="free")  # no ANALYTICS
    register(runtime, "cy", role="manager", industry="fintech")
    for user in ("ana", "bo", "cy"):
        decide.next_steps(runtime, user)
    users.record_events(
        runtime,
        [
            users.EventReport("ana", "ACTIVATED"),
            users.EventReport("ana", "FEATURE_USED", feature_id="charts"),
            users.EventReport("bo", "FEATURE_USED", feature_id="charts"),  # collected for personalisation only
            users.EventReport("bo", "STEP_COMPLETED", step_id="explore-sample-data"),
            users.EventReport("cy", "SESSION_STARTED"),
            users.EventReport("cy", "ACTIVATED"),
        ],
    )


def test_the_log_kept_by_the_writes_equals_a_rebuild_from_the_store(runtime):
    workload(runtime)
    kept = contents(feed.log(runtime))
    assert kept == rebuilt(runtime)
    assert len(kept["subjects"]) == 3 and len(kept["exposures"]) == 3
    assert {(r[1], r[2], r[3]) for r in kept["consents"]} >= {(pseudonym(runtime, "ana"), "Analytics", True)}
    bo = pseudonym(runtime, "bo")
    # bo has not consented to ANALYTICS: only the event of a necessary type is in the log.
    assert [row[2] for row in kept["events"] if row[1] == bo] == ["STEP_COMPLETED"]
    assert {row[2] for row in kept["events"] if row[1] == pseudonym(runtime, "ana")} == {"ACTIVATED", "FEATURE_USED"}


def test_the_log_follows_consent_both_ways(runtime):
    workload(runtime)
    ana = pseudonym(runtime, "ana")
    consent.set_consent(runtime, "ana", "ANALYTICS", granted=False)
    elog = feed.log(runtime)
    assert elog.query("SELECT type FROM events WHERE subject = ?", [ana]) == []
    assert contents(elog) == rebuilt(runtime)
    analytics = sorted(r[3] for r in contents(elog)["consents"] if r[1] == ana and r[2] == "Analytics")
    assert analytics == [False, True]  # the grant at signup and the withdrawal, each a record
    consent.set_consent(runtime, "ana", "ANALYTICS", granted=True)  # the events held in the graph come back
    assert sorted(r[0] for r in elog.query("SELECT type FROM events WHERE subject = ?", [ana])) == [
        "ACTIVATED",
        "FEATURE_USED",
    ]
    assert contents(elog) == rebuilt(runtime)


def test_after_erasure_no_row_names_the_user_and_kpis_agree_with_the_graph(runtime):
    workload(runtime)
    cy = pseudonym(runtime, "cy")
    erasure.erase(runtime, "cy", requested_by="test")
    elog = feed.log(runtime)
    assert elog.query("SELECT count(*) FROM subjects WHERE subject = ?", [cy]) == [(0,)]
    assert elog.query("SELECT count(*) FROM events WHERE subject = ?", [cy]) == [(0,)]
    assert elog.query("SELECT count(*) FROM consents WHERE subject = ?", [cy]) == [(0,)]
    # No user ID anywhere in the log, erased or not: it keys users by pseudonym only.
    for table in ("subjects", "events", "exposures", "consents"):
        for row in elog.query(f"SELECT * FROM {table}"):
            assert not any(isinstance(v, str) and v in ("ana", "bo", "cy") for v in row), (table, row)
            assert not any(isinstance(v, str) and v.startswith(vocab.USER_BASE) for v in row), (table, row)
    assert contents(elog) == rebuilt(runtime)


def test_events_purged_by_retention_leave_the_log(runtime):
    workload(runtime)
    before = feed.log(runtime).counts()["events"]
    report = retention.purge(runtime, now=now() + timedelta(days=4000))
    after = feed.log(runtime).counts()["events"]
    assert report.records_removed > 0 and after < before
    assert contents(feed.log(runtime)) == rebuilt(runtime)


CRASH = """
import os, sys
from service.analytics import feed
from service.decisions import users
from service.runtime import Runtime
from service.settings import Settings

runtime = Runtime(settings=Settings(store=sys.argv[1]))
users.register(runtime, users.Registration(id="late", role="analyst", consents=["ANALYTICS"]))
users.record_events(runtime, [users.EventReport("late", "ACTIVATED")])
elog = feed.log(runtime)
elog.query("SELECT 1")
# The appends that followed these commits are lost, as a kill between commit and append loses them.
elog.remove_records([row[0] for row in elog.query("SELECT event FROM events")])
runtime.store.flush()
os._exit(0)  # no clean close
"""


def test_a_log_not_closed_cleanly_is_caught_up_from_the_store(knowledge_quads, tmp_path):
    path = tmp_path / "store"
    store = Store(path)
    store.commit(add=knowledge_quads)
    store.close()
    subprocess.run([sys.executable, "-c", CRASH, str(path)], check=True, timeout=120)
    runtime = Runtime(settings=Settings(store=str(path)))
    try:
        assert runtime.log.needs_catch_up
        elog = feed.log(runtime)
        assert not elog.needs_catch_up
        assert [row[2] for row in elog.query("SELECT * FROM events")] == ["ACTIVATED"]
        assert contents(elog) == rebuilt(runtime)
    finally:
        runtime.close()
    reopened = open_log(path.with_name("store.analytics.duckdb"))
    assert not reopened.needs_catch_up  # closed cleanly this time
    reopened.close()
