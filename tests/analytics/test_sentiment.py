"""Sentiment by step: counted over users who consent to FEEDBACK now, with means and intervals that statsmodels
agrees with; through GraphQL too."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from statsmodels.stats.weightstats import DescrStatsW

from service.analytics import sentiment
from service.decisions import consent, users
from service.decisions.users import EventReport, record_events
from service.knowledge import vocab

TOUR, CHART = "take-product-tour", "build-first-chart"
TEXTS = [
    "Loved it, really clear and helpful!",
    "Too long and boring.",
    "It was fine, I guess.",
    "Terrible, this wasted my time.",
]


@pytest.fixture
def feedback(runtime):
    at = datetime.now(UTC)
    for user in ("a", "b", "c", "gone"):
        users.register(runtime, users.Registration(id=user, consents=["FEEDBACK"], at=at))
    record_events(
        runtime,
        [
            EventReport("a", "FEEDBACK_GIVEN", step_id=TOUR, thumbs_up=True, rating=9, text=TEXTS[0]),
            EventReport("b", "FEEDBACK_GIVEN", step_id=TOUR, thumbs_up=False, rating=3, text=TEXTS[1]),
            EventReport("c", "FEEDBACK_GIVEN", step_id=TOUR, rating=6, text=TEXTS[2]),
            EventReport("c", "FEEDBACK_GIVEN", step_id=TOUR, text=TEXTS[3]),
            EventReport("a", "FEEDBACK_GIVEN", step_id=CHART, text="Ótimo", locale="pt-BR"),
            EventReport("gone", "FEEDBACK_GIVEN", step_id=TOUR, rating=0, thumbs_up=False),
        ],
    )
    consent.set_consent(runtime, "gone", "FEEDBACK", granted=False)  # no longer counted
    return runtime


def test_sentiment_by_step_counts_the_consenting_and_agrees_with_statsmodels(feedback):
    by_step = {vocab.local_id(s.step): s for s in sentiment.by_step(feedback)}
    tour, chart = by_step[TOUR], by_step[CHART]
    assert (tour.feedback, tour.users, tour.thumbs_up, tour.thumbs_down) == (4, 3, 1, 1)
    assert tour.rating is not None and tour.rating.count == 3
    expected = DescrStatsW([9.0, 3.0, 6.0])
    assert tour.rating.value == pytest.approx(expected.mean)
    assert (tour.rating.low, tour.rating.high) == pytest.approx(expected.tconfint_mean(alpha=0.05))
    scores = [s.score for text in TEXTS if (s := sentiment_of(text)) is not None]
    assert tour.sentiment is not None and tour.sentiment.count == 4
    assert tour.sentiment.value == pytest.approx(sum(scores) / 4)
    assert (tour.sentiment.low, tour.sentiment.high) == pytest.approx(DescrStatsW(scores).tconfint_mean(alpha=0.05))
    # a text in Portuguese is counted as feedback, with no sentiment
    assert (chart.feedback, chart.sentiment, chart.rating) == (1, None, None)


def sentiment_of(text: str):
    from service.models.sentiment import score

    return score(text, "en")


def test_feedback_by_step_over_graphql(feedback):
    from starlette.testclient import TestClient

    from service.api.app import create_app
    from tests.graphql_client import GraphQLClient

    with TestClient(create_app(feedback)) as http:
        client = GraphQLClient(http)
        query = "{ feedbackByStep { step { id } feedback users thumbsDown rating { value count low high } } }"
        rows = {r["step"]["id"]: r for r in client.data(query)["feedbackByStep"]}
        assert rows[TOUR]["feedback"] == 4 and rows[TOUR]["thumbsDown"] == 1 and rows[TOUR]["rating"]["count"] == 3
        error = client.error('{ feedbackByStep(since: "2999-01-01T00:00:00Z") { feedback } }')
        assert "since" in error["message"]
