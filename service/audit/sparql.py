"""The auditors' read-only SPARQL 1.1 Protocol endpoint.

Each query runs in a worker process (``service.audit.sparql_worker``) over a snapshot
of the store, so a slow query can be stopped at the time limit and never holds
the event loop that serves ``nextSteps``. The worker checks the query with a
SPARQL parser before anything runs: updates, LOAD and SERVICE are refused (403),
what does not parse is refused (400). Its memory, time and answer size are
capped, and it dies with the service.

At most ``max_concurrent`` workers are alive at once; a query that finds no free
slot within ``queue_wait_s`` is answered 503 with ``Retry-After``.

Snapshots are RocksDB checkpoints (hard links, ~10 ms) in one folder per
running endpoint, under ``<store>.sparql-snapshots/`` beside the store folder. A
new snapshot is taken when the current one is older than
``snapshot_max_age_s`` or when anything was removed from the store since it was
taken (an erasure shows at once); a superseded snapshot is deleted as soon as
its last reader is done. At start, the folders of processes that are gone are
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
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
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
    taken_at: float
    removals: int
    readers: int = 0


class Snapshots:
    """Checkpoints of an on-disk store for the workers to read, each kept until its last reader is done."""

    def __init__(self, store: GraphStore, *, max_age_s: float) -> None:
        assert store.location is not None
        self.store = store
        self.max_age_s = max_age_s
        self.root = snapshot_root(store.location)
        remove_orphans(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-{_RUN}-", dir=self.root))
        self._lock = threading.Lock()
        self._current: Snapshot | None = None
        self._taken = 0

    def acquire(self) -> Snapshot:
        """Return a fresh enough snapshot, counted as read until :meth:`release`."""
        with self._lock:
            current = self._current
            if (
                current is None
                or time.monotonic() - current.taken_at > self.max_age_s
                or self.store.removals != current.removals
            ):
                removals = self.store.removals  # read first: a removal during the backup makes this one stale
                self._taken += 1
                target = self.folder / f"snapshot-{self._taken}"
                self.store.backup(target)
                fresh = Snapshot(target, time.monotonic(), removals)
                self._current = fresh
                if current is not None and current.readers == 0:
                    shutil.rmtree(current.path, ignore_errors=True)
                current = fresh
            current.readers += 1
            return current

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
        snapshot_max_age_s: float = _SETTINGS["sparql_snapshot_max_age_s"].default,
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
        self._snapshots = Snapshots(store, max_age_s=snapshot_max_age_s) if on_disk else None

    @classmethod
    def from_settings(cls, store: GraphStore, settings: Settings) -> SparqlEndpoint:
        """Return an endpoint over a store with the limits of the settings."""
        return cls(
            store,
            timeout_s=settings.sparql_timeout_s,
            max_rows=settings.sparql_max_rows,
            snapshot_max_age_s=settings.sparql_snapshot_max_age_s,
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
            if self._url is not None:  # a shared store: the worker asks its server
                return self._sanitised(await self._run({**request, "remote": self._url}))
            if self._snapshots is None:
                data = ox.serialize(list(self.store.quads()), format=ox.RdfFormat.N_QUADS) or b""
                return self._sanitised(await self._run({**request, "nquads": data.decode()}))
            snapshot = await asyncio.to_thread(self._snapshots.acquire)
            try:
                return self._sanitised(await self._run({**request, "snapshot": str(snapshot.path)}))
            finally:
                self._snapshots.release(snapshot)
        finally:
            self._slots.release()

    async def _take_slot(self) -> bool:
        deadline = time.monotonic() + self.queue_wait_s
        while not self._slots.acquire(blocking=False):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def _run(self, request: dict) -> Answer:
        """Return the answer of one worker process, which is gone when this returns."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "service.audit.sparql_worker",
            str(os.getpid()),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(
                self._exchange(process, json.dumps(request).encode() + b"\n"), timeout=self.timeout_s
            )
        except TimeoutError:
            return Answer(
                503,
                "text/plain",
                f"query stopped at the time limit of {self.timeout_s:g} s".encode(),
                retry_after_s=60,
            )
        finally:
            if process.returncode is None:  # its whole process group, so nothing it started outlives it
                _kill_group(process.pid)
                await process.wait()
        return self._reading(process.returncode, out, err)

    async def _exchange(self, process: asyncio.subprocess.Process, payload: bytes) -> tuple[bytes, bytes]:
        assert process.stdin and process.stdout and process.stderr
        try:
            process.stdin.write(payload)
            await process.stdin.drain()
            process.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the worker is gone already; its exit status says why
        out, err = await asyncio.gather(
            _read_at_most(process.stdout, self.max_bytes + _HEADER_BYTES), _drain(process.stderr, keep=_STDERR_BYTES)
        )
        if len(out) > self.max_bytes + _HEADER_BYTES:
            _kill_group(process.pid)
        await process.wait()
        return out, err

    def _reading(self, returncode: int | None, out: bytes, err: bytes) -> Answer:
        """Return the answer a finished worker's exit status and output amount to."""
        if len(out) > self.max_bytes + _HEADER_BYTES:
            return Answer(500, "text/plain", b"query worker wrote past the answer's byte cap")
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
        if returncode != 0 or b"\n" not in out:
            log.warning("a /sparql worker failed (exit status %s)", returncode)
            return Answer(500, "text/plain", b"query worker failed")
        head, body = out.split(b"\n", 1)
        header = json.loads(head)
        if header["status"] != 200:
            return Answer(header["status"], "text/plain", header.get("error", "").encode())
        truncated = header.get("truncated")
        return Answer(
            200,
            header["media_type"],
            body,
            truncated="bytes" if truncated == "bytes" else "rows" if truncated else None,
        )

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
        if self._snapshots is not None:
            self._snapshots.close()


async def _read_at_most(stream: asyncio.StreamReader, limit: int) -> bytes:
    """Return what a stream holds up to one byte past limit (more means it overran)."""
    chunks, size = [], 0
    while size <= limit:
        chunk = await stream.read(min(1 << 16, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


async def _drain(stream: asyncio.StreamReader, *, keep: int) -> bytes:
    """Return the first bytes of a stream, up to keep, having read all of it (so its writer never blocks)."""
    kept = b""
    while chunk := await stream.read(1 << 16):
        if len(kept) < keep:
            kept += chunk[: keep - len(kept)]
    return kept


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
