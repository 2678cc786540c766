"""Off-policy evaluation of ranking policies: what a candidate policy would have earned, estimated from another's log.

The setting is the item-position click model of ranked slates (Li, Abbasi-Yadkori, Kveton,
Muthukrishnan, Vinay, Wen 2018, "Offline evaluation of ranking policies with click models", KDD),
in the form the Open Bandit Pipeline gives it for the Open Bandit Dataset (Saito, Aihara,
Matsutani, Narita 2021, "Open Bandit Dataset and Pipeline", NeurIPS Datasets and Benchmarks): a
decision shows a ranked slate, each shown (step, position) is one row with its own reward, a
row's expected reward depends on its context, step and position but not on the rest of the
slate, and a policy's value is the expected reward per row. Each row carries ``p0``, the probability that the logging policy put this step
at this position in this context, and ``p1``, the same probability under the target policy;
``w = p1 / p0`` is its importance weight. Positions are 0-based indices (position 1 is 0).

Estimators, each with its source:

- :func:`ipw`: inverse propensity weighting, the Horvitz and Thompson 1952 estimator ("A
  generalization of sampling without replacement from a finite universe", JASA 47):
  ``mean(w * r)``, unbiased whenever ``p0 > 0`` wherever ``p1 > 0``.
- :func:`snipw`: the self-normalised estimator, ``sum(w * r) / sum(w)``, which Swaminathan and
  Joachims 2015 ("The self-normalized estimator for counterfactual learning", NeurIPS) brought
  to counterfactual learning: slightly biased, but it stays within the rewards' range and its
  variance is lower when weights are large.
- :func:`dr`: doubly robust, ``mean(q_target + w * (r - q_logged))``, after Dudík, Langford and
  Li 2011 ("Doubly robust policy evaluation and learning", ICML): a reward model's prediction
  for the target policy, corrected by the weighted residual of the logged row; unbiased if
  either the propensities or the model are right. :func:`fitted_rewards` gives a simple,
  cross-fitted model.

Intervals are normal (central limit) intervals. Rows of one decision are correlated, so each row
names its ``cluster`` (the decision) and the variance is the cluster-robust one (Liang and Zeger
1986, "Longitudinal data analysis using generalized linear models", Biometrika 73): the sum over clusters of the squared per-cluster sums of the influence terms, with the
``G / (G - 1)`` small-sample factor, over ``rows^2``. The self-normalised estimator is a ratio, so
its influence term is its delta-method linearisation ``w * (r - V) / mean(w)``. An
:class:`Estimate` keeps its per-cluster influence sums, so :func:`difference` compares two
policies on the same log with the paired variance, and :func:`not_worse` reads a
non-inferiority verdict from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from service.errors import InvalidInput

Floats = npt.NDArray[np.float64]
DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """A policy value (or a difference of two) with its normal interval, and the log it came from."""

    estimator: str
    value: float
    stderr: float
    low: float
    high: float
    level: float
    rows: int
    clusters: int
    effective_sample_size: float  # (sum w)^2 / sum(w^2): how many on-policy rows the log is worth
    # Sorted cluster ids and, aligned with them, the sums of the rows' influence terms: what a
    # paired comparison on the same log needs.
    cluster_ids: np.ndarray = field(repr=False, compare=False)
    influence: Floats = field(repr=False, compare=False)


def on_policy(
    rewards: npt.ArrayLike, *, clusters: npt.ArrayLike | None = None, level: float = DEFAULT_LEVEL
) -> Estimate:
    """Return the logging policy's own value: the mean reward per row (every weight 1)."""
    r = _rewards(rewards)
    return _estimate("on-policy", r, np.ones_like(r), clusters, level)


def ipw(
    rewards: npt.ArrayLike,
    *,
    p0: npt.ArrayLike,
    p1: npt.ArrayLike,
    clusters: npt.ArrayLike | None = None,
    level: float = DEFAULT_LEVEL,
) -> Estimate:
    """Return the inverse-propensity-weighted (Horvitz–Thompson) value ``mean(w * r)``."""
    r = _rewards(rewards)
    w = _weights(p0, p1, len(r))
    return _estimate("ipw", w * r, w, clusters, level)


def snipw(
    rewards: npt.ArrayLike,
    *,
    p0: npt.ArrayLike,
    p1: npt.ArrayLike,
    clusters: npt.ArrayLike | None = None,
    level: float = DEFAULT_LEVEL,
) -> Estimate:
    """Return the self-normalised weighted value ``sum(w * r) / sum(w)`` (Swaminathan and Joachims 2015)."""
    r = _rewards(rewards)
    w = _weights(p0, p1, len(r))
    total = float(w.sum())
    if total == 0.0:
        raise InvalidInput("p1", "is 0 on every logged row: the log says nothing about this policy")
    value = float(w @ r) / total
    # Delta method for the ratio: the rows' terms w (r - V) / mean(w) average to 0 and carry its variance.
    terms = w * (r - value) / (total / len(r))
    return _estimate("snipw", terms + value, w, clusters, level)


def dr(
    rewards: npt.ArrayLike,
    *,
    p0: npt.ArrayLike,
    p1: npt.ArrayLike,
    q_logged: npt.ArrayLike,
    q_target: npt.ArrayLike,
    clusters: npt.ArrayLike | None = None,
    level: float = DEFAULT_LEVEL,
) -> Estimate:
    """Return the doubly robust value ``mean(q_target + w * (r - q_logged))`` (Dudík, Langford and Li 2011).

    ``q_logged[i]`` is the reward model's prediction for row i's logged step at its position;
    ``q_target[i]`` is the model's expected reward at that position under the target policy,
    ``sum_a p1(a | context, position) * q(context, a, position)``.
    """
    r = _rewards(rewards)
    w = _weights(p0, p1, len(r))
    logged = _finite_array(q_logged, "q_logged", len(r))
    target = _finite_array(q_target, "q_target", len(r))
    return _estimate("dr", target + w * (r - logged), w, clusters, level)


def difference(candidate: Estimate, control: Estimate) -> Estimate:
    """Return candidate minus control on the same log, its interval from the paired per-cluster influence terms."""
    if candidate.rows != control.rows or not np.array_equal(candidate.cluster_ids, control.cluster_ids):
        raise InvalidInput("control", "must be estimated on the same log (rows and clusters) as the candidate")
    if candidate.level != control.level:
        raise InvalidInput("control", f"has level {control.level}, the candidate {candidate.level}")
    value = candidate.value - control.value
    influence = candidate.influence - control.influence
    influence.setflags(write=False)
    stderr = _stderr(influence, candidate.rows)
    low, high = _interval(value, stderr, candidate.level)
    return Estimate(
        estimator=f"{candidate.estimator} - {control.estimator}",
        value=value,
        stderr=stderr,
        low=low,
        high=high,
        level=candidate.level,
        rows=candidate.rows,
        clusters=candidate.clusters,
        effective_sample_size=min(candidate.effective_sample_size, control.effective_sample_size),
        cluster_ids=candidate.cluster_ids,
        influence=influence,
    )


def not_worse(candidate: Estimate, control: Estimate, *, margin: float) -> bool:
    """Return whether the lower bound of candidate minus control is at least ``-margin`` (non-inferiority).

    The bound is the two-sided interval's at the estimates' level, so a 0.95 level is a one-sided
    test at 0.025.
    """
    if not isinstance(margin, int | float) or not math.isfinite(margin) or margin < 0:
        raise InvalidInput("margin", f"must be a finite number at least 0, got {margin!r}")
    return difference(candidate, control).low >= -margin


def fitted_rewards(
    actions: npt.ArrayLike,
    *,
    positions: npt.ArrayLike,
    rewards: npt.ArrayLike,
    n_actions: int,
    n_positions: int,
    clusters: npt.ArrayLike | None = None,
    folds: int = 2,
    prior_rows: float = 1.0,
    seed: int = 0,
) -> Floats:
    """Return ``q[i, a]``: action a's mean reward at row i's position, fitted on the folds without row i's cluster.

    A table of mean rewards per (action, position), cross-fitted (Chernozhukov et al. 2018,
    "Double/debiased machine learning", Econometrics Journal) over folds of whole clusters, so no
    row's prediction has seen that row or its decision. Each cell is shrunk towards its position's
    mean by ``prior_rows`` pseudo-rows, so a cell the training folds never showed predicts the
    position's mean. ``folds=1`` fits on every row.
    """
    r = _rewards(rewards)
    a = _indices(actions, "actions", n_actions, len(r))
    k = _indices(positions, "positions", n_positions, len(r))
    ids, inverse = _clusters(clusters, len(r))
    groups = len(ids)
    if not isinstance(folds, int) or not 1 <= folds <= groups:
        raise InvalidInput("folds", f"must be a whole number from 1 to the {groups} clusters, got {folds!r}")
    if not isinstance(prior_rows, int | float) or not math.isfinite(prior_rows) or prior_rows < 0:
        raise InvalidInput("prior_rows", f"must be a finite number at least 0, got {prior_rows!r}")
    fold_of_cluster = np.empty(groups, dtype=np.int64)
    fold_of_cluster[np.random.default_rng(seed).permutation(groups)] = np.arange(groups) % folds
    fold = fold_of_cluster[inverse]
    cells = n_actions * n_positions
    index = fold * cells + a * n_positions + k
    sums = np.bincount(index, weights=r, minlength=folds * cells).reshape(folds, n_actions, n_positions)
    counts = np.bincount(index, minlength=folds * cells).reshape(folds, n_actions, n_positions).astype(np.float64)
    if folds > 1:  # each fold's table is fitted on the others
        sums, counts = sums.sum(axis=0) - sums, counts.sum(axis=0) - counts
    shown = counts.sum(axis=1)
    overall = sums.sum(axis=(1, 2)) / np.maximum(counts.sum(axis=(1, 2)), 1.0)
    prior = np.where(shown > 0, sums.sum(axis=1) / np.maximum(shown, 1.0), overall[:, None])
    weight = counts + prior_rows
    # A cell with no training rows and no pseudo-rows (prior_rows=0) predicts its position's mean.
    table = np.broadcast_to(prior[:, None, :], sums.shape).copy()
    np.divide(sums + prior_rows * prior[:, None, :], weight, out=table, where=weight > 0)
    return np.asarray(table[fold, :, k], dtype=np.float64)


def _estimate(name: str, terms: Floats, w: Floats, clusters: npt.ArrayLike | None, level: float) -> Estimate:
    """Return the estimate whose value is the mean of the rows' terms, with the cluster-robust interval."""
    _check_level(level)
    ids, inverse = _clusters(clusters, len(terms))
    if len(ids) < 2:
        raise InvalidInput("clusters", f"must number at least 2 for a variance, got {len(ids)}")
    value = float(terms.mean())
    influence = np.asarray(np.bincount(inverse, weights=terms - value, minlength=len(ids)), dtype=np.float64)
    stderr = _stderr(influence, len(terms))
    low, high = _interval(value, stderr, level)
    squares = float(w @ w)
    ids.setflags(write=False)
    influence.setflags(write=False)
    return Estimate(
        estimator=name,
        value=value,
        stderr=stderr,
        low=low,
        high=high,
        level=level,
        rows=len(terms),
        clusters=len(ids),
        effective_sample_size=float(w.sum()) ** 2 / squares if squares > 0 else 0.0,
        cluster_ids=ids,
        influence=influence,
    )


def _stderr(influence: Floats, rows: int) -> float:
    """Return the cluster-robust standard error from per-cluster sums of influence terms."""
    groups = len(influence)
    return math.sqrt(groups / (groups - 1) * float(influence @ influence)) / rows


def _interval(value: float, stderr: float, level: float) -> tuple[float, float]:
    """Return the normal interval's bounds at a two-sided level."""
    z = NormalDist().inv_cdf(0.5 + level / 2)
    return value - z * stderr, value + z * stderr


def _check_level(level: float) -> None:
    if not isinstance(level, int | float) or not 0 < level < 1:
        raise InvalidInput("level", f"must lie strictly between 0 and 1, got {level!r}")


def _clusters(clusters: npt.ArrayLike | None, rows: int) -> tuple[np.ndarray, npt.NDArray[np.intp]]:
    """Return the sorted cluster ids and each row's index among them (each row its own cluster by default)."""
    if clusters is None:
        ids = np.arange(rows)
        inverse = ids.astype(np.intp)
    else:
        keys = _vector(clusters, "clusters", rows)
        ids, inverse = np.unique(keys, return_inverse=True)
    return ids, inverse.reshape(-1)


def _rewards(rewards: npt.ArrayLike) -> Floats:
    r = _finite_array(rewards, "rewards", None)
    if len(r) == 0:
        raise InvalidInput("rewards", "is empty: there is no logged row to estimate from")
    return r


def _weights(p0: npt.ArrayLike, p1: npt.ArrayLike, rows: int) -> Floats:
    """Return the importance weights ``p1 / p0`` once both are checked to be probabilities."""
    logging = _finite_array(p0, "p0", rows)
    target = _finite_array(p1, "p1", rows)
    if np.any((logging <= 0) | (logging > 1)):
        raise InvalidInput("p0", f"must lie in (0, 1], got {logging[(logging <= 0) | (logging > 1)][0]!r}")
    if np.any((target < 0) | (target > 1)):
        raise InvalidInput("p1", f"must lie in [0, 1], got {target[(target < 0) | (target > 1)][0]!r}")
    return target / logging


def _finite_array(values: npt.ArrayLike, name: str, rows: int | None) -> Floats:
    """Return the values as a 1-D float array of ``rows`` finite numbers."""
    array = _vector(values, name, rows)
    try:
        numbers = array.astype(np.float64)
    except (TypeError, ValueError):
        raise InvalidInput(name, "must hold numbers") from None
    if not np.all(np.isfinite(numbers)):
        raise InvalidInput(name, f"must be finite, got {numbers[~np.isfinite(numbers)][0]!r}")
    return numbers


def _indices(values: npt.ArrayLike, name: str, size: int, rows: int) -> npt.NDArray[np.int64]:
    """Return the values as whole numbers from 0 to ``size - 1``."""
    if not isinstance(size, int) or size < 1:
        raise InvalidInput(f"n_{name}", f"must be a whole number at least 1, got {size!r}")
    array = _finite_array(values, name, rows)
    if np.any((array != np.round(array)) | (array < 0) | (array >= size)):
        raise InvalidInput(name, f"must be whole numbers from 0 to {size - 1}")
    return array.astype(np.int64)


def _vector(values: npt.ArrayLike, name: str, rows: int | None) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise InvalidInput(name, f"must be one value per row (1-D), got shape {array.shape}")
    if rows is not None and len(array) != rows:
        raise InvalidInput(name, f"has {len(array)} values for {rows} rows")
    return array
