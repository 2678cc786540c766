"""Times as the store keeps them: timezone-aware UTC xsd:dateTime literals."""

from __future__ import annotations

from datetime import datetime, timezone

import pyoxigraph as ox

from . import vocab
from .errors import InvalidInput


def now() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """Return the time in UTC; a naive time is taken to be UTC already."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def checked_utc(value: datetime, field_name: str) -> datetime:
    """Return a client-supplied time in UTC, refusing one that falls outside years 1 to 9999 in UTC."""
    try:
        return as_utc(value)
    except OverflowError:
        raise InvalidInput(field_name, "out of range once converted to UTC (years 1 to 9999)") from None


def datetime_literal(value: datetime) -> ox.Literal:
    return ox.Literal(as_utc(value).isoformat().replace("+00:00", "Z"), datatype=vocab.XSD_DATETIME)


def parse_datetime(text: str) -> datetime:
    return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
