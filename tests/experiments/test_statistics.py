"""The experiment statistics against independent computations on the same data.

scipy's Welch t test for the fixed-horizon test, GrowthBook's ``gbstats`` engine for the absolute,
relative and sequential intervals, statsmodels OLS for regression adjustment, scipy's chi-square
for sample-ratio mismatch, statsmodels' multipletests for the corrections, and the half-normal
mixture martingale itself (solved numerically) for the one-sided confidence sequence.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import optimize, stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.weightstats import DescrStatsW

from service.errors import InvalidInput
from service.experiments.statistics import (
    SRM_THRESHOLD,
    Comparison,
    Moments,
    Sequential,
    adjust_p_values,
    arm_interval,
    compare,
    cs_halfwidth,
    detectable,
    guardrail,
    lift,
    mde,
    regression_adjustment,
    srm,
    welch_df,
)

TIGHT = 1e-9


def close(a: float, b: float, tol: float = TIGHT) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def arms(seed: int, *, binary: bool = False, n_c: int = 800, n_t: int = 1100) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if binary:
        return (rng.random(n_c) < 0.30).astype(float), (rng.random(n_t) < 0.34).astype(float)
    return rng.gamma(2.0, 3.0, n_c), rng.gamma(2.2, 3.5, n_t)  # skewed, unequal variances


def gb_stat(m: Moments):
    from gbstats.models.statistics import SampleMeanStatistic

    return SampleMeanStatistic(n=m.n, sum=m.total, sum_squares=m.total_sq)


# Moments.


def test_moments_are_the_sums_of_the_units_and_give_the_sample_mean_and_variance():
    rng = np.random.default_rng(1)
    y = rng.normal(3.0, 2.0, 500)
    x = np.eye(4)[rng.integers(0, 4, 500)]
    m = Moments.from_units(y.tolist(), x.tolist())
    assert m.n == 500 and m.k == 4
    assert close(m.total, y.sum()) and close(m.total_sq, (y**2).sum())
    assert close(m.mean, y.mean()) and close(m.variance, y.var(ddof=1))
    assert np.allclose(m.x_total, x.sum(axis=0)) and np.allclose(m.xy_total, x.T @ y)
    assert np.allclose(np.array(m.xx_total), x.T @ x)


def test_moments_from_cells_equal_the_moments_of_their_units():
    rng = np.random.default_rng(4)
    y = rng.normal(3.0, 2.0, 800)
    cell = rng.integers(0, 6, 800)
    rows = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [0, 0], [1, 0]], dtype=float)  # cells 0 and 4 share a row
    by_units = Moments.from_units(y, rows[cell])
    n = np.bincount(cell, minlength=6)
    total = np.bincount(cell, weights=y, minlength=6)
    total_sq = np.bincount(cell, weights=y**2, minlength=6)
    by_cells = Moments.from_cells(n, total, total_sq, rows)
    assert by_cells.n == by_units.n == 800
    assert close(by_cells.total, by_units.total) and close(by_cells.total_sq, by_units.total_sq)
    assert np.allclose(by_cells.x_total, by_units.x_total) and np.allclose(by_cells.xy_total, by_units.xy_total)
    assert np.allclose(np.array(by_cells.xx_total), np.array(by_units.xx_total))
    assert Moments.from_cells([3, 2], [1.0, 2.0], [1.0, 4.0]) == Moments(5, 3.0, 5.0)
    assert Moments.from_cells([], [], [], np.zeros((0, 2))).k == 2
    with pytest.raises(InvalidInput, match="n"):
        Moments.from_cells([1.5], [1.0], [1.0])
    with pytest.raises(InvalidInput, match="x"):
        Moments.from_cells([1, 2], [1.0, 2.0], [1.0, 2.0], [[1.0]])


def test_moments_survive_a_json_round_trip():
    rng = np.random.default_rng(2)
    m = Moments.from_units(rng.normal(size=50).tolist(), rng.random((50, 3)).tolist())
    again = Moments.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again == m
    plain = Moments.binary(100, 30)
    assert Moments.from_dict(json.loads(json.dumps(plain.to_dict()))) == plain
    assert Moments.from_dict({"n": 3, "total": 1, "total_sq": 1}) == Moments(3, 1.0, 1.0)


def test_empty_and_single_unit_arms_do_not_crash():
    empty, one = Moments(n=0, total=0.0, total_sq=0.0), Moments.from_units([1.0])
    assert (empty.mean, empty.variance, one.mean, one.variance) == (0.0, 0.0, 1.0, 0.0)
    assert arm_interval(empty) == (0.0, 0.0, 0.0)
    assert arm_interval(one) == (1.0, 1.0, 1.0)
    result = compare(one, Moments.binary(10, 3))
    assert result.note and result.decision() == "inconclusive" and result.p_value == 1.0
    assert compare(empty, empty, sequential=Sequential()).p_value is None
    assert guardrail(one, one, max_relative_drop=0.0).state == "ok"
    assert mde(one, one) == math.inf


def test_arm_interval_is_the_normal_interval_of_the_mean():
    y = (np.random.default_rng(3).random(400) < 0.3).astype(float)
    estimate, lower, upper = arm_interval(Moments.from_units(y), alpha=0.1)
    low, high = DescrStatsW(y).zconfint_mean(alpha=0.1)
    assert close(estimate, y.mean()) and close(lower, low) and close(upper, high)


# Fixed horizon against scipy and gbstats.


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_absolute_test_is_scipys_welch_t_test(seed, binary, alpha):
    control, treatment = arms(seed, binary=binary)
    result = compare(Moments.from_units(control), Moments.from_units(treatment), alpha=alpha, relative=False)
    expected = stats.ttest_ind(treatment, control, equal_var=False)
    ci = expected.confidence_interval(1 - alpha)
    assert close(result.p_value, expected.pvalue) and close(result.lower, ci.low) and close(result.upper, ci.high)
    assert close(result.estimate, treatment.mean() - control.mean())
    assert close(result.df, expected.df)
    assert result.significant == (expected.pvalue < alpha)


@pytest.mark.parametrize("side", ["greater", "less"])
def test_one_sided_fixed_horizon_test_is_scipys(side):
    control, treatment = arms(4)
    result = compare(Moments.from_units(control), Moments.from_units(treatment), relative=False, one_sided=side)
    expected = stats.ttest_ind(treatment, control, equal_var=False, alternative=side)
    ci = expected.confidence_interval(0.95)
    assert close(result.p_value, expected.pvalue)
    assert (result.lower, result.upper) == pytest.approx((ci.low, ci.high), rel=TIGHT, abs=TIGHT)
    assert math.isinf(result.upper if side == "greater" else result.lower)


@pytest.mark.parametrize("seed", [0, 5])
@pytest.mark.parametrize("relative", [False, True])
@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_fixed_horizon_intervals_are_gbstats(seed, relative, alpha):
    gb = pytest.importorskip("gbstats.frequentist.tests")
    control, treatment = (Moments.from_units(a) for a in arms(seed))
    config = gb.FrequentistConfig(alpha=alpha, difference_type="relative" if relative else "absolute")
    expected = gb.TwoSidedTTest(gb_stat(control), gb_stat(treatment), config)
    result = compare(control, treatment, alpha=alpha, relative=relative)
    assert close(result.estimate, expected.point_estimate)
    assert close(result.lower, expected.confidence_interval[0]) and close(result.upper, expected.confidence_interval[1])
    assert close(result.p_value, expected.p_value)
    assert close(result.std_error, math.sqrt(expected.variance))


def test_relative_interval_is_the_delta_method():
    control, treatment = (Moments.from_units(a) for a in arms(6))
    result = compare(control, treatment, relative=True)
    mc, mt = control.mean, treatment.mean
    variance = treatment.variance / (treatment.n * mc**2) + mt**2 * control.variance / (control.n * mc**4)
    assert close(result.estimate, mt / mc - 1) and close(result.std_error, math.sqrt(variance))


def test_a_binary_kpi_matches_gbstats_proportions_given_their_variance_convention():
    """gbstats' ProportionStatistic takes p (1 - p), ddof 0; Moments take the sample variance, ddof 1.

    Given moments whose sample variance is p (1 - p), the intervals are gbstats' exactly; given the
    plain 0/1 moments, they are wider by about sqrt(n / (n - 1)).
    """
    gb = pytest.importorskip("gbstats.frequentist.tests")
    from gbstats.models.statistics import ProportionStatistic

    def with_ddof0_variance(n: int, s: int) -> Moments:
        p = s / n
        return Moments(n=n, total=float(s), total_sq=s * s / n + (n - 1) * p * (1 - p))

    for relative in (False, True):
        config = gb.SequentialConfig(difference_type="relative" if relative else "absolute")
        expected = gb.SequentialTwoSidedTTest(
            ProportionStatistic(n=400, sum=120), ProportionStatistic(n=420, sum=150), config
        )
        ours = compare(
            with_ddof0_variance(400, 120), with_ddof0_variance(420, 150), relative=relative, sequential=Sequential()
        )
        assert close(ours.lower, expected.confidence_interval[0]) and close(ours.upper, expected.confidence_interval[1])
        plain = compare(Moments.binary(400, 120), Moments.binary(420, 150), relative=relative, sequential=Sequential())
        ratio = (plain.upper - plain.lower) / (ours.upper - ours.lower)
        assert 1.0 < ratio < math.sqrt(400 / 399) * 1.0001


# Sequential against gbstats.


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("relative", [False, True])
@pytest.mark.parametrize(("alpha", "tuning"), [(0.05, 5000.0), (0.1, 1000.0), (0.01, 20000.0)])
def test_two_sided_sequential_interval_is_gbstats(seed, relative, alpha, tuning):
    gb = pytest.importorskip("gbstats.frequentist.tests")
    control, treatment = (Moments.from_units(a) for a in arms(seed, binary=seed == 7))
    config = gb.SequentialConfig(
        alpha=alpha, difference_type="relative" if relative else "absolute", sequential_tuning_parameter=tuning
    )
    expected = gb.SequentialTwoSidedTTest(gb_stat(control), gb_stat(treatment), config)
    result = compare(control, treatment, alpha=alpha, relative=relative, sequential=Sequential(tuning))
    assert close(result.lower, expected.confidence_interval[0]) and close(result.upper, expected.confidence_interval[1])
    assert close(result.always_valid_p_value, expected.p_value)
    assert result.p_value is None and result.df is None
    fixed = compare(control, treatment, alpha=alpha, relative=relative)
    assert result.upper - result.lower > fixed.upper - fixed.lower  # the price of peeking


def test_sequential_decision_reads_the_interval():
    control, better = Moments.binary(5000, 1500), Moments.binary(5000, 1800)
    assert compare(control, better, sequential=Sequential()).decision() == "better"
    assert compare(control, better, sequential=Sequential()).decision(higher_is_better=False) == "worse"
    assert compare(better, control, sequential=Sequential()).decision() == "worse"
    assert compare(control, Moments.binary(5000, 1510), sequential=Sequential()).decision() == "inconclusive"


def _half_normal_mixture_boundary(t: float, alpha: float) -> float:
    """The z at which the half-normal mixture martingale 2/sqrt(1+t) exp(x^2/2) Phi(x) reaches 1/alpha."""

    def log_m(z: float) -> float:
        x = math.sqrt(t / (1 + t)) * z
        return math.log(2) - 0.5 * math.log1p(t) + x * x / 2 + stats.norm.logcdf(x) + math.log(alpha)

    return optimize.brentq(log_m, 0.0, 100.0, xtol=1e-13)


@pytest.mark.parametrize("n_total", [100, 1000, 5000, 20000, 200000])
@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.1])
def test_one_sided_sequence_is_a_conservative_half_normal_mixture_boundary(n_total, alpha):
    tuning = 5000.0
    closed_form = float(cs_halfwidth(1.0, n_total, alpha=alpha, tuning=tuning, one_sided=True))
    rho_sq = (-2 * math.log(2 * alpha) + math.log(-2 * math.log(2 * alpha) + 1)) / tuning
    t = n_total * rho_sq
    exact = _half_normal_mixture_boundary(t, alpha)
    two_sided_same_rho = math.sqrt(2 * (t + 1) / t * math.log(math.sqrt(t + 1) / alpha))
    assert exact <= closed_form <= two_sided_same_rho
    assert closed_form / exact < 1.05  # the closed form costs little
    # one-sided at alpha is narrower than the two-sided sequence at alpha near and beyond N*; far below N*
    # the two are tuned differently (rho for 2 alpha against rho for alpha) and the order can flip
    if n_total >= 1000:
        assert closed_form < float(cs_halfwidth(1.0, n_total, alpha=alpha, tuning=tuning))


def test_peeking_with_the_sequence_keeps_the_false_positive_rate_and_the_naive_test_does_not():
    rng = np.random.default_rng(11)
    experiments, looks, batch = 1000, 50, 200
    n_t = np.cumsum(rng.binomial(batch, 0.5, (experiments, looks)), axis=1)
    n_c = np.arange(1, looks + 1) * batch - n_t
    s_c = np.cumsum(rng.binomial(np.diff(n_c, prepend=0, axis=1), 0.3), axis=1)
    s_t = np.cumsum(rng.binomial(np.diff(n_t, prepend=0, axis=1), 0.3), axis=1)
    mean_c, mean_t = s_c / n_c, s_t / n_t
    var_c, var_t = mean_c * (1 - mean_c) * n_c / (n_c - 1), mean_t * (1 - mean_t) * n_t / (n_t - 1)
    estimate, variance = lift(mean_c, var_c, n_c, mean_t, var_t, n_t, relative=True)
    se = np.sqrt(variance)
    sequential = np.abs(estimate) > cs_halfwidth(se, n_c + n_t, alpha=0.05)
    naive = np.abs(estimate) > stats.t.ppf(0.975, welch_df(var_c, n_c, var_t, n_t)) * se
    # the kernels are what compare() runs
    one = compare(Moments.binary(int(n_c[0, -1]), int(s_c[0, -1])), Moments.binary(int(n_t[0, -1]), int(s_t[0, -1])))
    assert close(one.estimate, estimate[0, -1]) and close(one.std_error, se[0, -1])
    assert sequential.any(axis=1).mean() <= 0.05
    assert naive.any(axis=1).mean() > 0.10


# Guardrails and the minimum detectable effect.


def test_guardrail_flags_a_clear_harm_and_not_noise():
    control = Moments.binary(3000, 900)  # 30 %
    assert guardrail(control, Moments.binary(3000, 720), max_relative_drop=0.0).state == "harm"  # 24 %
    verdict = guardrail(control, Moments.binary(3000, 890), max_relative_drop=0.0)
    assert verdict.state == "ok" and verdict.bound > 0 > verdict.estimate
    # a 20 % drop is harm beyond a 5 % tolerance, not beyond a 30 % one
    assert guardrail(control, Moments.binary(3000, 720), max_relative_drop=0.05).state == "harm"
    assert guardrail(control, Moments.binary(3000, 720), max_relative_drop=0.30).state == "ok"
    json.dumps(verdict.to_dict(), allow_nan=False)


def test_guardrail_bound_is_the_one_sided_sequence_and_mirrors_for_lower_is_better_kpis():
    control, treatment = Moments.binary(4000, 200), Moments.binary(4000, 280)  # error rate 5 % -> 7 %
    verdict = guardrail(control, treatment, max_relative_drop=0.02, higher_is_better=False)
    result = compare(control, treatment, sequential=Sequential(), one_sided="greater")
    assert verdict.state == "harm" and verdict.bound == result.lower and verdict.threshold == 0.02
    assert 0.02 < verdict.bound < 0.1 and verdict.estimate == pytest.approx(0.4)
    assert guardrail(control, treatment, max_relative_drop=0.1, higher_is_better=False).state == "ok"
    assert close(result.lower, result.estimate - float(cs_halfwidth(result.std_error, 8000, one_sided=True)))
    assert guardrail(control, treatment, max_relative_drop=0.1).state == "ok"  # higher would be better: no harm
    fixed = guardrail(control, treatment, max_relative_drop=0.02, higher_is_better=False, sequential=None)
    assert fixed.bound > verdict.bound and "fixed horizon" in fixed.method


def test_mde_is_the_normal_power_formula():
    rng = np.random.default_rng(12)
    sigma, mean = 2.0, 10.0
    control = Moments.from_units(rng.normal(mean, sigma, 3000))
    treatment = Moments.from_units(rng.normal(mean, sigma, 2000))
    # statsmodels solves the standardised effect d of a one-sided z test with equal variances
    d = NormalIndPower().solve_power(nobs1=3000, ratio=2000 / 3000, alpha=0.05, power=0.8, alternative="larger")
    assert mde(control, treatment) == pytest.approx(d * sigma / mean, rel=0.03)
    exact = (stats.norm.ppf(0.95) + stats.norm.ppf(0.8)) * math.sqrt(
        control.variance / control.n + treatment.variance / treatment.n
    )
    assert close(mde(control, treatment), exact / control.mean)
    assert mde(control, treatment, one_sided=False) > mde(control, treatment)
    small = mde(control, treatment)
    assert detectable(control, treatment, max_relative_drop=small * 1.01)
    assert not detectable(control, treatment, max_relative_drop=small * 0.99)


# Regression adjustment against OLS.


def signup_units(seed: int, *, n: int = 6000, predictive: bool = True, binary: bool = False, share: float = 0.5):
    rng = np.random.default_rng(seed)
    role, plan, channel = rng.integers(0, 4, n), rng.integers(0, 3, n), rng.integers(0, 5, n)
    treat = (rng.random(n) < share).astype(int)
    effect = np.array([0.0, 0.15, 0.3, -0.1])[role] + np.array([0.0, 0.1, 0.25])[plan]
    if not predictive:
        effect = np.zeros(n)
    if binary:
        y = (rng.random(n) < 0.25 + effect * 0.8 + 0.03 * treat).astype(float)
    else:
        y = 1.0 + 4 * effect + 0.1 * treat + rng.normal(0, 1, n)
    x = np.concatenate([np.eye(4)[role], np.eye(3)[plan], np.eye(5)[channel]], axis=1)  # all one-hot columns
    frame = pd.DataFrame({"y": y, "treat": treat, "role": role, "plan": plan, "channel": channel})
    control = Moments.from_units(y[treat == 0], x[treat == 0])
    treatment = Moments.from_units(y[treat == 1], x[treat == 1])
    return frame, control, treatment


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("share", [0.5, 0.3])
def test_adjusted_difference_is_the_ols_treatment_coefficient(seed, binary, share):
    frame, control, treatment = signup_units(seed, binary=binary, share=share)
    ols = smf.ols("y ~ treat + C(role) + C(plan) + C(channel)", frame).fit()  # classical (non-robust) SE
    result = compare(control, treatment, relative=False, adjust=True)
    assert close(result.estimate, ols.params["treat"], 1e-8)
    assert result.std_error == pytest.approx(ols.bse["treat"], rel=0.02)
    # each adjusted mean is OLS's prediction for the arm, averaged over all units' covariates
    assert close(result.adjusted_control_mean, ols.predict(frame.assign(treat=0)).mean(), 1e-8)
    assert close(result.adjusted_treatment_mean, ols.predict(frame.assign(treat=1)).mean(), 1e-8)
    assert "regression-adjusted" in result.method


def test_predictive_covariates_reduce_the_variance_and_useless_ones_cost_nothing():
    _, control, treatment = signup_units(3)
    adjusted = compare(control, treatment, relative=False, adjust=True)
    plain = compare(control, treatment, relative=False)
    assert adjusted.std_error < 0.85 * plain.std_error
    relative = compare(control, treatment, adjust=True, sequential=Sequential())
    assert relative.upper - relative.lower < compare(control, treatment, sequential=Sequential()).upper - (
        compare(control, treatment, sequential=Sequential()).lower
    )
    _, control, treatment = signup_units(4, predictive=False)
    adjusted = compare(control, treatment, relative=False, adjust=True)
    plain = compare(control, treatment, relative=False)
    assert adjusted.std_error == pytest.approx(plain.std_error, rel=0.02)


def test_relative_adjusted_lift_divides_by_the_unadjusted_control_mean():
    _, control, treatment = signup_units(5)
    adjustment = regression_adjustment(control, treatment)
    result = compare(control, treatment, adjust=True)
    assert close(result.estimate, (adjustment.treatment_mean - adjustment.control_mean) / control.mean)
    mc, mt = control.mean, treatment.mean
    variance = adjustment.treatment_variance / (treatment.n * mc**2) + mt**2 * adjustment.control_variance / (
        control.n * mc**4
    )
    assert close(result.std_error, math.sqrt(variance))
    assert close(
        result.df, float(welch_df(adjustment.control_variance, control.n, adjustment.treatment_variance, treatment.n))
    )


# Sample-ratio mismatch and corrections.


def test_srm_is_scipys_chi_square_against_the_normalised_weights():
    assert close(srm([5000, 5400], [0.5, 0.5]), stats.chisquare([5000, 5400]).pvalue)
    assert srm([5000, 5400], [0.5, 0.5]) < SRM_THRESHOLD
    assert srm([5000, 5010], [1, 1]) > SRM_THRESHOLD
    assert close(srm([1000, 1100, 1900], [1, 1, 2]), stats.chisquare([1000, 1100, 1900], [1000, 1000, 2000]).pvalue)
    assert srm([0, 0], [0.5, 0.5]) == 1.0
    assert srm([10, 0, 12], [1, 0, 1]) == pytest.approx(stats.chisquare([10, 12]).pvalue)
    assert srm([10, 1, 12], [1, 0, 1]) == 0.0


@pytest.mark.parametrize("method", ["holm", "bh"])
def test_corrections_are_statsmodels_multipletests(method):
    rng = np.random.default_rng(9)
    cases = [rng.random(12) ** 3, rng.random(30), np.array([0.01, 0.04, 0.04, 0.2, 0.01, 0.9]), np.array([0.3])]
    for p in cases:
        expected = multipletests(p, method={"holm": "holm", "bh": "fdr_bh"}[method])[1]
        assert adjust_p_values(p.tolist(), method) == pytest.approx(expected.tolist(), rel=TIGHT)
    assert adjust_p_values([], method) == []


# Bad input names the field.


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: Moments(n=-1, total=0.0, total_sq=0.0), "n"),
        (lambda: Moments(n=2, total=1.0, total_sq=-1.0), "total_sq"),
        (lambda: Moments(n=0, total=1.0, total_sq=1.0), "n"),
        (lambda: Moments(n=2, total=float("nan"), total_sq=1.0), "total"),
        (lambda: Moments(n=2, total=1.0, total_sq=1.0, x_total=(1.0,), xx_total=((1.0,),), xy_total=()), "xy_total"),
        (
            lambda: Moments(n=2, total=1.0, total_sq=1.0, x_total=(1.0, 1.0), xx_total=((1.0,),), xy_total=(1.0, 1.0)),
            "xx_total",
        ),
        (lambda: Moments.from_units([1.0, 2.0], [[1.0], [0.0], [1.0]]), "x"),
        (lambda: Moments.from_units([1.0, 2.0], [[1.0], [0.0, 1.0]]), "x"),
        (lambda: Moments.binary(10, 11), "successes"),
        (lambda: Moments.from_dict({"n": 1, "total": 1.0}), "total_sq"),
        (lambda: Sequential(tuning=0), "tuning"),
        (lambda: compare(Moments.binary(10, 3), Moments.binary(10, 4), alpha=0), "alpha"),
        (lambda: compare(Moments.binary(10, 3), Moments.binary(10, 4), alpha=1.5), "alpha"),
        (lambda: compare(Moments.binary(10, 3), Moments.binary(10, 4), one_sided="up"), "one_sided"),  # type: ignore[arg-type]
        (lambda: compare(Moments.binary(10, 3), Moments.binary(10, 4), adjust=True), "adjust"),
        (lambda: arm_interval(Moments.binary(10, 3), alpha=-0.1), "alpha"),
        (lambda: guardrail(Moments.binary(10, 3), Moments.binary(10, 4), max_relative_drop=-0.1), "max_relative_drop"),
        (lambda: guardrail(Moments.binary(10, 3), Moments.binary(10, 4), max_relative_drop=0.1, alpha=0.6), "alpha"),
        (lambda: mde(Moments.binary(10, 3), Moments.binary(10, 4), power=1.0), "power"),
        (lambda: srm([10, 12], [1.0]), "weights"),
        (lambda: srm([10, 12], [0.0, 0.0]), "weights"),
        (lambda: srm([10, 12], [1.0, -2.0]), "weights"),
        (lambda: srm([10, -1], [1.0, 1.0]), "observed"),
        (lambda: adjust_p_values([0.1, 1.2], "holm"), "p"),
        (lambda: adjust_p_values([0.1], "bonferroni"), "method"),  # type: ignore[arg-type]
    ],
)
def test_bad_input_raises_invalid_input_naming_the_field(call, field):
    with pytest.raises(InvalidInput) as raised:
        call()
    assert raised.value.field == field


def test_results_are_json_with_the_method_named():
    control, treatment = Moments.binary(1000, 300), Moments.binary(1000, 330)
    for result in (
        compare(control, treatment),
        compare(control, treatment, sequential=Sequential(), one_sided="less"),
        regression_adjustment(*signup_units(6)[1:]),
        guardrail(control, treatment, max_relative_drop=0.02),
    ):
        plain = json.loads(json.dumps(result.to_dict(), allow_nan=False))
        assert plain["method"]
    one_sided = compare(control, treatment, sequential=Sequential(), one_sided="less").to_dict()
    assert one_sided["lower"] is None and one_sided["upper"] > 0
    assert isinstance(compare(control, treatment), Comparison)
