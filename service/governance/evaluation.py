"""Offline evaluation before exposure: a candidate policy version's step uptake, estimated from logged decisions.

A policy version that explores (``wf:explorationRate``) records, for each step it shows, the
probability that it showed that step at that rank (``wf:propensity``). Each shown (decision, step,
rank) is one row of a position-based slate log; its reward is whether the user completed that step
within the window after the decision (the service's record time, ``queries/offline/completions.sql``),
so the value of a policy is its uptake: the expected share of shown steps completed in the window.

For a candidate version, every logged decision is ranked again as the candidate would have ranked it
(with the catalog and policy versions the decision used, :class:`service.decisions.rederive.Replay`),
giving the candidate's own position-wise probability of each logged row; the estimators of
:mod:`service.governance.offline` (SNIPW and doubly robust, with cluster-robust intervals: rows of
one decision are correlated) turn those into the candidate's value, and the same is done for the
control (by default, the policies that logged the decisions, whose value is the plain mean). Only
decisions whose window has closed count, so that pending outcomes do not read as failures.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from service.analytics import feed
from service.analytics.log import epoch_s
from service.audit import sealed
from service.clock import now, parse_datetime
from service.decisions.ranking import propensity
from service.decisions.rederive import Recorded, Replay, read_record
from service.errors import InvalidInput, NotFound
from service.governance import offline
from service.knowledge import vocab
from service.knowledge.policies import PolicyVersion, read_policies
from service.knowledge.store import bound
from service.runtime import Runtime

MAX_DECISIONS = 100_000
DEFAULT_WINDOW = timedelta(days=7)


@dataclass(frozen=True)
class OfflineEvaluation:
    """A candidate's estimated uptake against control's, on the same logged decisions."""

    candidate: str
    control: str  # a policy version label, or "logged" for the policies that made the decisions
    decisions: int
    rows: int
    window_days: float
    candidate_snipw: offline.Estimate
    candidate_dr: offline.Estimate
    control_value: offline.Estimate
    # Candidate minus control, paired over decisions: by the doubly robust estimate (its interval is the narrower
    # where the reward model is any good, and it is what the experiment gate reads), and by SNIPW.
    difference: offline.Estimate
    difference_snipw: offline.Estimate

    def figures(self) -> dict:
        """The evaluation as plain figures, as its audit record keeps them."""

        def estimate(e: offline.Estimate) -> dict:
            return {
                "estimator": e.estimator,
                "value": e.value,
                "stderr": e.stderr,
                "low": e.low,
                "high": e.high,
                "level": e.level,
                "effective_sample_size": e.effective_sample_size,
            }

        return {
            "candidate": self.candidate,
            "control": self.control,
            "decisions": self.decisions,
            "rows": self.rows,
            "window_days": self.window_days,
            "snipw": estimate(self.candidate_snipw),
            "dr": estimate(self.candidate_dr),
            "control_value": estimate(self.control_value),
            "difference": estimate(self.difference),
            "difference_snipw": estimate(self.difference_snipw),
        }

    def not_worse(self, margin: float) -> bool:
        """Whether the lower bound of the difference is above ``-margin``."""
        return self.difference.low >= -margin


@dataclass
class _Log:
    clusters: list[int]
    actions: list[int]
    positions: list[int]
    rewards: list[float]
    p0: list[float]
    p1_candidate: list[float]
    p1_control: list[float]
    # per row: each candidate step's probability at the row's position under the candidate (for DR)
    target: list[dict[int, float]]


def evaluate(
    runtime: Runtime,
    candidate: str,
    *,
    control: str | None = None,
    window: timedelta = DEFAULT_WINDOW,
    max_decisions: int = 20_000,
    level: float = offline.DEFAULT_LEVEL,
) -> OfflineEvaluation:
    """Estimate a candidate policy version's uptake (and control's) from the logged exploring decisions."""
    if not 1 <= max_decisions <= MAX_DECISIONS:
        raise InvalidInput("maxDecisions", f"between 1 and {MAX_DECISIONS}, got {max_decisions}")
    if window <= timedelta(0):
        raise InvalidInput("windowDays", "a positive number of days")
    declared = {v.label: v for v in read_policies(runtime.store, runtime.queries).values()}
    target = _version(declared, candidate, "candidate")
    baseline = _version(declared, control, "control") if control is not None else None

    records = list(_logged(runtime, now() - window, max_decisions))
    if len(records) < 2:
        raise NotFound(
            f"{len(records)} logged decisions with propensities and a closed {window.days}-day window: serve a "
            "policy version with a wf:explorationRate first"
        )
    completions = _completions(runtime)
    replay = Replay(runtime)
    log = _Log([], [], [], [], [], [], [], [])
    steps: dict[str, int] = {}
    for cluster, recorded in enumerate(records):
        _add(log, cluster, recorded, replay, target, baseline, completions, window, steps)

    rewards = np.array(log.rewards)
    p0, p1 = np.array(log.p0), np.array(log.p1_candidate)
    clusters = np.array(log.clusters)
    snipw = offline.snipw(rewards, p0=p0, p1=p1, clusters=clusters, level=level)
    q = offline.fitted_rewards(
        np.array(log.actions),
        positions=np.array(log.positions),
        rewards=rewards,
        n_actions=len(steps),
        n_positions=max(log.positions) + 1,
        clusters=clusters,
    )
    rows_at = np.arange(len(rewards))
    q_logged = q[rows_at, np.array(log.actions)]
    q_target = np.array([sum(p * q[i, a] for a, p in row.items()) for i, row in enumerate(log.target)])
    dr = offline.dr(rewards, p0=p0, p1=p1, q_logged=q_logged, q_target=q_target, clusters=clusters, level=level)
    if baseline is None:
        control_value = offline.on_policy(rewards, clusters=clusters, level=level)
    else:
        control_value = offline.snipw(rewards, p0=p0, p1=np.array(log.p1_control), clusters=clusters, level=level)
    return OfflineEvaluation(
        candidate=target.label,
        control=baseline.label if baseline else "logged",
        decisions=len(records),
        rows=len(rewards),
        window_days=window.total_seconds() / 86400,
        candidate_snipw=snipw,
        candidate_dr=dr,
        control_value=control_value,
        difference=offline.difference(dr, control_value),
        difference_snipw=offline.difference(snipw, control_value),
    )


def _logged(runtime: Runtime, cutoff: datetime, most: int) -> Iterator[Recorded]:
    """The logged exploring decisions made before ``cutoff``, newest first, at most ``most``: those in the store,
    then those of the sealed segments, the newest segment first, each read in memory on its own."""
    query = runtime.queries["logged-decisions"]
    seen: set[str] = set()  # a decision an interrupted seal left in both
    sources = itertools.chain([runtime.store], sealed.stores(sealed.chosen(runtime.sealed)[::-1]))
    for source in sources:
        for row in source.select(query):
            decision_id = vocab.local_id(bound(row, "decision").value)
            if parse_datetime(bound(row, "at").value) > cutoff or decision_id in seen:
                continue
            seen.add(decision_id)
            yield read_record(runtime, decision_id, store=source)
            if len(seen) == most:
                return


def _version(declared: dict[str, PolicyVersion], label: str, field: str) -> PolicyVersion:
    if label not in declared:
        raise InvalidInput(field, f"no policy version {label!r}; known: {', '.join(sorted(declared))}")
    return declared[label]


def _add(
    log: _Log,
    cluster: int,
    recorded: Recorded,
    replay: Replay,
    target: PolicyVersion,
    baseline: PolicyVersion | None,
    completions: dict[tuple[str, str], list[float]],
    window: timedelta,
    steps: dict[str, int],
) -> None:
    """Add one logged decision's shown steps as rows: propensities, the candidate's probabilities, rewards."""
    _, ranked = replay.rank(recorded, target)
    ranked_control = replay.rank(recorded, baseline)[1] if baseline is not None else None
    at = epoch_s(parse_datetime(recorded.at), "at")
    end = at + window.total_seconds()
    candidates = [steps.setdefault(s, len(steps)) for s, _ in recorded.candidates]
    rate = target.exploration_rate
    for position, step in enumerate(recorded.shown):
        if step not in recorded.propensities:
            continue  # not an exploring decision: the query keeps only those, a record edited by hand aside
        times = completions.get((recorded.pseudonym, vocab.local_id(step)), [])
        i = bisect_left(times, at)
        log.clusters.append(cluster)
        log.actions.append(steps[step])
        log.positions.append(position)
        log.rewards.append(1.0 if i < len(times) and times[i] < end else 0.0)
        log.p0.append(recorded.propensities[step])
        log.p1_candidate.append(propensity(ranked, step, position, rate))
        if ranked_control is not None and baseline is not None:
            log.p1_control.append(propensity(ranked_control, step, position, baseline.exploration_rate))
        share = rate / len(ranked)
        row = {a: share for a in candidates}
        if position < len(ranked):
            top = steps[ranked[position].step]
            row[top] = row.get(top, 0.0) + 1.0 - rate
        log.target.append(row)


def _completions(runtime: Runtime) -> dict[tuple[str, str], list[float]]:
    """Every step completion in the analytics log: (pseudonym, step IRI) -> record times, sorted."""
    statement = (runtime.settings.queries_dir / "offline" / "completions.sql").read_text()
    found: dict[tuple[str, str], list[float]] = {}
    for subject, step, recorded_s in feed.log(runtime).query(statement):
        found.setdefault((subject, step), []).append(float(recorded_s))
    for times in found.values():
        times.sort()
    return found
