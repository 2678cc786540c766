"""For which users a field's arguments act: what an app token's one user is checked against."""

from __future__ import annotations

from types import SimpleNamespace

from service.api.permissions import acting_for


def test_user_ids_are_found_in_every_argument_shape():
    assert acting_for({"user_id": "ana"}) == ["ana"]
    assert acting_for({"input": SimpleNamespace(user_id="bo")}) == ["bo"]
    assert acting_for({"inputs": [SimpleNamespace(user_id="a"), SimpleNamespace(user_id="b")]}) == ["a", "b"]
    assert acting_for({"input": SimpleNamespace(id="x")}) == []  # a registration names no acting user
    assert acting_for({}) == []
