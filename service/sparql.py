"""The auditors' read-only SPARQL 1.1 Protocol endpoint.

Each query runs in a worker process (``service.sparql_worker``) over a snapshot
of the store, so a slow query can be stopped at the time limit and never holds
the event loop that serves ``nextSteps``. Updates, LOAD and SERVICE are refused
before anything runs. Snapshots are RocksDB checkpoints (hard links, ~10 ms),
refreshed when older than ``sparql_snapshot_max_age_s``; an in-memory store
(tests, development) is handed to the worker as N-Quads instead.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyoxigraph as ox

from .store import Store

# Strip what may hide a keyword before looking for one: comments, strings, IRIs.
_LEXICAL = re.compile(
    r'"""(?:[^"\\]|\\.|"(?!""))*"""|\'\'\'(?:[^\'\\]|\\.|\'(?!\'\'))*\'\'\'|"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|<[^<>"{}|^`\\\s]*>|#[^\n]*',
    re.DOTALL,
)
_NAMES = re.compile(r"[?$][A-Za-z0-9_]+|(?:[A-Za-z][\w.-]*)?:[\w.%-]*")
_PROLOGUE = re.compile(r"^\s*(?:(?:BASE|PREFIX)\s+[^\s]*\s*)*", re.IGNORECASE)
_FIRST_WORD = re.compile(r"[A-Za-z]+")
_UPDATES = {"INSERT", "DELETE", "LOAD", "CLEAR", "DROP", "CREATE", "ADD", "MOVE", "COPY", "WITH"}
_SERVICE = re.compile(r"\bSERVICE\b", re.IGNORECASE)


@dataclass
class Answer:
    status: int
    media_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def refusal(query: str) -> str | None:
    """Return why a query text is refused (an update, LOAD or SERVICE), or None."""
    lexical = _LEXICAL.sub(" ", query)
    if _SERVICE.search(_NAMES.sub(" ", lexical)):
        return "SERVICE is refused: this endpoint queries only its own store"
    first = _FIRST_WORD.search(_PROLOGUE.sub("", lexical))
    if first and first.group(0).upper() in _UPDATES:
        return f"{first.group(0).upper()} is refused: this endpoint is read-only (SPARQL queries only)"
    return None


def accepted_types(accept: str | None) -> list[str]:
    """Return the media types of an Accept header, most preferred first."""
    if not accept:
        return []
    ranked = []
    for i, part in enumerate(accept.split(",")):
        media, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if media and q > 0:
            ranked.append((-q, i, media.lower()))
    return [media for _, _, media in sorted(ranked)]


class SparqlEndpoint:
    def __init__(self, store: Store, *, timeout_s: float, max_rows: int, snapshot_max_age_s: float = 1.0) -> None:
        self.store = store
        self.timeout_s = timeout_s
        self.max_rows = max_rows
        self.snapshot_max_age_s = snapshot_max_age_s
        self._lock = threading.Lock()
        self._snapshot: tuple[float, Path] | None = None
        self._root = Path(tempfile.mkdtemp(prefix="wayfinder-sparql-"))

    def _source(self) -> dict:
        url = getattr(self.store, "url", None)
        if url is not None:  # a shared store: the worker asks its server
            return {"remote": url}
        if self.store.location is None:
            data = ox.serialize(list(self.store.quads()), format=ox.RdfFormat.N_QUADS) or b""
            return {"nquads": data.decode()}
        with self._lock:
            now = time.monotonic()
            if self._snapshot is None or now - self._snapshot[0] > self.snapshot_max_age_s:
                target = self._root / f"snapshot-{time.time_ns()}"
                self.store.backup(target)
                old, self._snapshot = self._snapshot, (now, target)
                if old is not None:  # open files stay readable for workers still using them
                    shutil.rmtree(old[1], ignore_errors=True)
            return {"snapshot": str(self._snapshot[1])}

    async def answer(self, query: str, *, accept: str | None) -> Answer:
        reason = refusal(query)
        if reason:
            return Answer(403, "text/plain", reason.encode())
        request = {"query": query, "accept": accepted_types(accept), "max_rows": self.max_rows,
                   **await asyncio.to_thread(self._source)}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service.sparql_worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(json.dumps(request).encode() + b"\n"),
                                              timeout=self.timeout_s)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()
            return Answer(503, "text/plain", f"query stopped at the time limit of {self.timeout_s:g} s".encode(),
                          {"Retry-After": "60"})
        if process.returncode != 0 or b"\n" not in out:
            return Answer(500, "text/plain", b"query worker failed")
        head, body = out.split(b"\n", 1)
        header = json.loads(head)
        if header["status"] != 200:
            return Answer(header["status"], "text/plain", header.get("error", "").encode())
        headers = {"Vary": "Accept"}
        if header.get("truncated"):
            headers["X-Wayfinder-Truncated"] = f"true; rows capped at {self.max_rows}"
        return Answer(200, header["media_type"], body, headers)

    def close(self) -> None:
        shutil.rmtree(self._root, ignore_errors=True)
