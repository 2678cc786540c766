"""The release gates a product's knowledge sets: fairness and model-health limits, the offline margin, the
second role that high-impact changes need.

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
DEFAULT_HIGH_IMPACT_ROLE = "auditor"
DEFAULT_IMPACT_SAMPLE = 200


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
    high_impact_role: str = DEFAULT_HIGH_IMPACT_ROLE  # the second role a change to who sees high-impact steps needs
    impact_sample: int = DEFAULT_IMPACT_SAMPLE  # the recent decisions an impact assessment replays


def gates(runtime: Runtime) -> Gates:
    """The release gates of the loaded governance policy (the first by IRI when several are loaded).

    With none loaded nothing is gated, except that a change to who sees a high-impact step still needs
    approvals of two roles (operators and auditors, by default): that rule comes with the catalog's marks."""
    rows = runtime.store.select(runtime.queries["governance-policy"])
    if not rows:
        return Gates(policy=None)
    row = rows[0]

    def number(name: str) -> float | None:
        found = value(row, name)
        return float(found) if found is not None else None

    size, decisions = value(row, "minGroupSize"), value(row, "minHealthDecisions")
    role, sample = value(row, "highImpactApproverRole"), value(row, "impactSampleSize")
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
        high_impact_role=role or DEFAULT_HIGH_IMPACT_ROLE,
        impact_sample=int(sample) if sample is not None else DEFAULT_IMPACT_SAMPLE,
    )
