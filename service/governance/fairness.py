"""Fairness of a candidate model or policy across the groups of a protected attribute: exposure and activation.

Users come in only if they consented to fairness analysis (the caller filters), each with a group (a self-declared
gender or age band, say), an activation flag (0/1) and every ``(step, rank)`` shown to them over any number of
decisions. By group: exposure to a step is the mean over users of the DCG weight ``1 / log2(1 + rank)`` of the best
rank the step was shown to the user at (rank 1 weighs 1.0; never shown, 0); activation is the share who activated.
Between groups: the difference (largest minus smallest group value) and the ratio (smallest over largest, 1.0
when both are 0), as fairlearn's ``MetricFrame.difference`` / ``ratio`` with ``method="between_groups"``.
Intervals are percentile bootstraps over users resampled within each group (stratified); near zero the
difference's interval lies above its point estimate, the largest of noisy gaps being biased upwards. A group
under ``min_group_size`` users is suppressed: counted, never valued, in no disparity (and no overall figure is
reported from which its value could be worked back), so a small group never singles people out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from service.errors import InvalidInput

ACTIVATION, EXPOSURE = "activation", "exposure"
_BLOCK = 1 << 22  # bootstrap draws held in memory at once


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its percentile bootstrap interval."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class GroupCount:
    group: str
    users: int
    suppressed: bool


@dataclass(frozen=True)
class GroupValue:
    group: str
    users: int
    value: Estimate


@dataclass(frozen=True)
class Disparity:
    """How far apart the reported groups are: difference (max - min) and ratio (min / max), and who is at each end."""

    difference: Estimate
    ratio: Estimate
    lowest: str
    highest: str


@dataclass(frozen=True)
class Breakdown:
    """One metric by group: activation, or exposure to one step."""

    metric: str
    step: str | None
    groups: tuple[GroupValue, ...]
    disparity: Disparity | None  # None unless two groups or more are reported


@dataclass(frozen=True)
class Limits:
    max_difference: float | None = None
    min_ratio: float | None = None


@dataclass(frozen=True)
class Thresholds:
    activation: Limits = field(default_factory=Limits)
    exposure: Limits = field(default_factory=Limits)  # applies to every step


@dataclass(frozen=True)
class Breach:
    """A disparity past its threshold (judged on the point estimate; the interval says how sure)."""

    metric: str
    step: str | None
    measure: str  # "difference" or "ratio"
    figure: Estimate
    threshold: float
    lowest: str
    highest: str

    def __str__(self) -> str:
        subject = f"exposure to step {self.step}" if self.step is not None else self.metric
        if self.measure == "difference":
            rule = f"difference between groups {self.figure.value:.3f} exceeds the maximum {self.threshold:.3f}"
        else:
            rule = f"ratio between groups {self.figure.value:.3f} is below the minimum {self.threshold:.3f}"
        span = f"interval {self.figure.low:.3f} to {self.figure.high:.3f}"
        return f"{subject}: {rule} ({span}; lowest {self.lowest}, highest {self.highest})"


@dataclass(frozen=True)
class FairnessReport:
    groups: tuple[GroupCount, ...]  # every group, the suppressed ones too, by label
    activation: Breakdown
    exposure: tuple[Breakdown, ...]  # one per step
    min_group_size: int
    n_boot: int
    confidence: float

    def exposure_to(self, step: str) -> Breakdown:
        """The exposure breakdown of one step."""
        for breakdown in self.exposure:
            if breakdown.step == step:
                return breakdown
        raise KeyError(step)

    def breaches(self, thresholds: Thresholds) -> list[Breach]:
        """The disparities past the thresholds: activation first, then exposure step by step."""
        found: list[Breach] = []
        for b in (self.activation, *self.exposure):
            limits = thresholds.activation if b.metric == ACTIVATION else thresholds.exposure
            if (d := b.disparity) is None:
                continue
            if limits.max_difference is not None and d.difference.value > limits.max_difference:
                found.append(
                    Breach(b.metric, b.step, "difference", d.difference, limits.max_difference, d.lowest, d.highest)
                )
            if limits.min_ratio is not None and d.ratio.value < limits.min_ratio:
                found.append(Breach(b.metric, b.step, "ratio", d.ratio, limits.min_ratio, d.lowest, d.highest))
        return found


def report(
    groups: Sequence[str],
    activated: Sequence[int] | Sequence[bool] | np.ndarray,
    shown: Sequence[Sequence[tuple[str, int]]],
    *,
    steps: Sequence[str] | None = None,
    min_group_size: int = 10,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int | np.random.Generator = 0,
) -> FairnessReport:
    """The fairness report of users' groups, activations and shown ``(step, rank)`` lists; ``steps`` defaults to
    every step shown (sorted), and a step outside ``steps`` is left out."""
    for name, option in (("min_group_size", min_group_size), ("n_boot", n_boot)):
        if isinstance(option, bool) or not isinstance(option, int) or option < 1:
            raise InvalidInput(name, "must be an integer of at least 1")
    if not 0.0 < confidence < 1.0:
        raise InvalidInput("confidence", "must lie strictly between 0 and 1")
    labels = _labels(groups)
    outcome = _outcomes(activated, len(labels))
    if len(shown) != len(labels):
        raise InvalidInput("shown", f"holds {len(shown)} users, groups holds {len(labels)}")
    entries = _entries(shown)
    step_ids = sorted({s for _, s, _ in entries}) if steps is None else list(steps)
    if not all(isinstance(s, str) and s for s in step_ids) or len(set(step_ids)) != len(step_ids):
        raise InvalidInput("steps", "must name distinct steps, each a non-empty string")
    values = np.column_stack([outcome, _exposure(entries, step_ids, len(labels))])

    rng = np.random.default_rng(seed)
    quantiles = [(1.0 - confidence) / 2, (1.0 + confidence) / 2]
    counts, kept, points, boots = [], [], [], []
    codes = np.array(labels, dtype=object)
    for group in sorted(set(labels)):
        rows = values[codes == group]
        suppressed = len(rows) < min_group_size
        counts.append(GroupCount(group, len(rows), suppressed))
        if not suppressed:
            kept.append((group, len(rows)))
            points.append(rows.mean(axis=0))
            boots.append(_bootstrap_means(rows, n_boot, rng))
    point = np.array(points).reshape(len(kept), values.shape[1])  # (groups, metrics)
    boot = np.stack(boots, axis=1) if boots else np.empty((n_boot, 0, values.shape[1]))  # (n_boot, groups, metrics)

    breakdowns = []
    for j, (metric, step) in enumerate([(ACTIVATION, None), *((EXPOSURE, s) for s in step_ids)]):
        by_group = tuple(
            GroupValue(g, n, _estimate(point[i, j], boot[:, i, j], quantiles)) for i, (g, n) in enumerate(kept)
        )
        disparity = _disparity(point[:, j], boot[:, :, j], [g for g, _ in kept], quantiles) if len(kept) > 1 else None
        breakdowns.append(Breakdown(metric, step, by_group, disparity))
    return FairnessReport(tuple(counts), breakdowns[0], tuple(breakdowns[1:]), min_group_size, n_boot, confidence)


def _labels(groups: Sequence[str]) -> list[str]:
    labels = list(groups)
    if not labels:
        raise InvalidInput("groups", "holds no users")
    for i, g in enumerate(labels):
        if not isinstance(g, str) or not g:
            raise InvalidInput("groups", f"user {i}: the group must be a non-empty string, not {g!r}")
    return labels


def _outcomes(activated: Sequence[int] | Sequence[bool] | np.ndarray, n: int) -> np.ndarray:
    a = np.asarray(activated)
    if a.ndim != 1 or len(a) != n:
        raise InvalidInput("activated", f"must hold one flag per user ({n}), holds shape {a.shape}")
    if a.dtype.kind not in "biuf" or not np.isin(a, (0, 1)).all():
        raise InvalidInput("activated", "every flag must be 0 or 1")
    return a.astype(float)


def _entries(shown: Sequence[Sequence[tuple[str, int]]]) -> list[tuple[int, str, int]]:
    entries = []
    for u, decisions in enumerate(shown):
        for k, entry in enumerate(decisions):
            try:
                step, rank = entry
            except (TypeError, ValueError):
                raise InvalidInput("shown", f"user {u}, entry {k}: must be a (step, rank) pair") from None
            if not isinstance(step, str) or not step:
                raise InvalidInput("shown", f"user {u}, entry {k}: the step must be a non-empty string")
            if isinstance(rank, bool) or not isinstance(rank, int | np.integer) or rank < 1:
                raise InvalidInput("shown", f"user {u}, entry {k}: the rank must be an integer >= 1, not {rank!r}")
            entries.append((u, step, int(rank)))
    return entries


def _exposure(entries: list[tuple[int, str, int]], steps: list[str], n_users: int) -> np.ndarray:
    """Users x steps: the DCG weight of the best rank each step was shown at to each user, 0 if never."""
    column = {s: j for j, s in enumerate(steps)}
    hits = [(u, column[s], r) for u, s, r in entries if s in column]
    exposure = np.zeros((n_users, len(steps)))
    if hits:
        users, cols, ranks = (np.array(x) for x in zip(*hits, strict=True))
        np.maximum.at(exposure, (users, cols), 1.0 / np.log2(1.0 + ranks))
    return exposure


def _bootstrap_means(rows: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """n_boot x metrics: column means of the rows resampled with replacement (as draw counts times the rows)."""
    n = len(rows)
    means = np.empty((n_boot, rows.shape[1]))
    block = max(1, _BLOCK // n)
    for start in range(0, n_boot, block):
        b = min(block, n_boot - start)
        draws = rng.integers(0, n, size=(b, n)) + n * np.arange(b)[:, None]
        counts = np.bincount(draws.ravel(), minlength=b * n).reshape(b, n)
        means[start : start + b] = counts @ rows / n
    return means


def _ratio(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    # Values are non-negative, so a zero maximum means every group is at 0: equal, ratio 1.
    return np.divide(low, high, out=np.ones_like(high, dtype=float), where=high > 0)


def _estimate(value: float, replicates: np.ndarray, quantiles: list[float]) -> Estimate:
    low, high = np.quantile(replicates, quantiles)
    return Estimate(float(value), float(low), float(high))


def _disparity(point: np.ndarray, boot: np.ndarray, names: list[str], quantiles: list[float]) -> Disparity:
    lo, hi = point.min(), point.max()
    b_lo, b_hi = boot.min(axis=1), boot.max(axis=1)
    return Disparity(
        difference=_estimate(hi - lo, b_hi - b_lo, quantiles),
        ratio=_estimate(lo / hi if hi > 0 else 1.0, _ratio(b_lo, b_hi), quantiles),
        lowest=names[int(point.argmin())],
        highest=names[int(point.argmax())],
    )
