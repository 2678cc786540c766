"""User IDs as clients send them: well formed or refused naming the field; unknown users are not found."""

from __future__ import annotations

import pytest

from service.decisions import subjects, users
from service.errors import InvalidInput, NotFound
from service.knowledge import vocab


@pytest.mark.parametrize("user_id", ["a", "ana.b_c~d-1", "x" * 128])
def test_well_formed_ids_are_taken(user_id):
    assert subjects.check_id(user_id, "userId") == user_id
    assert subjects.user_node(user_id) == vocab.user_iri(user_id)


@pytest.mark.parametrize("user_id", ["", "-lead", "x" * 129, "a b", "a/b", "ü", "a>b"])
def test_malformed_ids_are_refused_naming_the_field(user_id):
    with pytest.raises(InvalidInput) as refused:
        subjects.check_id(user_id, "input.id")
    assert refused.value.field == "input.id"


def test_only_a_registered_user_exists(runtime):
    assert not subjects.exists(runtime, "ana")
    with pytest.raises(NotFound) as missing:
        subjects.require_user(runtime, "ana", "inputs[0].userId")
    assert missing.value.details == [{"field": "inputs[0].userId", "reason": "unknown user"}]
    users.register(runtime, users.Registration(id="ana"))
    assert subjects.exists(runtime, "ana")
    assert subjects.require_user(runtime, "ana") == vocab.user_iri("ana")
