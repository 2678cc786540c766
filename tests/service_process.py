"""The real service (``python -m service.cli serve``) as a subprocess, for the tests that kill it."""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from service.knowledge.embedded import Store
from tests.paths import ROOT


def closed_store(path: Path, quads: list) -> Path:
    """Make a store folder holding these quads and close it, for a service process to open; return its path."""
    store = Store(path)
    store.commit(add=quads)
    store.close()
    del store
    gc.collect()  # the folder's lock goes with the last reference
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Service:
    """``wayfinder serve`` on a store folder, in its own process, on a free loopback port."""

    def __init__(self, store: Path, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.store = store
        self.workdir = workdir
        self.env = env or {}  # WAYFINDER_ settings of this service
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.starts = 0

    def start(self, timeout_s: float = 30) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WAYFINDER_")}
        # Open (no API keys), loopback only; the SPARQL endpoint's temporary folder stays in tmp_path.
        env.update(
            {
                "WAYFINDER_LOG_FORMAT": "text",
                "WAYFINDER_OTEL_EXPORTER": "none",
                "TMPDIR": str(self.workdir),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.env)
        for _ in range(3):  # a free port can be taken between the probe and the bind: try another
            port = _free_port()
            self.starts += 1
            log = (self.workdir / f"service-{self.starts}.log").open("wb")
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "service.cli",
                    "serve",
                    "--store",
                    str(self.store),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            log.close()
            self.url = f"http://127.0.0.1:{port}"
            if self._wait_ready(timeout_s):
                return
            self.kill()
        raise RuntimeError(f"the service did not start:\n{self.log_tail()}")

    def _wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2, trust_env=False) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    return False
                try:
                    if http.get(self.url + "/healthz").status_code == 200:
                        return True
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        return False

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no flush, no close runs."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        path = self.workdir / f"service-{self.starts}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
