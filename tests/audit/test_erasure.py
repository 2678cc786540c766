"""Erasure: profile, events and consent records go, decision records stay, unlinkable; the chain verifies."""

from __future__ import annotations

from service.audit import erasure
from service.decisions import decide, users
from tests.audit.test_chain import check, setup_users
from tests.graphql_client import NEXT_STEPS, REGISTER


def test_erasure_leaves_nothing_that_names_the_person_and_the_chain_verifies(runtime):
    recs = setup_users(runtime)
    receipt = erasure.erase(runtime, "ana", requested_by="privacy-officer")
    assert receipt.decisions_kept == 2 and receipt.triples_removed > 0
    for quad in runtime.store.quads():
        for term in (quad.subject, quad.predicate, quad.object, quad.graph_name):
            text = getattr(term, "value", "")
            assert "/user/ana" not in text and text != "ana", quad
    assert users.profile(runtime, "ana") is None
    result = check(runtime)
    assert result.ok and result.records == 4  # three decisions and the erasure
    # The decisions remain readable, and the tombstone says when and at whose request.
    assert decide.read_decision(runtime, recs[0].decision_id) is not None
    tomb = runtime.store.select(
        "PREFIX wf: <https://w3id.org/wayfinder/ontology#> SELECT ?by WHERE { ?e a wf:Erasure ; wf:requestedBy ?by }"
    )
    assert [r["by"].value for r in tomb] == ["privacy-officer"]


def test_erase_user_over_graphql_returns_a_receipt(client):
    client.data(REGISTER, {"input": {"id": "gone", "consents": ["PERSONALIZATION"]}})
    client.data(NEXT_STEPS, {"user": "gone"})
    receipt = client.data('mutation { eraseUser(userId: "gone") { userId erasureId triplesRemoved decisionsKept } }')
    assert receipt["eraseUser"]["decisionsKept"] == 1
    assert client.data('{ user(id: "gone") { id } }')["user"] is None
    error = client.error('mutation { eraseUser(userId: "gone") { userId } }')
    assert error["extensions"]["code"] == "NOT_FOUND"


def test_an_erasure_is_refused_for_an_unknown_user_and_changes_nothing(runtime):
    import pytest

    from service.errors import NotFound

    setup_users(runtime)
    before = len(runtime.store)
    with pytest.raises(NotFound):
        erasure.erase(runtime, "nobody", requested_by="privacy-officer")
    assert len(runtime.store) == before and check(runtime).records == 3
