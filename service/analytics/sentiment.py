"""Sentiment by step, a KPI of the catalog: what users who gave feedback said of each step.

Counted: the feedback of users who consent to FEEDBACK now (the purpose it was given for),
recorded since a time. Per step: how many feedbacks and users, thumbs up and down, the
mean rating and the mean sentiment of scored texts, each mean with its 95% Student t
interval (none under two values). Nothing names a user.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from scipy import stats  # type: ignore[import-untyped, unused-ignore]

from service.clock import datetime_literal
from service.decisions.consent import current_consents
from service.knowledge import vocab
from service.knowledge.store import bound, value
from service.runtime import Runtime

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Mean:
    value: float
    count: int
    low: float | None  # the 95% t interval; None with fewer than two values
    high: float | None


@dataclass(frozen=True)
class StepSentiment:
    step: str  # IRI
    feedback: int
    users: int
    thumbs_up: int
    thumbs_down: int
    rating: Mean | None
    sentiment: Mean | None


def by_step(runtime: Runtime, *, since: datetime | None = None) -> list[StepSentiment]:
    """Return each step's feedback KPI over the feedback recorded since ``since`` (all of it by default)."""
    rows = runtime.store.select(runtime.queries["analytics/feedback"].bind(since=datetime_literal(since or EPOCH)))
    consenting: dict[str, bool] = {}
    per_step: dict[str, list] = defaultdict(list)
    for row in rows:
        user = bound(row, "user").value
        if user not in consenting:
            state = current_consents(runtime, vocab.local_id(user)).get("FEEDBACK")
            consenting[user] = bool(state and state.granted)
        if consenting[user]:
            per_step[bound(row, "step").value].append(row)
    found = []
    for step, feedback in sorted(per_step.items()):
        thumbs = [value(r, "thumbsUp") for r in feedback]
        ratings = [float(v) for r in feedback if (v := value(r, "rating")) is not None]
        scores = [float(v) for r in feedback if (v := value(r, "sentiment")) is not None]
        found.append(
            StepSentiment(
                step,
                feedback=len(feedback),
                users=len({bound(r, "user").value for r in feedback}),
                thumbs_up=thumbs.count("true"),
                thumbs_down=thumbs.count("false"),
                rating=mean(ratings),
                sentiment=mean(scores),
            )
        )
    return found


def mean(values: list[float]) -> Mean | None:
    """The mean with its 95% Student t interval; None for no values."""
    if not values:
        return None
    centre = sum(values) / len(values)
    if len(values) < 2:
        return Mean(centre, 1, None, None)
    spread = stats.sem(values)
    if spread == 0 or math.isnan(spread):
        return Mean(centre, len(values), centre, centre)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=centre, scale=spread)
    return Mean(centre, len(values), float(low), float(high))
