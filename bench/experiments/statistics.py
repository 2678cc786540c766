"""Operating characteristics of the experiment statistics under peeking, simulated on sufficient statistics.

A binary KPI (activation), two arms at 50/50, a check after every ``--batch`` users in total up to
``--max-users``; each experiment's arms are cumulative binomial counts, drawn for all experiments
at once (numpy), and evaluated with the array kernels of :mod:`service.experiments.statistics`
(``lift``, ``welch_df``, ``cs_halfwidth``), the code ``compare`` and ``guardrail`` run; a sample of
(experiment, check) pairs is recomputed through ``compare``/``guardrail`` themselves and must agree.

Scenarios (relative lift, alpha 0.05, N* = 5000):

- A/A at 30 %: the share of experiments that the two-sided sequential test ever calls
  significant (false positives when peeking at every check), with its Clopper–Pearson bound;
  the naive fixed-horizon Welch t test peeked at every check, and looked at once at the end, for
  contrast; and the share the one-sided guardrail (max_relative_drop 0) ever calls "harm".
- Harmful arm, 30 % -> 24 %: total users when the one-sided sequential guardrail first says
  "harm" (median and 90th percentile, nearest rank) and the share never stopped by the end;
  the two-sided sequential test's first "worse" for contrast.
- Better arm, 30 % -> 33 % (+10 % relative): the two-sided sequential test's power by the end
  (ever "better"), and the coverage of +0.10 by the final sequential and fixed-horizon intervals.

    .venv/bin/python -m bench.experiments.statistics --experiments 2000 --seed 0
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from bench import lib
from service.experiments.analysis import MIN_OUTCOMES
from service.experiments.statistics import (
    DEFAULT_SEQUENTIAL,
    Moments,
    Sequential,
    compare,
    cs_halfwidth,
    guardrail,
    lift,
    welch_df,
)

RESULTS = Path(__file__).resolve().parent / "results"
ALPHA = 0.05
TUNING = DEFAULT_SEQUENTIAL.tuning


@dataclass(frozen=True)
class Runs:
    """Cumulative counts per experiment (rows) and check (columns)."""

    n_c: np.ndarray
    s_c: np.ndarray
    n_t: np.ndarray
    s_t: np.ndarray

    @property
    def users(self) -> np.ndarray:
        return self.n_c + self.n_t


def simulate(
    rng: np.random.Generator, experiments: int, checks: int, batch: int, p_control: float, p_treatment: float
) -> Runs:
    """Draw each batch's split (50/50) and activations for every experiment at once, then accumulate."""
    to_t = rng.binomial(batch, 0.5, (experiments, checks))
    to_c = batch - to_t
    s_c = rng.binomial(to_c, p_control)
    s_t = rng.binomial(to_t, p_treatment)
    return Runs(
        n_c=np.cumsum(to_c, axis=1),
        s_c=np.cumsum(s_c, axis=1),
        n_t=np.cumsum(to_t, axis=1),
        s_t=np.cumsum(s_t, axis=1),
    )


def _variance(n: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Sample variance (ddof 1) of a 0/1 KPI with ``s`` ones of ``n``: what ``Moments.variance`` gives."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n >= 2, (s - s * s / n) / (n - 1), 0.0)


@dataclass(frozen=True)
class Evaluated:
    estimate: np.ndarray
    se: np.ndarray
    df: np.ndarray


def evaluate(runs: Runs) -> Evaluated:
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_c, mean_t = runs.s_c / runs.n_c, runs.s_t / runs.n_t
    var_c, var_t = _variance(runs.n_c, runs.s_c), _variance(runs.n_t, runs.s_t)
    estimate, variance = lift(mean_c, var_c, runs.n_c, mean_t, var_t, runs.n_t, relative=True)
    usable = (runs.n_c >= 2) & (runs.n_t >= 2) & np.isfinite(variance) & (variance > 0)
    estimate = np.where(usable, estimate, np.nan)  # compare() calls these inconclusive
    return Evaluated(
        estimate=estimate, se=np.sqrt(np.where(usable, variance, np.nan)), df=welch_df(var_c, runs.n_c, var_t, runs.n_t)
    )


def judged(runs: Runs) -> np.ndarray:
    """Where the service judges at all: both arms have MIN_OUTCOMES units with and without the outcome
    (``service.experiments.analysis.too_little``); decisions below count only there."""
    enough = MIN_OUTCOMES
    return (
        (runs.s_c >= enough) & (runs.n_c - runs.s_c >= enough) & (runs.s_t >= enough) & (runs.n_t - runs.s_t >= enough)
    )


def sequential_bounds(runs: Runs, ev: Evaluated, *, one_sided: bool) -> tuple[np.ndarray, np.ndarray]:
    half = cs_halfwidth(ev.se, runs.users, alpha=ALPHA, tuning=TUNING, one_sided=one_sided)
    return ev.estimate - half, ev.estimate + half


def fixed_bounds(ev: Evaluated) -> tuple[np.ndarray, np.ndarray]:
    half = stats.t.ppf(1 - ALPHA / 2, ev.df) * ev.se
    return ev.estimate - half, ev.estimate + half


def spot_check(rng: np.random.Generator, runs: Runs, ev: Evaluated, samples: int = 25) -> None:
    """Recompute sampled (experiment, check) pairs through the service functions: the kernels must agree."""
    lo2, hi2 = sequential_bounds(runs, ev, one_sided=False)
    _, hi1 = sequential_bounds(runs, ev, one_sided=True)
    flo, fhi = fixed_bounds(ev)
    rows = rng.integers(0, runs.n_c.shape[0], samples)
    cols = rng.integers(0, runs.n_c.shape[1], samples)
    for e, c in zip(rows.tolist(), cols.tolist(), strict=True):
        control = Moments.binary(int(runs.n_c[e, c]), int(runs.s_c[e, c]))
        treatment = Moments.binary(int(runs.n_t[e, c]), int(runs.s_t[e, c]))
        seq = compare(control, treatment, alpha=ALPHA, sequential=Sequential(TUNING))
        fixed = compare(control, treatment, alpha=ALPHA)
        verdict = guardrail(control, treatment, max_relative_drop=0.0, alpha=ALPHA)
        if seq.note is not None:
            assert math.isnan(ev.estimate[e, c]), (e, c)
            continue
        for ours, theirs in ((seq.lower, lo2), (seq.upper, hi2), (fixed.lower, flo), (fixed.upper, fhi)):
            assert math.isclose(ours, float(theirs[e, c]), rel_tol=1e-9, abs_tol=1e-12), (e, c, ours, theirs[e, c])
        assert math.isclose(verdict.bound, float(hi1[e, c]), rel_tol=1e-9, abs_tol=1e-12), (e, c)
        assert (verdict.state == "harm") == bool(hi1[e, c] < 0.0), (e, c)


def rate(hits: int, total: int) -> dict:
    low, high = proportion_confint(hits, total, alpha=0.05, method="beta")
    return {
        "count": hits,
        "of": total,
        "rate": round(hits / total, 4),
        "cp95": [round(float(low), 4), round(float(high), 4)],
    }


def first_stop(flags: np.ndarray, users: np.ndarray) -> np.ndarray:
    """Total users at the first check that flags, infinity where none does."""
    stopped = flags.any(axis=1)
    first = np.argmax(flags, axis=1)
    return np.where(stopped, users[np.arange(len(first)), first], np.inf)


def stopping(flags: np.ndarray, users: np.ndarray) -> dict:
    at = first_stop(flags, users).tolist()
    never = sum(1 for u in at if math.isinf(u))

    def label(q: float) -> int | str:
        v = lib.percentile(at, q)
        return f"> {int(users.max())}" if math.isinf(v) else int(v)

    return {
        "median_users": label(50),
        "p90_users": label(90),
        "never_stopped": rate(never, len(at)),
        "mean_users_of_stopped": round(float(np.mean([u for u in at if not math.isinf(u)])), 1)
        if never < len(at)
        else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=100, help="users in total between two checks")
    parser.add_argument("--max-users", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=RESULTS / "statistics.json")
    args = parser.parse_args()
    checks = args.max_users // args.batch
    started = time.perf_counter()
    E = args.experiments

    # A/A: 30 % in both arms.
    rng = np.random.default_rng([args.seed, 0])
    aa = simulate(rng, E, checks, args.batch, 0.30, 0.30)
    ev = evaluate(aa)
    spot_check(rng, aa, ev)
    lo, hi = sequential_bounds(aa, ev, one_sided=False)
    _, hi1 = sequential_bounds(aa, ev, one_sided=True)
    flo, fhi = fixed_bounds(ev)
    ok = judged(aa)
    seq_fp = (((lo > 0) | (hi < 0)) & ok).any(axis=1)
    naive_fp = ((flo > 0) | (fhi < 0)).any(axis=1)
    final_fp = (flo[:, -1] > 0) | (fhi[:, -1] < 0)
    false_harm = ((hi1 < 0.0) & ok).any(axis=1)
    null = {
        "sequential_two_sided_peeking": rate(int(seq_fp.sum()), E),
        "naive_fixed_horizon_peeking": rate(int(naive_fp.sum()), E),
        "fixed_horizon_final_look_only": rate(int(final_fp.sum()), E),
        "guardrail_false_harm_peeking": rate(int(false_harm.sum()), E),
    }

    # Harmful arm: 30 % -> 24 %.
    rng = np.random.default_rng([args.seed, 1])
    bad = simulate(rng, E, checks, args.batch, 0.30, 0.24)
    ev = evaluate(bad)
    spot_check(rng, bad, ev)
    _, hi1 = sequential_bounds(bad, ev, one_sided=True)
    _, hi2 = sequential_bounds(bad, ev, one_sided=False)
    ok = judged(bad)
    harm = {
        "guardrail_one_sided_sequential": stopping((hi1 < 0.0) & ok, bad.users),
        "two_sided_sequential_worse": stopping((hi2 < 0.0) & ok, bad.users),
    }

    # Better arm: 30 % -> 33 %, a relative lift of exactly +0.10.
    rng = np.random.default_rng([args.seed, 2])
    good = simulate(rng, E, checks, args.batch, 0.30, 0.33)
    ev = evaluate(good)
    spot_check(rng, good, ev)
    lo, hi = sequential_bounds(good, ev, one_sided=False)
    flo, fhi = fixed_bounds(ev)
    true_lift = 0.33 / 0.30 - 1
    ok = judged(good)
    better = {
        "true_relative_lift": round(true_lift, 6),
        "sequential_power_by_end": rate(int(((lo > 0) & ok).any(axis=1).sum()), E),
        "sequential_stops": stopping((lo > 0) & ok, good.users),
        "sequential_wrong_direction": rate(int(((hi < 0) & ok).any(axis=1).sum()), E),
        "sequential_final_interval_coverage": rate(int(((lo[:, -1] <= true_lift) & (true_lift <= hi[:, -1])).sum()), E),
        "fixed_horizon_power_at_end": rate(int((flo[:, -1] > 0).sum()), E),
        "fixed_horizon_final_interval_coverage": rate(
            int(((flo[:, -1] <= true_lift) & (true_lift <= fhi[:, -1])).sum()), E
        ),
    }
    seconds = time.perf_counter() - started

    harm_median = harm["guardrail_one_sided_sequential"]["median_users"]
    goals = {
        "sequential_fpr_cp95_upper_at_most_0.05": null["sequential_two_sided_peeking"]["cp95"][1] <= 0.05,
        "guardrail_false_harm_cp95_upper_at_most_0.05": null["guardrail_false_harm_peeking"]["cp95"][1] <= 0.05,
        "harm_median_users_at_most_2000": isinstance(harm_median, int) and harm_median <= 2000,
    }
    payload: dict[str, Any] = {
        "parameters": {
            "experiments": E,
            "seed": args.seed,
            "batch_users": args.batch,
            "max_users": args.max_users,
            "checks": checks,
            "alpha": ALPHA,
            "sequential_tuning": TUNING,
            "split": "50/50",
            "difference": "relative lift",
            "cp95": "two-sided 95 % Clopper-Pearson interval (statsmodels proportion_confint, method='beta')",
        },
        "no_effect_30_vs_30": null,
        "harmful_30_to_24": harm,
        "better_30_to_33": better,
        "goals_met": goals,
        "seconds": round(seconds, 2),
    }
    path = lib.write_result(args.out.resolve().parent, args.out.stem, payload)
    for section in ("no_effect_30_vs_30", "harmful_30_to_24", "better_30_to_33", "goals_met"):
        print(section)
        for key, value in payload[section].items():
            print(f"  {key}: {value}")
    print(f"{lib.duration_text(seconds)}; wrote {path}")


if __name__ == "__main__":
    main()
