"""A real `oxigraph serve` process on a free loopback port, for the shared-store tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

OXIGRAPH = shutil.which("oxigraph") or str(Path(sys.executable).with_name("oxigraph"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_oxigraph(location: Path, *options: str) -> tuple[str, subprocess.Popen]:
    """Return the URL and process of an `oxigraph serve` over a folder, once it answers; skip without the server."""
    if not Path(OXIGRAPH).exists():
        pytest.skip("the oxigraph server (pip package oxigraph) is not installed")
    port = free_port()
    process = subprocess.Popen(
        [OXIGRAPH, "serve", "--location", str(location), "--bind", f"127.0.0.1:{port}", *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(url + "/query", params={"query": "ASK {}"}, timeout=1)
            return url, process
        except httpx.HTTPError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("oxigraph serve did not start") from None
            time.sleep(0.1)


@contextlib.contextmanager
def frozen(process: subprocess.Popen) -> Iterator[None]:
    """Stop a server with SIGSTOP for the block, resuming it after; enter only once every thread has stopped.

    The signal is only queued by ``kill``: on a busy machine a thread may still answer one
    request before it stops, so wait until /proc shows each thread stopped.
    """
    os.kill(process.pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 10
        while not all(_stopped(task) for task in Path(f"/proc/{process.pid}/task").iterdir()):
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not stop within 10 s of SIGSTOP")
            time.sleep(0.01)
        yield
    finally:
        os.kill(process.pid, signal.SIGCONT)


def _stopped(task: Path) -> bool:
    try:
        stat = (task / "stat").read_text()
    except FileNotFoundError:  # a thread that ended meanwhile
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")
