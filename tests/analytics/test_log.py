"""The analytics log keeps what it is given, once, all or nothing, across reopening and from many threads."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from service.analytics.log import SCHEMA_VERSION, ConsentRow, EventLog, EventRow, ExposureRow, SubjectRow, open_log
from service.errors import InvalidInput, OutdatedStore, StoreUnavailable

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def event(event_id: str, subject: str = "p1", kind: str = "FEATURE_USED", *, at: float = 0, **extra) -> EventRow:
    when = T0 + timedelta(seconds=at)
    return EventRow(event_id, subject, kind, occurred_at=when, recorded_at=when + timedelta(seconds=1), **extra)


def rows_of(log: EventLog, table: str) -> list[tuple]:
    return log.query(f"SELECT * FROM {table} ORDER BY ALL")


@pytest.fixture
def log():
    with open_log(None) as opened:
        yield opened


def test_the_tables_are_created_once_with_the_schema_version(tmp_path):
    path = tmp_path / "analytics" / "log.duckdb"
    with open_log(path) as first:
        first.add_subjects([SubjectRow("p1", T0, "admin", "saas", "free", "WEB")])
    with open_log(path) as again:
        tables = {name for (name,) in again.query("SELECT table_name FROM information_schema.tables")}
        assert tables == {"subjects", "events", "exposures", "consents", "value_features", "analysis_clock", "meta"}
        assert again.get_meta("schema_version") == "2"
        assert again.query("SELECT count(*) FROM analysis_clock") == [(1,)]
        assert again.counts() == {"subjects": 1, "events": 0, "exposures": 0, "consents": 0, "value_features": 0}
        columns = again.query(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'events'"
            " ORDER BY ordinal_position"
        )
        assert columns == [
            ("event", "VARCHAR"),
            ("subject", "VARCHAR"),
            ("type", "VARCHAR"),
            ("step", "VARCHAR"),
            ("feature", "VARCHAR"),
            ("occurred_s", "DOUBLE"),
            ("recorded_s", "DOUBLE"),
        ]


def test_a_reopened_log_keeps_its_rows(tmp_path):
    path = tmp_path / "log.duckdb"
    with open_log(path) as log:
        log.add_subjects([SubjectRow("p1", T0, role="admin")])
        log.add_events([event("e1", step="connect-source", kind="STEP_COMPLETED")])
        log.add_exposures([ExposureRow("exp", "control", "p1", 17, T0)])
        log.set_value_features(["share-report"])
    with open_log(path) as log:
        assert rows_of(log, "subjects") == [("p1", T0.timestamp(), "admin", None, None, None)]
        assert rows_of(log, "events") == [
            ("e1", "p1", "STEP_COMPLETED", "connect-source", None, T0.timestamp(), T0.timestamp() + 1)
        ]
        assert rows_of(log, "exposures") == [("exp", "control", "p1", 17, T0.timestamp())]
        assert rows_of(log, "value_features") == [("share-report",)]


def test_times_are_stored_as_utc_epoch_seconds_whatever_the_zone():
    from zoneinfo import ZoneInfo

    local = datetime(2025, 3, 1, 10, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # 09:00 UTC
    with open_log(None) as log:
        log.add_subjects([SubjectRow("p1", local)])
        assert log.query("SELECT registered_s FROM subjects") == [(T0.timestamp(),)]


def test_a_duplicate_event_is_ignored(log):
    assert log.add_events([event("e1", at=0), event("e2", at=5)]) == 2
    assert log.add_events([event("e1", at=100), event("e3", at=7)]) == 1  # a replayed append
    assert log.add_events([event("e4", at=1), event("e4", at=2)]) == 1  # twice in one batch: the first
    recorded = dict(log.query("SELECT event, recorded_s FROM events"))
    assert recorded == {
        "e1": T0.timestamp() + 1,
        "e2": T0.timestamp() + 6,
        "e3": T0.timestamp() + 8,
        "e4": T0.timestamp() + 2,
    }


def test_an_exposure_keeps_the_earliest(log):
    log.add_exposures([ExposureRow("exp", "treatment", "p1", 5, T0 + timedelta(hours=2))])
    log.add_exposures([ExposureRow("exp", "control", "p1", 6, T0 + timedelta(hours=1))])  # earlier: replaces
    log.add_exposures([ExposureRow("exp", "other", "p1", 7, T0 + timedelta(hours=3))])  # later: ignored
    log.add_exposures([ExposureRow("exp", "tie", "p1", 8, T0 + timedelta(hours=1))])  # same time: the first stays
    log.add_exposures(
        [
            ExposureRow("exp", "b", "p2", 2, T0 + timedelta(hours=9)),
            ExposureRow("exp", "a", "p2", 1, T0 + timedelta(hours=8)),
            ExposureRow("other-exp", "a", "p1", 3, T0 + timedelta(hours=9)),
        ]
    )
    assert rows_of(log, "exposures") == [
        ("exp", "a", "p2", 1, (T0 + timedelta(hours=8)).timestamp()),
        ("exp", "control", "p1", 6, (T0 + timedelta(hours=1)).timestamp()),
        ("other-exp", "a", "p1", 3, (T0 + timedelta(hours=9)).timestamp()),
    ]


def test_subjects_are_upserted(log):
    log.add_subjects([SubjectRow("p1", T0, role="admin"), SubjectRow("p2", T0)])
    log.add_subjects([SubjectRow("p1", T0 + timedelta(days=1), plan="team")])
    assert rows_of(log, "subjects") == [
        ("p1", (T0 + timedelta(days=1)).timestamp(), None, None, "team", None),
        ("p2", T0.timestamp(), None, None, None, None),
    ]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (EventRow("e3", "p1", "ACTIVATED", occurred_at=T0, recorded_at=datetime(2025, 3, 1)), "recorded_at"),
        (EventRow("e3", "p1", "ACTIVATED", occurred_at=datetime(2025, 3, 1), recorded_at=T0), "occurred_at"),
        (EventRow("e3", "", "ACTIVATED", occurred_at=T0, recorded_at=T0), "subject"),
        (EventRow("e3", "p1", "ACTIVATED", occurred_at=T0, recorded_at=T0, feature=""), "feature"),
    ],
)
def test_a_failing_batch_writes_nothing(log, bad, field):
    log.add_events([event("e0")])
    with pytest.raises(InvalidInput) as raised:
        log.add_events([event("e1"), event("e2"), bad, event("e4")])
    assert raised.value.field == field
    assert "row 2" in raised.value.reason
    assert [e for (e,) in log.query("SELECT event FROM events")] == ["e0"]


def test_failing_batches_of_subjects_and_exposures_write_nothing(log):
    with pytest.raises(InvalidInput) as raised:
        log.add_subjects([SubjectRow("p1", T0), SubjectRow("p2", datetime(2025, 1, 1))])
    assert raised.value.field == "registered_at"
    with pytest.raises(InvalidInput) as raised:
        log.add_exposures([ExposureRow("exp", "a", "p1", 1, T0), ExposureRow("exp", "a", "p2", -1, T0)])
    assert raised.value.field == "bucket"
    with pytest.raises(InvalidInput) as raised:
        log.add_exposures(
            [ExposureRow("exp", "a", "p1", 1, T0), ExposureRow("exp", "a", "p2", 1, datetime(2025, 1, 1))]
        )
    assert raised.value.field == "exposed_at"
    assert log.counts() == {"subjects": 0, "events": 0, "exposures": 0, "consents": 0, "value_features": 0}


def test_a_batch_the_database_refuses_is_rolled_back(log):
    log.add_events([event("e0")])
    with pytest.raises(duckdb.Error):
        log.query_at(
            T0, "INSERT INTO events VALUES ('e9', 'p1', 'X', NULL, NULL, 0, 0), ('e0', 'p1', 'X', NULL, NULL, 0, 0)"
        )
    assert log.query("SELECT event FROM events") == [("e0",)]
    assert log.query("SELECT now_s FROM analysis_clock") == [(0.0,)]  # the clock write went with it


def test_erasing_a_subject_leaves_no_subject_or_event_row(log):
    log.add_subjects([SubjectRow("p1", T0, role="admin"), SubjectRow("p2", T0)])
    log.add_events([event("e1", "p1"), event("e2", "p1", "ACTIVATED"), event("e3", "p2")])
    log.add_exposures([ExposureRow("exp", "a", "p1", 1, T0), ExposureRow("exp", "a", "p2", 2, T0)])
    assert log.subject_rows("p1") == 4
    assert log.erase_subject("p1") == 3
    assert log.query("SELECT count(*) FROM subjects WHERE subject = 'p1'") == [(0,)]
    assert log.query("SELECT count(*) FROM events WHERE subject = 'p1'") == [(0,)]
    assert log.subject_rows("p1") == 1  # the pseudonymous exposure stays
    assert log.subject_rows("p2") == 3
    assert log.erase_subject("p1") == 0


def test_removing_a_subjects_events_of_some_types(log):
    log.add_events(
        [
            event("e1", "p1", "FEATURE_USED"),
            event("e2", "p1", "STEP_COMPLETED"),
            event("e3", "p1", "ACTIVATED"),
            event("e4", "p2", "FEATURE_USED"),
        ]
    )
    assert log.remove_subject_events("p1", ["FEATURE_USED", "STEP_COMPLETED", "CONVERTED"]) == 2
    assert [e for (e,) in log.query("SELECT event FROM events ORDER BY event")] == ["e3", "e4"]
    assert log.remove_subject_events("p1", []) == 0
    with pytest.raises(InvalidInput):
        log.remove_subject_events("p1", "ACTIVATED")  # one string, not a collection of type codes


def test_removing_events_by_id(log):
    log.add_events([event("e1"), event("e2"), event("e3")])
    assert log.remove_records(["e1", "e3", "e9"]) == 2
    assert log.query("SELECT event FROM events") == [("e2",)]


def test_consent_records_are_kept_once_and_go_with_erasure_and_retention(log):
    log.add_consents(
        [
            ConsentRow("c1", "p1", "Analytics", True, T0),
            ConsentRow("c2", "p1", "Analytics", False, T0 + timedelta(days=1)),
            ConsentRow("c3", "p2", "Personalization", True, T0),
            ConsentRow("c1", "p1", "Analytics", False, T0),  # a replay of c1: the first is kept
        ]
    )
    assert log.add_consents([ConsentRow("c3", "p2", "Personalization", True, T0)]) == 0
    assert rows_of(log, "consents") == [
        ("c1", "p1", "Analytics", True, T0.timestamp()),
        ("c2", "p1", "Analytics", False, (T0 + timedelta(days=1)).timestamp()),
        ("c3", "p2", "Personalization", True, T0.timestamp()),
    ]
    assert log.subject_rows("p1") == 2
    assert log.remove_records(["c2", "e9"]) == 1  # retention: by record ID, events and consent records alike
    assert log.erase_subject("p1") == 1
    assert [r for (r,) in log.query("SELECT record FROM consents")] == ["c3"]
    with pytest.raises(InvalidInput) as raised:
        log.add_consents([ConsentRow("c4", "p2", "Analytics", "yes", T0)])  # type: ignore[arg-type]
    assert raised.value.field == "granted"
    with pytest.raises(InvalidInput) as raised:
        log.add_consents([ConsentRow("c4", "p2", "", True, T0)])
    assert raised.value.field == "purpose"
    assert log.counts()["consents"] == 1


def test_a_log_of_the_previous_schema_is_upgraded_and_marked_for_a_rebuild(tmp_path):
    path = tmp_path / "log.duckdb"
    with open_log(path) as log:
        log.add_subjects([SubjectRow("p1", T0)])
    with duckdb.connect(str(path)) as conn:  # as the release before consents left it: closed cleanly, version 1
        conn.execute("DROP TABLE consents")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with open_log(path) as again:
        assert again.get_meta("schema_version") == "2"
        assert again.needs_catch_up  # the new table is filled by the rebuild from the store
        assert again.counts()["subjects"] == 1 and again.counts()["consents"] == 0


def test_value_features_are_replaced_wholesale(log):
    log.set_value_features(["a", "b", "b"])
    log.set_value_features(["c", "b"])
    assert rows_of(log, "value_features") == [("b",), ("c",)]
    log.set_value_features([])
    assert log.counts()["value_features"] == 0


def test_concurrent_appends_lose_nothing(log):
    errors: list[BaseException] = []

    def append(worker: int) -> None:
        try:
            for batch in range(10):
                log.add_events([event(f"w{worker}-{batch}-{i}", f"p{worker}", at=i) for i in range(100)])
                log.add_exposures([ExposureRow("exp", "a", f"p{worker}-{batch}", batch, T0)])
                log.query_at(T0 + timedelta(days=worker), "SELECT count(*) FROM events")
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=append, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert log.counts()["events"] == 4 * 10 * 100
    assert log.counts()["exposures"] == 4 * 10


def test_meta_watermarks(tmp_path):
    path = tmp_path / "log.duckdb"
    with open_log(path) as log:
        assert log.get_meta("store_watermark") is None
        log.set_meta("store_watermark", "2025-03-01T09:00:00Z")
        log.set_meta("store_watermark", "2025-03-02T09:00:00Z")
        log.set_meta("other", "7")
        with pytest.raises(InvalidInput):
            log.set_meta("schema_version", "2")
    with open_log(path) as log:
        assert log.get_meta("store_watermark") == "2025-03-02T09:00:00Z"
        assert log.get_meta("other") == "7"
        assert log.get_meta("schema_version") == SCHEMA_VERSION


def test_a_log_of_another_schema_version_is_refused(tmp_path):
    path = tmp_path / "log.duckdb"
    open_log(path).close()
    with duckdb.connect(str(path)) as raw:
        raw.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(OutdatedStore):
        open_log(path)
    with duckdb.connect(str(path)) as raw:  # the refused open let go of the file
        assert raw.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall() == [("99",)]


def test_close_is_idempotent_and_a_closed_log_refuses_work():
    log = open_log(None)
    log.close()
    log.close()
    with pytest.raises(StoreUnavailable):
        log.counts()
    with pytest.raises(StoreUnavailable):
        log.add_events([event("e1")])


def test_100k_events_load_in_well_under_a_few_seconds(tmp_path):
    rows = [
        EventRow(f"e{i}", f"p{i % 5000}", "FEATURE_USED", T0, T0 + timedelta(seconds=i), feature=f"f{i % 30}")
        for i in range(100_000)
    ]
    with open_log(tmp_path / "log.duckdb") as log:
        started = time.perf_counter()
        assert log.add_events(rows) == 100_000
        elapsed = time.perf_counter() - started
        assert log.add_events(rows[:10]) == 0
    assert elapsed < 5, f"100,000 events took {elapsed:.2f} s"


def test_deferred_writes_apply_in_order_before_any_read_and_on_close(tmp_path):
    path = tmp_path / "deferred.duckdb"
    log = open_log(path)
    log.caught_up()  # as the service marks a log it rebuilt: a new file is behind its store until then
    at = datetime(2026, 11, 1, tzinfo=UTC)
    log.defer("subjects", [SubjectRow("p1", at, role="analyst")])
    log.defer("events", [EventRow("e1", "p1", "ACTIVATED", at, at)])
    log.defer("events", [EventRow("e2", "p1", "SESSION_STARTED", at, at)])
    log.defer("erase_subject", "p1")  # an erasure between adds: what came before it goes, what comes after stays
    log.defer("events", [EventRow("e3", "p1", "ACTIVATED", at, at)])
    assert log._deferred  # nothing applied yet
    assert log.query("SELECT event FROM events ORDER BY event") == [("e3",)]
    assert log.counts()["subjects"] == 0
    log.defer("exposures", [ExposureRow("x", "a", "p2", 7, at)])
    log.close()  # applied on close, and closed cleanly
    again = open_log(path)
    assert not again.needs_catch_up and again.counts()["exposures"] == 1
    again.close()


def test_a_deferred_write_that_cannot_be_applied_marks_the_log_behind():
    log = open_log(None)
    log.caught_up()
    log.defer("events", [EventRow("e1", "p1", "ACTIVATED", datetime(2026, 1, 1), datetime(2026, 1, 1))])  # naive
    with pytest.raises(InvalidInput):
        log.flush()
    assert log.needs_catch_up
    log.close()


def test_an_export_is_one_parquet_file_per_table_read_back_whole(tmp_path, log):
    from service.analytics.log import open_parquet

    log.add_subjects([SubjectRow("p1", T0, role="analyst"), SubjectRow("p2", T0, plan="team")])
    log.defer("events", [event("e1"), event("e2", "p2", "ACTIVATED", at=5)])  # queued writes are exported too
    log.add_consents([ConsentRow("c1", "p1", "ANALYTICS", True, T0)])
    log.set_value_features(["reports"])
    counts = log.export_parquet(tmp_path / "export")
    assert counts == {"subjects": 2, "events": 2, "exposures": 0, "consents": 1, "value_features": 1}
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == [
        "consents.parquet",
        "events.parquet",
        "exposures.parquet",
        "manifest.json",
        "subjects.parquet",
        "value_features.parquet",
    ]
    with open_parquet(tmp_path / "export") as read:
        for table in counts:
            assert rows_of(read, table) == rows_of(log, table)
    with pytest.raises(InvalidInput, match="exists already"):
        log.export_parquet(tmp_path / "export")


def test_an_export_of_another_schema_or_missing_a_table_is_refused(tmp_path, log):
    import json

    from service.analytics.log import open_parquet

    log.export_parquet(tmp_path / "export")
    manifest = tmp_path / "export" / "manifest.json"
    saved = manifest.read_text()
    manifest.write_text(json.dumps({"schema_version": "1", "tables": {}}))
    with pytest.raises(InvalidInput, match="export of schema 1") as refused:
        open_parquet(tmp_path / "export")
    assert refused.value.field == "folder"
    manifest.write_text(saved)
    (tmp_path / "export" / "events.parquet").unlink()
    with pytest.raises(InvalidInput, match="lacks events.parquet"):
        open_parquet(tmp_path / "export")
    with pytest.raises(InvalidInput, match="no readable export manifest"):
        open_parquet(tmp_path / "nowhere")
