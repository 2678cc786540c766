"""Result files and tables: every figure is written with the command that produced it and the machine."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from bench.lib.machine import ROOT, environment, machine_line


def command_line() -> str:
    """Return the command as typed from the repository root, e.g. ``.venv/bin/python -m bench.audit.verify --sizes 10000``."""
    exe = sys.executable
    if exe.startswith(str(ROOT) + os.sep):
        exe = os.path.relpath(exe, ROOT)
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name not in (None, "__main__"):
        target = ["-m", spec.name]
    else:
        target = [os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)]
    return shlex.join([exe, *target, *sys.argv[1:]])


def write_result(
    folder: Path, name: str, payload: dict, *, markdown: str | None = None, command: str | None = None
) -> Path:
    """Write ``folder/name.json`` and, with ``markdown``, ``folder/name.md``; return the JSON's path.

    The JSON holds the payload with ``command`` (default: :func:`command_line`) and
    ``environment`` (:func:`bench.lib.machine.environment`) added where the payload has none.
    The Markdown file starts with the command and the machine, then the text given (the
    tables the bench printed).
    """
    folder.mkdir(parents=True, exist_ok=True)
    body = {"name": name, "command": command or command_line(), **payload}
    body.setdefault("environment", environment())
    path = folder / f"{name}.json"
    path.write_text(json.dumps(body, indent=2, default=str) + "\n")
    if markdown is not None:
        header = f"# {name}\n\n```sh\n{body['command']}\n```\n\n{machine_line(body['environment'])}\n\n"
        path.with_suffix(".md").write_text(header + markdown.strip() + "\n")
    return path


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Return a Markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def size_label(n: int) -> str:
    """Return 1k for 1000, 2M for 2000000, the number itself when it is not a round thousand."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def duration_text(seconds: float) -> str:
    """Return ``2.40 s`` or ``1.98 ms``: milliseconds below a second."""
    return f"{seconds * 1000:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


def files_digest(paths: Iterable[Path]) -> str:
    """Return a short SHA-256 of files' names and contents (which shapes, which queries a run used)."""
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]
