"""Jobs the service runs on a timer while it serves (purges, seals, guardrail checks)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def every(
    interval_s: float,
    job: Callable[[], T],
    *,
    name: str,
    log: logging.Logger,
    report: Callable[[T], dict] | None = None,
) -> None:
    """Run ``job`` in a thread every ``interval_s`` seconds, the first time one interval from now, until cancelled.

    A run that raises is logged and the schedule goes on: the next run tries again. ``report`` turns a run's result
    into the fields of the line logged after it (none without it)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            result = await asyncio.to_thread(job)
        except Exception:
            log.exception("%s failed", name)
            continue
        if report is not None:
            log.info(name, extra=report(result))
