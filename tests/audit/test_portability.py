"""Access and portability: everything held about one user as one JSON-LD document."""

from __future__ import annotations

import json

import pyoxigraph as ox
import pytest
from typer.testing import CliRunner

from service.audit import erasure
from service.audit.chain import record_triples
from service.cli import app
from service.decisions import users
from service.errors import NotFound
from service.knowledge import vocab
from tests.graphql_client import GRANT, NEXT_STEPS, RECORD, REGISTER, WITHDRAW

EXPORT = """
query E($u: ID!) { exportUser(userId: $u) { userId exportedAt format document } }
"""


def held_about(runtime, user_id: str) -> set[ox.Quad]:
    """The quads the store holds about the user: their graph, consent records, decision records."""
    store = runtime.store
    user = vocab.user_iri(user_id)
    quads = set(store.graph(vocab.user_graph(user_id)))
    for link in store.quads(predicate=vocab.HAS_DATA_SUBJECT, object=user, graph=vocab.CONSENT_GRAPH):
        quads.update(store.quads(subject=link.subject, graph=vocab.CONSENT_GRAPH))
    pseudonym = next(q.object for q in quads if q.predicate == vocab.PSEUDONYM)
    for link in store.quads(predicate=vocab.SUBJECT_PSEUDONYM, object=pseudonym, graph=vocab.AUDIT_GRAPH):
        quads.update(record_triples(store, link.subject))
    return quads


def parsed(document: dict) -> set[ox.Quad]:
    return set(ox.parse(json.dumps(document).encode(), format=ox.RdfFormat.JSON_LD))


def nodes(document: dict, graph: ox.NamedNode) -> list[dict]:
    return next(g["@graph"] for g in document["@graph"] if g["@id"] == graph.value)


def history(client) -> str:
    client.data(
        REGISTER,
        {
            "input": {
                "id": "ana",
                "role": "analyst",
                "industry": "retail",
                "plan": "team",
                "consents": ["PERSONALIZATION", "ANALYTICS"],
            }
        },
    )
    client.data(RECORD, {"input": {"userId": "ana", "type": "STEP_COMPLETED", "stepId": "explore-sample-data"}})
    client.data(RECORD, {"input": {"userId": "ana", "type": "FEATURE_USED", "featureId": "charts"}})
    decision = client.data(NEXT_STEPS, {"user": "ana"})["nextSteps"]
    client.data(WITHDRAW, {"u": "ana", "p": "ANALYTICS"})
    client.data(GRANT, {"u": "ana", "p": "MARKETING"})
    client.data(REGISTER, {"input": {"id": "bo", "role": "manager", "consents": ["ANALYTICS"]}})
    client.data(NEXT_STEPS, {"user": "bo"})
    return decision["decisionId"]


def test_the_export_holds_profile_events_consent_history_and_decisions(client):
    decision_id = history(client)
    export = client.data(EXPORT, {"u": "ana"})["exportUser"]
    assert export["userId"] == "ana" and export["format"] == "application/ld+json" and export["exportedAt"]
    document = export["document"]
    assert {"wf", "dpv", "prov"} <= set(document["@context"])
    mine = nodes(document, vocab.user_graph("ana"))
    profile = next(n for n in mine if n["@id"] == vocab.user_iri("ana").value)
    assert profile["@type"] == ["wf:User"]
    assert profile["wf:hasRole"] == [{"@id": "https://w3id.org/wayfinder/demo/analyst"}]
    events = [n for n in mine if n["@id"].startswith(vocab.EVENT_BASE)]
    assert sorted(e["@type"][0] for e in events) == ["wf:FeatureUsed", "wf:StepCompleted"]
    consent = nodes(document, vocab.CONSENT_GRAPH)
    statuses = sorted((n["dpv:hasPurpose"][0]["@id"], n["dpv:hasConsentStatus"][0]["@id"]) for n in consent)
    assert statuses == sorted(
        [
            ("wf:Personalization", "dpv:ConsentGiven"),
            ("wf:Analytics", "dpv:ConsentGiven"),
            ("wf:Analytics", "dpv:ConsentWithdrawn"),
            ("wf:Marketing", "dpv:ConsentGiven"),
        ]
    )
    assert all("dpv:isIndicatedAtTime" in n for n in consent)
    audit = {n["@id"]: n for n in nodes(document, vocab.AUDIT_GRAPH)}
    decisions = [n for n in audit.values() if "wf:Decision" in n.get("@type", [])]
    assert [d["@id"] for d in decisions] == [vocab.DECISION_BASE + decision_id]
    (made,) = decisions
    assert made["wf:channel"] == [{"@id": "wf:Web"}] and "wf:policyVersion" in made and "prov:startedAtTime" in made
    returned = [audit[c["@id"]] for c in made["wf:hasCandidate"]]
    assert returned and all("wf:score" in c and "wf:rank" in c and "wf:candidateStep" in c for c in returned)
    (kept,) = made["wf:candidates"]
    assert kept["@type"] == "rdf:JSON"
    shown = [c for c in json.loads(kept["@value"]) if "rank" in c]
    assert len(shown) == len(returned) and all(c["reasons"] for c in shown)


def test_the_export_round_trips_to_the_stored_triples(client, runtime):
    history(client)
    document = client.data(EXPORT, {"u": "ana"})["exportUser"]["document"]
    assert parsed(document) == held_about(runtime, "ana")


def test_the_export_names_nothing_of_other_users(client, runtime):
    history(client)
    text = json.dumps(client.data(EXPORT, {"u": "ana"})["exportUser"]["document"])
    assert vocab.user_iri("bo").value not in text
    assert users.profile(runtime, "bo").pseudonym not in text


def test_an_unknown_or_erased_user_is_not_found(client, runtime):
    history(client)
    assert client.error(EXPORT, {"u": "nobody"})["extensions"]["code"] == "NOT_FOUND"
    erasure.erase(runtime, "ana", requested_by="test")
    assert client.error(EXPORT, {"u": "ana"})["extensions"]["code"] == "NOT_FOUND"
    from service.audit.portability import export_user

    with pytest.raises(NotFound):
        export_user(runtime, "ana")


def test_the_export_command_writes_json_ld_with_the_same_triples(disk_runtime, tmp_path):
    users.register(disk_runtime, users.Registration(id="ana", role="analyst", consents=["PERSONALIZATION"]))
    users.record_events(disk_runtime, [users.EventReport("ana", "FEATURE_USED", feature_id="charts")])
    from service.decisions import decide

    decide.next_steps(disk_runtime, "ana")
    held = held_about(disk_runtime, "ana")
    store_path = disk_runtime.settings.store
    disk_runtime.store.close()  # the command opens the folder itself
    target = tmp_path / "ana.jsonld"
    result = CliRunner().invoke(app, ["user", "export", "ana", "--out", str(target), "--store", store_path])
    assert result.exit_code == 0, result.output
    assert parsed(json.loads(target.read_text())) == held
    missing = CliRunner().invoke(app, ["user", "export", "nobody", "--store", store_path])
    assert missing.exit_code == 2
