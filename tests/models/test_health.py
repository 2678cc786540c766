"""Model health: PSI is the symmetric KL divergence of the binned, smoothed shares, it stays low for one
distribution and passes the major band for a one-sd shift; calibration tells calibrated from miscalibrated scores;
alerts fire only past their thresholds; bad input names its field."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import entropy  # type: ignore[import-untyped, unused-ignore]

from service.errors import InvalidInput
from service.models import health
from service.models.health import EPSILON, Calibration, Health, Sample, Shift, Thresholds


def normal(seed: int, n: int, mean: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, 1.0, size=n)


def shift_of(psi: float, feature: str = "tenure") -> Shift:
    return Shift(feature, (), (), (), psi)


@pytest.mark.parametrize(
    "shift",
    [
        health.numeric_shift(normal(1, 2000), normal(2, 1500, mean=0.4)),
        health.numeric_shift(normal(1, 2000), np.concatenate([normal(3, 500), [50.0] * 10]), bins=20),
        health.numeric_shift(normal(1, 300), normal(4, 40, mean=3.0)),  # leaves low bins empty
        health.categorical_shift(list("aaabbbccd"), list("aabxxyccc")),
    ],
)
def test_psi_is_the_symmetric_kl_divergence_of_the_binned_smoothed_shares(shift):
    e, a = np.array(shift.reference), np.array(shift.current)
    assert e.sum() == pytest.approx(1.0, abs=1e-12) and a.sum() == pytest.approx(1.0, abs=1e-12)
    assert shift.psi == pytest.approx(entropy(a, e) + entropy(e, a), rel=1e-12)


def test_numeric_bins_are_the_reference_deciles_with_open_outer_bins():
    reference = np.arange(1, 1001, dtype=float)
    shift = health.numeric_shift(reference, [-1e9, 1e9], feature="age")
    smoothed_tenth = (0.1 + EPSILON) / (1 + 10 * EPSILON)
    assert shift.reference == pytest.approx([smoothed_tenth] * 10, abs=1e-12)
    assert shift.bins[0] == "(-inf, 100.9]" and shift.bins[-1] == "(900.1, inf)"
    assert shift.current[0] == shift.current[-1] == pytest.approx((0.5 + EPSILON) / (1 + 10 * EPSILON))
    assert health.numeric_shift(reference, reference).psi == 0.0


def test_tied_quantiles_merge_into_one_bin():
    reference = np.concatenate([np.zeros(700), np.arange(1, 301)])  # the first six deciles are all 0
    shift = health.numeric_shift(reference, reference)
    assert shift.bins == ("(-inf, 0]", "(0, 0.3]", "(0.3, 100.2]", "(100.2, 200.1]", "(200.1, inf)")
    assert shift.reference[0] == pytest.approx((0.7 + EPSILON) / (1 + 5 * EPSILON))


def test_two_samples_of_one_distribution_are_stable():
    assert health.numeric_shift(normal(5, 100_000), normal(6, 100_000)).psi < 0.02


def test_a_mean_shift_of_one_standard_deviation_is_a_major_shift():
    assert health.numeric_shift(normal(7, 20_000), normal(8, 20_000, mean=1.0)).psi > 0.25


def test_categorical_psi_by_hand():
    shift = health.categorical_shift(["a", "a", "b", "b"], ["a", "a", "a", "c"], feature="plan")
    assert shift.bins == ("a", "b", "(unseen)")
    z = 1 + 3 * EPSILON
    e = [(0.5 + EPSILON) / z, (0.5 + EPSILON) / z, EPSILON / z]
    a = [(0.75 + EPSILON) / z, EPSILON / z, (0.25 + EPSILON) / z]
    by_hand = sum((ai - ei) * math.log(ai / ei) for ai, ei in zip(a, e, strict=True))
    assert shift.psi == pytest.approx(by_hand, rel=1e-12)
    assert shift.psi > 6.0  # b vanished and c is new: each costs about ln(share / EPSILON) times its share


def test_calibrated_scores_have_a_small_gap_a_unit_slope_and_agreeing_ranks():
    rng = np.random.default_rng(11)
    p = rng.uniform(size=20_000)
    fit = health.calibration(p, rng.random(20_000) < p)
    assert [b.count for b in fit.bins] == [2000] * 10
    assert fit.ece < 0.03
    assert fit.slope == pytest.approx(1.0, abs=0.05) and fit.intercept == pytest.approx(0.0, abs=0.03)
    assert fit.rank_agreement == pytest.approx(1.0)


def test_miscalibrated_scores_have_a_clearly_larger_gap():
    rng = np.random.default_rng(12)
    p = rng.uniform(size=20_000)
    calibrated = health.calibration(p, rng.random(20_000) < p)
    squared = health.calibration(p, rng.random(20_000) < p**2)
    assert squared.ece > 0.12 and squared.ece > 5 * calibrated.ece  # E|p - p^2| = 1/6 for uniform p
    assert squared.rank_agreement == pytest.approx(
        1.0
    )  # the order is still right: the scores are just not probabilities


def test_the_conventional_bands_set_the_default_alerts():
    report = Health(
        tuple(shift_of(psi, f"f{i}") for i, psi in enumerate([0.0, 0.099, 0.1, 0.25, 0.2501])),
        shift_of(0.3, "score"),
        None,
    )
    alerts = report.alerts()
    assert [(a.subject, a.verdict) for a in alerts] == [
        ("feature f2", "moderate shift"),
        ("feature f3", "moderate shift"),
        ("feature f4", "major shift"),
        ("score", "major shift"),
    ]
    assert str(alerts[0]) == "feature f2: moderate shift, PSI 0.100 at or over 0.100"
    assert str(alerts[-1]) == "score: major shift, PSI 0.300 over 0.250"
    assert report.alerts(Thresholds(moderate_psi=0.5, major_psi=0.6)) == []


def test_calibration_alerts_fire_only_past_thresholds_that_are_set():
    fit = Calibration((), ece=0.08, slope=0.4, intercept=0.1, rank_agreement=0.7)
    report = Health((), shift_of(0.0, "score"), fit)
    assert report.alerts() == []
    assert report.alerts(Thresholds(max_ece=0.08, min_slope=0.4, min_rank_agreement=0.7)) == []
    alerts = report.alerts(Thresholds(max_ece=0.05, min_slope=0.5, min_rank_agreement=0.8))
    assert [str(a) for a in alerts] == [
        "calibration: expected calibration error 0.080 above the maximum 0.050",
        "calibration: slope 0.400 below the minimum 0.500",
        "calibration: rank agreement 0.700 below the minimum 0.800",
    ]


def test_assess_reports_each_feature_the_score_and_calibration():
    rng = np.random.default_rng(13)
    reference = Sample({"tenure": normal(1, 5000), "plan": rng.choice(["free", "pro"], 5000)}, scores=normal(2, 5000))
    moved = normal(3, 4000, mean=1.0)
    current = Sample({"tenure": moved, "plan": rng.choice(["free", "pro"], 4000)}, scores=normal(4, 4000))
    outcomes = rng.random(4000) < 0.3
    report = health.assess(reference, current, outcomes=outcomes)
    assert [s.feature for s in report.features] == ["tenure", "plan"] and report.score.feature == "score"
    assert report.features[1].bins == ("free", "pro", "(unseen)")
    assert report.calibration is not None and sum(b.count for b in report.calibration.bins) == 4000
    assert [(a.subject, a.verdict) for a in report.alerts()] == [("feature tenure", "major shift")]
    assert health.assess(reference, current).calibration is None


GOOD = Sample({"x": [1.0, 2.0, 3.0]}, scores=[0.1, 0.2, 0.3])


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: health.numeric_shift([1.0, math.nan], [1.0]), "reference"),
        (lambda: health.numeric_shift([1.0, 2.0], []), "current"),
        (lambda: health.numeric_shift([1.0, 2.0], [1.0], bins=1), "bins"),
        (lambda: health.categorical_shift(["a", None], ["a"]), "reference"),  # type: ignore[arg-type]
        (lambda: health.calibration([0.1, 0.9], [1]), "outcomes"),
        (lambda: health.calibration([0.1, 0.9], [1, 2], bins=2), "outcomes"),
        (lambda: health.calibration([0.5, 0.5], [1, 0], bins=2), "scores"),
        (lambda: health.calibration([0.1, 0.9], [1, 0], bins=3), "scores"),
        (lambda: health.assess(GOOD, Sample({"y": [1.0]}, scores=[0.1])), "current.features"),
        (lambda: health.assess(GOOD, Sample({"x": [1.0, math.inf]}, scores=[0.1])), "current.features.x"),
        (lambda: health.assess(GOOD, Sample({"x": [1.0]}, scores=["high"])), "current.scores"),
        (lambda: health.assess(GOOD, GOOD, outcomes=[1, 0]), "outcomes"),
    ],
)
def test_bad_input_names_the_field(call, field):
    with pytest.raises(InvalidInput) as raised:
        call()
    assert raised.value.field == field
