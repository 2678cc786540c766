"""The release gates a product's knowledge sets: fairness limits, model-health limits, the offline margin.

They are knowledge, not settings: ``ontology/policies/governance.ttl`` (a ``wf:GovernancePolicy``,
checked by ``shapes/governance.ttl``), loaded, versioned and rolled back as any catalog file. A
limit the file leaves out is not checked. With no governance policy loaded nothing is gated,
which the checks that use them say in their reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.knowledge.store import value

if TYPE_CHECKING:
    from service.runtime import Runtime

DEFAULT_MIN_GROUP_SIZE = 10
DEFAULT_MIN_HEALTH_DECISIONS = 50


@dataclass(frozen=True)
class Gates:
    policy: str | None  # the wf:GovernancePolicy the limits come from; None when none is loaded
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE
    max_activation_difference: float | None = None
    min_exposure_ratio: float | None = None
    max_population_shift: float | None = None
    max_calibration_error: float | None = None
    offline_margin: float | None = None
    min_health_decisions: int = DEFAULT_MIN_HEALTH_DECISIONS  # fewer decisions: health reported, not judged
    protected_attribute: str | None = None  # the name of the attribute whose groups fairness reports compare


def gates(runtime: Runtime) -> Gates:
    """The release gates of the loaded governance policy (the first by IRI when several are loaded)."""
    rows = runtime.store.select(runtime.queries["governance-policy"])
    if not rows:
        return Gates(policy=None)
    row = rows[0]

    def number(name: str) -> float | None:
        found = value(row, name)
        return float(found) if found is not None else None

    size, decisions = value(row, "minGroupSize"), value(row, "minHealthDecisions")
    return Gates(
        policy=value(row, "policy"),
        min_group_size=int(size) if size is not None else DEFAULT_MIN_GROUP_SIZE,
        max_activation_difference=number("maxActivationDifference"),
        min_exposure_ratio=number("minExposureRatio"),
        max_population_shift=number("maxPopulationShift"),
        max_calibration_error=number("maxCalibrationError"),
        offline_margin=number("offlineMargin"),
        min_health_decisions=int(decisions) if decisions is not None else DEFAULT_MIN_HEALTH_DECISIONS,
        protected_attribute=value(row, "protectedAttribute"),
    )
