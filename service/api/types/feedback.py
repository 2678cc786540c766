"""GraphQL types of the feedback KPI: sentiment, ratings and thumbs by step."""

from __future__ import annotations

import strawberry

from service.analytics.sentiment import Mean, StepSentiment
from service.api.types.catalog import Step, step_of
from service.knowledge.catalog import Catalog


@strawberry.type(description="A mean with its 95% Student t interval (null bounds under two values)")
class MeanWithInterval:
    value: float
    count: int
    low: float | None
    high: float | None


@strawberry.type(description="What users who consent to FEEDBACK said of one step")
class StepFeedback:
    step: Step
    feedback: int = strawberry.field(description="Feedback events counted")
    users: int
    thumbs_up: int
    thumbs_down: int
    rating: MeanWithInterval | None = strawberry.field(description="The mean 0 to 10 rating")
    sentiment: MeanWithInterval | None = strawberry.field(
        description="The mean sentiment (-1 to 1) of the texts the scorer read (English)"
    )


def _mean(found: Mean | None) -> MeanWithInterval | None:
    return MeanWithInterval(value=found.value, count=found.count, low=found.low, high=found.high) if found else None


def step_feedback_of(catalog: Catalog, found: StepSentiment) -> StepFeedback:
    return StepFeedback(
        step=step_of(catalog, catalog.step(found.step)),
        feedback=found.feedback,
        users=found.users,
        thumbs_up=found.thumbs_up,
        thumbs_down=found.thumbs_down,
        rating=_mean(found.rating),
        sentiment=_mean(found.sentiment),
    )
