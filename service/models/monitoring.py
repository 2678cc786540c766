"""Model health of a version, as data: drift of its inputs and scores since training, calibration once outcomes
arrive, judged against the governance limits; recorded as chained reports, shown on /metrics, gating promotion.

The reference is the version's training profile (``service.models.profiles``); a version registered without
one is not assessed, and its report says so. The current sample is the latest ``WAYFINDER_HEALTH_WINDOW``
personalised decisions (``service.models.traffic``):

- **served**, for a version that scored decisions: those it scored, their inputs as recorded and every
  candidate's recorded model score;
- **offline**, for a version that has served nothing yet (a candidate at promotion), or when asked: the latest
  personalised decisions whoever ranked them, their recorded contexts and candidates scored now by the version's
  scorer (nothing is recorded of that scoring). Its input drift is then its training inputs against today's
  traffic, its score drift its training scores against what it would score today.

The inputs are what the model reads: ``role``, ``industry`` and ``plan`` (categorical), and the number of distinct
features used (numeric). Drift is the population stability index (``service.models.health``)
per input and of the score. Calibration, of served decisions only: the model score of the step shown first
against whether the user activated afterwards (``traffic.activated_after``: the analytics log, within the
activation KPI's window, users with ANALYTICS consent only), by decile of the score; it is computed once at
least one of those decisions was followed by an activation.

Limits are the governance policy's (``service.governance.gates``): a PSI over ``wf:maxPopulationShift`` and an
expected calibration error over ``wf:maxCalibrationError`` are breaches; a PSI from 0.1 (the conventional
"moderate" band, or the limit where that is lower) up to the limit is a warning. A limit the policy leaves out
is not checked. Fewer than the governance policy's ``wf:minHealthDecisions`` decisions are not judged: the figures are kept, no alert is raised,
since a PSI over a few dozen units is mostly noise. A promotion is refused on a PSI breach (:func:`check_promotion`).
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pyoxigraph as ox

from service.clock import datetime_literal, now
from service.decisions.ranking import Context
from service.errors import Conflict, NotFound
from service.governance.gates import Gates, gates
from service.knowledge import vocab
from service.metrics import MODEL_CALIBRATION_ERROR, MODEL_HEALTH_BREACHES, MODEL_PSI
from service.models.health import Alert, Calibration, Health, Sample, Shift, Thresholds, assess, calibration
from service.models.profiles import CATEGORICAL, profile_of
from service.models.records import ModelVersion, Status, active, find
from service.models.traffic import Decision, activated_after, latest
from service.runtime import Runtime

if TYPE_CHECKING:  # torch: imported when a version is scored offline, not with the API
    from service.models.serving import Scorer

BINS = 10
MODERATE_PSI = 0.1
SERVED, OFFLINE = "served", "offline"
PROMOTION, MONITORING = "promotion", "monitoring"
HEALTHY, WARNING, BREACH, NOT_ASSESSED = "healthy", "warning", "breach", "not assessed"
log = logging.getLogger("wayfinder.models")


@dataclass(frozen=True)
class ModelHealth:
    """A version's health now: the figures (None when it could not be assessed), the sample and the limits."""

    version: str
    model: str  # the version's IRI
    status: Status
    at: datetime
    limits: Gates
    source: str | None = None  # served or offline; None when not assessed
    decisions: int = 0  # decisions whose inputs the sample holds
    left_out: int = 0  # decisions of the window whose inputs are gone (an event erased or purged since)
    scores: int = 0  # scores in the current sample
    calibration_units: int = 0  # decisions with a top score and an outcome (ANALYTICS consent)
    health: Health | None = None
    notes: tuple[str, ...] = ()

    @property
    def alerts(self) -> list[Alert]:
        """Every figure past a threshold: the warnings and the breaches."""
        if self.health is None or self.decisions < self.limits.min_health_decisions:
            return []
        return self.health.alerts(thresholds(self.limits))

    @property
    def breaches(self) -> list[Alert]:
        """The figures past a governance limit."""
        return [a for a in self.alerts if a.verdict in ("major shift", "above the maximum")]

    @property
    def verdict(self) -> str:
        if self.health is None or self.decisions < self.limits.min_health_decisions:
            return NOT_ASSESSED
        return BREACH if self.breaches else WARNING if self.alerts else HEALTHY

    def figures(self) -> dict:
        """The report's figures as plain JSON data."""
        h = self.health
        return {
            "version": self.version,
            "source": self.source,
            "decisions": self.decisions,
            "left_out": self.left_out,
            "scores": self.scores,
            "calibration_units": self.calibration_units,
            "bins": BINS,
            "features": [_shift(s) for s in h.features] if h else [],
            "score": _shift(h.score) if h else None,
            "calibration": _calibration(h.calibration) if h and h.calibration else None,
            "limits": {
                "policy": self.limits.policy,
                "max_population_shift": self.limits.max_population_shift,
                "max_calibration_error": self.limits.max_calibration_error,
            },
            "notes": list(self.notes),
        }


def thresholds(limits: Gates) -> Thresholds:
    """The alert thresholds of the governance limits; a limit left out is never reached."""
    shift = limits.max_population_shift
    return Thresholds(
        moderate_psi=min(MODERATE_PSI, shift) if shift is not None else math.inf,
        major_psi=shift if shift is not None else math.inf,
        max_ece=limits.max_calibration_error,
    )


def model_health(runtime: Runtime, version: str | None = None, *, offline: bool | None = None) -> ModelHealth:
    """Return the health of a version (default: the active one) and set its gauges on /metrics.

    ``offline``: score the latest traffic with the version instead of reading the decisions it served; by
    default only when it has served none.
    """
    target = _version(runtime, version)
    window = runtime.settings.health_window
    report = ModelHealth(target.version, target.iri, target.status, now(), gates(runtime))
    profile = profile_of(runtime, target)
    if profile is None:
        note = "it was registered without a training profile (trained before model health): retrain to monitor it"
        return replace(report, notes=(note,))
    served = [] if offline else latest(runtime, window=window, model=target.iri)
    source = SERVED if served else OFFLINE
    decisions = served or latest(runtime, window=window)
    read = [d for d in decisions if not d.events_gone]
    notes: list[str] = []
    if source == SERVED:
        scores = [s for d in decisions for s, _ in d.candidates.values() if s is not None]
    else:
        scores = _score_offline(runtime, target, read) if read else []
        if read:
            notes.append(f"scored offline: the latest {len(read)} personalised decisions, scored by it now")
    report = replace(report, decisions=len(read), left_out=len(decisions) - len(read), scores=len(scores))
    if not read or not scores or not profile.scores:
        why = "no personalised decision to compare with" if not read else "no score to compare with"
        return replace(report, notes=(*notes, why))
    health = assess(profile.reference(), _current(read, scores), bins=BINS)
    if source == SERVED:
        fit, units, missing = _calibration_of(runtime, decisions)
        health = replace(health, calibration=fit)
        report = replace(report, calibration_units=units)
        if missing:
            notes.append(missing)
    least = report.limits.min_health_decisions
    if len(read) < least:
        notes.append(f"not judged: {len(read)} decisions, fewer than the {least} a PSI needs to mean much")
    report = replace(report, source=source, health=health, notes=tuple(notes))
    _set_gauges(report)
    return report


def record_health(
    runtime: Runtime, report: ModelHealth, *, occasion: str = MONITORING, requested_by: str | None = None
) -> str:
    """Append the report as a chained ``wf:HealthReport`` derived from its version; return its IRI."""
    node = ox.NamedNode(vocab.HEALTH_REPORT_BASE + str(uuid.uuid4()))
    T, L = ox.Triple, ox.Literal
    figures = json.dumps(report.figures(), sort_keys=True, separators=(",", ":"), allow_nan=False)
    triples = [
        T(node, vocab.RDF_TYPE, vocab.HEALTH_REPORT),
        T(node, vocab.RDF_TYPE, vocab.PROV_ENTITY),
        T(node, vocab.PROV_WAS_DERIVED_FROM, ox.NamedNode(report.model)),
        T(node, vocab.PROV_GENERATED_AT, datetime_literal(report.at)),
        T(node, vocab.HEALTH_OCCASION, L(occasion)),
        T(node, vocab.HEALTH_VERDICT, L(report.verdict)),
        T(node, vocab.HEALTH_FIGURES, L(figures)),
        *(T(node, vocab.HEALTH_ALERT, L(str(alert))) for alert in report.alerts),
    ]
    if requested_by:
        triples.append(T(node, vocab.REQUESTED_BY, L(requested_by)))
    runtime.trail.append(node, triples)
    return node.value


def check_promotion(runtime: Runtime, version: str, *, by: str | None = None) -> None:
    """Refuse (Conflict) to promote a version whose inputs or scores drifted past ``wf:maxPopulationShift``.

    Judged offline (its training profile against today's traffic, scored by it); the report is recorded
    whatever the verdict, so that an auditor sees why a promotion was refused. Nothing is checked, or
    recorded, without the limit, or for the version already active (``promote`` refuses that itself).
    """
    limit = gates(runtime).max_population_shift
    if limit is None or find(runtime, version).status is Status.ACTIVE:
        return
    report = model_health(runtime, version, offline=True)
    record = record_health(runtime, report, occasion=PROMOTION, requested_by=by)
    shifts = [a for a in report.breaches if a.measure == "PSI"]
    if report.verdict == NOT_ASSESSED:
        log.warning("promotion not gated by model health", extra={"model_version": version, "notes": report.notes})
    if shifts:
        worst = max(shifts, key=lambda a: a.figure)
        raise Conflict(
            f"model version {version} is not promoted: {worst.subject} drifted from its training profile, PSI "
            f"{worst.figure:.3f} over the limit {limit:g} (wf:maxPopulationShift of {report.limits.policy}); "
            f"health report {record}",
            details=[{"field": a.subject, "reason": str(a), "report": record} for a in shifts],
        )


def _version(runtime: Runtime, version: str | None) -> ModelVersion:
    if version is not None:
        return find(runtime, version)
    found = active(runtime)
    if found is None:
        raise NotFound("no model version is active: name the version to check (`wayfinder model list`)")
    return found


def _current(decisions: list[Decision], scores: list[float]) -> Sample:
    features: dict[str, list[str] | list[float]] = {name: [d.value(name) for d in decisions] for name in CATEGORICAL}
    features["features_used"] = [float(len(d.features)) for d in decisions]
    return Sample(features, scores)


def _score_offline(runtime: Runtime, target: ModelVersion, decisions: list[Decision]) -> list[float]:
    """The version's scores of the decisions' candidates, from their recorded contexts (nothing is recorded)."""
    scorer = _scorer(runtime, target)
    scores: list[float] = []
    for d in decisions:
        context = Context(
            channel="",  # the scorer reads the profile and feature use only
            personalized=True,
            role=d.profile.get("role"),
            industry=d.profile.get("industry"),
            plan=d.profile.get("plan"),
            used_features=sorted(d.features),
        )
        scores += scorer.score(context, list(d.candidates)).values()
    return scores


def _scorer(runtime: Runtime, target: ModelVersion) -> Scorer:
    """The version's scorer, loaded once per artefact (its catalog encoding is the costly part)."""
    from service.models.serving import version_scorer  # torch, imported when a version is scored

    return version_scorer(runtime, target)


def _calibration_of(runtime: Runtime, decisions: list[Decision]) -> tuple[Calibration | None, int, str | None]:
    """Calibration of the served top scores against activation, the units it counted, and why not when none."""
    units = [d for d in decisions if d.analytics and d.top is not None]
    if not units:
        return None, 0, "no calibration: no decision of a user with ANALYTICS consent had a model-scored first step"
    outcomes = activated_after(runtime, units)
    if not any(outcomes):
        return None, len(units), "no calibration yet: no activation has followed these decisions"
    scores = np.array([d.top for d in units], dtype=float)
    if len(units) < BINS or np.ptp(scores) == 0:
        return None, len(units), f"no calibration: {len(units)} decisions with outcomes, too few or all scored alike"
    return calibration(scores, np.array(outcomes, dtype=int), bins=BINS), len(units), None


def _set_gauges(report: ModelHealth) -> None:
    h = report.health
    if h is None:
        return
    for shift in (*h.features, h.score):
        MODEL_PSI.labels(report.version, shift.feature).set(shift.psi)
    if h.calibration is not None:
        MODEL_CALIBRATION_ERROR.labels(report.version).set(h.calibration.ece)
    MODEL_HEALTH_BREACHES.labels(report.version).set(len(report.breaches))


def _shift(shift: Shift) -> dict:
    return {
        "feature": shift.feature,
        "psi": shift.psi,
        "bins": list(shift.bins),
        "reference": list(shift.reference),
        "current": list(shift.current),
    }


def _calibration(fit: Calibration) -> dict:
    agreement = fit.rank_agreement
    return {
        "ece": fit.ece,
        "slope": fit.slope,
        "intercept": fit.intercept,
        "rank_agreement": agreement if agreement is not None and math.isfinite(agreement) else None,
        "bins": [
            {"count": b.count, "mean_prediction": b.mean_prediction, "observed_rate": b.observed_rate} for b in fit.bins
        ],
    }
