"""The machine a figure was measured on, and what the measuring process holds in memory."""

from __future__ import annotations

import datetime as dt
import os
import platform
import resource
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Every library whose version can move a bench's figures; absent ones are recorded as None.
PACKAGES = (
    "pyoxigraph",
    "rdflib",
    "pyshacl",
    "owlrl",
    "torch",
    "torch-geometric",
    "numpy",
    "strawberry-graphql",
    "graphql-core",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "httpx",
    "opentelemetry-api",
    "prometheus-client",
)


def environment() -> dict:
    """Return the date, the machine (CPU, cores, memory, platform, load), Python, library versions and HEAD."""
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "mem_total_gb": _mem_total_gb(),
            "platform": platform.platform(),
            "loadavg_at_write": [round(x, 2) for x in os.getloadavg()],
        },
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in PACKAGES},
        "git_head": _git_head(),
    }


def machine_line(env: dict) -> str:
    """Return one line saying where and when: date, CPU and cores, memory, load, Python and the main libraries."""
    m = env["machine"]
    versions = ", ".join(
        f"{k} {v}" for k, v in env["versions"].items() if v and k in ("pyoxigraph", "torch", "pyshacl")
    )
    load = ", ".join(f"{x:.2f}" for x in m["loadavg_at_write"])
    return (
        f"{env['date']}: {m['cpus']} CPUs ({m['cpu_model']}), {m['mem_total_gb']} GB, load average {load}; "
        f"Python {env['python']}, {versions}; HEAD {(env['git_head'] or 'unknown')[:12]}"
    )


def rss_mb() -> float:
    """Return this process's resident set size now, in MB."""
    return _status_kib("VmRSS:") / 1024


def peak_rss_mb() -> float:
    """Return this process's peak resident set size so far (VmHWM), in MB.

    Not ``ru_maxrss`` where ``/proc`` has it: on Linux that survives ``exec``, so a subprocess
    started by a big parent would report the parent's peak.
    """
    try:
        return _status_kib("VmHWM:") / 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dir_bytes(path: Path | str) -> int:
    """Return the bytes the files under a folder take (apparent sizes, as ``du -b``)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except FileNotFoundError:  # RocksDB removed it meanwhile
                pass
    return total


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _mem_total_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _git_head() -> str | None:
    """Return the commit the checkout is on, read from ``.git`` (the working tree may hold uncommitted edits)."""
    git = ROOT / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head.removeprefix("ref: ")
        if (git / ref).exists():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        pass
    return None


if __name__ == "__main__":
    print(machine_line(environment()))
