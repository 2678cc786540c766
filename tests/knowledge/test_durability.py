"""Durability: an acknowledged write survives ``kill -9`` of the service; backups are consistent and restore.

The kill test runs the real service (``python -m service.cli serve``) as a subprocess on a
free loopback port over a store in a temporary folder, drives registerUser and
recordEvent mutations from several threads, records which writes were acknowledged
(HTTP 200 without errors), sends SIGKILL mid-stream, restarts the service on the same
folder and checks, through GraphQL and then by opening the store, that every
acknowledged write is there, whole, and that nothing was stored that was never sent.

What this proves and what it does not: a commit is in RocksDB's write-ahead log, in the
operating system's page cache, before the answer leaves, so a crash of the *process*
loses nothing acknowledged. It says nothing about a power loss or a kernel crash, where
unsynced pages of the log can be lost (see bench/durability/README.md for that choice).
"""

from __future__ import annotations

import gc
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import pyoxigraph as ox
import pytest

from service.decisions import consent, decide, subjects, users
from service.knowledge import vocab
from service.knowledge.embedded import Store
from service.runtime import Runtime
from service.settings import Settings
from tests.service_process import Service, closed_store

THREADS = 4
USERS_PER_THREAD = 10
EVENTS_PER_USER = 4  # 10 x (1 registration + 4 events) = 50 writes per thread, 200 in all
KILL_AFTER = 80  # acknowledged writes before SIGKILL: well inside the stream
STREAM_DEADLINE_S = 40
CONSENTS = ["PERSONALIZATION", "ANALYTICS"]
EVENT_KINDS = [  # (type, stepId, featureId): each accepted for a user with the consents above
    ("ACTIVATED", None, None),
    ("FEATURE_USED", None, "charts"),
    ("STEP_COMPLETED", "explore-sample-data", None),
    ("FEATURE_USED", None, "visual-explorer"),
]
EPOCH = datetime(2026, 3, 1, tzinfo=UTC)

REGISTER = "mutation R($input: RegisterUserInput!) { registerUser(input: $input) { id } }"
RECORD = "mutation E($input: EventInput!) { recordEvent(input: $input) { id userId type at } }"
USER = "query U($id: ID!) { user(id: $id) { id role plan eventCount consents { purpose granted } } }"


@pytest.fixture
def service_store(knowledge_quads, tmp_path) -> Path:
    """A store folder holding the demo knowledge and no users, closed (the service opens it)."""
    return closed_store(tmp_path / "store", knowledge_quads)


@pytest.fixture
def service(service_store, tmp_path):
    svc = Service(service_store, tmp_path)
    yield svc
    svc.kill()


# -- the write stream ------------------------------------------------------------------


@dataclass
class Ledger:
    """What each writer sent and what the service acknowledged."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent_users: set[str] = field(default_factory=set)
    sent_events: dict[str, dict[str, int]] = field(default_factory=dict)  # user -> occurredAt sent -> triples
    acked_users: set[str] = field(default_factory=set)
    acked_events: dict[str, dict[str, str]] = field(default_factory=dict)  # user -> event ID -> occurredAt
    acked: int = 0
    interrupted: list[str] = field(default_factory=list)  # the write each thread had in flight at the kill
    refused: list[dict] = field(default_factory=list)  # 200 with errors: must not happen here
    progress: threading.Condition = field(default_factory=threading.Condition)

    def ack(self) -> None:
        with self.progress:
            self.acked += 1
            self.progress.notify_all()


def _at(thread: int, user: int, event: int) -> datetime:
    """A distinct, whole-second time per event: it identifies an event the service never acknowledged."""
    return EPOCH + timedelta(seconds=thread * 100_000 + user * 100 + event)


def _literal(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _writer(url: str, thread: int, ledger: Ledger, prefix: str, users_per_thread: int) -> None:
    with httpx.Client(base_url=url, timeout=15, trust_env=False) as http:

        def send(query: str, variables: dict, what: str) -> dict | None:
            try:
                response = http.post("/graphql", json={"query": query, "variables": variables})
            except httpx.TransportError as exc:  # the service is gone: this write is unacknowledged
                with ledger.lock:
                    ledger.interrupted.append(f"{what} ({type(exc).__name__})")
                return None
            body = response.json() if response.status_code in (200, 400) else {"errors": [response.text]}
            if response.status_code != 200 or body.get("errors"):
                with ledger.lock:
                    ledger.refused.append({"what": what, "status": response.status_code, "body": body})
                return None
            return body["data"]

        for k in range(users_per_thread):
            user_id = f"{prefix}-{thread}-{k}"
            with ledger.lock:
                ledger.sent_users.add(user_id)
                ledger.sent_events[user_id] = {}
            data = send(
                REGISTER,
                {
                    "input": {
                        "id": user_id,
                        "role": "analyst",
                        "plan": "team",
                        "signupChannel": "WEB",
                        "consents": CONSENTS,
                    }
                },
                f"registerUser {user_id}",
            )
            if data is None:
                return
            with ledger.lock:
                ledger.acked_users.add(user_id)
                ledger.acked_events[user_id] = {}
            ledger.ack()
            for j in range(EVENTS_PER_USER):
                kind, step, feature = EVENT_KINDS[j % len(EVENT_KINDS)]
                at = _at(thread, k, j)
                with ledger.lock:
                    # type, byUser, occurredAt, recordedAt, and aboutStep or aboutFeature when there is one
                    ledger.sent_events[user_id][_literal(at)] = 4 + bool(step or feature)
                data = send(
                    RECORD,
                    {
                        "input": {
                            "userId": user_id,
                            "type": kind,
                            "stepId": step,
                            "featureId": feature,
                            "at": at.isoformat(),
                        }
                    },
                    f"recordEvent {user_id}#{j}",
                )
                if data is None:
                    return
                event = data["recordEvent"]
                with ledger.lock:
                    ledger.acked_events[user_id][event["id"]] = _literal(at)
                ledger.ack()


def _stream(
    url: str, ledger: Ledger, prefix: str, *, kill: Service | None, users_per_thread: int = USERS_PER_THREAD
) -> None:
    """Run the writers; with ``kill``, SIGKILL the service once KILL_AFTER writes are acknowledged."""
    threads = [
        threading.Thread(target=_writer, args=(url, t, ledger, prefix, users_per_thread), daemon=True)
        for t in range(THREADS)
    ]
    for t in threads:
        t.start()
    if kill is not None:
        with ledger.progress:
            reached = ledger.progress.wait_for(
                lambda: ledger.acked >= KILL_AFTER or not any(t.is_alive() for t in threads), timeout=STREAM_DEADLINE_S
            )
        assert reached and ledger.acked >= KILL_AFTER, f"only {ledger.acked} writes acknowledged:\n{kill.log_tail()}"
        kill.kill()
    for t in threads:
        t.join(timeout=STREAM_DEADLINE_S)
        assert not t.is_alive(), "a writer thread hung"


# -- the checks ----------------------------------------------------------------------------


def _graphql(url: str, query: str, variables: dict) -> dict:
    with httpx.Client(base_url=url, timeout=15, trust_env=False) as http:
        body = http.post("/graphql", json={"query": query, "variables": variables}).json()
    assert not body.get("errors"), body["errors"]
    return body["data"]


def _stored_events(runtime: Runtime, user_id: str) -> dict[str, tuple[str, int]]:
    """Event local ID -> (occurredAt, number of triples) for every event stored for the user."""
    graph = vocab.user_graph(user_id)
    stored: dict[str, tuple[str, int]] = {}
    for quad in runtime.store.quads(predicate=vocab.BY_USER, object=vocab.user_iri(user_id), graph=graph):
        triples = list(runtime.store.quads(subject=quad.subject, graph=graph))
        at = next(q.object.value for q in triples if q.predicate == vocab.OCCURRED_AT)
        stored[quad.subject.value.removeprefix(vocab.EVENT_BASE)] = (at, len(triples))
    return stored


def test_acknowledged_writes_survive_kill_9_of_the_service(service, tmp_path):
    started = time.monotonic()
    service.start()
    ledger = Ledger()
    _stream(service.url, ledger, "dur", kill=service)
    killed_at = ledger.acked
    total = THREADS * USERS_PER_THREAD * (1 + EVENTS_PER_USER)
    assert not ledger.refused, ledger.refused
    assert KILL_AFTER <= killed_at < total, "the kill did not fall inside the write stream"
    assert len(ledger.interrupted) == THREADS, ledger.interrupted  # every writer lost its connection

    # Restart on the same folder: RocksDB replays its write-ahead log.
    service.start()
    for user_id in ledger.acked_users:
        user = _graphql(service.url, USER, {"id": user_id})["user"]
        assert user is not None, f"acknowledged registration of {user_id} lost"
        assert user["role"] == "analyst" and user["plan"] == "team"
        assert sorted(c["purpose"] for c in user["consents"] if c["granted"]) == sorted(CONSENTS)
        assert user["eventCount"] >= len(ledger.acked_events[user_id]), f"acknowledged events of {user_id} lost"

    # The recovered store takes writes; kill -9 again, right after they are acknowledged.
    after = Ledger()
    _stream(service.url, after, "again", kill=None, users_per_thread=2)
    assert not after.refused and not after.interrupted, (after.refused, after.interrupted)
    assert after.acked == THREADS * 2 * (1 + EVENTS_PER_USER)
    service.kill()

    # Open the folder directly and check every write, sent or acknowledged.
    runtime = Runtime(settings=Settings(store=str(service.store), models_dir=tmp_path / "models"))
    unanswered_but_stored = 0
    try:
        for led in (ledger, after):
            for user_id in led.sent_users:
                present = subjects.exists(runtime, user_id)
                if user_id in led.acked_users:
                    assert present, f"acknowledged registration of {user_id} lost"
                if not present:
                    assert not _stored_events(runtime, user_id)
                    continue
                # A registration is whole (profile, pseudonym, both consent records) or absent.
                profile = users.profile(runtime, user_id)
                assert profile is not None and profile.pseudonym and profile.registered_at
                assert len(consent.consents(runtime, user_id)) == len(CONSENTS)
                stored = _stored_events(runtime, user_id)
                unanswered_but_stored += (user_id not in led.acked_users) + len(
                    set(stored) - set(led.acked_events.get(user_id, {}))
                )
                for event_id, at in led.acked_events.get(user_id, {}).items():
                    assert event_id in stored, f"acknowledged event {event_id} of {user_id} lost"
                    assert stored[event_id][0] == at
                for event_id, (at, triples) in stored.items():
                    assert at in led.sent_events[user_id], f"event {event_id} of {user_id} was never sent"
                    assert triples == led.sent_events[user_id][at], (
                        f"event {event_id} stored partly ({triples} triples)"
                    )
                assert len({at for at, _ in stored.values()}) == len(stored), f"an event of {user_id} stored twice"
        # Nothing else: every user in the store is one the test sent (or none at all).
        sent = ledger.sent_users | after.sent_users
        stored_users = {
            g.value.removeprefix(vocab.USER_GRAPH_BASE)
            for g in runtime.store.named_graphs()
            if g.value.startswith(vocab.USER_GRAPH_BASE)
        }
        assert stored_users <= sent
    finally:
        runtime.store.close()

    lost_in_flight = len(ledger.sent_users) + sum(map(len, ledger.sent_events.values())) - killed_at
    print(
        f"\nkill -9 after {killed_at} of {total} writes acknowledged, all found after restart; {lost_in_flight} "
        f"in flight, unanswered ({unanswered_but_stored} of them committed, whole); {after.acked} more after "
        f"restart, then kill -9 again: all found; "
        f"{time.monotonic() - started:.1f} s"
    )


# -- backups -------------------------------------------------------------------------------


def _register(runtime: Runtime, user_id: str, events: int = 3, start: datetime = EPOCH) -> None:
    users.register(runtime, users.Registration(id=user_id, role="analyst", plan="team", consents=CONSENTS))
    reports = [
        users.EventReport(
            user_id=user_id,
            type=EVENT_KINDS[j % 4][0],
            step_id=EVENT_KINDS[j % 4][1],
            feature_id=EVENT_KINDS[j % 4][2],
            at=start + timedelta(seconds=j),
        )
        for j in range(events)
    ]
    users.record_events(runtime, reports)


def _content(store: Store) -> set[ox.Quad]:
    return set(store.quads())


def _release(*objects) -> None:
    """Close a store (flush, release its folder's lock)."""
    for obj in objects:
        store = obj.store if isinstance(obj, Runtime) else obj
        store.close()
    gc.collect()


def test_a_backup_is_a_full_independent_store_and_leaves_the_original_intact(disk_runtime, tmp_path):
    for i in range(5):
        _register(disk_runtime, f"b{i}")
    original = disk_runtime.store
    before = _content(original)
    target = tmp_path / "backup"
    original.backup(target)

    copy = Store(target)
    assert _content(copy) == before  # every quad, named graphs included
    assert len(copy) == len(original) == len(before)
    assert set(copy.named_graphs()) == set(original.named_graphs())
    assert _content(original) == before  # the backup changed nothing

    # Independent: writes to one do not show in the other, even after compaction of the
    # copy (whose immutable files are hard links to the original's).
    runtime_copy = Runtime(settings=Settings(store=str(target), models_dir=tmp_path / "m2"), store=copy)
    _register(runtime_copy, "only-in-backup")
    copy.flush()
    copy.optimize()
    _register(disk_runtime, "only-in-original")
    assert subjects.exists(runtime_copy, "only-in-backup") and not subjects.exists(runtime_copy, "only-in-original")
    assert subjects.exists(disk_runtime, "only-in-original") and not subjects.exists(disk_runtime, "only-in-backup")
    _release(runtime_copy, disk_runtime)

    reopened = Store(tmp_path / "store")
    try:
        assert before < _content(reopened)  # all it held, plus the one registration after the backup
        assert not subjects.exists(Runtime(settings=disk_runtime.settings, store=reopened), "only-in-backup")
    finally:
        reopened.close()


def test_a_backup_taken_during_writes_holds_whole_commits_only(disk_runtime, tmp_path):
    _register(disk_runtime, "w", events=0)
    batch, batches = 5, 60
    committed = [0]
    stop = threading.Event()

    def writer() -> None:
        for b in range(batches):
            if stop.is_set():
                return
            users.record_events(
                disk_runtime,
                [
                    users.EventReport(user_id="w", type="ACTIVATED", at=EPOCH + timedelta(seconds=b * 100 + j))
                    for j in range(batch)
                ],
            )
            committed[0] = b + 1

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while committed[0] < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    low = committed[0]
    disk_runtime.store.backup(tmp_path / "backup")
    high = committed[0]
    stop.set()
    thread.join(timeout=60)

    copy = Runtime(settings=Settings(store=str(tmp_path / "backup")), store=Store(tmp_path / "backup"))
    try:
        per_batch: dict[int, int] = {}
        for event in users.events(copy, "w"):
            b = int((event.at - EPOCH).total_seconds()) // 100
            per_batch[b] = per_batch.get(b, 0) + 1
        assert set(per_batch.values()) <= {batch}, f"a batch was cut in two by the backup: {per_batch}"
        assert sorted(per_batch) == list(range(len(per_batch))), "the backup skipped a commit"
        assert low <= len(per_batch) <= high + 1, (low, len(per_batch), high)
    finally:
        copy.store.close()


def _cli(*args: str):
    from typer.testing import CliRunner

    from service.cli import app

    result = CliRunner().invoke(app, list(args))
    outcome = SimpleNamespace(exit_code=result.exit_code, output=result.output)
    # A failed command's traceback holds its runtime, and with it the store's folder lock: drop both.
    if result.exception is not None:
        result.exception.__traceback__ = None
    del result
    gc.collect()
    return outcome


def test_backup_command_copies_store_and_anchors_and_a_restore_verifies(knowledge_quads, tmp_path):
    """``wayfinder backup``, then a restore by copying the folder (and its anchors) back in place."""
    path = tmp_path / "store"
    anchors = tmp_path / "store.anchors.jsonl"
    store = Store(path)
    store.commit(add=knowledge_quads)
    settings = Settings(store=str(path), models_dir=tmp_path / "models", audit_checkpoint_every=1)
    runtime = Runtime(settings=settings, store=store)
    _register(runtime, "maya")
    for _ in range(2):
        decide.next_steps(runtime, "maya", limit=3)  # audited, and sealed in the anchor file (every record)
    before = _content(store)
    sealed = anchors.read_text()
    assert len(sealed.splitlines()) == 2
    _release(runtime)
    del runtime, store

    backup = tmp_path / "backups" / "2026-11-26"
    backup.parent.mkdir()
    result = _cli("backup", str(backup), "--store", str(path))
    assert result.exit_code == 0, result.output
    assert f"backed up {len(before)} quads" in result.output
    assert (tmp_path / "backups" / "2026-11-26.anchors.jsonl").read_text() == sealed

    # Life goes on after the backup: more users, more decisions, more anchors.
    runtime = Runtime(settings=settings, store=Store(path))
    _register(runtime, "late")
    decide.next_steps(runtime, "late", limit=3)
    _release(runtime)
    del runtime
    assert len(anchors.read_text().splitlines()) == 3

    # Restoring the folder alone, while the newer anchors stay, is caught by the audit check.
    shutil.rmtree(path)
    shutil.copytree(backup, path)
    result = _cli("audit", "verify", "--store", str(path))
    assert result.exit_code == 1 and "external anchor" in result.output, result.output

    # The documented restore: service stopped, folder and anchors copied back in place.
    shutil.copy(tmp_path / "backups" / "2026-11-26.anchors.jsonl", anchors)
    result = _cli("audit", "verify", "--store", str(path))
    assert result.exit_code == 0, result.output
    assert "2 external anchors match" in result.output
    restored = Store(path)
    try:
        assert _content(restored) == before
    finally:
        restored.close()
    # The backup itself was only read by the restore: it still opens as it was.
    again = Store(backup)
    try:
        assert _content(again) == before
    finally:
        again.close()
    # The other documented restore: serve the backup folder itself; its anchors lie beside it.
    result = _cli("audit", "verify", "--store", str(backup))
    assert result.exit_code == 0 and "2 external anchors match" in result.output, result.output


def test_backup_command_refuses_an_existing_folder_and_a_memory_store(service_store, tmp_path):
    path = service_store
    existing = tmp_path / "exists"
    existing.mkdir()
    (existing / "keep.txt").write_text("untouched")
    result = _cli("backup", str(existing), "--store", str(path))
    assert result.exit_code == 2 and "exists already" in result.output
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]
    result = _cli("backup", str(tmp_path / "mem-backup"), "--store", ":memory:")
    assert result.exit_code == 2 and not (tmp_path / "mem-backup").exists()


# -- flush after each commit ---------------------------------------------------------------


def _without_write_ahead_log(path: Path, copy: Path) -> Store:
    """Open a copy of an open store's folder without its write-ahead log (``*.log``), as a power loss can
    leave it: what RocksDB had not flushed to its (synced) table files is gone."""
    shutil.copytree(path, copy, ignore=shutil.ignore_patterns("*.log", "LOCK"))
    return Store(copy)


@pytest.mark.parametrize("flush", [False, True], ids=["wal-only", "flush-each-commit"])
def test_with_flush_each_commit_a_commit_survives_the_loss_of_the_write_ahead_log(knowledge_quads, tmp_path, flush):
    store = Store(tmp_path / "store", flush_each_commit=flush)
    store.commit(add=knowledge_quads)
    runtime = Runtime(settings=Settings(store=str(tmp_path / "store"), models_dir=tmp_path / "models"), store=store)
    _register(runtime, "kept", events=2)
    assert store.flushes == (3 if flush else 0)  # knowledge, registration, events: one flush after each
    after_crash = _without_write_ahead_log(tmp_path / "store", tmp_path / "after-crash")
    try:
        crashed = Runtime(settings=Settings(store=str(tmp_path / "after-crash")), store=after_crash)
        assert subjects.exists(crashed, "kept") is flush
        assert len(users.events(crashed, "kept")) == (2 if flush else 0)
    finally:
        _release(after_crash, runtime)


def test_flush_each_commit_is_a_setting_off_by_default(tmp_path, monkeypatch):
    from service.knowledge.embedded import open_store

    monkeypatch.delenv("WAYFINDER_FLUSH_EACH_COMMIT", raising=False)
    assert Settings().flush_each_commit is False
    monkeypatch.setenv("WAYFINDER_FLUSH_EACH_COMMIT", "true")
    assert Settings().flush_each_commit is True
    store = open_store(str(tmp_path / "store"), flush_each_commit=True)
    try:
        store.commit(add=[ox.Quad(vocab.user_iri("x"), vocab.RDF_TYPE, vocab.USER, vocab.user_graph("x"))])
        assert store.flush_each_commit and store.flushes == 1
    finally:
        _release(store)
