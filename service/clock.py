"""The service's clock, and times as the store keeps them: timezone-aware UTC xsd:dateTime literals.

Every time the service records (consent, events, decisions, experiments) comes from
:func:`now`. A simulation that needs days to pass runs the service in process under a
:class:`SimulatedClock` (:func:`use_clock`); nothing exposes the clock over HTTP.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import zoneinfo
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pyoxigraph as ox

from service.errors import InvalidInput
from service.knowledge import vocab


class SimulatedClock:
    """A clock that moves only when told, a microsecond per reading so that readings stay ordered."""

    def __init__(self, start: datetime) -> None:
        self._at = as_utc(start)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            self._at += timedelta(microseconds=1)
            return self._at

    def advance(self, **delta: float) -> datetime:
        """Move the clock forward (``days=1``, ``hours=3``, ...); return the new time."""
        with self._lock:
            self._at += timedelta(**delta)
            return self._at


def _system() -> datetime:
    return datetime.now(UTC)


_source = _system


def now() -> datetime:
    return _source()


@contextlib.contextmanager
def use_clock(clock: SimulatedClock) -> Iterator[SimulatedClock]:
    """Run the service under ``clock`` in this process until the block ends."""
    global _source
    previous, _source = _source, clock
    try:
        yield clock
    finally:
        _source = previous


def as_utc(value: datetime) -> datetime:
    """Return the time in UTC; a naive time is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def checked_utc(value: datetime, field_name: str, *, max_skew_s: float) -> datetime:
    """Return a client-supplied time in UTC, refusing one outside years 1 to 9999 or more than ``max_skew_s`` ahead.

    A client's clock may run a little fast, hence the skew; beyond it a time would
    claim to be in the future, where it could outrank everything written after it.
    """
    try:
        utc = as_utc(value)
    except OverflowError:
        raise InvalidInput(field_name, "out of range once converted to UTC (years 1 to 9999)") from None
    # A difference of two datetimes cannot overflow, unlike now() plus a large skew.
    if (utc - now()).total_seconds() > max_skew_s:
        raise InvalidInput(field_name, f"more than {max_skew_s:g} s in the future by the service's clock")
    return utc


def datetime_literal(value: datetime) -> ox.Literal:
    return ox.Literal(as_utc(value).isoformat().replace("+00:00", "Z"), datatype=vocab.XSD_DATETIME)


def parse_datetime(text: str) -> datetime:
    return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def time_zone(name: str) -> zoneinfo.ZoneInfo:
    """Return the IANA time zone of that name (``Europe/Lisbon``, ``UTC``); ValueError for a name the database
    does not hold (only its names are looked up, never a path)."""
    if name not in _zone_names():
        raise ValueError(f"{name!r} is not an IANA time zone name (such as Europe/Lisbon or UTC)")
    return zoneinfo.ZoneInfo(name)
