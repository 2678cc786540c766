"""Step content over GraphQL: Step.content, what nextSteps shows with, and what its record says about it."""

from __future__ import annotations

import pyoxigraph as ox

from service.knowledge import vocab
from tests.graphql_client import register

CONTENT = "content(channel: $channel, locale: $locale) { locale headline body ctaLabel link media version }"
STEPS = f"query S($channel: Channel!, $locale: String) {{ steps {{ id channels {CONTENT} }} }}"
NEXT = (
    "query N($user: ID!, $channel: Channel! = WEB, $locale: String) { nextSteps(userId: $user, channel: $channel, "
    "locale: $locale) { decisionId steps { step { id } content { locale headline body ctaLabel link media version } } } }"
)
DECISION = "query D($id: ID!) { decision(id: $id) { steps { step { id } content { locale headline version } } } }"
SHOWN = """
PREFIX wf: <https://w3id.org/wayfinder/ontology#>
SELECT ?decision ?step ?content ?version ?locale WHERE {
  ?decision wf:hasCandidate ?candidate .
  ?candidate wf:candidateStep ?step ; wf:contentVersion ?version .
  OPTIONAL { ?candidate wf:shownContent ?content }
  OPTIONAL { ?decision wf:requestedLocale ?locale }
}
"""


def test_every_demo_step_has_content_on_each_of_its_channels_in_both_languages(client):
    for channel in ("WEB", "MOBILE", "IN_APP", "EMAIL"):
        english = client.data(STEPS, {"channel": channel, "locale": None})["steps"]
        portuguese = client.data(STEPS, {"channel": channel, "locale": "pt-BR"})["steps"]
        for en, pt in zip(english, portuguese, strict=True):
            if channel not in en["channels"]:
                assert en["content"] is None and pt["content"] is None
                continue
            assert en["content"]["locale"] == "en" and pt["content"]["locale"] == "pt-BR", en["id"]
            assert en["content"]["headline"] != pt["content"]["headline"]
            assert en["content"]["version"] != pt["content"]["version"]
        european = client.data(STEPS, {"channel": channel, "locale": "pt-PT"})["steps"]
        assert european == english  # pt-PT -> pt -> the default: no Portuguese of Portugal in the demo


def test_next_steps_shows_the_content_of_the_locale_and_the_record_names_its_version(client, runtime):
    register(client)
    rec = client.data(NEXT, {"user": "u1", "locale": "pt-BR"})["nextSteps"]
    steps = {s["id"]: s for s in client.data(STEPS, {"channel": "WEB", "locale": "pt-BR"})["steps"]}
    assert rec["steps"]
    for shown in rec["steps"]:
        assert shown["content"] == steps[shown["step"]["id"]]["content"]  # the same as Step.content says
        assert shown["content"]["locale"] == "pt-BR"

    decision = ox.NamedNode(vocab.DECISION_BASE + rec["decisionId"])
    rows = [r for r in runtime.store.select(SHOWN) if r["decision"] == decision]
    recorded = {vocab.local_id(r["step"].value): (r["content"].value, r["version"].value) for r in rows}
    assert {r["locale"].value for r in rows} == {"pt-BR"}
    for shown in rec["steps"]:
        content_iri, version = recorded[shown["step"]["id"]]
        assert content_iri.endswith(shown["step"]["id"] + "-content")
        assert version == shown["content"]["version"]

    # The auditors' lineage query says the same, with the catalog version that holds the texts.
    lineage = runtime.store.select(runtime.queries["lineage/decision-content"].bind(decision=decision))
    assert list(dict.fromkeys((vocab.local_id(r["step"].value), r["contentVersion"].value) for r in lineage)) == [
        (s["step"]["id"], s["content"]["version"]) for s in rec["steps"]
    ]
    assert {r["requestedLocale"].value for r in lineage} == {"pt-BR"}
    assert vocab.catalog_graph("demo").value in {r["catalogGraph"].value for r in lineage}

    # Read back, the decision shows what it showed.
    again = client.data(DECISION, {"id": rec["decisionId"]})["decision"]
    assert [s["content"]["version"] for s in again["steps"]] == [s["content"]["version"] for s in rec["steps"]]


def test_each_channel_gets_its_own_content_where_the_catalog_has_one(client, runtime):
    register(client)
    rec = client.data(NEXT, {"user": "u1", "channel": "EMAIL", "locale": "pt-BR"})["nextSteps"]
    on_email = {s["id"]: s["content"] for s in client.data(STEPS, {"channel": "EMAIL", "locale": "pt-BR"})["steps"]}
    assert rec["steps"] and all(s["content"] == on_email[s["step"]["id"]] for s in rec["steps"])
    decision = ox.NamedNode(vocab.DECISION_BASE + rec["decisionId"])
    sources = {r["content"].value for r in runtime.store.select(SHOWN) if r["decision"] == decision}
    assert any(iri.endswith("-email") for iri in sources), sources  # e-mail texts where the catalog has them


def test_a_malformed_locale_is_refused_naming_the_field(client):
    register(client)
    error = client.error(NEXT, {"user": "u1", "locale": "pt_BR"})
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and error["message"].startswith("locale:")
    error = client.error(STEPS, {"channel": "WEB", "locale": "x" * 40})
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and error["message"].startswith("locale:")
