"""Latency statistics: one percentile definition for every bench."""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction


def percentile(values: Iterable[float], q: float) -> float:
    """Return the nearest-rank ``q``-th percentile (``q`` in 0..100) of the values, in any order.

    Nearest rank: the smallest value with at least ``q`` % of the values at or below it, that
    is the ``ceil(q / 100 * n)``-th smallest of ``n`` values (the smallest for ``q = 0``). The
    rank is computed in exact decimal arithmetic, so ``q = 99`` of 100 values is the 99th
    smallest (index 98), never the largest by a rounding error; ``q = 100`` is the largest.
    The answer is always one of the measured values, never an interpolation. It equals
    ``numpy.percentile(values, q, method="inverted_cdf")``, and the 50th percentile is
    ``statistics.median_low``. (numpy's default, ``method="linear"``, interpolates between the
    two neighbours, as ``statistics.quantiles(method="inclusive")`` does: not used here.)
    """
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not in 0..100")
    rank = math.ceil(Fraction(str(q)) * len(ordered) / 100)
    return ordered[max(rank, 1) - 1]


def summary_ms(seconds: Iterable[float], *, samples_up_to: int = 20) -> dict:
    """Return n, nearest-rank p50/p90/p99, max and mean in milliseconds (rounded to the µs) of durations in seconds.

    With at most ``samples_up_to`` durations (slow stores measure only a few), every sample is
    kept too, in the order measured.
    """
    measured = list(seconds)
    if not measured:
        return {"n": 0, "p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    out: dict = {
        "n": len(measured),
        "p50_ms": _ms(percentile(measured, 50)),
        "p90_ms": _ms(percentile(measured, 90)),
        "p99_ms": _ms(percentile(measured, 99)),
        "max_ms": _ms(max(measured)),
        "mean_ms": _ms(sum(measured) / len(measured)),
    }
    if len(measured) <= samples_up_to:
        out["samples_ms"] = [_ms(v) for v in measured]
    return out


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 3)
