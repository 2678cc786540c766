"""GraphQL types of model health: drift against the training profile, calibration, alerts."""

from __future__ import annotations

import math

import strawberry

from service.models.health import Shift
from service.models.monitoring import ModelHealth as Report


@strawberry.type(description="One bin of a population shift: the training profile's share and current traffic's")
class ShiftBin:
    bin: str = strawberry.field(description="A category (an IRI, or (none), (unseen)) or a range of values")
    reference: float
    current: float


@strawberry.type(description="The population stability index of one model input, or of its score, since training")
class PopulationShift:
    subject: str = strawberry.field(description="role, industry, plan, features_used, steps_completed or score")
    psi: float
    bins: list[ShiftBin]


@strawberry.type(description="One decile of the score shown first, and how often its users activated after")
class CalibrationDecile:
    decisions: int
    mean_score: float
    activation_rate: float


@strawberry.type(description="Calibration of the model score of the step shown first against observed activation")
class ModelCalibration:
    expected_calibration_error: float
    slope: float = strawberry.field(
        description="Least squares of activation on score: above 0 when higher scores go with more activation"
    )
    intercept: float
    rank_agreement: float | None = strawberry.field(
        description="Spearman of the deciles' mean score and activation rate"
    )
    deciles: list[CalibrationDecile]


@strawberry.type(description="A model version's health now, against its training profile and the governance limits")
class ModelHealth:
    verdict: str = strawberry.field(description="healthy, warning, breach (a governance limit passed) or not assessed")
    source: str | None = strawberry.field(
        description=(
            "served (the decisions it scored) or offline (the latest decisions, scored by it now); "
            "null when not assessed"
        )
    )
    decisions: int = strawberry.field(description="Personalised decisions whose inputs the current sample holds")
    inputs: list[PopulationShift]
    score: PopulationShift | None
    calibration: ModelCalibration | None = strawberry.field(description="Null until activations follow its decisions")
    alerts: list[str] = strawberry.field(description="Every figure past a threshold, in words")
    breaches: list[str] = strawberry.field(description="The alerts past a governance limit: they block a promotion")
    notes: list[str]


def health_of(report: Report) -> ModelHealth:
    h = report.health
    fit = h.calibration if h is not None else None
    return ModelHealth(
        verdict=report.verdict,
        source=report.source,
        decisions=report.decisions,
        inputs=[_shift(s) for s in h.features] if h is not None else [],
        score=_shift(h.score) if h is not None else None,
        calibration=ModelCalibration(
            expected_calibration_error=fit.ece,
            slope=fit.slope,
            intercept=fit.intercept,
            rank_agreement=fit.rank_agreement
            if fit.rank_agreement is not None and math.isfinite(fit.rank_agreement)
            else None,
            deciles=[
                CalibrationDecile(decisions=b.count, mean_score=b.mean_prediction, activation_rate=b.observed_rate)
                for b in fit.bins
            ],
        )
        if fit is not None
        else None,
        alerts=[str(a) for a in report.alerts],
        breaches=[str(a) for a in report.breaches],
        notes=list(report.notes),
    )


def _shift(shift: Shift) -> PopulationShift:
    bins = [
        ShiftBin(bin=b, reference=r, current=c)
        for b, r, c in zip(shift.bins, shift.reference, shift.current, strict=True)
    ]
    return PopulationShift(subject=shift.feature, psi=shift.psi, bins=bins)
