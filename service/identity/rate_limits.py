"""Per-key rate limits: a token bucket per key (per user, for app tokens), in this process.

Each service process keeps its own buckets, so behind a load balancer with N
processes a key gets up to N times its rate; put a gateway in front where that
matters. The number of buckets is bounded: the least recently used go first.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict

from service.identity.keys import Rate

MAX_BUCKETS = 100_000


class RateLimiter:
    """Token buckets that fill at a key's rate up to its count."""

    def __init__(self, *, max_buckets: int = MAX_BUCKETS) -> None:
        self.max_buckets = max_buckets
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # bucket -> (tokens, updated)
        self._lock = threading.Lock()

    def wait_s(self, bucket: str, rate: Rate) -> int:
        """Take one request from the bucket; return 0 when allowed, else the whole seconds until one is."""
        now = time.monotonic()
        per_second = rate.count / rate.seconds
        with self._lock:
            tokens, updated = self._buckets.pop(bucket, (float(rate.count), now))
            tokens = min(float(rate.count), tokens + (now - updated) * per_second)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[bucket] = (tokens, now)
            while len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
        return 0 if allowed else max(1, math.ceil((1.0 - tokens) / per_second))
