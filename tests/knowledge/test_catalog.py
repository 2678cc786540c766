"""The catalog view and the API codes it is read with: channels come from the ontology, as purposes do."""

from __future__ import annotations

import re

import pyoxigraph as ox

from service.knowledge import vocab
from service.knowledge.catalog import read_catalog
from tests.paths import ROOT

WF = vocab.WF_NS


def graphql_enum(name: str) -> list[str]:
    text = (ROOT / "schema.graphql").read_text()
    body = re.search(r"enum " + name + r" \{(.*?)\}", text, re.DOTALL)
    assert body is not None
    return body.group(1).split()


def test_channel_codes_come_from_the_ontology_and_match_the_graphql_enum(runtime):
    channels = runtime.knowledge.codes.channels
    assert channels == {"WEB": WF + "Web", "MOBILE": WF + "Mobile", "IN_APP": WF + "InApp", "EMAIL": WF + "Email"}
    assert sorted(channels) == sorted(graphql_enum("Channel"))


def test_a_channel_code_added_to_the_ontology_is_read_without_code_changes(runtime):
    sms = ox.Quad(ox.NamedNode(WF + "Sms"), ox.NamedNode(WF + "channelCode"), ox.Literal("SMS"), vocab.ONTOLOGY_GRAPH)
    runtime.store.commit(add=[sms])
    runtime.knowledge_changed()
    assert runtime.knowledge.codes.channels["SMS"] == WF + "Sms"
    assert runtime.catalog.channels["SMS"] == WF + "Sms"


def test_a_step_keeps_the_channels_it_is_read_with_and_names_them_by_code(runtime):
    full = runtime.catalog
    chart = next(s for s in full.steps if s.id == "build-first-chart")
    assert sorted(full.channel_code(c) for c in chart.channels) == ["IN_APP", "WEB"]
    web_only = read_catalog(runtime.store, runtime.queries, channels={"WEB": WF + "Web"})
    assert all(s.channels == [WF + "Web"] for s in web_only.steps if WF + "Web" in s.channels)
    assert {c for s in web_only.steps for c in s.channels} == {WF + "Web"}
    assert [s.id for s in web_only.steps] == [s.id for s in full.steps]  # steps stay; other channels are left out
