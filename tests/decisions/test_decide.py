"""nextSteps decided at the module level: the request checked first, the decision recorded, read back as returned."""

from __future__ import annotations

import pytest

from service.audit.chain import verify
from service.decisions import decide, users
from service.errors import InvalidInput, NotFound


def register(runtime, user_id="ana", consents=("PERSONALIZATION",)):
    users.register(
        runtime,
        users.Registration(id=user_id, role="analyst", industry="retail", plan="team", consents=list(consents)),
    )


def records(runtime) -> int:
    return verify(runtime.store, runtime.queries["audit-index"]).records


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"channel": "FAX"}, "channel"),
        ({"limit": 0}, "limit"),
        ({"limit": decide.MAX_LIMIT + 1}, "limit"),
        ({"locale": "pt_BR"}, "locale"),
    ],
)
def test_a_bad_request_is_refused_before_anything_is_read_or_recorded(runtime, arguments, field):
    register(runtime)
    before = len(runtime.store)
    with pytest.raises(InvalidInput) as refused:
        decide.next_steps(runtime, "ana", **arguments)
    assert refused.value.field == field
    assert len(runtime.store) == before and records(runtime) == 0


def test_an_unknown_user_is_not_found_and_nothing_is_recorded(runtime):
    with pytest.raises(NotFound):
        decide.next_steps(runtime, "nobody")
    assert records(runtime) == 0


def test_a_decision_is_recorded_and_read_back_as_it_was_returned(runtime):
    register(runtime)
    returned = decide.next_steps(runtime, "ana", channel="EMAIL", limit=2)
    assert 1 <= len(returned.steps) <= 2 and returned.personalized
    assert returned.candidates[: len(returned.steps)] == returned.steps
    read = decide.read_decision(runtime, returned.decision_id)
    assert read is not None and records(runtime) == 1
    # The record keeps each shown step's reasons, but not their order (wf:reason values are a set).
    assert [(s.step, s.score, set(s.reasons)) for s in read.steps] == [
        (s.step, s.score, set(s.reasons)) for s in returned.steps
    ]
    assert (read.channel, read.personalized, read.policy_version) == ("EMAIL", True, returned.policy_version)
    assert {s.step for s in read.candidates} == {s.step for s in returned.candidates}


def test_without_consent_the_decision_is_not_personalised(runtime):
    register(runtime, "bo", consents=())
    returned = decide.next_steps(runtime, "bo")
    assert not returned.personalized and returned.model_version is None


def test_an_unknown_decision_is_none_and_a_malformed_id_is_refused(runtime):
    assert decide.read_decision(runtime, "00000000-0000-4000-8000-000000000000") is None
    with pytest.raises(InvalidInput) as refused:
        decide.read_decision(runtime, "not-a-uuid> } DROP ALL")
    assert refused.value.field == "id"
