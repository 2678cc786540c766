"""Faults around the audit trail: lost commit replies, broken chains told apart, unreadable or missing anchors."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pyoxigraph as ox
import pytest
from typer.testing import CliRunner

from service.audit.chain import GENESIS, AuditTrail, content_hash, stored_form, verify
from service.cli import app
from service.decisions import decide, users
from service.demo import knowledge_files
from service.errors import Conflict, StoreUnavailable
from service.knowledge import vocab
from service.knowledge.embedded import Store
from service.runtime import Runtime
from service.settings import Settings
from tests.knowledge.test_shared import runtime_on
from tests.paths import ROOT

HEAD = (ROOT / "queries" / "service" / "audit-head.rq").read_text()
INDEX = (ROOT / "queries" / "service" / "audit-index.rq").read_text()


# -- a proxy in front of the SPARQL server that can lose one update's reply --------------------


class LossyProxy:
    """Forwards every request to the SPARQL server; can answer 502 to one chosen update."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.updates = 0  # POSTs to /update seen so far
        self.fail_update: int | None = None  # the number of the update answered 502
        self.forward_failed = True  # whether that update still reaches the server
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=30)
        proxy = self

        class Forward(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy.handle(self)

            def do_POST(self) -> None:
                proxy.handle(self)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def lose_next_reply(self, *, applied: bool = True) -> None:
        """Answer 502 to the next update; the server applies it when ``applied``."""
        with self._lock:
            self.fail_update = self.updates + 1
            self.forward_failed = applied

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("content-length") or 0))
        fail = forward = False
        if request.command == "POST" and request.path.split("?")[0] == "/update":
            with self._lock:
                self.updates += 1
                fail = self.updates == self.fail_update
                forward = not fail or self.forward_failed
        else:
            forward = True
        if forward:
            headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "accept")}
            answer = self._http.request(request.command, self.upstream + request.path, content=body, headers=headers)
            status, kind, content = answer.status_code, answer.headers.get("content-type", "text/plain"), answer.content
        if fail:
            status, kind, content = 502, "text/plain", b"bad gateway"
        request.send_response(status)
        request.send_header("content-type", kind)
        request.send_header("content-length", str(len(content)))
        request.end_headers()
        request.wfile.write(content)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()


@contextlib.contextmanager
def lossy_proxy(upstream: str) -> Iterator[LossyProxy]:
    proxy = LossyProxy(upstream)
    try:
        yield proxy
    finally:
        proxy.close()


def shared_runtime(url: str, tmp_path: Path) -> Runtime:
    runtime = runtime_on(url, tmp_path)
    runtime.ensure_ontology()
    runtime.load(knowledge_files(runtime))
    users.register(runtime, users.Registration(id="lost", role="analyst", plan="team", consents=["PERSONALIZATION"]))
    return runtime


def test_a_lost_reply_to_an_applied_commit_leaves_the_shared_chain_intact(server, tmp_path):
    with lossy_proxy(server) as proxy:
        runtime = shared_runtime(proxy.url, tmp_path)
        decide.next_steps(runtime, "lost")
        proxy.lose_next_reply(applied=True)
        with pytest.raises(StoreUnavailable):
            decide.next_steps(runtime, "lost")
        for _ in range(3):
            decide.next_steps(runtime, "lost")
        result = verify(runtime.store, runtime.queries["audit-index"])
        assert result.ok, result.reason
        assert result.records == 5  # the record whose reply was lost landed, and is chained


def test_a_failed_commit_that_was_not_applied_leaves_the_shared_chain_intact(server, tmp_path):
    with lossy_proxy(server) as proxy:
        runtime = shared_runtime(proxy.url, tmp_path)
        decide.next_steps(runtime, "lost")
        proxy.lose_next_reply(applied=False)
        with pytest.raises(StoreUnavailable):
            decide.next_steps(runtime, "lost")
        decide.next_steps(runtime, "lost")
        result = verify(runtime.store, runtime.queries["audit-index"])
        assert result.ok, result.reason
        assert result.records == 2


def test_retrying_an_append_whose_reply_was_lost_stores_it_once(server, tmp_path):
    with lossy_proxy(server) as proxy:
        store = runtime_on(proxy.url, tmp_path).store
        trail = AuditTrail(store, HEAD, chain="retry")
        trail.append(*plain_record("r1"))
        proxy.lose_next_reply(applied=True)
        with pytest.raises(StoreUnavailable):
            trail.append(*plain_record("r2"))
        again = trail.append(*plain_record("r2"))
        assert again.sequence == 2
        assert trail.append(*plain_record("r3")).sequence == 3
        result = verify(store, INDEX)
        assert result.ok, result.reason
        assert result.records == 3


# -- the embedded store: a commit that lands and then raises ------------------------------------


class FlushFails(Store):
    """The real store; when armed, the flush after the next commit raises, the commit having landed."""

    armed = False

    def flush(self) -> None:
        if self.armed:
            self.armed = False
            raise OSError("the disk reported an error")
        super().flush()


def test_an_embedded_commit_that_raises_after_landing_leaves_the_chain_intact(knowledge_quads, tmp_path):
    store = FlushFails(tmp_path / "store", flush_each_commit=True)
    store.commit(add=knowledge_quads)
    runtime = Runtime(settings=Settings(store=str(tmp_path / "store"), models_dir=tmp_path / "models"), store=store)
    users.register(runtime, users.Registration(id="e1", role="analyst", plan="team", consents=["PERSONALIZATION"]))
    decide.next_steps(runtime, "e1")
    store.armed = True
    with pytest.raises(OSError):
        decide.next_steps(runtime, "e1")
    decide.next_steps(runtime, "e1")
    decide.next_steps(runtime, "e1")
    result = verify(store, runtime.queries["audit-index"])
    assert result.ok, result.reason
    assert result.records == 4
    store.close()


def test_appending_a_stored_record_again_is_a_no_op():
    trail = AuditTrail(Store(":memory:"), HEAD, chain="main")
    trail.append(*plain_record("a"))
    trail.forget_head()  # as after a failed commit
    assert trail.append(*plain_record("a")).sequence == 1
    assert trail.append(*plain_record("b")).sequence == 2
    result = verify(trail.store, INDEX)
    assert result.ok and result.records == 2


# -- verification tells the kinds of break apart -----------------------------------------------


def plain_record(name: str) -> tuple[ox.NamedNode, list[ox.Triple]]:
    record = ox.NamedNode(vocab.DECISION_BASE + name)
    return record, [
        ox.Triple(record, vocab.RDF_TYPE, vocab.DECISION),
        ox.Triple(record, vocab.REQUESTED_BY, ox.Literal(f"tester {name}")),
    ]


def put_record(store: Store, name: str, *, chain: str, sequence: int, previous: str) -> str:
    """Store a chained record by hand; return its hash."""
    record, triples = plain_record(name)
    chained = stored_form(
        [
            *triples,
            ox.Triple(record, vocab.CHAIN, ox.Literal(chain)),
            ox.Triple(record, vocab.SEQUENCE, ox.Literal(str(sequence), datatype=vocab.XSD_INTEGER)),
            ox.Triple(record, vocab.PREVIOUS_HASH, ox.Literal(previous)),
        ]
    )
    digest = content_hash(chained)
    chained.append(ox.Triple(record, vocab.CONTENT_HASH, ox.Literal(digest)))
    store.commit(add=[ox.Quad(t.subject, t.predicate, t.object, vocab.AUDIT_GRAPH) for t in chained])
    return digest


def test_a_duplicate_sequence_is_reported_as_a_duplicate():
    store = Store(":memory:")
    first = put_record(store, "d1", chain="c", sequence=1, previous=GENESIS)
    put_record(store, "d2", chain="c", sequence=2, previous=first)
    put_record(store, "d2bis", chain="c", sequence=2, previous=first)
    result = verify(store, INDEX)
    assert not result.ok and result.broken_sequence == 2
    assert result.reason.startswith("duplicate sequence 2 in chain c: records ")
    assert "a commit was applied twice or a reply was lost" in result.reason
    assert vocab.DECISION_BASE + "d2" in result.reason and vocab.DECISION_BASE + "d2bis" in result.reason
    assert "removed" not in result.reason


def test_a_gap_is_reported_as_a_removed_record():
    store = Store(":memory:")
    first = put_record(store, "g1", chain="c", sequence=1, previous=GENESIS)
    second = put_record(store, "g2", chain="c", sequence=2, previous=first)
    put_record(store, "g3", chain="c", sequence=3, previous=second)
    store.commit(remove=list(store.quads(subject=ox.NamedNode(vocab.DECISION_BASE + "g2"), graph=vocab.AUDIT_GRAPH)))
    result = verify(store, INDEX)
    assert not result.ok and result.broken_sequence == 2
    assert result.reason == "record 2 missing: a record was removed (chain c)"


def test_a_changed_triple_is_reported_as_changed_content():
    store = Store(":memory:")
    first = put_record(store, "t1", chain="c", sequence=1, previous=GENESIS)
    put_record(store, "t2", chain="c", sequence=2, previous=first)
    record = ox.NamedNode(vocab.DECISION_BASE + "t2")
    old = next(store.quads(subject=record, predicate=vocab.REQUESTED_BY, graph=vocab.AUDIT_GRAPH))
    store.commit(remove=[old], add=[ox.Quad(record, vocab.REQUESTED_BY, ox.Literal("someone else"), vocab.AUDIT_GRAPH)])
    result = verify(store, INDEX)
    assert not result.ok and result.broken_sequence == 2 and result.broken_record == record.value
    assert "content hash does not match" in result.reason


# -- anchors: unreadable, or missing where the chain says they should be -------------------------


def decisions_on_disk(disk_runtime: Runtime, count: int, *, checkpoint_every: int) -> tuple[str, Path]:
    """Make ``count`` decisions on the disk store, sealing every ``checkpoint_every``; return the store and anchors paths."""
    disk_runtime.trail.checkpoint_every = checkpoint_every
    users.register(
        disk_runtime, users.Registration(id="anchored", role="analyst", plan="team", consents=["PERSONALIZATION"])
    )
    for _ in range(count):
        decide.next_steps(disk_runtime, "anchored", limit=2)
    path = disk_runtime.settings.store
    anchors = disk_runtime.trail.anchor_file
    disk_runtime.store.close()  # the command opens the folder itself
    return path, anchors


def audit_verify(path: str, monkeypatch, *, checkpoint_every: int):
    monkeypatch.setenv("WAYFINDER_AUDIT_CHECKPOINT_EVERY", str(checkpoint_every))
    return CliRunner().invoke(app, ["audit", "verify", "--store", path])


def one_line(output: str) -> str:
    return " ".join(output.split())


def test_a_corrupt_anchor_line_exits_2_naming_the_file_and_line(disk_runtime, monkeypatch):
    path, anchors = decisions_on_disk(disk_runtime, 3, checkpoint_every=2)
    with anchors.open("a") as out:
        out.write("{not json\n")
    result = audit_verify(path, monkeypatch, checkpoint_every=2)
    assert result.exit_code == 2, result.output
    assert f"{anchors}:2" in one_line(result.output)
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


def test_an_anchor_line_lacking_fields_exits_2_naming_the_file_and_line(disk_runtime, monkeypatch):
    path, anchors = decisions_on_disk(disk_runtime, 3, checkpoint_every=2)
    anchors.write_text(anchors.read_text() + '{"chain": "main", "at": "2026-01-01T00:00:00+00:00"}\n')
    result = audit_verify(path, monkeypatch, checkpoint_every=2)
    assert result.exit_code == 2, result.output
    text = one_line(result.output)
    assert f"{anchors}:2" in text and "sequence" in text


def test_a_deleted_anchor_file_exits_2_saying_anchors_were_expected(disk_runtime, monkeypatch):
    path, anchors = decisions_on_disk(disk_runtime, 3, checkpoint_every=2)
    assert anchors.exists()
    anchors.unlink()
    result = audit_verify(path, monkeypatch, checkpoint_every=2)
    assert result.exit_code == 2, result.output
    text = one_line(result.output)
    assert "anchors expected" in text and "3 records" in text and str(anchors) in text
    assert "deleted" in text and "backup" in text


def test_an_emptied_anchor_file_exits_2_saying_anchors_were_expected(disk_runtime, monkeypatch):
    path, anchors = decisions_on_disk(disk_runtime, 3, checkpoint_every=2)
    anchors.write_text("")
    result = audit_verify(path, monkeypatch, checkpoint_every=2)
    assert result.exit_code == 2, result.output
    assert "anchors expected" in one_line(result.output)


def test_a_fresh_store_below_the_checkpoint_interval_needs_no_anchors(disk_runtime, monkeypatch):
    path, anchors = decisions_on_disk(disk_runtime, 3, checkpoint_every=1000)
    assert not anchors.exists()
    result = audit_verify(path, monkeypatch, checkpoint_every=1000)
    assert result.exit_code == 0, result.output
    assert "intact" in result.output and "3 records" in result.output


def test_a_checkpoint_whose_commit_raised_after_landing_is_sealed_by_the_next_append(knowledge_quads, tmp_path):
    store = FlushFails(tmp_path / "store", flush_each_commit=True)
    store.commit(add=knowledge_quads)
    runtime = Runtime(
        settings=Settings(store=str(tmp_path / "store"), models_dir=tmp_path / "models", audit_checkpoint_every=2),
        store=store,
    )
    users.register(runtime, users.Registration(id="e2", role="analyst", plan="team", consents=["PERSONALIZATION"]))
    decide.next_steps(runtime, "e2")
    store.armed = True
    with pytest.raises(OSError):
        decide.next_steps(runtime, "e2")  # record 2 lands, its commit raises, it is not sealed then
    decide.next_steps(runtime, "e2")
    anchors = runtime.trail.anchors()
    assert [a["sequence"] for a in anchors] == [2]
    result = verify(store, runtime.queries["audit-index"], anchors=anchors)
    assert result.ok and result.anchors_checked == 1, result.reason
    store.close()


def test_retrying_an_uncertain_append_after_later_appends_stores_it_once():
    store = FlushFails(":memory:", flush_each_commit=True)
    trail = AuditTrail(store, HEAD, chain="main")
    trail.append(*plain_record("a"))
    store.armed = True
    with pytest.raises(OSError):
        trail.append(*plain_record("b"))
    assert trail.append(*plain_record("c")).sequence == 3
    assert trail.append(*plain_record("b")).sequence == 2  # stored already: nothing changes
    assert trail.append(*plain_record("d")).sequence == 4
    result = verify(store, INDEX)
    assert result.ok and result.records == 4, result.reason


def test_appending_a_stored_record_with_other_content_is_a_conflict():
    store = FlushFails(":memory:", flush_each_commit=True)
    trail = AuditTrail(store, HEAD, chain="main")
    store.armed = True
    with pytest.raises(OSError):
        trail.append(*plain_record("a"))
    record, triples = plain_record("a")
    with pytest.raises(Conflict):
        trail.append(record, [*triples, ox.Triple(record, vocab.REQUESTED_BY, ox.Literal("someone else"))])
    assert verify(store, INDEX).ok


def test_a_record_that_lost_its_type_is_reported_as_changed_not_removed():
    store = Store(":memory:")
    first = put_record(store, "u1", chain="c", sequence=1, previous=GENESIS)
    second = put_record(store, "u2", chain="c", sequence=2, previous=first)
    put_record(store, "u3", chain="c", sequence=3, previous=second)
    record = ox.NamedNode(vocab.DECISION_BASE + "u2")
    store.commit(remove=[ox.Quad(record, vocab.RDF_TYPE, vocab.DECISION, vocab.AUDIT_GRAPH)])
    result = verify(store, INDEX)
    assert not result.ok and result.broken_record == record.value
    assert "content hash does not match" in result.reason


def test_an_erasure_beside_a_decision_never_deadlocks(knowledge_quads, tmp_path):
    """Erasure reads, then appends: it takes the trail's lock before the store's, as every append does."""
    import time

    from service.audit import erasure
    from service.decisions import decide, users
    from service.knowledge.embedded import Store
    from service.runtime import Runtime
    from service.settings import Settings

    reading = threading.Event()

    class SlowRead(Store):
        """The real store; reading a user's graph takes a while, so a decision arrives meanwhile."""

        def graph(self, name):
            if name.value.endswith("/erased"):
                reading.set()
                time.sleep(1.0)
            return super().graph(name)

    store = SlowRead(":memory:")
    store.commit(add=knowledge_quads)
    runtime = Runtime(settings=Settings(store=":memory:", models_dir=tmp_path / "models"), store=store)
    for user in ("erased", "decided"):
        users.register(runtime, users.Registration(id=user, consents=["PERSONALIZATION"]))
    decide.next_steps(runtime, "decided")  # warm: the first decision loads the model registry
    eraser = threading.Thread(target=erasure.erase, args=(runtime, "erased"), kwargs={"requested_by": "t"}, daemon=True)
    decider = threading.Thread(target=decide.next_steps, args=(runtime, "decided"), daemon=True)
    eraser.start()
    assert reading.wait(10)
    decider.start()
    for thread in (eraser, decider):
        thread.join(timeout=20)
    assert not eraser.is_alive() and not decider.is_alive(), "erasure and decision deadlocked"
    assert verify(runtime.store, runtime.queries["audit-index"]).ok
