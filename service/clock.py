"""Times as the store keeps them: timezone-aware UTC xsd:dateTime literals."""

from __future__ import annotations

from datetime import datetime, timezone

import pyoxigraph as ox

from . import vocab


def now() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """Return the time in UTC; a naive time is taken to be UTC already."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def datetime_literal(value: datetime) -> ox.Literal:
    return ox.Literal(as_utc(value).isoformat().replace("+00:00", "Z"), datatype=vocab.XSD_DATETIME)


def parse_datetime(text: str) -> datetime:
    return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
