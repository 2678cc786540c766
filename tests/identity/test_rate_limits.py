"""Token buckets per key: a burst up to the count, then one request per refill, and a bounded number of buckets."""

from __future__ import annotations

from service.identity.keys import Rate
from service.identity.rate_limits import RateLimiter


def test_a_burst_up_to_the_count_then_a_wait_that_says_how_long():
    limiter = RateLimiter()
    rate = Rate(count=3, seconds=60)
    assert [limiter.wait_s("k", rate) for _ in range(3)] == [0, 0, 0]
    wait = limiter.wait_s("k", rate)
    assert 1 <= wait <= 20  # a token comes back every 20 s
    assert limiter.wait_s("other", rate) == 0  # another key has its own bucket


def test_buckets_refill_at_the_rate(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("service.identity.rate_limits.time.monotonic", lambda: clock[0])
    limiter = RateLimiter()
    rate = Rate(count=2, seconds=10)
    assert limiter.wait_s("k", rate) == 0 and limiter.wait_s("k", rate) == 0
    assert limiter.wait_s("k", rate) == 5
    clock[0] += 5
    assert limiter.wait_s("k", rate) == 0


def test_the_least_recently_used_buckets_go_first():
    limiter = RateLimiter(max_buckets=2)
    rate = Rate(count=1, seconds=3600)
    for key in ("a", "b", "c"):  # "a" is dropped when "c" arrives: it starts full again
        assert limiter.wait_s(key, rate) == 0
    assert limiter.wait_s("a", rate) == 0
    assert limiter.wait_s("c", rate) > 0
