"""The candidate set is exactly right: checked against an independent oracle over many users.

The oracle walks the catalog in Python (transitive prerequisites, role and plan
restrictions, channels) from the Turtle files themselves, not from the service's
catalog view, and must agree with the one SPARQL query on every channel, also
when other users' histories fill the store.
"""

from __future__ import annotations

import random

import pytest
import rdflib

from service.decisions import decide, subjects, users
from service.decisions.candidates import candidate_steps
from tests.paths import ROOT

WF = rdflib.Namespace("https://w3id.org/wayfinder/ontology#")
DEMO = "https://w3id.org/wayfinder/demo/"
CHANNELS = {"WEB": WF.Web, "MOBILE": WF.Mobile, "IN_APP": WF.InApp, "EMAIL": WF.Email}
ROLES = ["analyst", "engineer", "manager", "admin"]
PLANS = ["free", "team", "enterprise"]


@pytest.fixture(scope="module")
def catalog_graph() -> rdflib.Graph:
    graph = rdflib.Graph()
    graph.parse(ROOT / "ontology" / "catalog" / "demo.ttl")
    return graph


def closure(graph: rdflib.Graph, start, prop) -> set:
    seen, frontier = set(), [start]
    while frontier:
        for nxt in graph.objects(frontier.pop(), prop):
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return seen


def oracle(graph, *, role, plan, channel, completed, dismissed) -> set[str]:
    role_iri, plan_iri = rdflib.URIRef(DEMO + role), rdflib.URIRef(DEMO + plan)
    plans = {plan_iri} | closure(graph, plan_iri, WF.includesPlan)
    done = {rdflib.URIRef(DEMO + s) for s in completed}
    gone = done | {rdflib.URIRef(DEMO + s) for s in dismissed}
    result = set()
    for step in graph.subjects(rdflib.RDF.type, WF.Step):
        roles = set(graph.objects(step, WF.forRole))
        needs = set(graph.objects(step, WF.requiresPlan))
        if (
            (step, WF.availableOn, CHANNELS[channel]) in graph
            and step not in gone
            and closure(graph, step, WF.requires) <= done
            and (not roles or role_iri in roles)
            and needs <= plans
        ):
            result.add(str(step).removeprefix(DEMO))
    return result


def candidates(runtime, user_id: str, channel: str) -> set[str]:
    """What the service's candidate query answers, as demo step IDs."""
    return {
        iri.removeprefix(DEMO) for iri in candidate_steps(runtime, subjects.user_node(user_id), str(CHANNELS[channel]))
    }


def test_candidates_match_the_oracle_for_random_users_on_every_channel(runtime, catalog_graph):
    rng = random.Random(7)
    steps = sorted(str(s).removeprefix(DEMO) for s in catalog_graph.subjects(rdflib.RDF.type, WF.Step))
    checked = 0
    for i in range(60):
        role = rng.choice(ROLES)
        plan = rng.choice(PLANS)
        users.register(runtime, users.Registration(id=f"r{i}", role=role, plan=plan, consents=["PERSONALIZATION"]))
        # Completion out of prerequisite order on purpose: a completed step whose own
        # prerequisite is missing must not unlock what depends on it.
        completed = rng.sample(steps, rng.randint(0, 12))
        dismissed = rng.sample([s for s in steps if s not in completed], rng.randint(0, 3))
        users.record_events(
            runtime,
            [users.EventReport(f"r{i}", "STEP_COMPLETED", step_id=s) for s in completed]
            + [users.EventReport(f"r{i}", "STEP_DISMISSED", step_id=s) for s in dismissed],
        )
        for channel in CHANNELS:
            expected = oracle(
                catalog_graph, role=role, plan=plan, channel=channel, completed=completed, dismissed=dismissed
            )
            assert candidates(runtime, f"r{i}", channel) == expected, (role, plan, channel, completed, dismissed)
            checked += 1
    assert checked == 240


def test_candidates_match_the_oracle_beside_other_users_long_histories(runtime, catalog_graph):
    """Other users of every role and plan completed or dismissed every step, twice over:
    a join to their events or profiles would add or remove candidates of the users checked."""
    rng = random.Random(11)
    steps = sorted(str(s).removeprefix(DEMO) for s in catalog_graph.subjects(rdflib.RDF.type, WF.Step))
    features = sorted(str(f).removeprefix(DEMO) for f in catalog_graph.subjects(rdflib.RDF.type, WF.Feature))
    noise: list[users.EventReport] = []
    for i, (role, plan) in enumerate((r, p) for r in ROLES for p in PLANS):
        for kind in ("STEP_COMPLETED", "STEP_DISMISSED"):
            uid = f"other-{i}-{kind[5:].lower()}"
            users.register(runtime, users.Registration(id=uid, role=role, plan=plan, consents=["ANALYTICS"]))
            noise += [users.EventReport(uid, kind, step_id=s) for s in steps * 2]
            noise += [users.EventReport(uid, "FEATURE_USED", feature_id=f) for f in rng.sample(features, 6)]
    users.record_events(runtime, noise)

    def deep_history(role: str, plan: str, rounds: int) -> list[str]:
        """Complete, one at a time, a step the user could be shown: the chains grow level by level."""
        done: list[str] = []
        for _ in range(rounds):
            open_now = set().union(
                *(
                    oracle(catalog_graph, role=role, plan=plan, channel=c, completed=done, dismissed=[])
                    for c in CHANNELS
                )
            )
            if not open_now:
                break
            done.append(rng.choice(sorted(open_now)))
        return done

    cases: list[tuple[str, str, str, list[str], list[str]]] = []
    for role in ROLES:
        for plan in PLANS:
            deep = deep_history(role, plan, rng.randint(8, 16))
            reachable = set().union(
                *(
                    oracle(catalog_graph, role=role, plan=plan, channel=c, completed=deep, dismissed=[])
                    for c in CHANNELS
                )
            )
            cases += [
                (role, plan, "fresh", [], []),
                # Deep chains, and the candidates they unlock partly dismissed.
                (role, plan, "deep", deep, rng.sample(sorted(reachable), min(2, len(reachable)))),
                # The deepest steps done with a link of the chain missing: nothing above the gap unlocks.
                (role, plan, "gap", [s for s in deep if s != deep[len(deep) // 3]] if deep else [], []),
                # Everything dismissed but one step: only what that step unlocks, if anything.
                (role, plan, "dismissed", deep[:1], [s for s in steps if s not in deep[:1]]),
            ]
    reports: list[users.EventReport] = []
    for n, (role, plan, kind, completed, dismissed) in enumerate(cases):
        uid = f"checked-{n}-{kind}"
        users.register(runtime, users.Registration(id=uid, role=role, plan=plan, consents=["PERSONALIZATION"]))
        reports += [users.EventReport(uid, "STEP_COMPLETED", step_id=s) for s in completed]
        reports += [users.EventReport(uid, "STEP_DISMISSED", step_id=s) for s in dismissed]
    users.record_events(runtime, reports)
    checked = 0
    for n, (role, plan, kind, completed, dismissed) in enumerate(cases):
        uid = f"checked-{n}-{kind}"
        for channel in CHANNELS:
            expected = oracle(
                catalog_graph, role=role, plan=plan, channel=channel, completed=completed, dismissed=dismissed
            )
            assert candidates(runtime, uid, channel) == expected, (role, plan, kind, channel, completed, dismissed)
            checked += 1
    assert checked == 4 * 12 * 4
    # The histories reach down the chains: some completed step has 3 or more prerequisites, transitively.
    deepest = max(
        len(closure(catalog_graph, rdflib.URIRef(DEMO + s), WF.requires))
        for _, _, kind, completed, _ in cases
        if kind == "deep"
        for s in completed
    )
    assert deepest >= 3


def test_deep_chain_unlocks_one_level_at_a_time(runtime):
    users.register(runtime, users.Registration(id="deep", role="manager", plan="team", consents=[]))
    chain = [
        "explore-sample-data",
        "build-first-chart",
        "create-dashboard",
        "schedule-report",
        "deliver-reports-to-slack",
    ]
    for done, nxt in zip(chain, chain[1:], strict=False):
        ids = {
            s.step.removeprefix(DEMO) for s in decide.next_steps(runtime, "deep", channel="WEB", limit=50).candidates
        }
        assert nxt not in ids
        users.record_events(runtime, [users.EventReport("deep", "STEP_COMPLETED", step_id=done)])
        ids = {
            s.step.removeprefix(DEMO) for s in decide.next_steps(runtime, "deep", channel="WEB", limit=50).candidates
        }
        assert nxt in ids


def test_plan_inclusion_is_transitive(runtime):
    users.register(runtime, users.Registration(id="ent", role="manager", plan="enterprise"))
    users.register(runtime, users.Registration(id="free", role="manager", plan="free"))
    for uid in ("ent", "free"):
        users.record_events(
            runtime,
            [
                users.EventReport(uid, "STEP_COMPLETED", step_id=s)
                for s in ("explore-sample-data", "build-first-chart", "create-dashboard")
            ],
        )
    ent = {s.step.removeprefix(DEMO) for s in decide.next_steps(runtime, "ent", channel="WEB", limit=50).candidates}
    free = {s.step.removeprefix(DEMO) for s in decide.next_steps(runtime, "free", channel="WEB", limit=50).candidates}
    assert "schedule-report" in ent  # needs team; enterprise includes team
    assert "schedule-report" not in free
