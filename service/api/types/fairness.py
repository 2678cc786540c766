"""GraphQL types of fairness reports: exposure and activation by protected group, and the gate's breaches."""

from __future__ import annotations

from datetime import datetime

import strawberry

from service.governance import fairness, fairness_gate


@strawberry.type(description="A point estimate and its percentile bootstrap interval")
class FairnessEstimate:
    estimate: float
    lower: float
    upper: float


@strawberry.type(description="A protected group a report counted users in")
class FairnessGroup:
    group: strawberry.ID = strawberry.field(description="The wf:ProtectedGroup's ID, e.g. age-18-34")
    users: int
    suppressed: bool = strawberry.field(
        description="Fewer users than the governance policy's minimum group size: counted, never valued"
    )


@strawberry.type(description="One reported group's value of a metric")
class FairnessGroupValue:
    group: strawberry.ID
    users: int
    value: FairnessEstimate


@strawberry.type(description="One metric by group, and how far apart the groups are")
class FairnessBreakdown:
    metric: str = strawberry.field(description="activation, or exposure (position-weighted) to one step")
    step_id: strawberry.ID | None
    groups: list[FairnessGroupValue]
    difference: FairnessEstimate | None = strawberry.field(description="Highest group value minus the lowest")
    ratio: FairnessEstimate | None = strawberry.field(description="Lowest group value over the highest")
    lowest: strawberry.ID | None
    highest: strawberry.ID | None


@strawberry.type(description="A fairness report on a model or policy version, as the fairness gate judges it")
class FairnessReport:
    version: str = strawberry.field(description="The judged version: a model version's name or a policy label")
    kind: str = strawberry.field(description="model version or policy version")
    ranked_by: str = strawberry.field(description="The policy version that ranked (the active one, for a model)")
    at: datetime
    protected_attribute: str | None
    governance_policy: str | None = strawberry.field(description="The wf:GovernancePolicy whose limits judged it")
    users: int = strawberry.field(description="Users counted: a FAIRNESS consent and a protected group")
    groups: list[FairnessGroup]
    activation: FairnessBreakdown | None
    exposure: list[FairnessBreakdown]
    breaches: list[str] = strawberry.field(description="Disparities past the governance policy's limits, in words")
    passed: bool


def _estimate(e: fairness.Estimate) -> FairnessEstimate:
    return FairnessEstimate(estimate=e.value, lower=e.low, upper=e.high)


def _breakdown(b: fairness.Breakdown) -> FairnessBreakdown:
    d = b.disparity
    return FairnessBreakdown(
        metric=b.metric,
        step_id=strawberry.ID(b.step) if b.step is not None else None,
        groups=[
            FairnessGroupValue(group=strawberry.ID(g.group), users=g.users, value=_estimate(g.value)) for g in b.groups
        ],
        difference=_estimate(d.difference) if d else None,
        ratio=_estimate(d.ratio) if d else None,
        lowest=strawberry.ID(d.lowest) if d else None,
        highest=strawberry.ID(d.highest) if d else None,
    )


def fairness_report_of(judged: fairness_gate.Judgement) -> FairnessReport:
    found = judged.report
    return FairnessReport(
        version=judged.version,
        kind=judged.kind,
        ranked_by=judged.ranked_by,
        at=judged.at,
        protected_attribute=judged.gates.protected_attribute,
        governance_policy=judged.gates.policy,
        users=judged.users,
        groups=[
            FairnessGroup(group=strawberry.ID(g.group), users=g.users, suppressed=g.suppressed)
            for g in (found.groups if found else ())
        ],
        activation=_breakdown(found.activation) if found else None,
        exposure=[_breakdown(b) for b in found.exposure] if found else [],
        breaches=[str(b) for b in judged.breaches],
        passed=judged.passed,
    )
