"""Reading policy versions: weights, thresholds and reason templates from Turtle, which version serves,
and retired versions that stay readable, with the decisions they made."""

from __future__ import annotations

import pyoxigraph as ox
import pytest
import rdflib

from service.decisions import decide, users
from service.errors import RefusedWrite, SyntaxProblem
from service.knowledge import files, vocab
from service.knowledge.policies import active_version, read_policies
from service.knowledge.store import value
from service.knowledge.templates import checked_template
from tests.paths import ROOT

POL = "https://w3id.org/wayfinder/policy/"
DEFAULT = ROOT / "ontology" / "policies" / "default.ttl"
KINDS = [
    "unlockReason",
    "usedFeatureReason",
    "usedAreaReason",
    "similarUsersReason",
    "introducesAreaReason",
    "introducesReason",
    "journeyReason",
]
PREFIXES = """@prefix wf:   <https://w3id.org/wayfinder/ontology#> .
@prefix pol:  <https://w3id.org/wayfinder/policy/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix xsd:  <http://www.w3.org/2001/XMLSchema#> .
"""


def default_version(name: str, *, status: str = "active", unlock_reason: str = "Needed before {unlocked}") -> str:
    """Return the Turtle of a version of the default policy that states every ranking property."""
    return f"""
pol:default-{name} a wf:PolicyVersion ;
    wf:versionOf pol:default ; wf:version "{name}" ; wf:status "{status}" ;
    wf:approvedBy "Policy tests" ; wf:approvedAt "2026-11-30T09:00:00Z"^^xsd:dateTime ;
    wf:ruleWeight 1.0 ; wf:modelWeight 0.0 ; wf:journeyWeight 0.5 ;
    wf:depthWeight 0.0 ; wf:unlockWeight 0.1 ; wf:affinityWeight 0.2 ;
    wf:minEvidence 30 ; wf:liftToCite 1.5 ;
    wf:unlockReason "{unlock_reason}" ;
    wf:usedFeatureReason "More on {{feature}}" ;
    wf:usedAreaReason "{{feature}} is part of {{area}}" ;
    wf:similarUsersReason "{{role}}s in {{industry}}: {{lift}}x" ;
    wf:introducesAreaReason "Introduces {{feature}} ({{area}})" ;
    wf:introducesReason "Introduces {{feature}}" ;
    wf:journeyReason "Next up: {{step}}" ;
    wf:hasRule pol:analysts-explore, pol:free-plan-upgrade .
"""


def when_absent() -> dict[str, object]:
    """The ontology's wf:whenAbsent values, read from wayfinder.ttl by rdflib (not by the service)."""
    graph = rdflib.Graph().parse(ROOT / "ontology" / "wayfinder.ttl")
    found = {}
    for prop, implied in graph.subject_objects(rdflib.URIRef(vocab.WF_NS + "whenAbsent")):
        assert isinstance(implied, rdflib.Literal)
        found[vocab.local_id(str(prop))] = implied.toPython()
    return found


def test_a_new_version_states_its_thresholds_and_templates(runtime):
    version = runtime.knowledge.policies[POL + "default-1.2.0"]
    assert (version.journey_weight, version.min_evidence, version.lift_to_cite) == (1.0, 20, 1.2)
    assert sorted(version.templates) == sorted(KINDS)
    assert version.templates["unlockReason"].plain == "Needed before {unlocked}"
    assert version.templates["similarUsersReason"].plain == (
        "{role}s in {industry} who completed this step activated {lift}x as often"
    )
    assert len(version.rules) == 12 and version.status == "active" and version.label == "default@1.2.0"


def test_thresholds_and_templates_are_read_as_the_version_states_them(runtime, tmp_path):
    path = tmp_path / "default-next.ttl"
    path.write_text(PREFIXES + default_version("2.0.0", unlock_reason="Do this before {unlocked}"))
    runtime.load([path])
    version = runtime.knowledge.policies[POL + "default-2.0.0"]
    assert (version.journey_weight, version.min_evidence, version.lift_to_cite) == (0.5, 30, 1.5)
    assert (version.depth_weight, version.unlock_weight, version.affinity_weight, version.model_weight) == (
        0.0,
        0.1,
        0.2,
        0.0,
    )
    assert version.templates["unlockReason"].plain == "Do this before {unlocked}"
    assert version.templates["journeyReason"].plain == "Next up: {step}"
    assert [vocab.local_id(r.iri) for r in version.rules] == ["analysts-explore", "free-plan-upgrade"]


def test_a_version_written_before_them_is_read_with_the_ontologys_values(runtime):
    """default@1.0.0 and 1.1.0 state no thresholds or templates: they get the ontology's wf:whenAbsent values."""
    implied = when_absent()
    assert sorted(implied) == sorted([*KINDS, "journeyWeight", "minEvidence", "liftToCite"])
    for name in ("1.0.0", "1.1.0"):
        version = runtime.knowledge.policies[POL + f"default-{name}"]
        assert version.status == "retired"
        assert version.journey_weight == implied["journeyWeight"]
        assert version.min_evidence == implied["minEvidence"] == 20
        assert version.lift_to_cite == pytest.approx(float(implied["liftToCite"])) == 1.2  # type: ignore[arg-type]
        assert {kind: w.plain for kind, w in version.templates.items()} == {kind: implied[kind] for kind in KINDS}
    # 1.2.0 states the same values: the Turtle moved, the ranking did not.
    states = runtime.knowledge.policies[POL + "default-1.2.0"]
    assert states.templates == runtime.knowledge.policies[POL + "default-1.1.0"].templates


def test_the_highest_active_version_serves(runtime, tmp_path):
    assert active_version(runtime.knowledge.policies, "default").version == "1.2.0"
    path = tmp_path / "default-next.ttl"
    path.write_text(PREFIXES + default_version("1.10.0") + default_version("1.9.0"))
    runtime.load([path])
    served = active_version(runtime.knowledge.policies, "default")
    assert served.version == "1.10.0"  # by number, not as text: 1.10.0 > 1.9.0 > 1.2.0
    users.register(runtime, users.Registration(id="bo", role="manager", plan="free"))
    assert decide.next_steps(runtime, "bo").policy_version == "default@1.10.0"


def test_a_retired_version_stays_readable_and_its_decisions_name_it(runtime, tmp_path):
    users.register(runtime, users.Registration(id="bo", role="manager", plan="free"))
    before = decide.next_steps(runtime, "bo")
    assert before.policy_version == "default@1.2.0"
    # The next release: 1.2.0 retired (its Turtle otherwise unchanged), 1.4.0 active (1.3.0 is the shipped candidate).
    text = DEFAULT.read_text()
    retired = text.replace(
        'wf:version "1.2.0" ;\n    wf:status "active" ;', 'wf:version "1.2.0" ;\n    wf:status "retired" ;'
    )
    assert retired != text
    path = tmp_path / "default.ttl"
    path.write_text(retired + default_version("1.4.0"))
    runtime.load([path])

    policies = runtime.knowledge.policies
    assert active_version(policies, "default").version == "1.4.0"
    old = policies[POL + "default-1.2.0"]
    assert old.status == "retired" and old.min_evidence == 20 and len(old.rules) == 12
    assert old.templates["unlockReason"].plain == "Needed before {unlocked}"
    recorded = decide.read_decision(runtime, before.decision_id)
    assert recorded is not None and recorded.policy_version == "default@1.2.0"
    assert [sorted(s.reasons) for s in recorded.steps] == [sorted(s.reasons) for s in before.steps]  # a set, stored
    why = runtime.store.select(
        runtime.queries["lineage/why-decision"].bind(decision=ox.NamedNode(vocab.DECISION_BASE + before.decision_id))
    )
    assert value(why[0], "policyVersion") == "1.2.0"
    assert value(why[0], "approvedBy") == "Onboarding product team"
    (stored,) = runtime.store.quads(subject=ox.NamedNode(POL + "default-1.2.0"), predicate=vocab.CONTENT_HASH)
    assert why[0]["policyHash"] == stored.object
    assert decide.next_steps(runtime, "bo").policy_version == "default@1.4.0"


def test_a_template_with_an_unknown_placeholder_is_refused_at_load(runtime, tmp_path):
    path = tmp_path / "default-next.ttl"
    path.write_text(PREFIXES + default_version("2.0.0", unlock_reason="Needed before {target}"))
    with pytest.raises(RefusedWrite) as refused:
        runtime.load([path])
    (violation,) = refused.value.violations
    assert violation.focus == POL + "default-2.0.0" and violation.path == vocab.WF_NS + "unlockReason"
    assert "Needed before {target}" in violation.message
    assert "{unlocked}" in violation.message and "{step}" in violation.message
    assert not runtime.store.has_graph(ox.NamedNode(vocab.POLICY_GRAPH_BASE + "default-next"))
    assert POL + "default-2.0.0" not in runtime.knowledge.policies


def test_reading_refuses_a_template_that_skipped_the_load_checks(runtime, tmp_path):
    """A policy graph written around the load (a bulk load, another tool) is checked again when read."""
    path = tmp_path / "default-next.ttl"
    path.write_text(PREFIXES + default_version("2.0.0", unlock_reason="Needed before {target}"))
    graph = ox.NamedNode(vocab.POLICY_GRAPH_BASE + "default-next")
    runtime.store.commit(add=[ox.Quad(t.subject, t.predicate, t.object, graph) for t in files.read_rdf(path)])
    with pytest.raises(SyntaxProblem) as refused:
        read_policies(runtime.store, runtime.queries)
    assert refused.value.source == POL + "default-2.0.0"
    assert "uses {target}, which a wf:unlockReason does not offer; it offers {step}, {unlocked}" in str(refused.value)


@pytest.mark.parametrize(
    ("template", "wrong"),
    [
        ("Before {unlocked:>20}", "{unlocked:>20}"),
        ("Before {unlocked!r}", "{unlocked!r}"),
        ("Before {0}", "{0}"),
        ("Before {}", "{}"),
        ("Before {unlocked.title}", "{unlocked.title}"),
        ("Before {steps}", "{steps}"),
    ],
)
def test_a_template_names_placeholders_only_as_they_are(template, wrong):
    with pytest.raises(SyntaxProblem) as refused:
        checked_template(template, {"step", "unlocked"}, kind="unlockReason", source="pol:x")
    assert f"uses {wrong}" in str(refused.value)


def test_a_template_may_write_literal_braces_and_must_close_its_own():
    assert checked_template("{{literally}} before {unlocked}", {"unlocked"}, kind="k", source="s") == (
        "{{literally}} before {unlocked}"
    )
    with pytest.raises(SyntaxProblem, match="does not parse"):
        checked_template("Before {unlocked", {"unlocked"}, kind="k", source="s")
    with pytest.raises(SyntaxProblem, match="does not parse"):
        checked_template("Before unlocked}", {"unlocked"}, kind="k", source="s")


def test_the_content_hash_covers_thresholds_and_templates():
    sealed = files.seal_policies(files.read_rdf(DEFAULT))
    changed = DEFAULT.read_text().replace("wf:minEvidence 20 ;", "wf:minEvidence 21 ;")
    assert changed != DEFAULT.read_text()
    resealed = files.seal_policies([q.triple for q in ox.parse(changed.encode(), format=ox.RdfFormat.TURTLE)])

    def hashes(triples: list[ox.Triple]) -> dict[str, str]:
        return {t.subject.value: t.object.value for t in triples if t.predicate == vocab.CONTENT_HASH}  # type: ignore[union-attr]

    before, after = hashes(sealed), hashes(resealed)
    assert before[POL + "default-1.2.0"] != after[POL + "default-1.2.0"]
    assert before[POL + "default-1.1.0"] == after[POL + "default-1.1.0"]  # its Turtle and rules did not change


def test_the_stored_content_hash_is_the_sealed_one(runtime):
    sealed = {
        t.subject.value: t.object.value  # type: ignore[union-attr]
        for t in files.seal_policies(files.read_rdf(DEFAULT))
        if t.predicate == vocab.CONTENT_HASH
    }
    for name in ("1.0.0", "1.1.0", "1.2.0"):
        version = POL + f"default-{name}"
        (quad,) = runtime.store.quads(subject=ox.NamedNode(version), predicate=vocab.CONTENT_HASH)
        assert quad.object == ox.Literal(sealed[version])


def test_a_store_whose_ontology_predates_templates_says_to_reload_it(runtime):
    old = [
        q
        for q in runtime.store.quads(graph=vocab.ONTOLOGY_GRAPH)
        if q.predicate.value in (vocab.WF_NS + "whenAbsent", str(rdflib.RDFS.subPropertyOf))
    ]
    assert old
    runtime.store.commit(remove=old)
    with pytest.raises(SyntaxProblem, match="reload it"):
        read_policies(runtime.store, runtime.queries)
