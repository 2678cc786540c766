"""A real local webhook receiver for the delivery tests: it answers by a script, and keeps what it got.

Each request takes the next step of the script (the last one repeats): an HTTP status to
answer, optionally after a delay, optionally with headers (Retry-After). It checks each
request's signature with the secret, as a sender would, and records every request; the
messages it *accepted* (answered 2xx, whether or not the caller heard the answer) are the
logical deliveries, one per idempotency key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Step:
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    key: str
    body: dict
    signed: bool  # the signature checks out with the secret
    status: int


class Receiver:
    def __init__(self, secret: bytes, script: list[Step] | None = None) -> None:
        self.secret = secret
        self.script = list(script or [Step()])
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    step = receiver.script.pop(0) if len(receiver.script) > 1 else receiver.script[0]
                timestamp = self.headers.get("Wayfinder-Timestamp", "")
                expected = (
                    "v1=" + hmac.new(receiver.secret, timestamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
                )
                signed = hmac.compare_digest(expected, self.headers.get("Wayfinder-Signature", ""))
                with receiver._lock:
                    receiver.received.append(
                        Received(self.headers.get("Idempotency-Key", ""), json.loads(raw), signed, step.status)
                    )
                time.sleep(step.delay_s)
                try:
                    self.send_response(step.status)
                    for name, value in step.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except (BrokenPipeError, ConnectionResetError):  # the caller gave up waiting
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/wayfinder"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def accepted(self) -> dict[str, list[Received]]:
        """The logical deliveries: per idempotency key, the requests answered 2xx."""
        found: dict[str, list[Received]] = {}
        for r in self.received:
            if 200 <= r.status < 300:
                found.setdefault(r.key, []).append(r)
        return found

    def wait_for(self, count: int, timeout_s: float = 10) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"the receiver got {len(self.received)} requests, not {count}")
            time.sleep(0.02)
