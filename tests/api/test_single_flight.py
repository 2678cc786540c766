"""One blocking check at a time, however many callers wait on it, each with its own time limit."""

from __future__ import annotations

import asyncio
import threading

import pytest

from service.api.single_flight import SingleFlight


def test_callers_share_one_running_check_and_a_timeout_does_not_start_another():
    release = threading.Event()
    runs = []

    def check() -> str:
        runs.append(1)
        release.wait(5)
        return "ok"

    flight = SingleFlight(check, name="test-probe")

    async def scenario():
        with pytest.raises(TimeoutError):
            await flight(timeout_s=0.05)
        waiting = [asyncio.create_task(flight(timeout_s=5)) for _ in range(3)]
        await asyncio.sleep(0.05)
        release.set()
        return await asyncio.gather(*waiting)

    assert asyncio.run(scenario()) == ["ok", "ok", "ok"]
    assert len(runs) == 1


def test_what_the_check_raises_reaches_the_caller_and_the_next_call_checks_afresh():
    calls = []

    def check() -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("store down")
        return True

    flight = SingleFlight(check, name="test-probe")
    with pytest.raises(ConnectionError):
        asyncio.run(flight(timeout_s=5))
    assert asyncio.run(flight(timeout_s=5)) is True
