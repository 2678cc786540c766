"""Webhook calls to senders: the signed request of one attempt, and what its answer means.

Every call is a JSON POST with these headers:

- ``Idempotency-Key``: the delivery's ID, the same on every attempt, so that a sender
  which saw an attempt already (its answer lost, or too slow) can drop the repeat;
- ``Wayfinder-Timestamp``: when the attempt was signed, in Unix seconds;
- ``Wayfinder-Signature``: ``v1=`` and the hexadecimal HMAC-SHA256, under the sender
  secret, of the timestamp, a full stop and the exact body bytes. A sender recomputes
  it, compares in constant time and refuses old timestamps, which stops replays.

A 2xx answer delivers. A 4xx other than 408, 425 and 429 is a refusal for good: the
message is dead-lettered at once. Anything else (5xx, 408, 425, 429, a timeout, a
refused connection) is retried with backoff; a ``Retry-After`` in seconds is honoured
up to the longest backoff.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from dataclasses import dataclass

import httpx

from service.delivery.outbox import json_text

RETRIED_4XX = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Attempt:
    """What one call came to."""

    delivered: bool
    permanent: bool  # refused for good: do not try again
    error: str | None  # an HTTP status or transport error class, never the answer body
    retry_after_s: float | None = None


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """Return the ``Wayfinder-Signature`` value of a body signed at ``timestamp``."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return "v1=" + digest


def body_of(message: dict) -> bytes:
    return json_text(message).encode()


def call(client: httpx.Client, url: str, *, delivery_id: str, body: bytes, secret: bytes, timestamp: int) -> Attempt:
    """POST one signed attempt and classify its answer."""
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": delivery_id,
        "Wayfinder-Timestamp": str(timestamp),
        "Wayfinder-Signature": signature(secret, timestamp, body),
    }
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return Attempt(False, False, type(exc).__name__)
    if 200 <= response.status_code < 300:
        return Attempt(True, False, None)
    permanent = 400 <= response.status_code < 500 and response.status_code not in RETRIED_4XX
    return Attempt(False, permanent, f"HTTP {response.status_code}", _retry_after(response))


def backoff_s(attempts: int, *, base_s: float, max_s: float, retry_after_s: float | None = None) -> float:
    """Return how long to wait after the ``attempts``-th failed attempt: exponential with jitter, capped.

    The wait is drawn between half and all of ``base_s * 2**(attempts - 1)`` (so that messages
    failed together do not come back together), never more than ``max_s``, and never less than a
    sender's ``Retry-After`` (itself capped at ``max_s``).
    """
    ceiling = min(max_s, base_s * 2 ** max(attempts - 1, 0))
    wait = ceiling * (0.5 + random.random() / 2)
    if retry_after_s is not None:
        wait = max(wait, min(retry_after_s, max_s))
    return wait


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:  # an HTTP date: not worth parsing; the backoff applies
        return None
