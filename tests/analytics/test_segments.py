"""The shared-store analytics log: every process writes its own Parquet segments, any process reads the union, and
the union means what the embedded log holds after the same writes, whoever wrote them and in whatever order."""

from __future__ import annotations

import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from service.analytics.log import ConsentRow, EventLog, EventRow, ExposureRow, SubjectRow, open_log
from service.analytics.segments import SharedLog
from service.clock import SimulatedClock, use_clock
from service.errors import InvalidInput, StoreUnavailable
from tests.paths import ROOT

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
QUERIES = {
    "subjects": "SELECT subject, registered_s, role, industry, plan, signup_channel FROM subjects ORDER BY subject",
    "events": "SELECT event, subject, type, step, feature, occurred_s, recorded_s FROM events ORDER BY event",
    "exposures": "SELECT experiment, arm, subject, bucket, exposed_s FROM exposures ORDER BY experiment, subject",
    "consents": "SELECT record, subject, purpose, granted, recorded_s FROM consents ORDER BY record",
}


def contents(elog: EventLog) -> dict[str, list[tuple]]:
    return {name: elog.query(sql) for name, sql in QUERIES.items()}


def started(root, *writers: str) -> list[SharedLog]:
    logs = [SharedLog(root, w) for w in writers]
    logs[0].replace_all(logs[0].begin_rebuild(), [], [], [])  # the first generation: an empty store
    for elog in logs:
        elog.caught_up()
    return logs


def rows_naming(root, subject: str) -> int:
    """Rows of any segment file whose subject is this pseudonym (exposures and erasure tombstones apart)."""
    found = 0
    with duckdb.connect() as conn:
        for table in ("subjects", "events", "consents", "removals"):
            files = [str(p) for p in root.glob(f"*/*-{table}.parquet")]
            if files:
                where = "subject = ?" + (" AND kind <> 'erase'" if table == "removals" else "")
                row = conn.execute(f"SELECT count(*) FROM read_parquet(?) WHERE {where}", [files, subject]).fetchone()
                found += int(row[0]) if row else 0
    return found


def event(eid: str, subject: str, kind: str = "FEATURE_USED", at: int = 0) -> EventRow:
    when = T0 + timedelta(minutes=at)
    return EventRow(eid, subject, kind, when, when, feature="charts" if kind == "FEATURE_USED" else None)


def test_each_writer_sees_every_writers_rows(tmp_path):
    one, two = started(tmp_path, "one", "two")
    one.add_subjects([SubjectRow("p1", T0, "admin", "retail", "team", "WEB")])
    two.add_subjects([SubjectRow("p2", T0, "analyst", None, "free", "MOBILE")])
    two.add_events([event("e1", "p1"), event("e2", "p2", "ACTIVATED")])
    one.add_exposures([ExposureRow("x", "a", "p1", 5, T0 + timedelta(hours=2))])
    two.add_exposures([ExposureRow("x", "b", "p1", 7, T0 + timedelta(hours=1))])  # earlier: it wins
    for elog in (one, two):
        got = contents(elog)
        assert [r[0] for r in got["subjects"]] == ["p1", "p2"]
        assert [r[0] for r in got["events"]] == ["e1", "e2"]
        assert got["exposures"] == [("x", "b", "p1", 7, (T0 + timedelta(hours=1)).timestamp())]
    assert sorted(p.parent.name for p in tmp_path.glob("*/*.parquet") if not p.parent.name.startswith("base-")) == [
        "one",
        "one",
        "two",
        "two",
        "two",
    ]
    for elog in (one, two):
        elog.close()


def test_erasure_and_purge_from_one_writer_reach_the_files_of_every_writer(tmp_path):
    one, two = started(tmp_path, "one", "two")
    one.add_subjects([SubjectRow("gone", T0), SubjectRow("kept", T0)])
    one.add_events([event("e1", "gone"), event("e2", "kept"), event("e3", "kept")])
    two.add_events([event("e4", "gone", "ACTIVATED"), event("e5", "kept", "ACTIVATED")])
    two.add_exposures([ExposureRow("x", "a", "gone", 1, T0)])
    assert rows_naming(tmp_path, "gone") == 3
    two.erase_subject("gone")
    one.remove_records(["e3"])
    assert rows_naming(tmp_path, "gone") == 0  # rewritten out of one's files as of two's
    for elog in (one, two):
        got = contents(elog)
        assert [r[0] for r in got["subjects"]] == ["kept"]
        assert [r[0] for r in got["events"]] == ["e2", "e5"]
        assert [r[2] for r in got["exposures"]] == ["gone"]  # pseudonymous, as in the embedded log
    # A row another writer still had queued for the erased subject is hidden, and gone once that writer compacts.
    one.add_events([event("late", "gone")])
    assert "late" not in [r[0] for r in contents(two)["events"]]
    one.COMPACT_FILES = 1
    one.add_events([event("e6", "kept")])
    assert rows_naming(tmp_path, "gone") == 0
    for elog in (one, two):
        elog.close()


def test_a_consent_change_keeps_only_what_it_lists_whichever_writer_recorded_the_events(tmp_path):
    one, two = started(tmp_path, "one", "two")
    one.add_events([event("a1", "p", "FEATURE_USED", 1), event("a2", "p", "SESSION_STARTED", 2)])
    two.add_events([event("a3", "p", "FEATURE_USED", 3), event("n1", "p", "ACTIVATED", 4)])
    two.remove_subject_events("p", ["FEATURE_USED", "SESSION_STARTED"])  # a withdrawal
    assert [r[0] for r in contents(one)["events"]] == ["n1"]
    assert rows_naming(tmp_path, "p") == 3  # n1 and the withdrawal's two rows (a type each): the rest left the files
    one.replace_subject_events("p", ["FEATURE_USED", "SESSION_STARTED"], [event("a1", "p"), event("a3", "p")])
    two.add_events([event("a4", "p", "FEATURE_USED", 10**6)])  # recorded after the grant: it counts
    assert [r[0] for r in contents(two)["events"]] == ["a1", "a3", "a4", "n1"]
    for elog in (one, two):
        elog.close()


def test_the_union_equals_the_embedded_log_after_the_same_random_writes(tmp_path):
    """The same random sequence of writes, spread over three writers, read in after every few writes: the shared
    log holds what one embedded log given the whole sequence holds. Times come from one clock, as the service's."""
    rng = random.Random(12)
    writers = started(tmp_path, "w1", "w2", "w3")
    oracle = open_log(None)
    subjects = [f"s{i}" for i in range(12)]
    added: set[str] = set()
    erased: set[str] = set()
    events: list[str] = []
    with use_clock(SimulatedClock(T0)) as clock:
        for step in range(100):
            at = clock.advance(minutes=1)
            elog = rng.choice(writers)
            live = [s for s in subjects if s not in erased]
            kind = rng.random()
            if kind < 0.15 and set(live) - added:
                new = rng.sample(sorted(set(live) - added), 1)
                added.update(new)
                ops = [
                    ("add_subjects", [SubjectRow(s, at, rng.choice(["admin", None]), None, "team", "WEB") for s in new])
                ]
            elif kind < 0.6:
                batch = [
                    EventRow(f"e{step}-{i}", rng.choice(live), rng.choice(["FEATURE_USED", "ACTIVATED"]), at, at)
                    for i in range(3)
                ]
                events += [e.event for e in batch]
                ops = [("add_events", batch)]
                if rng.random() < 0.5:  # a consent record beside them (retention removes both kinds by ID)
                    events.append(f"c{step}")
                    ops.append(("add_consents", [ConsentRow(f"c{step}", rng.choice(live), "Analytics", False, at)]))
            elif kind < 0.7:
                exposed = at - timedelta(minutes=rng.randrange(100))
                ops = [("add_exposures", [ExposureRow("x", rng.choice("ab"), rng.choice(live), 1, exposed)])]
            elif kind < 0.8 and events:
                ops = [("remove_records", rng.sample(events, 2))]
            elif kind < 0.9:
                subject = rng.choice(live)
                stored = oracle.query(
                    "SELECT event, recorded_s FROM events WHERE subject = ? AND type = 'FEATURE_USED'", [subject]
                )
                when = {eid: datetime.fromtimestamp(r, UTC) for eid, r in stored}
                rows = [EventRow(eid, subject, "FEATURE_USED", t, t) for eid, t in when.items() if rng.random() < 0.5]
                ops = [("replace_subject_events", subject, ["FEATURE_USED"], rows)]
            elif len(live) > 5:
                subject = rng.choice(live)
                erased.add(subject)
                ops = [("erase_subject", subject)]
            else:
                continue
            for name, *args in ops:
                getattr(elog, name)(*args)
                getattr(oracle, name)(*args)
            if step % 7 == 0:
                assert contents(rng.choice(writers)) == contents(oracle), step
    for elog in writers:
        assert contents(elog) == contents(oracle)
    assert len(erased) >= 3 and len(contents(oracle)["events"]) > 50  # the sequence is not trivial
    assert len(contents(oracle)["consents"]) > 5
    for subject in erased:
        assert rows_naming(tmp_path, subject) == 0
    for elog in writers:
        elog.close()


def test_queued_writes_reach_other_writers_within_a_second(tmp_path):
    one, two = started(tmp_path, "one", "two")
    one.FLUSH_AFTER_S = 0.2
    one.defer("events", [event("q1", "p")])
    deadline = datetime.now(UTC) + timedelta(seconds=5)
    while datetime.now(UTC) < deadline and not contents(two)["events"]:
        pass
    assert [r[0] for r in contents(two)["events"]] == ["q1"]
    for elog in (one, two):
        elog.close()


KILLED = """
import os, sys
from datetime import UTC, datetime
from service.analytics.log import EventRow
from service.analytics.segments import SharedLog
from service.clock import SimulatedClock, use_clock
elog = SharedLog(sys.argv[1], "doomed")
now = datetime.now(UTC)
elog.defer("events", [EventRow("lost", "p", "ACTIVATED", now, now)])  # queued, never written
os._exit(0)
"""


def test_a_writer_killed_with_writes_queued_makes_the_next_opener_rebuild(tmp_path):
    (first,) = started(tmp_path, "one")
    first.close()
    subprocess.run([sys.executable, "-c", KILLED, str(tmp_path)], check=True, cwd=ROOT, timeout=60)
    again = SharedLog(tmp_path, "one")
    assert again.needs_catch_up and [p.name for p in again.dead_writers()] == ["doomed"]
    again.replace_all(again.begin_rebuild(), [SubjectRow("p", T0)], [event("from-store", "p")], [])
    again.caught_up()
    assert not again.dead_writers()  # recovered: its folder is marked closed
    assert [r[0] for r in contents(again)["events"]] == ["from-store"]
    assert not SharedLog(tmp_path, "other").needs_catch_up
    again.close()


def test_a_clean_close_needs_no_rebuild_and_a_live_writer_cannot_be_opened_twice(tmp_path):
    (one,) = started(tmp_path, "one")
    with pytest.raises(StoreUnavailable, match="another live process"):
        SharedLog(tmp_path, "one")
    one.add_events([event("e1", "p")])
    one.close()
    reopened = SharedLog(tmp_path, "one")
    assert not reopened.needs_catch_up and [r[0] for r in contents(reopened)["events"]] == ["e1"]
    reopened.close()
    for bad in ("", "../up", "base-x", "a b"):
        with pytest.raises(InvalidInput, match="writer"):
            SharedLog(tmp_path, bad)
