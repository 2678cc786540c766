"""Analysis of an experiment: per-arm KPIs from the analytics log, lifts against control, SRM, guardrails.

Each KPI of ``queries/kpi/`` runs on the analytics log (:mod:`service.analytics.kpis`),
all of them in one statement that sums the exposed units per arm and signup-covariate cell,
and the cells make each arm's sufficient statistics
(:class:`~service.experiments.statistics.Moments`, with the covariate sums for regression
adjustment) exactly, without a row per unit leaving DuckDB. Then, per arm against the control (arm 0):

- the arm's own level with its interval (a share's normal interval);
- the relative lift with an asymptotic confidence sequence (valid however often one
  looks), regression-adjusted on role, industry, plan and signup channel when every arm
  has enough units; its always-valid p-value, Holm-adjusted across arms and KPIs that are
  not guardrails;
- for each guardrail, the one-sided sequential test of harm beyond its threshold.

Nothing is judged (decision "inconclusive", guardrail "ok") while an arm or the control has
fewer than ten units with the outcome, or without it, for a share KPI (thirty units for a KPI
in hours): the normal approximation does not hold there, and outcomes that arrive days late
make that the common case early on.

A holdout, when the experiment has one, is reported as one more group (``holdout``)
with its lift against the control, neither guarded nor counted among the tests.

The sample-ratio check compares the arms' exposures with what the weights expected,
epoch by epoch: a reweighting changes the expected shares only for users first exposed
after it (they are read from the experiment's change records).

An :class:`Analysis` keeps everything it was computed from (moments, method, parameters,
time), as the snapshot the monitor stores before it acts on it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import pyoxigraph as ox

from service.analytics import feed
from service.analytics.kpis import arm_counts, cells, read_kpis
from service.analytics.log import AnalyticsReader
from service.clock import now, parse_datetime
from service.experiments import statistics as st
from service.experiments.registry import HOLDOUT, Experiment, require
from service.knowledge.store import bound
from service.runtime import Runtime

ALPHA = 0.05
TUNING = st.DEFAULT_TUNING  # the expected sample size N* the confidence sequences are tuned for
CORRECTION: Literal["holm", "bh"] = "holm"
# Before this many units with the outcome and this many without, in control and in the arm, a share KPI's normal
# approximation (the np >= 10 rule of thumb) does not hold: an arm with no outcome yet has a variance of 0, and a
# one-sided bound would call 3 activations against 0 "harm". Early on, with outcomes that arrive days late, that
# is the common case. A KPI in hours needs this many units per arm instead.
MIN_OUTCOMES = 10
MIN_UNITS = 30


@dataclass(frozen=True)
class KpiResult:
    kpi: str
    units: int  # units that count for the KPI (a time to first value counts only those who reached it)
    estimate: float
    lower: float
    upper: float
    lift: float | None = None  # relative, against control; None for the control
    lift_lower: float | None = None
    lift_upper: float | None = None
    p_value: float | None = None  # always valid, adjusted for multiple testing (None for guardrail-only KPIs)
    decision: str | None = None  # better | worse | inconclusive
    method: str = ""


@dataclass(frozen=True)
class GuardrailResult:
    arm: str
    kpi: str
    state: str  # ok | harm
    estimate: float
    bound: float
    threshold: float
    method: str


@dataclass(frozen=True)
class ArmResult:
    name: str
    users: int
    kpis: list[KpiResult]


@dataclass
class Analysis:
    experiment: Experiment
    at: datetime
    arms: list[ArmResult]
    srm_p_value: float | None
    guardrails: list[GuardrailResult]
    moments: dict[str, dict[str, dict]] = field(default_factory=dict)  # kpi -> arm -> Moments.to_dict()
    expected: list[float] = field(default_factory=list)  # expected exposures per arm, from the weight epochs

    @property
    def sample_ratio_mismatch(self) -> bool:
        return self.srm_p_value is not None and self.srm_p_value < st.SRM_THRESHOLD

    def harmed(self) -> list[GuardrailResult]:
        return [g for g in self.guardrails if g.state == "harm"]

    def snapshot(self) -> dict:
        """Everything the analysis was computed from and what it found, as plain JSON-ready data (a number that is
        not finite, as an interval with too few users, is None)."""
        return finite(
            {
                "experiment": self.experiment.id,
                "at": self.at.isoformat(),
                "method": {
                    "alpha": ALPHA,
                    "sequential": {"method": "asymptotic confidence sequence", "tuning": TUNING},
                    "adjustment": "regression on signup covariates (pooled theta) when every arm has enough units",
                    "correction": CORRECTION,
                    "srm": "chi-square against the weights of each epoch",
                },
                "arms": [{"name": a.name, "weight": a.weight, "status": a.status} for a in self.experiment.arms],
                "moments": self.moments,
                "expected_exposures": self.expected,
                "srm_p_value": self.srm_p_value,
                "results": [{"arm": a.name, "users": a.users, "kpis": [k.__dict__ for k in a.kpis]} for a in self.arms],
                "guardrails": [g.__dict__ for g in self.guardrails],
            }
        )


def finite(value: Any) -> Any:
    """The value with every number that is not finite made None, in nested dicts and lists (JSON and GraphQL have none)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def analyse(
    runtime: Runtime, experiment_id: str, *, at: datetime | None = None, elog: AnalyticsReader | None = None
) -> Analysis:
    """Analyse the experiment on what the analytics log holds now (or as of ``at``).

    ``elog`` reads another copy of the log instead of the service's own: an export of it on Spark
    (:class:`service.analytics.spark.SparkLog`) or on DuckDB (:func:`service.analytics.log.open_parquet`). The
    catalog's value moments are copied into whichever log is read.
    """
    experiment = require(runtime, experiment_id)
    at = at or now()
    elog = feed.for_analysis(runtime) if elog is None else elog
    feed.refresh_value_features(runtime, elog)
    kpis = read_kpis(runtime.settings.queries_dir / "kpi")
    names = [a.name for a in experiment.arms] + ([HOLDOUT] if experiment.holdout > 0 else [])
    arm_count = len(experiment.arms)  # the holdout, when there is one, comes after the arms
    guarded = {g.kpi: g for g in experiment.guardrails}
    moments: dict[str, dict[str, st.Moments]] = {}
    counts = arm_counts(elog, experiment.id, now=at)
    exposed = [counts.get(arm, 0) for arm in names]
    for name, summed in sorted(cells(elog, list(kpis.values()), experiment.id, now=at, arms=names).items()):
        moments[name] = {}
        for i, arm in enumerate(names):
            own = summed.of_arm(i)
            moments[name][arm] = st.Moments.from_cells(own.n, own.total, own.total_sq, own.covariates)
    results: dict[str, list[KpiResult]] = {arm: [] for arm in names}
    tests: list[tuple[str, int]] = []  # (arm, index in its list) of each goal comparison, for the correction
    p_values: list[float] = []
    guardrails: list[GuardrailResult] = []
    for name, per_arm in moments.items():
        kpi = kpis[name]
        control = per_arm[names[0]]
        adjust = _can_adjust(per_arm.values())
        for i, arm in enumerate(names):
            m = per_arm[arm]
            estimate, lower, upper = st.arm_interval(m, ALPHA)
            if i == 0:
                results[arm].append(KpiResult(name, m.n, estimate, lower, upper, method=st.ARM_INTERVAL_METHOD))
                continue
            c = st.compare(control, m, alpha=ALPHA, relative=True, adjust=adjust, sequential=st.Sequential(TUNING))
            thin = too_little(kpi.unit, control, m)
            results[arm].append(
                KpiResult(
                    name,
                    m.n,
                    estimate,
                    lower,
                    upper,
                    lift=c.estimate,
                    lift_lower=c.lower,
                    lift_upper=c.upper,
                    p_value=c.always_valid_p_value,
                    decision="inconclusive" if thin else c.decision(higher_is_better=kpi.higher_is_better),
                    method=c.method + (f"; not judged yet: {thin}" if thin else ""),
                )
            )
            if i >= arm_count:
                continue  # the holdout: compared, but neither guarded nor counted among the tests
            if name not in guarded and c.always_valid_p_value is not None:
                tests.append((arm, len(results[arm]) - 1))
                p_values.append(c.always_valid_p_value)
            if name in guarded:
                verdict = st.guardrail(
                    control,
                    m,
                    max_relative_drop=guarded[name].max_relative_drop,
                    alpha=ALPHA,
                    sequential=st.Sequential(TUNING),
                    higher_is_better=kpi.higher_is_better,
                    adjust=adjust,
                )
                guardrails.append(
                    GuardrailResult(
                        arm,
                        name,
                        "ok" if thin else verdict.state,
                        verdict.estimate,
                        verdict.bound,
                        verdict.threshold,
                        verdict.method + (f"; not judged yet: {thin}" if thin else ""),
                    )
                )
    if p_values:
        for (arm, index), adjusted in zip(tests, st.adjust_p_values(p_values, CORRECTION), strict=True):
            old = results[arm][index]
            results[arm][index] = KpiResult(**{**old.__dict__, "p_value": adjusted})
    expected = expected_exposures(runtime, experiment, elog, at)
    in_arms = exposed[:arm_count]  # the holdout's share depends on the coverage, the arms' shares do not
    srm_p = st.srm(in_arms, expected) if sum(in_arms) and sum(expected) > 0 else None
    return Analysis(
        experiment=experiment,
        at=at,
        arms=[ArmResult(arm, exposed[i], results[arm]) for i, arm in enumerate(names)],
        srm_p_value=srm_p,
        guardrails=guardrails,
        moments={k: {arm: m.to_dict() for arm, m in per_arm.items()} for k, per_arm in moments.items()},
        expected=expected,
    )


def too_little(unit: str, control: st.Moments, arm: st.Moments) -> str | None:
    """Why the evidence is too thin to judge an arm against control yet, or None when it is not."""
    if unit == "share":
        for name, m in (("control", control), ("the arm", arm)):
            if m.total < MIN_OUTCOMES or m.n - m.total < MIN_OUTCOMES:
                return f"{name} has {m.total:g} of {m.n} units with the outcome; both counts must reach {MIN_OUTCOMES}"
        return None
    if min(control.n, arm.n) < MIN_UNITS:
        return f"{min(control.n, arm.n)} units in an arm; {MIN_UNITS} needed"
    return None


def _can_adjust(arms: Iterable[st.Moments]) -> bool:
    """Regression adjustment needs covariates and more units per arm than covariates."""
    return all(m.k > 0 and m.n > 2 * m.k + 10 for m in arms)


def expected_exposures(runtime: Runtime, experiment: Experiment, elog: AnalyticsReader, at: datetime) -> list[float]:
    """The exposures each arm should have by ``at``: per weight epoch, its exposures shared by its weights."""
    epochs = weight_epochs(runtime, experiment)
    expected = [0.0] * len(experiment.arms)
    for i, (start, weights) in enumerate(epochs):
        end = epochs[i + 1][0] if i + 1 < len(epochs) else None
        query = "SELECT count(*) FROM exposures WHERE experiment = ? AND arm <> ? AND exposed_s >= ? AND exposed_s <= ?"
        params: list[object] = [experiment.id, HOLDOUT, start.timestamp() if start else float("-inf"), at.timestamp()]
        if end is not None:
            query += " AND exposed_s < ?"
            params.append(end.timestamp())
        count = elog.query(query, params)[0][0]
        for j, w in enumerate(weights):
            expected[j] += count * w
    return expected


def weight_epochs(runtime: Runtime, experiment: Experiment) -> list[tuple[datetime | None, list[float]]]:
    """The arms' weights over time, from the experiment's change records: (from when, weights), oldest first."""
    rows = runtime.store.select(runtime.queries["experiment-changes"].bind(experiment=ox.NamedNode(experiment.iri)))
    epochs: list[tuple[datetime | None, list[float]]] = []
    for row in rows:
        state = json.loads(bound(row, "state").value)
        weights = [float(a["weight"]) for a in state["arms"]]
        if not epochs or epochs[-1][1] != weights:
            epochs.append((parse_datetime(bound(row, "at").value), weights))
    if not epochs:
        return [(None, [a.weight for a in experiment.arms])]
    epochs[0] = (None, epochs[0][1])
    return epochs
