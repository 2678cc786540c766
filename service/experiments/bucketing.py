"""Deterministic bucketing: which of 10,000 buckets a user falls in for an experiment, and which arm that is.

Hash version 1, the one the service assigns with (docs/experiments.md states it for
anyone re-deriving an assignment from a decision record):

    h1 = FNV-1a-32( UTF-8 of  experiment_id + ":" + pseudonym )
    h2 = FNV-1a-32( UTF-8 of  the decimal digits of h1 )
    bucket = h2 mod 10,000

FNV-1a-32 starts from the offset basis 2166136261 and, for each byte, XORs the byte in
and multiplies by the prime 16777619 modulo 2**32. Hashing twice spreads ids that
differ in their last characters (FNV-1a's low bits follow the last bytes closely); the
experiment ID as seed decorrelates experiments. The unit hashed is the user's
pseudonym, which the decision record carries, so an auditor recomputes the bucket
without any personal identifier; it is the same in every process and after restarts.

Arms take consecutive ranges of the bucket space in their order (arm 0, the control,
first), each as wide as its normalised weight times the experiment's coverage, starting
where the arm's full-coverage range starts: raising the coverage (a ramp) only adds
users, it never moves one. An experiment's holdout takes the top of the bucket space
(``[(1 - holdout) * 10,000, 10,000)``, whatever the coverage); the arms share the rest. Changing weights would move users, so an assignment, once
recorded, is kept (sticky; :mod:`service.experiments.assignment`).
"""

from __future__ import annotations

from collections.abc import Sequence

BUCKETS = 10_000
HASH_VERSION = 1
_FNV_OFFSET = 2166136261
_FNV_PRIME = 16777619


def fnv1a32(data: bytes) -> int:
    """Return the 32-bit FNV-1a hash of ``data``."""
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def bucket(experiment_id: str, unit: str, *, version: int = HASH_VERSION) -> int:
    """Return the unit's bucket, 0 to 9,999, in the experiment, by the hash ``version`` names."""
    if version != 1:
        raise ValueError(f"unknown hash version {version}")
    first = fnv1a32(f"{experiment_id}:{unit}".encode())
    return fnv1a32(str(first).encode()) % BUCKETS


def ranges(weights: Sequence[float], coverage: float = 1.0, holdout: float = 0.0) -> list[tuple[int, int]]:
    """Return each arm's bucket range ``[start, end)`` for normalised ``weights`` at ``coverage``.

    A holdout share takes the top of the bucket space, ``[(1 - holdout) * 10,000, 10,000)``; the arms share the rest.
    """
    total = sum(weights)
    space = 1.0 - holdout
    starts, edge = [], 0.0
    for w in weights:
        starts.append(edge)
        edge += w / total * space
    return [
        (round(start * BUCKETS), round((start + w / total * space * coverage) * BUCKETS))
        for start, w in zip(starts, weights, strict=True)
    ]


def held_out(bucket_value: int, holdout: float) -> bool:
    """Whether the bucket falls in an experiment's holdout (the top ``holdout`` share of the buckets)."""
    return holdout > 0 and bucket_value >= round((1.0 - holdout) * BUCKETS)


def arm_of(bucket_value: int, weights: Sequence[float], coverage: float = 1.0, holdout: float = 0.0) -> int | None:
    """Return the index of the arm whose range holds the bucket, or None when it is outside the coverage."""
    for i, (start, end) in enumerate(ranges(weights, coverage, holdout)):
        if start <= bucket_value < end:
            return i
    return None
