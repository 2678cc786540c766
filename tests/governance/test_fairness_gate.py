"""The fairness gate, on a real store: a policy version with a planted disparity is refused approval with a stored
report whose figures are fairlearn's, an unbiased one passes, a model version is promoted only when its groups are
shown alike, a withdrawn FAIRNESS consent (or an erasure) takes the user out of the next report, a protected group
needs that consent at registration, and ranking never reads the group.

The demo governance policy (ontology/policies/governance.ttl) sets the limits: groups of 20 users or more, an
activation difference of at most 0.10, an exposure ratio of at least 0.80 for every step.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyoxigraph as ox
import pytest
from fairlearn.metrics import MetricFrame  # type: ignore[import-untyped, unused-ignore]
from typer.testing import CliRunner

from service.audit import erasure
from service.decisions import consent, decide, users
from service.errors import Conflict, ConsentRequired, NotFound
from service.governance import approvals, fairness_gate
from service.knowledge import vocab
from service.knowledge.embedded import Store
from service.models import lifecycle, records
from service.runtime import Runtime
from service.settings import Settings
from tests.models.conftest import register_untrained

POL = "https://w3id.org/wayfinder/policy/"
DEMO = "https://w3id.org/wayfinder/demo/"
CONSENTS = ["PERSONALIZATION", "ANALYTICS", "FAIRNESS"]
TOUR = "take-product-tour"
# Two candidate versions of the default policy: 9.0.0 sends the tour to the bottom for healthcare users (a rule on
# their industry, which the age bands follow in the population below); 9.1.0 is the same without that rule.
CANDIDATES = """
@prefix wf:   <https://w3id.org/wayfinder/ontology#> .
@prefix demo: <https://w3id.org/wayfinder/demo/> .
@prefix pol:  <https://w3id.org/wayfinder/policy/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .

pol:default-9.0.0 a wf:PolicyVersion ;
    rdfs:label "Default policy 9.0.0: no tour for healthcare"@en ;
    wf:versionOf pol:default ; wf:version "9.0.0" ; wf:status "candidate" ;
    wf:ruleWeight 1.0 ; wf:modelWeight 0.0 ; wf:depthWeight 0.0 ; wf:unlockWeight 0.0 ; wf:affinityWeight 0.0 ;
    wf:hasRule pol:healthcare-skips-the-tour .
pol:healthcare-skips-the-tour a wf:RankingRule ;
    rdfs:label "Healthcare skips the tour"@en ;
    wf:whenIndustry demo:healthcare ; wf:targetStep demo:take-product-tour ; wf:weight -20 .

pol:default-9.1.0 a wf:PolicyVersion ;
    rdfs:label "Default policy 9.1.0: the journey alone"@en ;
    wf:versionOf pol:default ; wf:version "9.1.0" ; wf:status "candidate" ;
    wf:ruleWeight 1.0 ; wf:modelWeight 0.0 ; wf:depthWeight 0.0 ; wf:unlockWeight 0.0 ; wf:affinityWeight 0.0 .
"""
REPORTS = "lineage/fairness-reports"


@dataclass(frozen=True)
class Planned:
    """A user as the test registers them: what the report may count of them."""

    id: str
    group: str
    industry: str
    activated: bool
    role: str = "analyst"


def planted_population() -> list[Planned]:
    """18-34: 21 retail analysts; 55+: 16 healthcare and 4 retail analysts; 35-54: 2 users, too few to report.
    About half of every group activated (10 of 21, 10 of 20): activation is alike, exposure to the tour is not."""
    people = [Planned(f"young-{i:02}", "age-18-34", "retail", i < 10) for i in range(21)]
    people += [
        Planned(f"older-{i:02}", "age-55-plus", "healthcare" if i < 16 else "retail", i % 2 == 0) for i in range(20)
    ]
    people += [Planned(f"middle-{i}", "age-35-54", "retail", i == 0) for i in range(2)]
    return people


def enrol(runtime: Runtime, people: list[Planned], *, plan: str = "free") -> None:
    """Register everyone with a FAIRNESS consent and their group; record an ACTIVATED event for those who did."""
    for p in people:
        users.register(
            runtime,
            users.Registration(
                id=p.id, role=p.role, industry=p.industry, plan=plan, consents=CONSENTS, protected_group=p.group
            ),
        )
    users.record_events(runtime, [users.EventReport(user_id=p.id, type="ACTIVATED") for p in people if p.activated])


def fresh(knowledge_quads, tmp_path: Path) -> Runtime:
    store = Store(":memory:")
    store.commit(add=knowledge_quads)
    return Runtime(settings=Settings(store=":memory:", models_dir=tmp_path / "models"), store=store)


@pytest.fixture
def planted(runtime: Runtime, tmp_path: Path) -> Runtime:
    """The demo store with both candidates, the planted population and three users who declared no group."""
    path = tmp_path / "candidates.ttl"
    path.write_text(CANDIDATES)
    runtime.load([path])
    enrol(runtime, planted_population())
    for i in range(3):
        users.register(runtime, users.Registration(id=f"nogroup-{i}", role="analyst", plan="free", consents=CONSENTS))
    return runtime


def reports(runtime: Runtime, version_iri: str) -> list[dict]:
    """The stored fairness reports of a version, as the auditors' lineage query gives them."""
    query = runtime.queries[REPORTS].bind(version=ox.NamedNode(version_iri))
    return [{k: (v.value if v is not None else None) for k, v in row.items()} for row in runtime.store.select(query)]


def dcg(shown: tuple[tuple[str, int], ...], step: str) -> float:
    """Exposure straight from the definition: 1 / log2(1 + the best rank the step was shown at), 0 if never."""
    ranks = [r for s, r in shown if s == step]
    return 1.0 / math.log2(1 + min(ranks)) if ranks else 0.0


def test_a_planted_disparity_is_refused_approval_with_a_stored_report_whose_figures_are_fairlearns(planted):
    with pytest.raises(Conflict, match="refused by the fairness gate") as refused:
        approvals.approve_policy(planted, "default@9.0.0", by="ops-bo")
    assert f"exposure to step {TOUR}: ratio between groups" in refused.value.message
    assert "activation" not in refused.value.message  # half of every group activated
    iri = POL + "default-9.0.0"
    assert approvals.of(planted, iri) == []  # nothing but the report was written
    (stored,) = reports(planted, iri)
    assert stored["passed"] == "false" and stored["kind"] == vocab.POLICY_VERSION.value
    assert (stored["users"], stored["groups"]) == ("43", "3")  # no group, no count; the small group counted
    assert stored["governance"] == "https://w3id.org/wayfinder/governance/release-gates"
    assert TOUR in stored["breaches"]
    figures = json.loads(stored["figures"])
    assert figures["protectedAttribute"] == "age band" and figures["limits"]["minExposureRatio"] == 0.8
    found = figures["report"]
    assert {g["group"]: (g["users"], g["suppressed"]) for g in found["groups"]} == {
        "age-18-34": (21, False),
        "age-35-54": (2, True),
        "age-55-plus": (20, False),
    }

    # The same users' data, recomputed: the plan says who is in which group and who activated; what the version
    # shows each (offline, in user order) is the gate's own population, and the planted rule is visible in it.
    people = sorted(planted_population(), key=lambda p: vocab.user_iri(p.id).value)
    seen = fairness_gate.population(planted, planted.knowledge.policies[iri])
    assert list(seen.groups) == [p.group for p in people]
    assert list(seen.activated) == [int(p.activated) for p in people]
    for p, shown in zip(people, seen.shown, strict=True):
        tour = next(r for s, r in shown if s == TOUR)
        assert tour == (len(shown) if p.industry == "healthcare" else 1)
    reported = [i for i, p in enumerate(people) if p.group != "age-35-54"]
    steps = [b["step"] for b in found["exposure"]]
    assert TOUR in steps
    values = {s: np.array([dcg(seen.shown[i], s) for i in reported]) for s in steps}

    def mean_of(y_true, y_pred, values):
        return float(np.mean(values))

    y = np.array([int(people[i].activated) for i in reported])
    frame = MetricFrame(
        metrics={"activation": lambda y_true, y_pred: float(np.mean(y_true))} | {s: mean_of for s in steps},
        y_true=y,
        y_pred=y,
        sensitive_features=[people[i].group for i in reported],
        sample_params={s: {"values": values[s]} for s in steps},
    )
    difference, ratio = frame.difference(method="between_groups"), frame.ratio(method="between_groups")
    for breakdown in [found["activation"], *found["exposure"]]:
        name = breakdown["step"] or "activation"
        by_group = {g["group"]: g["value"] for g in breakdown["groups"]}
        for group, figure in by_group.items():
            assert figure["value"] == pytest.approx(frame.by_group[name][group], abs=1e-12)
            assert figure["low"] <= figure["value"] <= figure["high"]
        assert breakdown["disparity"]["difference"]["value"] == pytest.approx(difference[name], abs=1e-12)
        assert breakdown["disparity"]["ratio"]["value"] == pytest.approx(ratio[name], abs=1e-12)
    tour = next(b for b in found["exposure"] if b["step"] == TOUR)["disparity"]
    assert tour["ratio"]["value"] < 0.8 and tour["ratio"]["high"] < 0.8  # sure of it, not only on the point
    assert (tour["lowest"], tour["highest"]) == ("age-55-plus", "age-18-34")


def test_an_unbiased_candidate_passes_and_its_report_is_stored_with_it(planted):
    approved = approvals.approve_policy(planted, "default@9.1.0", by="ops-bo")
    assert approved.verdict == approvals.APPROVED
    (stored,) = reports(planted, POL + "default-9.1.0")
    assert stored["passed"] == "true" and not stored["breaches"] and stored["users"] == "43"
    # A rejection is not judged: it needs no fairness check.
    approvals.approve_policy(planted, "default@9.0.0", by="ops-cy", verdict=approvals.REJECTED)
    assert reports(planted, POL + "default-9.0.0") == []


def test_a_withdrawn_fairness_consent_takes_the_user_out_of_the_next_report(planted):
    before = fairness_gate.judge(planted, "default@9.1.0")
    group = vocab.user_graph("young-00")
    assert any(planted.store.quads(predicate=vocab.HAS_PROTECTED_GROUP, graph=group))
    consent.set_consent(planted, "young-00", "FAIRNESS", granted=False)
    assert not any(planted.store.quads(predicate=vocab.HAS_PROTECTED_GROUP, graph=group))  # deleted, not kept
    assert users.profile(planted, "young-00") is not None  # the rest of the profile stays
    after = fairness_gate.judge(planted, "default@9.1.0")
    assert after.users == before.users - 1 == 42
    counts = lambda j: {g.group: g.users for g in j.report.groups}  # noqa: E731
    assert counts(after) == {**counts(before), "age-18-34": 20}
    # Consenting again does not bring the deleted group back: the user would declare it anew.
    consent.set_consent(planted, "young-00", "FAIRNESS", granted=True)
    assert fairness_gate.judge(planted, "default@9.1.0").users == 42


def test_an_erased_user_leaves_no_protected_group_and_no_count(planted):
    erasure.erase(planted, "older-00", requested_by="dpo")
    assert not any(planted.store.quads(subject=vocab.user_iri("older-00")))
    assert not any(
        planted.store.quads(
            predicate=vocab.HAS_PROTECTED_GROUP,
            object=ox.NamedNode(DEMO + "age-55-plus"),
            graph=vocab.user_graph("older-00"),
        )
    )
    judged = fairness_gate.judge(planted, "default@9.1.0").report
    assert judged is not None and {g.group: g.users for g in judged.groups}["age-55-plus"] == 19


def test_a_protected_group_needs_a_fairness_consent_at_registration(runtime):
    with pytest.raises(ConsentRequired) as refused:
        users.register(runtime, users.Registration(id="ana", consents=["PERSONALIZATION"], protected_group="age-18-34"))
    assert refused.value.message.startswith("input.protectedGroup: ") and "FAIRNESS" in refused.value.message
    assert refused.value.details == [
        {"field": "input.protectedGroup", "reason": "consent required", "purposes": ["FAIRNESS"]}
    ]
    with pytest.raises(NotFound, match="input.protectedGroup: no protected group with ID 'age-99'") as unknown:
        users.register(runtime, users.Registration(id="ana", consents=["FAIRNESS"], protected_group="age-99"))
    assert "age-18-34" in unknown.value.message  # the known groups are listed
    assert not any(runtime.store.quads(subject=vocab.user_iri("ana")))  # neither stored anything
    users.register(runtime, users.Registration(id="ana", consents=["FAIRNESS"], protected_group="age-18-34"))
    assert any(runtime.store.quads(predicate=vocab.HAS_PROTECTED_GROUP, object=ox.NamedNode(DEMO + "age-18-34")))


def test_registration_over_graphql_names_the_field_and_the_purpose(client):
    mutation = "mutation R($input: RegisterUserInput!) { registerUser(input: $input) { id } }"
    error = client.error(mutation, {"input": {"id": "bo", "protectedGroup": "age-55-plus", "consents": ["ANALYTICS"]}})
    assert error["extensions"]["code"] == "CONSENT_REQUIRED" and "input.protectedGroup" in error["message"]
    ok = {"id": "bo", "protectedGroup": "age-55-plus", "consents": ["FAIRNESS", "PERSONALIZATION"]}
    assert client.data(mutation, {"input": ok}) == {"registerUser": {"id": "bo"}}
    consents = client.data('{ user(id: "bo") { consents { purpose granted } } }')["user"]["consents"]
    assert {"purpose": "FAIRNESS", "granted": True} in consents


def test_ranking_never_reads_the_protected_group(runtime):
    for user_id, group in (("with-group", "age-55-plus"), ("twin", None)):
        users.register(
            runtime,
            users.Registration(
                id=user_id, role="manager", industry="fintech", plan="team", consents=CONSENTS, protected_group=group
            ),
        )
    with_group, twin = decide.next_steps(runtime, "with-group"), decide.next_steps(runtime, "twin")
    assert with_group.personalized and [s.step for s in with_group.steps] == [s.step for s in twin.steps]
    assert [s.reasons for s in with_group.steps] == [s.reasons for s in twin.steps]
    used = {q.object.value for q in runtime.store.quads(predicate=vocab.PROV_USED, graph=vocab.AUDIT_GRAPH)}
    groups = {q.subject.value for q in runtime.store.quads(predicate=vocab.RDF_TYPE, object=vocab.PROTECTED_GROUP)}
    assert groups and not used & groups


def test_a_model_version_is_promoted_only_when_the_groups_are_shown_alike(knowledge_quads, tmp_path):
    """A real GNN, trained briefly. Under the active policy it serves with, users of the same profiles see the same
    steps whatever their group; groups that are different roles do not (a step only managers may see)."""
    from service.models import training

    alike = fresh(knowledge_quads, tmp_path)
    mixed = [
        Planned(f"{band}-{i:02}", f"age-{band}", "retail", i % 3 == 0, role="analyst" if i % 2 else "manager")
        for band in ("18-34", "55-plus")
        for i in range(20)
    ]
    enrol(alike, mixed)
    version = training.train(alike, epochs=3, members=1, requested_by="ops-ann").version
    assert lifecycle.promote(alike, version, approved_by="ops-bo").status is records.Status.ACTIVE
    (passed,) = reports(alike, vocab.MODEL_BASE + version)
    assert passed["passed"] == "true" and passed["kind"] == vocab.MODEL_VERSION_CLASS.value
    assert json.loads(passed["figures"])["rankedBy"] == "default@1.2.0"

    apart = fresh(knowledge_quads, tmp_path)
    enrol(
        apart,
        [Planned(p.id, p.group, p.industry, p.activated, "analyst" if "18-34" in p.id else "manager") for p in mixed],
    )
    trained = records.artefact(alike, records.find(alike, version))
    same = register_untrained(apart, trained, requested_by="ops-ann")
    assert same == version
    with pytest.raises(Conflict, match=f"model version {version} is refused by the fairness gate") as refused:
        lifecycle.promote(apart, version, approved_by="ops-bo")
    assert "exposure to step choose-plan" in refused.value.message
    assert records.find(apart, version).status is records.Status.CANDIDATE
    assert approvals.of(apart, vocab.MODEL_BASE + version) == []
    (blocked,) = reports(apart, vocab.MODEL_BASE + version)
    assert blocked["passed"] == "false" and blocked["users"] == "40"


def test_the_report_over_graphql_and_the_command_line(planted, tmp_path):
    from starlette.testclient import TestClient

    from service.api.app import create_app
    from tests.graphql_client import GraphQLClient

    query = """query F($v: String!) { fairnessReport(version: $v) {
        version kind rankedBy users passed breaches protectedAttribute governancePolicy
        groups { group users suppressed }
        exposure { stepId groups { group value { estimate lower upper } } ratio { estimate lower upper } } } }"""
    with TestClient(create_app(planted)) as http:
        found = GraphQLClient(http).data(query, {"v": "default@9.0.0"})["fairnessReport"]
    assert (found["kind"], found["users"], found["passed"]) == ("policy version", 43, False)
    assert found["protectedAttribute"] == "age band" and any(TOUR in b for b in found["breaches"])
    tour = next(b for b in found["exposure"] if b["stepId"] == TOUR)
    assert tour["ratio"]["estimate"] < 0.8
    assert reports(planted, POL + "default-9.0.0") == []  # a query stores nothing

    from service.cli import app

    disk = Store(tmp_path / "store")
    disk.commit(add=list(planted.store.quads()))
    disk.close()
    result = CliRunner().invoke(app, ["fairness", "report", "default@9.0.0", "--store", str(tmp_path / "store")])
    assert result.exit_code == 1, result.output
    assert (
        "43 users" in result.output and "breach" in result.output and "age-35-54 2 (too few to report)" in result.output
    )
    assert "refused by the fairness gate" in result.output
