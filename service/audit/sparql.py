"""The auditors' read-only SPARQL 1.1 Protocol endpoint.

Each query runs in a worker process (``service.audit.sparql_worker``) over a snapshot
of the store, so a slow query can be stopped at the time limit and never holds
the event loop that serves ``nextSteps``. The worker checks the query with a
SPARQL parser before anything runs: updates, LOAD and SERVICE are refused (403),
what does not parse is refused (400). Its memory, time and answer size are
capped, and it dies with the service.

Workers are warm: a pool keeps up to ``max_concurrent`` of them, each serving one
query after another, so a small query costs a round trip to a live process, not a
Python start (~100 ms). A worker is killed when a query runs past the time limit
(or dies at its own memory or time cap) and another starts for the next query; one
whose peak memory has grown by a quarter of its cap since its first query, or that
served :data:`WORKER_QUERIES` queries, is retired. At most ``max_concurrent`` workers are alive at once; a query that finds
no free slot within ``queue_wait_s`` is answered 503 with ``Retry-After``.

Snapshots are RocksDB checkpoints (hard links, ~10 ms; opening one takes a worker
another ~20 ms) in one folder per running endpoint, under ``<store>.sparql-snapshots/``
beside the store folder. A query reads a snapshot taken after every commit the store
had when the query arrived (read your writes: a query sent once a mutation has
returned sees it); queries that arrive while one is being taken share the next. A
snapshot stays while a worker holds it open or a query reads it, and is deleted once
superseded and free. At start, the folders of processes that are gone are
deleted (a service killed outright leaves its folder until the next start). An
in-memory store (tests, development) is handed to the worker as N-Quads
instead, and a shared store is queried on its server.

Answers are capped at ``max_rows`` rows and ``max_bytes`` bytes: past either cap
an answer is truncated, not refused, and says so (``Answer.truncated``; over HTTP,
``X-Wayfinder-Truncated``). Error answers name neither the snapshot folder nor the
store's location or URL. The HTTP side of the endpoint (the Protocol request, content
negotiation, headers) is ``service.api.sparql``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pyoxigraph as ox

from service.audit.sparql_worker import MEMORY, canonical, refusal_of
from service.knowledge.store import GraphStore
from service.settings import Settings

log = logging.getLogger("wayfinder.sparql")
_SETTINGS = Settings.model_fields
_RUN = uuid.uuid4().hex[:12]  # tells this process's snapshot folders from those of an earlier process with its PID
_HEADER_BYTES = 64 << 10
_STDERR_BYTES = 64 << 10
WORKER_QUERIES = 1000  # a warm worker is retired after this many queries (memory it grew does not come back)


@dataclass
class Answer:
    """What a query came to; ``status`` is the SPARQL 1.1 Protocol's (service.api.sparql sends it over HTTP)."""

    status: int
    media_type: str
    body: bytes
    truncated: str | None = None  # "rows" or "bytes" when the answer was cut at a cap
    retry_after_s: int | None = None  # when the query may be asked again with a chance of an answer


def refusal(query: str) -> str | None:
    """Return why a query text is refused (an update, LOAD, SERVICE, or a syntax error), or None."""
    refused = refusal_of(canonical(query))
    return refused.reason if refused else None


@dataclass
class Snapshot:
    path: Path
    commits: int
    removals: int  # the store's removal count when taken: one taken before a removal must not outlive it
    readers: int = 0


class Snapshots:
    """Checkpoints of an on-disk store for the workers to read, each kept until its last reader is done."""

    def __init__(self, store: GraphStore) -> None:
        assert store.location is not None
        self.store = store
        self.root = snapshot_root(store.location)
        remove_orphans(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-{_RUN}-", dir=self.root))
        self._lock = threading.Lock()
        self._current: Snapshot | None = None
        self._taken = 0

    def acquire(self) -> Snapshot:
        """Return a snapshot holding every commit the store had on the call, counted as read until :meth:`release`.

        Callers that wait on the lock while one is taken find it fresh enough when no commit came in between."""
        with self._lock:
            current = self._current
            if current is None or self.store.commits != current.commits:
                # read first: a commit during the backup makes this one stale
                commits, removals = self.store.commits, self.store.removals
                self._taken += 1
                target = self.folder / f"snapshot-{self._taken}"
                self.store.backup(target)
                fresh = Snapshot(target, commits, removals)
                self._current = fresh
                if current is not None and current.readers == 0:
                    shutil.rmtree(current.path, ignore_errors=True)
                current = fresh
            current.readers += 1
            return current

    def hold(self, snapshot: Snapshot) -> None:
        """Count one more reader of a snapshot (a worker that keeps it open)."""
        with self._lock:
            snapshot.readers += 1

    def release(self, snapshot: Snapshot) -> None:
        with self._lock:
            snapshot.readers -= 1
            if snapshot is not self._current and snapshot.readers == 0:
                shutil.rmtree(snapshot.path, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            self._current = None
            shutil.rmtree(self.folder, ignore_errors=True)
        try:
            self.root.rmdir()  # only when no other endpoint keeps snapshots there
        except OSError:
            pass


def snapshot_root(location: Path) -> Path:
    """Return the folder that holds the /sparql snapshots of the store at a location."""
    return location.with_name(location.name + ".sparql-snapshots")


def remove_orphans(root: Path) -> None:
    """Delete the snapshot folders under root whose owning process is gone."""
    if not root.is_dir():
        return
    for folder in root.iterdir():
        pid, _, rest = folder.name.partition("-")
        if not pid.isdigit():
            continue
        mine = int(pid) == os.getpid()
        if (mine and not rest.startswith(_RUN + "-")) or (not mine and not _alive(int(pid))):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SparqlEndpoint:
    def __init__(
        self,
        store: GraphStore,
        *,
        timeout_s: float,
        max_rows: int,
        max_concurrent: int = _SETTINGS["sparql_max_concurrent"].default,
        queue_wait_s: float = _SETTINGS["sparql_queue_wait_s"].default,
        max_memory_mb: int = _SETTINGS["sparql_max_memory_mb"].default,
        max_bytes: int = _SETTINGS["sparql_max_bytes"].default,
    ) -> None:
        self.store = store
        self.timeout_s = timeout_s
        self.max_rows = max_rows
        self.max_concurrent = max_concurrent
        self.queue_wait_s = queue_wait_s
        self.max_memory_mb = max_memory_mb
        self.max_bytes = max_bytes
        self._slots = threading.BoundedSemaphore(max_concurrent)  # a thread primitive: any event loop may call
        self._url = store.url
        on_disk = self._url is None and store.location is not None
        self._snapshots = Snapshots(store) if on_disk else None
        self._idle: list[_Worker] = []  # warm workers waiting for a query, the most recently used last
        self._idle_lock = threading.Lock()
        # An endpoint dropped without close() (an app that never ran its shutdown) takes its idle workers with it.
        weakref.finalize(self, _kill_idle, self._idle, self._idle_lock)

    @classmethod
    def from_settings(cls, store: GraphStore, settings: Settings) -> SparqlEndpoint:
        """Return an endpoint over a store with the limits of the settings."""
        return cls(
            store,
            timeout_s=settings.sparql_timeout_s,
            max_rows=settings.sparql_max_rows,
            max_concurrent=settings.sparql_max_concurrent,
            queue_wait_s=settings.sparql_queue_wait_s,
            max_memory_mb=settings.sparql_max_memory_mb,
            max_bytes=settings.sparql_max_bytes,
        )

    async def answer(self, query: str, *, accept: list[str] | None) -> Answer:
        """Return the answer to one query: its result, or a refusal, or why it was stopped.

        ``accept``: the media types the asker takes, most preferred first (none: the defaults).
        """
        if not await self._take_slot():
            return Answer(
                503,
                "text/plain",
                (f"the SPARQL endpoint is busy ({self.max_concurrent} queries running); try again shortly").encode(),
                retry_after_s=1,
            )
        try:
            request = {
                "query": query,
                "accept": list(accept or []),
                "max_rows": self.max_rows,
                "max_bytes": self.max_bytes,
                "max_memory_mb": self.max_memory_mb,
                "timeout_s": self.timeout_s,
            }
            # In a thread: the snapshot and the worker's blocking pipes, so a worker serves any event loop.
            return self._sanitised(await asyncio.to_thread(self._answer, request))
        finally:
            self._slots.release()

    async def _take_slot(self) -> bool:
        deadline = time.monotonic() + self.queue_wait_s
        while not self._slots.acquire(blocking=False):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def _answer(self, request: dict) -> Answer:
        """Answer a request on the shared store's server, an in-memory store, or a snapshot fresh enough."""
        if self._url is not None:  # a shared store: the worker asks its server
            return self._ask({**request, "remote": self._url}, None)
        if self._snapshots is None:  # in memory: sent as N-Quads to a worker that does not hold this version
            return self._ask(request, ("version", self.store.commits))
        snapshot = self._snapshots.acquire()
        self._forget_before(snapshot.removals)  # an erasure leaves no idle worker holding what it removed
        try:
            return self._ask({**request, "snapshot": str(snapshot.path)}, snapshot)
        finally:
            self._snapshots.release(snapshot)

    def _ask(self, request: dict, holds: object) -> Answer:
        """A warm worker's answer to one request; a worker past the time limit is killed, not kept.

        ``holds``: what the request has the worker read (a snapshot, a version of an in-memory store, or None for a
        shared store's server)."""
        worker = self._worker()
        if isinstance(holds, tuple):
            request = {**request, "version": holds[1]}
        if holds is not None and worker.holds != holds:
            if isinstance(holds, tuple):  # an in-memory store's version the worker does not hold: send it
                data = ox.serialize(list(self.store.quads()), format=ox.RdfFormat.N_QUADS) or b""
                request["nquads"] = data.decode()
            self._hold(worker, holds)
        try:
            header, body = worker.exchange(
                json.dumps(request).encode() + b"\n",
                deadline=time.monotonic() + self.timeout_s,
                max_body=self.max_bytes + _HEADER_BYTES,
            )
        except TimeoutError:
            self._discard(worker)
            return Answer(
                503,
                "text/plain",
                f"query stopped at the time limit of {self.timeout_s:g} s".encode(),
                retry_after_s=60,
            )
        except _WorkerGone:
            self._discard(worker)
            returncode = worker.process.wait()
            worker.stderr_done.wait(timeout=1)  # what the worker said last
            return self._reading(returncode, bytes(worker.stderr))
        except _Overran:
            self._discard(worker)
            return Answer(500, "text/plain", b"query worker wrote past the answer's byte cap")
        worker.queries += 1
        rss_mb = int(header.get("max_rss_kb", 0)) >> 10
        worker.first_rss_mb = worker.first_rss_mb or rss_mb
        grown = rss_mb - worker.first_rss_mb > self.max_memory_mb // 4  # memory a big answer took stays taken
        outlived = isinstance(worker.holds, Snapshot) and worker.holds.removals != self.store.removals
        if worker.queries >= WORKER_QUERIES or grown or outlived:
            self._discard(worker)  # retired: the next query starts a fresh one
        else:
            self._give_back(worker)
        return self._answer_of(header, body)

    def _worker(self) -> _Worker:
        """An idle warm worker, or a new one."""
        with self._idle_lock:
            while self._idle:
                candidate = self._idle.pop()
                if candidate.process.poll() is None:
                    return candidate
                self._hold(candidate, None)
        process = subprocess.Popen(
            [sys.executable, "-m", "service.audit.sparql_worker", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        return _Worker(process)

    def _hold(self, worker: _Worker, holds: object) -> None:
        """Note what the worker reads from now on; the snapshot it held before is free of it."""
        if isinstance(worker.holds, Snapshot) and self._snapshots is not None:
            self._snapshots.release(worker.holds)
        if isinstance(holds, Snapshot) and self._snapshots is not None:
            self._snapshots.hold(holds)
        worker.holds = holds

    def _forget_before(self, removals: int) -> None:
        """Discard the idle workers holding a snapshot taken before the store's ``removals``-th removal."""
        with self._idle_lock:
            old = [w for w in self._idle if isinstance(w.holds, Snapshot) and w.holds.removals < removals]
            self._idle[:] = [w for w in self._idle if w not in old]
        for worker in old:
            self._discard(worker)

    def _give_back(self, worker: _Worker) -> None:
        with self._idle_lock:
            self._idle.append(worker)

    def _discard(self, worker: _Worker) -> None:
        """Kill a worker (its whole process group, so nothing it started outlives it) and free what it held."""
        if worker.process.poll() is None:
            _kill_group(worker.process.pid)
        worker.process.wait()
        worker.close()
        self._hold(worker, None)

    def _answer_of(self, header: dict, body: bytes) -> Answer:
        if header["status"] != 200:
            return Answer(header["status"], "text/plain", header.get("error", "").encode())
        truncated = header.get("truncated")
        return Answer(
            200,
            header["media_type"],
            body,
            truncated="bytes" if truncated == "bytes" else "rows" if truncated else None,
        )

    def _reading(self, returncode: int | None, err: bytes) -> Answer:
        """Return the answer a worker that died in a query amounts to, from its exit status and last words."""
        if returncode in (-signal.SIGALRM, -signal.SIGXCPU):
            return Answer(
                503,
                "text/plain",
                f"query stopped at the time limit of {self.timeout_s:g} s".encode(),
                retry_after_s=60,
            )
        if returncode == -signal.SIGKILL or b"memory allocation" in err or b"MemoryError" in err:
            # the kernel's OOM killer, Rust's allocator or Python's
            return Answer(503, "text/plain", MEMORY.format(mb=self.max_memory_mb).encode())
        log.warning("a /sparql worker failed (exit status %s)", returncode)
        return Answer(500, "text/plain", b"query worker failed")

    def _sanitised(self, answer: Answer) -> Answer:
        """Return the answer with the snapshot folder and the store's location or URL replaced by neutral words."""
        if answer.status == 200:
            return answer
        text = answer.body.decode(errors="replace")
        places = []
        if self._snapshots is not None:
            places += [(str(self._snapshots.folder), "the snapshot"), (str(self._snapshots.root), "the snapshots")]
        if self.store.location is not None:
            places += [(str(self.store.location.resolve()), "the store"), (str(self.store.location), "the store")]
        if self._url:
            places += [(self._url, "the store"), (urlsplit(self._url).netloc, "the store")]
        for place, word in places:
            text = text.replace(place, word)
        return Answer(answer.status, answer.media_type, text.encode(), answer.truncated, answer.retry_after_s)

    def close(self) -> None:
        """Kill the idle workers and delete the snapshots (what the workers held goes with them)."""
        _kill_idle(self._idle, self._idle_lock)
        if self._snapshots is not None:
            self._snapshots.close()


class _Worker:
    """A warm worker process and its pipes; a thread keeps the last of what it writes to stderr."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.holds: object = None  # the Snapshot it keeps open, ("version", n) of an in-memory store, or None
        self.queries = 0
        self.first_rss_mb = 0  # its peak resident memory after its first query
        self.stderr = bytearray()
        self.stderr_done = threading.Event()
        self._pending = bytearray()  # what was read of stdout past the last answer (nothing, normally)
        threading.Thread(target=self._keep_stderr, daemon=True, name="sparql-worker-stderr").start()

    def exchange(self, payload: bytes, *, deadline: float, max_body: int) -> tuple[dict, bytes]:
        """Send one request; return the answer's header and body. Raises TimeoutError past the deadline, _WorkerGone
        when the worker dies first, _Overran when it announces more than ``max_body`` bytes."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(payload)
            self.process.stdin.flush()
        except (BrokenPipeError, ConnectionResetError, ValueError) as exc:
            raise _WorkerGone from exc
        head = self._read_until(b"\n", deadline, limit=_HEADER_BYTES)
        header = json.loads(head)
        length = int(header.get("length", 0))
        if length > max_body:
            raise _Overran
        return header, self._read_exactly(length, deadline)

    def _fill(self, deadline: float) -> None:
        """Read what the worker has written next into the pending bytes, waiting at most until the deadline."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            raise TimeoutError
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            raise _WorkerGone
        self._pending.extend(chunk)

    def _read_until(self, end: bytes, deadline: float, *, limit: int) -> bytes:
        while end not in self._pending:
            if len(self._pending) > limit:
                raise _Overran
            self._fill(deadline)
        line, _, rest = bytes(self._pending).partition(end)
        self._pending = bytearray(rest)
        return line

    def _read_exactly(self, n: int, deadline: float) -> bytes:
        while len(self._pending) < n:
            self._fill(deadline)
        data = bytes(self._pending[:n])
        del self._pending[:n]
        return data

    def _keep_stderr(self) -> None:
        assert self.process.stderr is not None
        try:
            fd = self.process.stderr.fileno()
            while chunk := os.read(fd, 1 << 16):
                self.stderr.extend(chunk)
                del self.stderr[: max(len(self.stderr) - _STDERR_BYTES, 0)]
        except (OSError, ValueError):
            pass
        finally:
            self.stderr_done.set()

    def close(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def _kill_idle(idle: list[_Worker], lock: threading.Lock) -> None:
    with lock:
        workers = idle[:]
        idle.clear()
    for worker in workers:
        if worker.process.poll() is None:
            _kill_group(worker.process.pid)
        worker.process.wait()
        worker.close()


class _WorkerGone(Exception):
    """The worker died (or its pipe broke) before it answered."""


class _Overran(Exception):
    """The worker announced an answer past the byte cap."""


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
