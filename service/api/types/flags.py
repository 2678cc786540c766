"""GraphQL types of feature flags and their OpenFeature-style evaluation details."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from service.api.types.models import Approval, Review, approvals_of, review_of
from service.experiments import flags
from service.governance import change_requests


@strawberry.type(description="A variant of a flag: the policy version it serves")
class FlagVariant:
    name: str
    policy_version: str


@strawberry.type(description="A condition of a targeting rule: the attribute has one of the values")
class FlagCondition:
    attribute: str = strawberry.field(description="role, industry, plan, channel or cohort (signup month, YYYY-MM)")
    values: list[str]


@strawberry.type(description="A share of users a split gives a variant")
class FlagSplit:
    variant: str
    weight: float


@strawberry.type(description="A targeting rule: when every condition holds, one variant or a split")
class FlagRule:
    conditions: list[FlagCondition]
    variant: str | None
    split: list[FlagSplit]


@strawberry.type(description="A flag that must evaluate to a variant for this flag's rules to apply")
class FlagPrerequisite:
    flag: str
    variant: str


@strawberry.type(description="A versioned flag that pins which version of a policy serves which users")
class Flag:
    id: strawberry.ID
    policy: str = strawberry.field(description="The policy whose version it pins")
    enabled: bool = strawberry.field(description="False while the kill switch is off: everyone gets the default")
    version: int
    default_variant: str
    variants: list[FlagVariant]
    rules: list[FlagRule]
    prerequisites: list[FlagPrerequisite]
    created_by: str
    created_at: datetime | None

    @strawberry.field(
        description="The flag's latest change request, if it had one: with approvals required, a change that may "
        "widen exposure waits in review for approval by principals other than its author"
    )
    def pending_change(self, info: Info) -> FlagChangeRequest | None:
        found = change_requests.pending(info.context["runtime"], str(self.id))
        return request_of(info.context["runtime"], found) if found is not None else None


@strawberry.type(description="A proposed flag change and where it stands")
class FlagChangeRequest:
    kind: str = strawberry.field(description="create, update or enable")
    status: str = strawberry.field(description="in-review, applied or rejected")
    proposed_by: str
    proposed_at: datetime
    content_hash: str = strawberry.field(description="What approvals judge: the change as proposed")
    proposed: Flag = strawberry.field(description="The definition it applies (version 0 until applied)")
    approvals: list[Approval]
    review: Review = strawberry.field(description="Where it stands: in-review, approved, active (applied) or rejected")


@strawberry.type(description="A flag's evaluation for one user, as OpenFeature's evaluation details")
class FlagEvaluation:
    flag: str
    value: str | None = strawberry.field(description="The chosen variant's policy version")
    variant: str | None
    reason: str = strawberry.field(description="STATIC, DEFAULT, TARGETING_MATCH, SPLIT, DISABLED or ERROR")
    error_code: str | None = strawberry.field(description="FLAG_NOT_FOUND or GENERAL when the reason is ERROR")
    flag_version: int | None
    bucket: int | None = strawberry.field(description="The user's bucket when a split chose the variant")
    detail: str


@strawberry.input
class FlagVariantInput:
    name: str
    policy_version: str


@strawberry.input
class FlagConditionInput:
    attribute: str
    values: list[str]


@strawberry.input
class FlagSplitInput:
    variant: str
    weight: float


@strawberry.input
class FlagRuleInput:
    conditions: list[FlagConditionInput] = strawberry.field(default_factory=list)
    variant: str | None = None
    split: list[FlagSplitInput] = strawberry.field(default_factory=list)


@strawberry.input
class FlagPrerequisiteInput:
    flag: str
    variant: str


@strawberry.input
class FlagInput:
    id: strawberry.ID
    policy: str
    variants: list[FlagVariantInput]
    default_variant: str
    rules: list[FlagRuleInput] = strawberry.field(default_factory=list)
    prerequisites: list[FlagPrerequisiteInput] = strawberry.field(default_factory=list)
    enabled: bool = True


def definition_of(data: FlagInput) -> flags.Flag:
    return flags.Flag(
        id=str(data.id),
        policy=data.policy,
        variants=tuple((v.name, v.policy_version) for v in data.variants),
        default_variant=data.default_variant,
        rules=tuple(
            flags.Rule(
                conditions=tuple(flags.Condition(c.attribute, tuple(c.values)) for c in r.conditions),
                variant=r.variant,
                split=tuple((s.variant, s.weight) for s in r.split),
            )
            for r in data.rules
        ),
        prerequisites=tuple(flags.Prerequisite(p.flag, p.variant) for p in data.prerequisites),
        enabled=data.enabled,
    )


def flag_of(flag: flags.Flag) -> Flag:
    return Flag(
        id=strawberry.ID(flag.id),
        policy=flag.policy,
        enabled=flag.enabled,
        version=flag.version,
        default_variant=flag.default_variant,
        variants=[FlagVariant(name=n, policy_version=v) for n, v in flag.variants],
        rules=[
            FlagRule(
                conditions=[FlagCondition(attribute=c.attribute, values=list(c.values)) for c in r.conditions],
                variant=r.variant,
                split=[FlagSplit(variant=v, weight=w) for v, w in r.split],
            )
            for r in flag.rules
        ],
        prerequisites=[FlagPrerequisite(flag=p.flag, variant=p.variant) for p in flag.prerequisites],
        created_by=flag.created_by,
        created_at=flag.created_at,
    )


def evaluation_of(evaluation: flags.Evaluation) -> FlagEvaluation:
    return FlagEvaluation(
        flag=evaluation.flag,
        value=evaluation.value,
        variant=evaluation.variant,
        reason=evaluation.reason,
        error_code=evaluation.error_code,
        flag_version=evaluation.flag_version,
        bucket=evaluation.bucket,
        detail=evaluation.detail,
    )


def request_of(runtime, request: change_requests.ChangeRequest) -> FlagChangeRequest:
    from dataclasses import replace

    return FlagChangeRequest(
        kind=request.kind,
        status=request.status,
        proposed_by=request.created_by,
        proposed_at=request.created_at,
        content_hash=request.content,
        proposed=flag_of(replace(request.proposed, version=0)),
        approvals=approvals_of(runtime, request.iri, content=request.content),
        review=_review(runtime, request),
    )


def _review(runtime, request: change_requests.ChangeRequest) -> Review:
    stand = change_requests.standing_of(runtime, request, needed=runtime.approvals_needed)
    applied = request.status == change_requests.APPLIED
    return review_of(stand, stand.state(serving=applied, proposed=request.status == change_requests.IN_REVIEW))
