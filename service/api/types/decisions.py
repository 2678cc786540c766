"""GraphQL types of decisions: a recommendation as returned, a decision as recorded, ranked steps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import strawberry

from service.api.types.catalog import Channel, Step, StepContent, content_of, step_of
from service.api.types.deliveries import Delivery, delivery_by_id
from service.decisions import decide
from service.decisions.holdback import Hold
from service.decisions.ranking import Scored
from service.knowledge.catalog import Catalog
from service.knowledge.content import ServedContent
from service.runtime import Runtime


@strawberry.type
class RankedStep:
    step: Step
    rank: int
    score: float
    reasons: list[str]
    content: StepContent | None = strawberry.field(
        default=None,
        description="What the decision showed the step with (its content version is in the record); null for a "
        "candidate that was not shown, and on a past decision whose content the catalog no longer holds",
    )


@strawberry.type(description="A candidate, or the whole decision, that pacing held back")
class HeldBack:
    step: Step | None = strawberry.field(description="The step held back; null where the hold is on the whole decision")
    reason: str = strawberry.field(description="Why, in the serving policy's pacing words")
    until: datetime | None = strawberry.field(
        description="When the hold ends, by the service's clock; null for a session budget (the next session)"
    )


@strawberry.type
class Recommendation:
    decision_id: strawberry.ID
    steps: list[RankedStep]
    personalized: bool
    policy_version: str
    model_version: str | None
    variant: str | None
    held_back: list[HeldBack] = strawberry.field(
        default_factory=list,
        description="What pacing held back (caps, cool-downs, snoozes, quiet hours, session budget), and why",
    )
    delivery: Delivery | None = strawberry.field(
        default=None,
        description="From deliverNextSteps: the outbox message that hands the steps to the channel's sender (null "
        "when pacing held everything back, so that there is nothing to send)",
    )


@strawberry.type
class Decision:
    id: strawberry.ID
    at: datetime
    channel: Channel
    personalized: bool
    policy_version: str
    model_version: str | None
    variant: str | None
    steps: list[RankedStep]
    candidates: list[RankedStep]
    held_back: list[HeldBack] = strawberry.field(default_factory=list, description="What pacing held back, and why")
    delivery: Delivery | None = strawberry.field(
        default=None, description="The outbox message that handed it to its channel's sender, and where it stands"
    )


def ranked_of(
    catalog: Catalog, scored: list[Scored], contents: Mapping[str, ServedContent] | None = None
) -> list[RankedStep]:
    contents = contents or {}
    return [
        RankedStep(
            step=step_of(catalog, catalog.step(s.step)),
            rank=i,
            score=s.score,
            reasons=s.reasons,
            content=content_of(contents.get(s.step)),
        )
        for i, s in enumerate(scored, start=1)
        if s.step in catalog.entities
    ]


def held_back_of(catalog: Catalog, holds: Sequence[Hold]) -> list[HeldBack]:
    return [
        HeldBack(
            step=step_of(catalog, catalog.step(h.step)) if h.step is not None and h.step in catalog.entities else None,
            reason=h.reason,
            until=h.until,
        )
        for h in holds
        if h.step is None or h.step in catalog.entities
    ]


def recommendation_of(runtime: Runtime, rec: decide.Recommendation) -> Recommendation:
    return Recommendation(
        decision_id=strawberry.ID(rec.decision_id),
        steps=ranked_of(runtime.catalog, rec.steps, rec.contents),
        personalized=rec.personalized,
        policy_version=rec.policy_version,
        model_version=rec.model_version,
        variant=rec.variant,
        held_back=held_back_of(runtime.catalog, rec.held_back),
        delivery=delivery_by_id(runtime, rec.delivery_id),
    )
