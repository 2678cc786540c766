"""A blocking check off the event loop that never piles up threads (the store probe of /healthz)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Runs a blocking check in its own thread, at most one at a time; callers wait with a time limit.

    A caller that arrives while a check is still out waits on that one instead of
    starting another, so a store that hangs holds one thread, not one per caller.
    """

    def __init__(self, check: Callable[[], T], *, name: str) -> None:
        self._check = check
        self._name = name
        self._pending: concurrent.futures.Future[T] | None = None
        self._lock = threading.Lock()

    def _start(self) -> concurrent.futures.Future[T]:
        with self._lock:
            if self._pending is None or self._pending.done():
                future: concurrent.futures.Future[T] = concurrent.futures.Future()
                future.set_running_or_notify_cancel()  # a caller's timeout must not cancel it: it runs to its end
                threading.Thread(target=self._run, args=(future,), name=self._name, daemon=True).start()
                self._pending = future
            return self._pending

    def _run(self, future: concurrent.futures.Future[T]) -> None:
        try:
            future.set_result(self._check())
        except BaseException as exc:  # handed to the callers, who decide
            future.set_exception(exc)

    async def __call__(self, *, timeout_s: float) -> T:
        """Return the check's result; raise TimeoutError past ``timeout_s``, or what the check raised."""
        pending = asyncio.wrap_future(self._start())
        return await asyncio.wait_for(asyncio.shield(pending), timeout_s)
