"""GraphQL types of experiments: their arms, guardrails and results."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from service.api.types.models import Review, review_of
from service.experiments import analysis as analysis_
from service.experiments import registry


@strawberry.type(description="One arm of an experiment, served by one policy version")
class Arm:
    name: str
    policy_version: str = strawberry.field(description='As Recommendation.policyVersion, e.g. "default@1.2.0"')
    weight: float = strawberry.field(description="The arm's share of assigned users, the weights normalised")
    status: str = strawberry.field(description="active, or rolled-back (its users are served by the control's version)")


@strawberry.type(description="A KPI an experiment must not harm by more than its threshold")
class Guardrail:
    kpi: str
    max_relative_drop: float
    detectable_drop: float = strawberry.field(
        description="The relative harm the evidence must be able to detect before a ramp widens exposure"
    )


@strawberry.type(description="A comparison of policy versions over a share of users")
class Experiment:
    id: strawberry.ID
    status: str = strawberry.field(description="draft, running or stopped")
    arms: list[Arm] = strawberry.field(description="The first arm is the control")
    guardrails: list[Guardrail]
    coverage: float = strawberry.field(description="The share of users the experiment takes in")
    holdout: float = strawberry.field(
        description="The share of users kept out of every arm (group 'holdout', served the policy's active version)"
    )
    hash_version: int = strawberry.field(description="The bucketing hash it assigns with (docs/experiments.md)")
    created_by: str
    created_at: datetime | None
    approved_by: str | None
    approved_at: datetime | None
    offline_margin: float | None = strawberry.field(
        description="When set, the plan starts only if offline each arm's version is no worse than control's by more"
        " than this (the lower bound of the difference in step uptake, on an exploring version's logged decisions)"
    )
    source: strawberry.Private[registry.Experiment | None] = None

    @strawberry.field(
        description="Where its plan stands: draft, in-review (some approvals), approved, active (running) or retired "
        "(stopped); an approved plan is the approval of the candidate versions its arms serve"
    )
    def review(self, info: Info) -> Review:
        from service.governance import approvals

        runtime, experiment = info.context["runtime"], self.source
        assert experiment is not None
        needed = approvals.required(runtime, keys_on=bool(info.context.get("keys_on")))
        stand = registry.plan_standing(runtime, experiment, needed=needed)
        state = stand.state(
            serving=experiment.status == registry.RUNNING, proposed=False, retired=experiment.status != registry.DRAFT
        )
        return review_of(stand, state)


@strawberry.input
class ArmInput:
    name: str
    policy_version: str
    weight: float


@strawberry.input
class GuardrailInput:
    kpi: str
    max_relative_drop: float
    detectable_drop: float = 0.2


@strawberry.input
class ExperimentInput:
    id: strawberry.ID
    arms: list[ArmInput]
    guardrails: list[GuardrailInput] = strawberry.field(default_factory=list)
    coverage: float = 1.0
    holdout: float = 0.0
    offline_margin: float | None = strawberry.field(
        default=None, description="Require offline evidence before the start: the margin an arm may fall short by"
    )


def spec_of(data: ExperimentInput) -> registry.ExperimentSpec:
    return registry.ExperimentSpec(
        id=str(data.id),
        arms=[registry.ArmSpec(a.name, a.policy_version, a.weight) for a in data.arms],
        guardrails=[registry.Guardrail(g.kpi, g.max_relative_drop, g.detectable_drop) for g in data.guardrails],
        coverage=data.coverage,
        holdout=data.holdout,
        offline_margin=data.offline_margin,
    )


def experiment_of(experiment: registry.Experiment) -> Experiment:
    return Experiment(
        source=experiment,
        id=strawberry.ID(experiment.id),
        status=experiment.status,
        arms=[
            Arm(name=a.name, policy_version=a.policy_version, weight=a.weight, status=a.status) for a in experiment.arms
        ],
        guardrails=[
            Guardrail(kpi=g.kpi, max_relative_drop=g.max_relative_drop, detectable_drop=g.detectable_drop)
            for g in experiment.guardrails
        ],
        coverage=experiment.coverage,
        holdout=experiment.holdout,
        hash_version=experiment.hash_version,
        created_by=experiment.created_by,
        created_at=experiment.created_at,
        approved_by=experiment.approved_by,
        approved_at=experiment.approved_at,
        offline_margin=experiment.offline_margin,
    )


@strawberry.type(description="A KPI of one arm: its own level with an interval and, beside control, its lift")
class KpiResult:
    kpi: str
    units: int = strawberry.field(description="Units that count for the KPI")
    estimate: float = strawberry.field(description="The arm's level, e.g. its activation share")
    lower: float
    upper: float
    lift: float | None = strawberry.field(description="Relative change against control (None for control)")
    lift_lower: float | None = strawberry.field(description="Lower end of the lift's confidence sequence")
    lift_upper: float | None
    p_value: float | None = strawberry.field(description="Always-valid p-value, Holm-adjusted over goal KPIs")
    decision: str | None = strawberry.field(description="better, worse or inconclusive, against control")
    method: str


@strawberry.type(description="One arm's exposures and KPIs")
class ArmResult:
    name: str
    users: int = strawberry.field(description="Users exposed to the arm (intention to treat)")
    kpis: list[KpiResult]


@strawberry.type(description="A guardrail's one-sided sequential test for one arm against control")
class GuardrailResult:
    arm: str
    kpi: str
    state: str = strawberry.field(description="ok, or harm (the monitor then rolls the arm back)")
    estimate: float = strawberry.field(description="Relative change against control")
    bound: float | None = strawberry.field(
        description="The one-sided bound the test compares with the threshold (None while there are too few users)"
    )
    threshold: float
    method: str


@strawberry.type(description="An experiment's results now, from the analytics log")
class ExperimentResults:
    experiment: Experiment
    analysed_at: datetime
    srm_p_value: float | None = strawberry.field(description="Sample-ratio mismatch test p-value (None: no users)")
    sample_ratio_mismatch: bool = strawberry.field(description="True when the SRM p-value is below 0.001")
    arms: list[ArmResult]
    guardrails: list[GuardrailResult]


def results_of(analysis: analysis_.Analysis) -> ExperimentResults:
    return ExperimentResults(
        experiment=experiment_of(analysis.experiment),
        analysed_at=analysis.at,
        srm_p_value=analysis.srm_p_value,
        sample_ratio_mismatch=analysis.sample_ratio_mismatch,
        arms=[
            ArmResult(name=a.name, users=a.users, kpis=[KpiResult(**analysis_.finite(k.__dict__)) for k in a.kpis])
            for a in analysis.arms
        ],
        guardrails=[GuardrailResult(**analysis_.finite(g.__dict__)) for g in analysis.guardrails],
    )
