"""Times as the store keeps them: timezone-aware UTC xsd:dateTime literals."""

from __future__ import annotations

from datetime import UTC, datetime

import pyoxigraph as ox

from service.errors import InvalidInput
from service.knowledge import vocab


def now() -> datetime:
    return datetime.now(UTC)


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
