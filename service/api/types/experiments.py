"""GraphQL types of experiments: their arms, guardrails and results."""

from __future__ import annotations

from datetime import datetime

import strawberry

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


@strawberry.type(description="A comparison of policy versions over a share of users")
class Experiment:
    id: strawberry.ID
    status: str = strawberry.field(description="draft, running or stopped")
    arms: list[Arm] = strawberry.field(description="The first arm is the control")
    guardrails: list[Guardrail]
    coverage: float = strawberry.field(description="The share of users the experiment takes in")
    hash_version: int = strawberry.field(description="The bucketing hash it assigns with (docs/experiments.md)")
    created_by: str
    created_at: datetime | None
    approved_by: str | None
    approved_at: datetime | None


@strawberry.input
class ArmInput:
    name: str
    policy_version: str
    weight: float


@strawberry.input
class GuardrailInput:
    kpi: str
    max_relative_drop: float


@strawberry.input
class ExperimentInput:
    id: strawberry.ID
    arms: list[ArmInput]
    guardrails: list[GuardrailInput] = strawberry.field(default_factory=list)
    coverage: float = 1.0


def spec_of(data: ExperimentInput) -> registry.ExperimentSpec:
    return registry.ExperimentSpec(
        id=str(data.id),
        arms=[registry.ArmSpec(a.name, a.policy_version, a.weight) for a in data.arms],
        guardrails=[registry.Guardrail(g.kpi, g.max_relative_drop) for g in data.guardrails],
        coverage=data.coverage,
    )


def experiment_of(experiment: registry.Experiment) -> Experiment:
    return Experiment(
        id=strawberry.ID(experiment.id),
        status=experiment.status,
        arms=[
            Arm(name=a.name, policy_version=a.policy_version, weight=a.weight, status=a.status) for a in experiment.arms
        ],
        guardrails=[Guardrail(kpi=g.kpi, max_relative_drop=g.max_relative_drop) for g in experiment.guardrails],
        coverage=experiment.coverage,
        hash_version=experiment.hash_version,
        created_by=experiment.created_by,
        created_at=experiment.created_at,
        approved_by=experiment.approved_by,
        approved_at=experiment.approved_at,
    )
