"""Times as the store keeps them: UTC literals, and client times checked against the service's clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from service.clock import as_utc, checked_utc, datetime_literal, now, parse_datetime
from service.errors import InvalidInput
from service.knowledge import vocab


def test_a_time_round_trips_through_its_literal_in_utc():
    local = datetime(2026, 12, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    literal = datetime_literal(local)
    assert literal.value == "2026-12-01T12:30:00Z" and literal.datatype == vocab.XSD_DATETIME
    assert parse_datetime(literal.value) == local


def test_a_naive_time_is_taken_as_utc():
    assert as_utc(datetime(2026, 1, 1, 8, 0)) == datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


def test_a_client_time_may_run_a_little_fast_but_not_more():
    soon = now() + timedelta(seconds=30)
    assert checked_utc(soon, "at", max_skew_s=300) == soon
    with pytest.raises(InvalidInput) as refused:
        checked_utc(now() + timedelta(hours=1), "input.at", max_skew_s=300)
    assert refused.value.field == "input.at" and "future" in refused.value.message
    past = datetime(2020, 1, 1, tzinfo=UTC)
    assert checked_utc(past, "at", max_skew_s=0) == past


def test_a_time_that_leaves_the_calendar_in_utc_is_refused():
    edge = datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    with pytest.raises(InvalidInput, match="years 1 to 9999"):
        checked_utc(edge, "at", max_skew_s=300)
