"""Bucketing: the documented hash, the same in every process, uniform, and ramps that never move a user."""

from __future__ import annotations

import subprocess
import sys

import pytest
from scipy import stats

from service.experiments.bucketing import BUCKETS, arm_of, bucket, fnv1a32, ranges


@pytest.mark.parametrize(
    ("text", "expected"),
    # The FNV-1a 32-bit test vectors of the algorithm's authors.
    [(b"", 0x811C9DC5), (b"a", 0xE40C292C), (b"foobar", 0xBF9CF968)],
)
def test_fnv1a32_matches_the_published_vectors(text, expected):
    assert fnv1a32(text) == expected


def test_the_bucket_follows_the_documented_two_round_hash():
    first = fnv1a32(b"exp-1:pseudonym-42")
    assert bucket("exp-1", "pseudonym-42") == fnv1a32(str(first).encode()) % 10_000


def test_buckets_are_the_same_in_another_process():
    units = [f"user-{i}" for i in range(200)]
    here = [bucket("onboarding-test", u) for u in units]
    code = (
        "from service.experiments.bucketing import bucket\n"
        f"print(','.join(str(bucket('onboarding-test', u)) for u in {units!r}))"
    )
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert [int(b) for b in there.strip().split(",")] == here


def test_buckets_are_uniform_over_100k_ids():
    counts = [0] * 100  # 100 groups of 100 buckets
    for i in range(100_000):
        counts[bucket("uniformity", f"{i:032x}") // 100] += 1
    assert stats.chisquare(counts).pvalue > 0.001
    # Sequential ids too, whose last characters alone differ.
    counts = [0] * 100
    for i in range(100_000):
        counts[bucket("uniformity", f"user-{i}") // 100] += 1
    assert stats.chisquare(counts).pvalue > 0.001


def test_experiments_bucket_independently():
    a = [bucket("exp-a", f"u{i}") < 5_000 for i in range(20_000)]
    b = [bucket("exp-b", f"u{i}") < 5_000 for i in range(20_000)]
    both = sum(x and y for x, y in zip(a, b, strict=True))
    assert abs(both / 20_000 - 0.25) < 0.02


def test_arm_shares_follow_the_normalised_weights():
    weights = [2.0, 1.0, 1.0]
    counts = [0, 0, 0]
    for i in range(40_000):
        arm = arm_of(bucket("shares", f"u{i}"), weights)
        assert arm is not None
        counts[arm] += 1
    assert stats.chisquare(counts, [20_000, 10_000, 10_000]).pvalue > 0.001


def test_ranges_tile_the_bucket_space_at_full_coverage():
    assert ranges([1, 1]) == [(0, 5_000), (5_000, BUCKETS)]
    assert ranges([3, 1]) == [(0, 7_500), (7_500, BUCKETS)]


def test_raising_coverage_only_adds_users():
    weights = [1.0, 1.0]
    units = [f"u{i}" for i in range(5_000)]
    before = {u: arm_of(bucket("ramp", u), weights, 0.05) for u in units}
    for coverage in (0.25, 0.5, 1.0):
        after = {u: arm_of(bucket("ramp", u), weights, coverage) for u in units}
        for unit, arm in before.items():
            if arm is not None:
                assert after[unit] == arm
        assert sum(a is not None for a in after.values()) > sum(a is not None for a in before.values())
        before = after
    share = sum(a is not None for a in before.values()) / len(units)
    assert share == 1.0


def test_an_unknown_hash_version_is_refused():
    with pytest.raises(ValueError, match="hash version"):
        bucket("x", "y", version=9)
