"""Feedback pressure: after negative feedback (under the FEEDBACK consent), the judged step is held back on every
channel and decisions show fewer steps, for the version's window; positive feedback changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.clock import SimulatedClock, use_clock
from service.decisions import consent, users
from service.decisions.decide import next_steps, read_decision
from service.decisions.holdback import FeedbackEvent, History, hold_back
from service.decisions.ranking import Scored
from service.knowledge.pacing import FeedbackPressure, Pacing
from service.knowledge.policies import active_version
from service.knowledge.templates import Wording

START = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
PRESSURE = FeedbackPressure(
    "urn:p",
    window=timedelta(days=7),
    share=0.5,
    rating_at_most=6,
    sentiment_below=-0.05,
    templates={
        "negativeFeedbackReason": Wording("judged {step} until {until}"),
        "feedbackPressureReason": Wording("at most {max}"),
    },
)
PACING = Pacing("urn:pacing", snooze=timedelta(days=1), time_zone="UTC", templates={})


def ranked(*steps: str) -> list[Scored]:
    return [Scored(step, 1.0 - i / 10, 1.0, None) for i, step in enumerate(steps)]


@pytest.mark.parametrize(
    ("feedback", "negative"),
    [
        ({"thumbs_up": False}, True),
        ({"thumbs_up": True}, False),
        ({"rating": 6}, True),
        ({"rating": 7}, False),
        ({"sentiment": -0.3}, True),
        ({"sentiment": -0.05}, False),
        ({"thumbs_up": True, "rating": 2}, True),
    ],
)
def test_what_counts_as_negative(feedback, negative):
    history = History(feedback=[FeedbackEvent("urn:f", "urn:a", START - timedelta(days=1), **feedback)])
    paced = hold_back(
        PACING, ranked("urn:a", "urn:b", "urn:c", "urn:d"), limit=4, channel="urn:web", at=START,
        history=history, channel_codes={}, pressure=PRESSURE,
    )  # fmt: skip
    if negative:
        assert [h.step for h in paced.holds] == ["urn:a", None] and paced.limit == 2
        assert paced.holds[0].until == START + timedelta(days=6) and paced.holds[0].evidence == ("urn:f",)
    else:
        assert paced.holds == [] and paced.limit == 4


def test_the_window_ends_and_at_least_one_step_is_shown():
    old = History(feedback=[FeedbackEvent("urn:f", "urn:a", START - timedelta(days=8), thumbs_up=False)])
    paced = hold_back(PACING, ranked("urn:a", "urn:b"), limit=2, channel="urn:web", at=START, history=old,
                      channel_codes={}, pressure=PRESSURE)  # fmt: skip
    assert paced.holds == [] and paced.limit == 2
    fresh = History(feedback=[FeedbackEvent("urn:f", "urn:z", START, thumbs_up=False)])
    paced = hold_back(PACING, ranked("urn:a", "urn:b"), limit=1, channel="urn:web", at=START, history=fresh,
                      channel_codes={}, pressure=PRESSURE)  # fmt: skip
    assert paced.limit == 1 and paced.holds == []  # half of one is still one


@pytest.fixture
def gentle(runtime):
    """The demo's 1.8.0 (1.7.0 with feedback pressure) made the active version."""
    version = next(v for v in runtime.knowledge.policies.values() if v.label == "default@1.8.0")
    assert version.feedback_pressure is not None and version.feedback_pressure.window == timedelta(days=7)
    for v in runtime.knowledge.policies.values():
        if v.policy == version.policy:
            v.status = "active" if v is version else "retired"
    assert active_version(runtime.knowledge.policies, "default") is version
    return runtime


def test_negative_feedback_on_mobile_holds_the_step_on_the_web_and_eases_every_decision(gentle):
    with use_clock(SimulatedClock(START)) as simulated:
        _negative_feedback_eases_off(gentle, simulated)


def _negative_feedback_eases_off(runtime, simulated):
    profile = {"role": "analyst", "plan": "team", "at": START}
    users.register(runtime, users.Registration(id="u1", consents=["FEEDBACK"], **profile))
    users.register(runtime, users.Registration(id="u2", consents=["PERSONALIZATION"], **profile))
    first = next_steps(runtime, "u1", limit=4)
    top = first.steps[0].step
    assert len(first.steps) == 4 and first.held_back == []
    (judged,) = users.record_events(
        runtime,
        [users.EventReport("u1", "FEEDBACK_GIVEN", step_id=top.rsplit("/", 1)[-1], channel="MOBILE",
                           text="This was confusing and a waste of time", locale="en")],
    )  # fmt: skip
    after = next_steps(runtime, "u1", limit=4)
    assert top not in [s.step for s in after.steps] and len(after.steps) == 2
    step_hold, eased = after.held_back
    assert step_hold.step == top and step_hold.reason.startswith("Held back: your feedback on ")
    assert eased.step is None and eased.reason.startswith("Fewer prompts after your feedback: at most 2, until ")
    assert judged.iri in step_hold.evidence
    recorded = read_decision(runtime, after.decision_id)
    assert [h.reason for h in recorded.held_back] == [h.reason for h in after.held_back]
    # withdrawn, the feedback no longer counts: it was given for that purpose only
    consent.set_consent(runtime, "u1", "FEEDBACK", granted=False)
    assert len(next_steps(runtime, "u1", limit=4).steps) == 4
    # and without the consent a user's decisions never read feedback (they could not give any)
    assert len(next_steps(runtime, "u2", limit=4).steps) == 4
    # a week on, the window has ended
    consent.set_consent(runtime, "u1", "FEEDBACK", granted=True)
    assert len(next_steps(runtime, "u1", limit=4).steps) == 2
    simulated.advance(days=7, minutes=1)
    assert len(next_steps(runtime, "u1", limit=4).steps) == 4
