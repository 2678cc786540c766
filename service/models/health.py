"""Model health: how far features and scores have drifted since training, and how scores track outcomes.

Drift is the population stability index (PSI) between the reference sample (the model's training snapshot) and a
current one, ``sum((a - e) * ln(a / e))`` over bins, ``e`` the reference's share of a bin and ``a`` the current's.
A numeric feature is binned at the reference's quantiles (deciles by default; tied quantiles merge, the outer bins
are open-ended, bins are closed on the right); a categorical one by the reference's categories plus one bin for
categories the reference never saw. Every share is smoothed, ``(share + EPSILON) / (1 + bins * EPSILON)``, so an
empty bin weighs a little instead of making ``ln(a / e)`` infinite, and the shares still sum to 1. The
conventional bands, the defaults of :class:`Thresholds`: under 0.1 stable, 0.1 to 0.25 a moderate shift, over 0.25
a major one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr  # type: ignore[import-untyped, unused-ignore]

from service.errors import InvalidInput

EPSILON = 1e-4  # added to every bin's share before renormalising
UNSEEN = "(unseen)"
Values = Sequence[float] | Sequence[str] | np.ndarray


@dataclass(frozen=True)
class Shift:
    """One feature's (or the score's) bins, the smoothed shares of each sample in them, and the PSI."""

    feature: str
    bins: tuple[str, ...]
    reference: tuple[float, ...]
    current: tuple[float, ...]
    psi: float


@dataclass(frozen=True)
class CalibrationBin:
    count: int
    mean_prediction: float
    observed_rate: float


@dataclass(frozen=True)
class Calibration:
    """Scores against 0/1 outcomes, by equal-count bins of the score (lowest first)."""

    bins: tuple[CalibrationBin, ...]
    ece: float  # expected calibration error: count-weighted mean |mean prediction - observed rate|
    slope: float  # least squares of outcome on score, over the units
    intercept: float
    rank_agreement: float | None  # Spearman of bin mean prediction and observed rate; None if the rates are all equal


@dataclass(frozen=True)
class Sample:
    """Units' feature values, one sequence per feature, and the model's scores for the same units."""

    features: Mapping[str, Values]
    scores: Values


@dataclass(frozen=True)
class Thresholds:
    """Where alerts start. Calibration is not judged by default: a score need not be a probability."""

    moderate_psi: float = 0.1
    major_psi: float = 0.25
    max_ece: float | None = None
    min_slope: float | None = None
    min_rank_agreement: float | None = None


@dataclass(frozen=True)
class Alert:
    subject: str  # "feature <name>", "score" or "calibration"
    measure: str  # "PSI", "expected calibration error", "slope" or "rank agreement"
    figure: float
    threshold: float
    verdict: str  # "moderate shift", "major shift", "above the maximum" or "below the minimum"

    def __str__(self) -> str:
        if self.verdict.endswith("shift"):
            edge = "over" if self.verdict == "major shift" else "at or over"
            return f"{self.subject}: {self.verdict}, {self.measure} {self.figure:.3f} {edge} {self.threshold:.3f}"
        return f"{self.subject}: {self.measure} {self.figure:.3f} {self.verdict} {self.threshold:.3f}"


@dataclass(frozen=True)
class Health:
    features: tuple[Shift, ...]
    score: Shift
    calibration: Calibration | None  # None without outcomes

    def alerts(self, thresholds: Thresholds | None = None) -> list[Alert]:
        """The shifts and calibration figures past the thresholds (the conventional bands by default)."""
        t = thresholds if thresholds is not None else Thresholds()
        found = []
        for subject, shift in [*((f"feature {s.feature}", s) for s in self.features), ("score", self.score)]:
            if shift.psi > t.major_psi:
                found.append(Alert(subject, "PSI", shift.psi, t.major_psi, "major shift"))
            elif shift.psi >= t.moderate_psi:
                found.append(Alert(subject, "PSI", shift.psi, t.moderate_psi, "moderate shift"))
        c = self.calibration
        if c is not None:
            if t.max_ece is not None and c.ece > t.max_ece:
                found.append(Alert("calibration", "expected calibration error", c.ece, t.max_ece, "above the maximum"))
            if t.min_slope is not None and c.slope < t.min_slope:
                found.append(Alert("calibration", "slope", c.slope, t.min_slope, "below the minimum"))
            agreement, least = c.rank_agreement, t.min_rank_agreement
            if least is not None and agreement is not None and agreement < least:
                found.append(Alert("calibration", "rank agreement", agreement, least, "below the minimum"))
        return found


def assess(reference: Sample, current: Sample, *, outcomes: Values | None = None, bins: int = 10) -> Health:
    """The health of a model: each feature's shift (numeric when the reference's values are numbers or booleans,
    categorical when strings), the score's shift, and the current scores' calibration against ``outcomes``."""
    known, given = set(reference.features), set(current.features)
    if known != given:
        reason = f"must name the reference's features: lacks {sorted(known - given)}, adds {sorted(given - known)}"
        raise InvalidInput("current.features", reason)
    shifts = []
    for name, values in reference.features.items():
        sides = (f"reference.features.{name}", f"current.features.{name}")
        if np.asarray(values).dtype.kind in "biuf":
            shifts.append(_numeric_shift(values, current.features[name], feature=name, bins=bins, sides=sides))
        else:
            shifts.append(_categorical_shift(values, current.features[name], feature=name, sides=sides))
    scored = ("reference.scores", "current.scores")
    score = _numeric_shift(reference.scores, current.scores, feature="score", bins=bins, sides=scored)
    fit = None if outcomes is None else _calibration(current.scores, outcomes, bins=bins, field="current.scores")
    return Health(tuple(shifts), score, fit)


def numeric_shift(reference: Values, current: Values, *, feature: str = "value", bins: int = 10) -> Shift:
    """The PSI of a numeric feature, binned at the reference's quantiles."""
    return _numeric_shift(reference, current, feature=feature, bins=bins, sides=("reference", "current"))


def categorical_shift(reference: Values, current: Values, *, feature: str = "value") -> Shift:
    """The PSI of a categorical feature, one bin per reference category and one for the unseen."""
    return _categorical_shift(reference, current, feature=feature, sides=("reference", "current"))


def calibration(scores: Values, outcomes: Values, *, bins: int = 10) -> Calibration:
    """Calibration of scores to 0/1 outcomes by equal-count bins of the score (deciles by default).

    The model predicts an uplift or a score, not necessarily a probability, so the gap (ECE) may be large for a
    model that still orders users well: the slope of outcome on score and the rank agreement of the bins
    (Spearman) say whether higher scores go with more activation.
    """
    return _calibration(scores, outcomes, bins=bins, field="scores")


def _numeric_shift(reference: Values, current: Values, *, feature: str, bins: int, sides: tuple[str, str]) -> Shift:
    if bins < 2:
        raise InvalidInput("bins", "must be at least 2")
    ref, cur = _numbers(reference, sides[0]), _numbers(current, sides[1])
    edges = np.unique(np.quantile(ref, np.arange(1, bins) / bins))
    # side="left": a value equal to an edge falls in the bin the edge closes, as a quantile does.
    counts = [np.bincount(np.searchsorted(edges, x, side="left"), minlength=len(edges) + 1) for x in (ref, cur)]
    bounds = ["-inf", *(f"{e:.6g}" for e in edges), "inf"]
    labels = tuple(
        f"({lo}, {hi}]" if hi != "inf" else f"({lo}, inf)" for lo, hi in zip(bounds, bounds[1:], strict=False)
    )
    return _shift(feature, labels, counts[0], counts[1])


def _categorical_shift(reference: Values, current: Values, *, feature: str, sides: tuple[str, str]) -> Shift:
    ref, cur = _strings(reference, sides[0]), _strings(current, sides[1])
    categories = sorted(set(ref))
    index = {c: i for i, c in enumerate(categories)}
    unseen = len(categories)
    counts = [np.bincount([index.get(c, unseen) for c in x], minlength=unseen + 1) for x in (ref, cur)]
    return _shift(feature, (*categories, UNSEEN), counts[0], counts[1])


def _shift(feature: str, labels: tuple[str, ...], reference: np.ndarray, current: np.ndarray) -> Shift:
    e, a = _smoothed(reference), _smoothed(current)
    psi = float(np.sum((a - e) * np.log(a / e)))
    return Shift(feature, labels, tuple(e.tolist()), tuple(a.tolist()), psi)


def _smoothed(counts: np.ndarray) -> np.ndarray:
    return (counts / counts.sum() + EPSILON) / (1.0 + len(counts) * EPSILON)


def _calibration(scores: Values, outcomes: Values, *, bins: int, field: str) -> Calibration:
    if bins < 2:
        raise InvalidInput("bins", "must be at least 2")
    s = _numbers(scores, field)
    y = np.asarray(outcomes)
    if y.ndim != 1 or len(y) != len(s):
        raise InvalidInput("outcomes", f"must hold one outcome per score ({len(s)}), holds shape {y.shape}")
    if y.dtype.kind not in "biuf" or not np.isin(y, (0, 1)).all():
        raise InvalidInput("outcomes", "every outcome must be 0 or 1")
    if len(s) < bins:
        raise InvalidInput(field, f"needs at least one unit per bin ({bins}), holds {len(s)}")
    if np.ptp(s) == 0:
        raise InvalidInput(field, "are all equal: there is nothing to calibrate")
    y = y.astype(float)
    # Equal-count bins of the sorted scores; tied scores may straddle two bins.
    parts = np.array_split(np.argsort(s, kind="stable"), bins)
    means, rates = np.array([s[p].mean() for p in parts]), np.array([y[p].mean() for p in parts])
    sizes = np.array([len(p) for p in parts])
    ece = float(np.sum(sizes * np.abs(means - rates)) / len(s))
    slope, intercept = np.linalg.lstsq(np.column_stack([s, np.ones_like(s)]), y, rcond=None)[0]
    agreement = float(spearmanr(means, rates).statistic) if np.ptp(rates) > 0 else None
    table = tuple(CalibrationBin(int(n), float(m), float(r)) for n, m, r in zip(sizes, means, rates, strict=True))
    return Calibration(table, ece, float(slope), float(intercept), agreement)


def _numbers(values: Values, field: str) -> np.ndarray:
    x = np.asarray(values)
    if x.ndim != 1 or len(x) == 0:
        raise InvalidInput(field, f"must be a non-empty list of numbers, has shape {x.shape}")
    if x.dtype.kind not in "biuf" or not np.isfinite(x.astype(float)).all():
        raise InvalidInput(field, "must hold finite numbers only")
    return x.astype(float)


def _strings(values: Values, field: str) -> list[str]:
    x = list(values)
    if not x:
        raise InvalidInput(field, "must hold at least one value")
    if not all(isinstance(v, str) for v in x):
        raise InvalidInput(field, "must hold numbers (a numeric feature) or strings (a categorical one) only")
    return [str(v) for v in x]
