"""experimentResults' figures against independent computations on the same users: counts, the regression-adjusted
lift against statsmodels OLS, the SRM check against scipy over the weights of each epoch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats

from service.decisions import decide, users
from service.experiments import registry
from service.experiments.analysis import analyse

ROLES = ["analyst", "engineer", "manager", "admin"]
INDUSTRIES = ["retail", "fintech", "healthcare"]
PLANS = ["free", "team"]
CHANNELS = ["WEB", "MOBILE"]


def start(runtime, weights=(1, 1)):
    registry.create(
        runtime,
        registry.ExperimentSpec(
            "analysis-test",
            [
                registry.ArmSpec("control", "default@1.2.0", weights[0]),
                registry.ArmSpec("rules", "default@1.3.0", weights[1]),
            ],
            guardrails=[registry.Guardrail("activation", 0.0)],
        ),
        by="test",
    )
    registry.start(runtime, "analysis-test", by="test", needs_approval=False)


def population(runtime, n, rng, *, offset=0):
    """Register and expose ``n`` users; activate each with a rate that depends on arm and role; return their rows."""
    rows = []
    for i in range(offset, offset + n):
        role, industry = ROLES[rng.integers(4)], INDUSTRIES[rng.integers(3)]
        plan, channel = PLANS[rng.integers(2)], CHANNELS[rng.integers(2)]
        users.register(
            runtime,
            users.Registration(
                id=f"u{i}", role=role, industry=industry, plan=plan, signup_channel=channel, consents=["ANALYTICS"]
            ),
        )
        arm = decide.next_steps(runtime, f"u{i}").variant
        rate = 0.15 + 0.35 * (role in ("analyst", "manager")) + 0.1 * (arm == "rules")
        activated = bool(rng.random() < rate)
        if activated:
            users.record_events(runtime, [users.EventReport(f"u{i}", "ACTIVATED")])
        rows.append(
            {"arm": arm, "y": float(activated), "role": role, "industry": industry, "plan": plan, "channel": channel}
        )
    return pd.DataFrame(rows)


def activation_of(analysis, arm):
    result = next(a for a in analysis.arms if a.name == arm)
    return result, next(k for k in result.kpis if k.kpi == "activation")


def test_counts_levels_and_the_adjusted_lift_match_an_independent_ols(runtime):
    start(runtime)
    truth = population(runtime, 240, np.random.default_rng(7))
    analysis = analyse(runtime, "analysis-test")
    for arm in ("control", "rules"):
        result, kpi = activation_of(analysis, arm)
        mine = truth[truth.arm == arm]
        assert result.users == len(mine) == kpi.units
        assert kpi.estimate == pytest.approx(mine.y.mean(), abs=1e-12)
        moments = analysis.moments["activation"][arm]
        assert moments["n"] == len(mine) and moments["total"] == mine.y.sum()
    # The lift is regression-adjusted on the signup covariates: OLS with common slopes gives the same difference.
    truth["treat"] = (truth.arm == "rules").astype(float)
    fit = smf.ols("y ~ treat + C(role) + C(industry) + C(plan) + C(channel)", data=truth).fit()
    control_mean = truth[truth.arm == "control"].y.mean()
    _, rules = activation_of(analysis, "rules")
    assert "regression-adjusted" in rules.method
    assert rules.lift == pytest.approx(fit.params["treat"] / control_mean, rel=1e-8)
    # A confidence sequence is wider than the fixed-horizon interval of the same estimate.
    half = stats.t.ppf(0.975, fit.df_resid) * fit.bse["treat"] / control_mean
    assert rules.lift_lower < rules.lift - half * 0.999 and rules.lift_upper > rules.lift + half * 0.999


def test_the_srm_check_expects_each_epochs_share_under_its_own_weights(runtime):
    rng = np.random.default_rng(3)
    start(runtime)
    first = population(runtime, 80, rng)
    registry.reweight(runtime, "analysis-test", [3, 1], by="test")
    second = population(runtime, 80, rng, offset=80)
    analysis = analyse(runtime, "analysis-test")
    assert analysis.expected == pytest.approx([80 * 0.5 + 80 * 0.75, 80 * 0.5 + 80 * 0.25])
    observed = [int((first.arm == a).sum() + (second.arm == a).sum()) for a in ("control", "rules")]
    assert [a.users for a in analysis.arms] == observed
    assert analysis.srm_p_value == pytest.approx(stats.chisquare(observed, analysis.expected).pvalue, rel=1e-12)
    assert not analysis.sample_ratio_mismatch


def test_every_shipped_kpi_is_reported_for_every_arm_and_the_snapshot_recomputes(runtime):
    start(runtime)
    population(runtime, 30, np.random.default_rng(1))
    analysis = analyse(runtime, "analysis-test")
    names = {k.kpi for a in analysis.arms for k in a.kpis}
    assert names == {"activation", "conversion", "retention_7d", "retention_30d", "time_to_first_value"}
    snapshot = analysis.snapshot()
    assert snapshot["method"]["alpha"] == 0.05 and snapshot["method"]["sequential"]["tuning"] == 5000
    from service.experiments.statistics import Moments, compare

    kept = snapshot["moments"]["activation"]
    again = compare(Moments.from_dict(kept["control"]), Moments.from_dict(kept["rules"]), adjust=False)
    assert again.control_mean == pytest.approx(activation_of(analysis, "control")[1].estimate)


def test_no_arm_is_judged_on_too_few_outcomes(runtime):
    """Eight activations against one, early on, is thin evidence: with one outcome an arm's variance is near 0, and the
    bare one-sided bound, overconfident, says harm; the analysis waits for ten outcomes in each arm."""
    from service.experiments.monitor import check

    start(runtime)
    arms = {}
    for i in range(160):
        users.register(runtime, users.Registration(id=f"u{i}", role="analyst", consents=["ANALYTICS"]))
        arms[f"u{i}"] = decide.next_steps(runtime, f"u{i}").variant
    activated = [u for u, a in arms.items() if a == "control"][:8] + [u for u, a in arms.items() if a == "rules"][:1]
    users.record_events(runtime, [users.EventReport(u, "ACTIVATED") for u in activated])
    analysis = analyse(runtime, "analysis-test")
    guard = next(g for g in analysis.guardrails if g.kpi == "activation")
    assert guard.state == "ok" and "not judged yet" in guard.method
    # Whether the bare one-sided bound would have said harm depends on how the random pseudonyms split the users
    # (it usually does, not always); the verdict must be "ok" either way.
    assert guard.bound is not None and guard.estimate < 0
    assert activation_of(analysis, "rules")[1].decision == "inconclusive"
    assert all(a.status == "active" for a in check(runtime)[0].arms)
