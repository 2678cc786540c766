"""Feedback events: under their own consent, checked by field, their text scored locally (English only)."""

from __future__ import annotations

from datetime import UTC, datetime

import pyoxigraph as ox
import pytest

from service.decisions import users
from service.decisions.users import EventReport, record_events
from service.errors import ConsentRequired, InvalidInput
from service.knowledge import vocab


def feedback(user: str = "u1", **fields) -> EventReport:
    return EventReport(user, "FEEDBACK_GIVEN", step_id=fields.pop("step_id", "take-product-tour"), **fields)


def stored(runtime, event: users.Event) -> dict[str, ox.Literal]:
    return {q.predicate.value: q.object for q in runtime.store.quads(subject=ox.NamedNode(event.iri))}


@pytest.fixture
def with_users(runtime):
    at = datetime.now(UTC)
    users.register(runtime, users.Registration(id="u1", consents=["FEEDBACK"], at=at))
    users.register(runtime, users.Registration(id="u2", consents=["PERSONALIZATION", "ANALYTICS"], at=at))
    return runtime


def test_feedback_is_stored_with_the_sentiment_of_its_english_text(with_users):
    runtime = with_users
    (down, text, other) = record_events(
        runtime,
        [
            feedback(thumbs_up=False),
            feedback(rating=2, text="This tour was useless and confusing.", locale="en-GB"),
            feedback(text="Não entendi nada, que perda de tempo", locale="pt-BR"),
        ],
    )
    assert stored(runtime, down)[vocab.THUMBS_UP.value].value == "false"
    scored = stored(runtime, text)
    assert scored[vocab.RATING.value].value == "2"
    assert scored[vocab.FEEDBACK_TEXT.value].language == "en-gb"  # pyoxigraph lower-cases tags
    assert float(scored[vocab.SENTIMENT.value].value) < -0.4
    assert scored[vocab.SENTIMENT_SCORER.value].value.startswith("vaderSentiment ")
    unscored = stored(runtime, other)  # a language the scorer does not read: no score rather than a wrong one
    assert unscored[vocab.FEEDBACK_TEXT.value].language == "pt-br" and vocab.SENTIMENT.value not in unscored


def test_feedback_needs_its_consent_and_is_refused_by_field(with_users):
    runtime = with_users
    with pytest.raises(ConsentRequired, match="FEEDBACK"):
        record_events(runtime, [feedback("u2", thumbs_up=True)])
    refusals = {
        "inputs[0].thumbsUp": feedback(),  # says nothing
        "inputs[0].rating": feedback(rating=11),
        "inputs[0].text": feedback(text="   "),
        "inputs[0].locale": feedback(text="fine", locale="not a tag!"),
        "inputs[0].stepId": feedback(step_id=None, rating=5),
    }
    for field, report in refusals.items():
        with pytest.raises(InvalidInput) as refused:
            record_events(runtime, [report])
        assert refused.value.field == field, (field, refused.value)
    with pytest.raises(InvalidInput) as long:
        record_events(runtime, [feedback(text="x" * 2001)])
    assert long.value.field == "inputs[0].text" and "2001" in str(long.value)
    with pytest.raises(InvalidInput) as misplaced:
        record_events(runtime, [EventReport("u1", "STEP_COMPLETED", step_id="take-product-tour", rating=3)])
    assert misplaced.value.field == "inputs[0].rating"
    assert not [q for q in runtime.store.quads(predicate=vocab.RDF_TYPE, object=vocab.FEEDBACK_GIVEN)]
