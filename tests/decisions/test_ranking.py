"""Ranking: the shipped policy's ranking of the demo users, pinned, and how a version's Turtle steers it.

`tests/fixtures/demo-rankings.json` holds what `default@1.2.0` (rules only: the
demo has no promoted model) decides for each demo user on the web, five steps at
most. A change to a shipped policy is a new policy version, not an edit of an
active one: regenerate this file with the change (``python -m
tests.decisions.test_ranking``, which writes what the code decides) and review
the differences.

The other tests load policy versions of their own, next to the demo's, and rank
with them: thresholds, the journey weight and the reasons' words come from the
version's Turtle.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.decisions import decide
from service.decisions.ranking import Context, rank
from service.demo import load_demo
from service.knowledge import vocab
from service.knowledge.catalog import Catalog, StepInfo
from service.knowledge.vocab import local_id
from service.runtime import Runtime
from service.settings import Settings
from tests.paths import FIXTURES, ROOT

PINNED = json.loads((FIXTURES / "demo-rankings.json").read_text())
DEMO = "https://w3id.org/wayfinder/demo/"
POL = "https://w3id.org/wayfinder/policy/"
CITED = " who completed this step activated "

RULES = """pol:analysts-explore, pol:engineers-connect-data, pol:managers-dashboards,
        pol:admins-administration, pol:regulated-access-control, pol:regulated-audit,
        pol:enterprise-sso, pol:retail-embedding, pol:mobile-dashboards, pol:email-digests,
        pol:dashboard-users-collaborate, pol:free-plan-upgrade"""
TEMPLATES = {
    "unlockReason": "Needed before {unlocked}",
    "usedFeatureReason": "More on {feature}, which you started using",
    "usedAreaReason": "Unlocks {feature}, part of {area}, which you started using",
    "similarUsersReason": "{role}s in {industry} who completed this step activated {lift}x as often",
    "introducesAreaReason": "Introduces {feature}, part of {area}",
    "introducesReason": "Introduces {feature}",
    "journeyReason": "Next in the recommended journey",
}
# Every placeholder of every kind, each marked, so that a reason shows what the ranking filled in.
EVERY_PLACEHOLDER = {
    "unlockReason": "U {step}|{unlocked}",
    "usedFeatureReason": "F {step}|{feature}",
    "usedAreaReason": "A {step}|{feature}|{area}",
    "similarUsersReason": "S {step}|{role}|{industry}|{lift}|{completers}",
    "introducesAreaReason": "IA {step}|{feature}|{area}",
    "introducesReason": "I {step}|{feature}",
    "journeyReason": "J {step}",
}


def version(policy: str, **overrides) -> str:
    """Return the Turtle of an active version 1.0.0 of ``policy``: the demo default's rules and weights, overridden."""
    settings = {
        "ruleWeight": 1.0,
        "modelWeight": 1.0,
        "journeyWeight": 1.0,
        "depthWeight": -0.05,
        "unlockWeight": 0.04,
        "affinityWeight": 0.35,
        "minEvidence": 20,
        "liftToCite": 1.2,
    }
    templates = {**TEMPLATES, **overrides.pop("templates", {})}
    settings.update(overrides)
    stated = " ;\n    ".join(
        [f"wf:{name} {value!r}" for name, value in settings.items()]
        + [f"wf:{kind} {json.dumps(text)}" for kind, text in templates.items()]
    )
    return f"""
pol:{policy} a wf:Policy ; rdfs:label "{policy}"@en ; rdfs:comment "A policy of the ranking tests."@en .
pol:{policy}-1.0.0 a wf:PolicyVersion ;
    wf:versionOf pol:{policy} ; wf:version "1.0.0" ; wf:status "active" ;
    wf:approvedBy "Ranking tests" ; wf:approvedAt "2026-11-30T09:00:00Z"^^xsd:dateTime ;
    {stated} ;
    wf:hasRule {RULES} .
"""


VERSIONS = """@prefix wf:   <https://w3id.org/wayfinder/ontology#> .
@prefix pol:  <https://w3id.org/wayfinder/policy/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix xsd:  <http://www.w3.org/2001/XMLSchema#> .
""" + "".join(
    [
        version("lenient"),
        version("strict", minEvidence=50),
        version(
            "rules-only", journeyWeight=0.0, depthWeight=0.0, unlockWeight=0.0, affinityWeight=0.0, modelWeight=0.0
        ),
        version("worded", templates={"unlockReason": "Do {step} first: {unlocked} needs it"}),
        version("every-placeholder", templates=EVERY_PLACEHOLDER),
    ]
)


@dataclass
class SegmentTable:
    """A model (the ``Scorer`` protocol, as the GNN's scorer implements it) whose scores and segment outcomes are fixed.

    ``outcomes`` maps a step IRI to (completers in the user's segment, activation ratio).
    """

    outcomes: dict[str, tuple[int, float]]
    version: str = "table"

    def score(self, context: Context, steps: list[str]) -> dict[str, float]:
        return {s: 0.5 for s in steps if s in self.outcomes}

    def segment_outcome(self, context: Context, step: str) -> tuple[int, float] | None:
        return self.outcomes.get(step)


TABLE = SegmentTable(
    {
        DEMO + "write-first-query": (25, 1.5),  # enough completers for a threshold of 20, not 50
        DEMO + "upload-spreadsheet": (60, 1.64),  # enough for both
        DEMO + "invite-teammates": (100, 1.1),  # plenty, but no clear lift
    }
)


CONTEXTS = {
    "anonymous on the web": Context(channel=vocab.WEB.value, personalized=False),
    "analyst who built dashboards, on mobile": Context(
        channel=vocab.MOBILE.value,
        personalized=True,
        role=DEMO + "analyst",
        industry=DEMO + "retail",
        plan=DEMO + "team",
        used_features=[DEMO + "dashboards", DEMO + "csv-upload"],
        eligible_roles=[DEMO + "analyst"],
        eligible_plans=[DEMO + "team", DEMO + "free"],
    ),
    "engineer on the free plan, by e-mail": Context(
        channel=vocab.EMAIL.value,
        personalized=True,
        role=DEMO + "engineer",
        industry=DEMO + "fintech",
        plan=DEMO + "free",
        used_features=[DEMO + "sql-editor"],
        eligible_roles=[DEMO + "engineer"],
        eligible_plans=[DEMO + "free"],
    ),
}


def demo_runtime(folder: Path) -> Runtime:
    runtime = Runtime(settings=Settings(store=":memory:", models_dir=folder / "models"))
    load_demo(runtime)
    return runtime


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Runtime:
    return demo_runtime(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> Runtime:
    """The demo with the test policies' versions loaded too (validated, as any load)."""
    folder = tmp_path_factory.mktemp("tuned")
    runtime = demo_runtime(folder)
    path = folder / "ranking-tests.ttl"
    path.write_text(VERSIONS)
    runtime.load([path])
    return runtime


def pinned_ranking(runtime: Runtime, user: str) -> dict:
    rec = decide.next_steps(runtime, user, channel="WEB", limit=5)
    return {
        "personalized": rec.personalized,
        "policyVersion": rec.policy_version,
        "steps": [{"step": local_id(s.step), "score": round(s.score, 6), "reasons": s.reasons} for s in rec.steps],
    }


def test_every_demo_user_is_pinned():
    demo_users = [u["id"] for u in json.loads((ROOT / "data" / "demo" / "users.json").read_text())["users"]]
    assert sorted(PINNED) == sorted(demo_users)


@pytest.mark.parametrize("user", sorted(PINNED))
def test_the_demo_ranking_is_what_the_policy_decided(demo, user):
    rec = decide.next_steps(demo, user, channel="WEB", limit=5)
    pinned = PINNED[user]
    assert rec.personalized == pinned["personalized"] and rec.policy_version == pinned["policyVersion"]
    assert [local_id(s.step) for s in rec.steps] == [s["step"] for s in pinned["steps"]]
    assert [s.reasons for s in rec.steps] == [s["reasons"] for s in pinned["steps"]]
    assert [round(s.score, 6) for s in rec.steps] == [s["score"] for s in pinned["steps"]]


def cited(runtime: Runtime, user: str, policy_id: str) -> dict[str, list[str]]:
    rec = decide.next_steps(runtime, user, limit=50, policy_id=policy_id, model=TABLE)
    return {
        local_id(s.step): [r for r in s.reasons if CITED in r] for s in rec.steps if any(CITED in r for r in s.reasons)
    }


def test_a_higher_evidence_threshold_cites_fewer_segments(tuned):
    lenient, strict = cited(tuned, "ana", "lenient"), cited(tuned, "ana", "strict")
    assert lenient == {
        "write-first-query": ["Analysts in Retail and e-commerce who completed this step activated 1.5x as often"],
        "upload-spreadsheet": ["Analysts in Retail and e-commerce who completed this step activated 1.6x as often"],
    }
    assert strict == {"upload-spreadsheet": lenient["upload-spreadsheet"]}


def test_no_segment_is_cited_without_personalisation(tuned):
    assert cited(tuned, "noor", "lenient") == {}  # no personalisation consent: no model, no segment


def test_a_journey_weight_of_zero_orders_by_rules_alone(tuned):
    weights = {
        rule.reason.plain: rule.weight
        for rule in tuned.knowledge.policies[POL + "rules-only-1.0.0"].rules
        if rule.reason
    }
    rules_only = decide.next_steps(tuned, "ana", limit=50, policy_id="rules-only").candidates
    for scored in rules_only:
        lifted_by = sum(weights[r] for r in scored.reasons if r in weights)
        assert scored.score == scored.rule_score == pytest.approx(lifted_by), scored
    scores = [s.score for s in rules_only]
    assert scores == sorted(scores, reverse=True)
    assert rules_only[0].score == 0.4 and "Analysts like you start by exploring data" in rules_only[0].reasons
    # With the journey, the same rules rank the first step of the journey above others.
    journey = decide.next_steps(tuned, "ana", limit=50, policy_id="lenient").candidates
    assert [s.step for s in journey] != [s.step for s in rules_only]


def test_the_reasons_are_worded_by_the_versions_templates(tuned):
    plain = decide.next_steps(tuned, "ana", limit=50, policy_id="lenient").candidates
    worded = decide.next_steps(tuned, "ana", limit=50, policy_id="worded").candidates
    catalog = tuned.catalog
    expected = {
        s.step: [
            f"Do {catalog.title(s.step)} first: {r.removeprefix('Needed before ')} needs it"
            if r.startswith("Needed before ")
            else r
            for r in s.reasons
        ]
        for s in plain
    }
    assert {s.step: s.reasons for s in worded} == expected
    assert any(r.startswith("Do ") for s in worded for r in s.reasons)


def test_the_ranking_fills_every_placeholder_the_ontology_offers(tuned):
    policy = tuned.knowledge.policies[POL + "every-placeholder-1.0.0"]
    steps = [s.iri for s in tuned.catalog.steps]
    reasons = [
        r
        for context in CONTEXTS.values()
        for s in rank(steps, policy=policy, context=context, catalog=tuned.catalog, model=TABLE)
        for r in s.reasons
    ]
    marked = [r for r in reasons if r.split(" ", 1)[0] in ("U", "F", "A", "S", "IA", "I")]
    assert {r.split(" ", 1)[0] for r in marked} == {"U", "F", "A", "S", "IA", "I"}
    assert all("{" not in r and "}" not in r and "||" not in r and not r.endswith("|") for r in marked), marked
    assert "S Upload a spreadsheet|Analyst|Retail and e-commerce|1.6|60" in reasons


def test_a_step_that_introduces_nothing_gets_the_journey_reason(tuned):
    policy = tuned.knowledge.policies[POL + "every-placeholder-1.0.0"]
    step = StepInfo(iri=DEMO + "read-the-handbook", id="read-the-handbook", kind="Step", title="Read the handbook")
    catalog = Catalog(entities={step.iri: step})
    catalog.by_id["Step"][step.id] = step
    ranked = rank(
        [step.iri], policy=policy, context=Context(channel=vocab.WEB.value, personalized=False), catalog=catalog
    )
    assert ranked[0].reasons == ["J Read the handbook"]


@pytest.mark.parametrize("context", CONTEXTS.values(), ids=CONTEXTS.keys())
def test_a_retired_version_ranks_as_it_served(demo, context):
    """default@1.1.0 states no thresholds or templates: read with the ontology's wf:whenAbsent values, it ranks
    every step exactly as 1.2.0, which states the values the service ranked 1.1.0 with when it served."""
    policies = demo.knowledge.policies
    retired, active = policies[POL + "default-1.1.0"], policies[POL + "default-1.2.0"]
    assert retired.status == "retired" and active.status == "active"
    steps = [s.iri for s in demo.catalog.steps]
    as_retired = rank(steps, policy=retired, context=context, catalog=demo.catalog, model=TABLE)
    as_active = rank(steps, policy=active, context=context, catalog=demo.catalog, model=TABLE)
    assert as_retired == as_active
    reasons = {r for s in as_retired for r in s.reasons}
    assert any(r.startswith("Needed before ") for r in reasons)
    assert context.personalized == any(CITED in r for r in reasons)


def main() -> None:
    """Write what the code decides for the demo users to tests/fixtures/demo-rankings.json (keeps the users' order)."""
    runtime = demo_runtime(Path(tempfile.mkdtemp()))
    users = list(PINNED) or [u["id"] for u in json.loads((ROOT / "data" / "demo" / "users.json").read_text())["users"]]
    rankings = {user: pinned_ranking(runtime, user) for user in users}
    (FIXTURES / "demo-rankings.json").write_text(json.dumps(rankings, indent=2, ensure_ascii=False))
    sys.stdout.write(f"wrote {FIXTURES / 'demo-rankings.json'}: {len(rankings)} users\n")


if __name__ == "__main__":
    main()
