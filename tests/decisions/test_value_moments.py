"""Rules that target users before (or after) first value: wf:whenReachedValue against the catalog's value moments."""

from __future__ import annotations

import pytest

from service.decisions import decide, users

POLICY = """
@prefix wf:   <https://w3id.org/wayfinder/ontology#> .
@prefix pol:  <https://w3id.org/wayfinder/policy/> .
@prefix demo: <https://w3id.org/wayfinder/demo/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix xsd:  <http://www.w3.org/2001/XMLSchema#> .

pol:valuefirst a wf:Policy ; rdfs:label "Value first"@en ; rdfs:comment "Before first value, the workspace first."@en .
pol:valuefirst-1.0.0 a wf:PolicyVersion ;
    rdfs:label "Value first 1.0.0"@en ;
    wf:versionOf pol:valuefirst ; wf:version "1.0.0" ; wf:status "active" ;
    wf:approvedBy "Test team" ; wf:approvedAt "2026-12-01T09:00:00Z"^^xsd:dateTime ;
    wf:ruleWeight 1.0 ; wf:modelWeight 0.0 ; wf:depthWeight 0.0 ; wf:unlockWeight 0.0 ; wf:affinityWeight 0.0 ;
    wf:hasRule pol:before-value, pol:after-value .
pol:before-value a wf:RankingRule ;
    rdfs:label "Before first value"@en ;
    wf:whenReachedValue false ;
    wf:targetFeature demo:charts ;
    wf:weight 5.0 ;
    wf:reasonText "Get to your first chart" .
pol:after-value a wf:RankingRule ;
    rdfs:label "After first value"@en ;
    wf:whenReachedValue true ;
    wf:targetFeature demo:collaboration ;
    wf:weight 5.0 ;
    wf:reasonText "You have your first chart: share it" .
"""


@pytest.fixture
def valuefirst(runtime, tmp_path):
    path = tmp_path / "valuefirst.ttl"
    path.write_text(POLICY)
    runtime.load([path])
    return runtime


def reasons(runtime, user: str) -> list[str]:
    rec = decide.next_steps(runtime, user, limit=10, policy_id="valuefirst")
    return [r for s in rec.steps for r in s.reasons]


def register(runtime, user: str, consents: list[str]) -> None:
    users.register(
        runtime, users.Registration(id=user, role="analyst", industry="retail", plan="team", consents=consents)
    )
    users.record_events(runtime, [users.EventReport(user, "STEP_COMPLETED", step_id="explore-sample-data")])


def test_a_rule_targets_users_before_first_value_and_another_after_it(valuefirst):
    assert "https://w3id.org/wayfinder/demo/charts" in valuefirst.catalog.value_moments
    register(valuefirst, "ana", ["PERSONALIZATION", "ANALYTICS"])
    before = reasons(valuefirst, "ana")
    assert "Get to your first chart" in before and "You have your first chart: share it" not in before

    users.record_events(valuefirst, [users.EventReport("ana", "FEATURE_USED", feature_id="dashboards")])
    assert "Get to your first chart" in reasons(valuefirst, "ana")  # dashboards is not a value moment

    users.record_events(valuefirst, [users.EventReport("ana", "FEATURE_USED", feature_id="charts")])
    after = reasons(valuefirst, "ana")
    assert "Get to your first chart" not in after and "You have your first chart: share it" in after


def test_without_personalisation_consent_neither_rule_reads_the_users_behaviour(valuefirst):
    register(valuefirst, "eli", ["ANALYTICS"])
    said = reasons(valuefirst, "eli")
    assert "Get to your first chart" not in said and "You have your first chart: share it" not in said
