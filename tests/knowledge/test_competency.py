"""Competency questions over the demo catalog: each query in queries/catalog/ gives the hand-derived answer.

The ontology and the catalog sit in their own named graphs of an in-memory
pyoxigraph store, without OWL entailments, so the queries must follow
transitive properties with property paths themselves. Expected answers are
written out by hand from ontology/catalog/demo.ttl (see its header), never
recomputed from the same data.
"""

from __future__ import annotations

from collections import Counter

import pyoxigraph as ox
import pytest

from tests.paths import ROOT

QUERIES = ROOT / "queries" / "catalog"
DEMO = "https://w3id.org/wayfinder/demo/"
WF = "https://w3id.org/wayfinder/ontology#"
RDF_TYPE = ox.NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#type")


def demo(local: str) -> ox.NamedNode:
    return ox.NamedNode(DEMO + local)


def wf(local: str) -> ox.NamedNode:
    return ox.NamedNode(WF + local)


@pytest.fixture(scope="module")
def store() -> ox.Store:
    store = ox.Store()
    store.load(
        path=ROOT / "ontology" / "wayfinder.ttl",
        format=ox.RdfFormat.TURTLE,
        to_graph=ox.NamedNode("https://w3id.org/wayfinder/graph/ontology"),
    )
    store.load(
        path=ROOT / "ontology" / "catalog" / "demo.ttl",
        format=ox.RdfFormat.TURTLE,
        to_graph=ox.NamedNode("https://w3id.org/wayfinder/graph/catalog/demo"),
    )
    return store


def ask(store: ox.Store, name: str, **parameters: ox.NamedNode) -> list[dict[str, object]]:
    """Return the rows of queries/catalog/NAME.rq with the parameters bound, as {variable: term value}."""
    text = (QUERIES / f"{name}.rq").read_text(encoding="utf-8")
    solutions = store.query(
        text,
        substitutions={ox.Variable(key): value for key, value in parameters.items()},
        use_default_graph_as_union=True,
    )
    variables = [v.value for v in solutions.variables]
    rows = []
    for solution in solutions:
        row = {}
        for variable in variables:
            term = solution[variable]
            if term is None:
                row[variable] = None
            elif isinstance(term, ox.NamedNode):
                row[variable] = term.value.removeprefix(DEMO)
            elif term.datatype == ox.NamedNode("http://www.w3.org/2001/XMLSchema#integer"):
                row[variable] = int(term.value)
            else:
                row[variable] = term.value
        rows.append(row)
    return rows


def ids(rows: list[dict[str, object]], variable: str) -> set[object]:
    return {row[variable] for row in rows}


# Steps open to every role on every plan, whose prerequisites are open too.
OPEN_TO_EVERYONE = {
    "take-product-tour",
    "explore-sample-data",
    "upload-spreadsheet",
    "learn-data-sources",
    "build-first-chart",
    "create-dashboard",
    "add-dashboard-filters",
    "invite-teammates",
    "share-dashboard",
    "comment-on-chart",
    "get-mobile-app",
    "how-teams-collaborate",
}
# Steps any role reaches from the team plan up: team steps and one step that needs a team step.
# The steps that teach something in the administration area.
ADMINISTRATION_STEPS = {
    "open-admin-console",
    "set-up-roles",
    "restrict-rows",
    "configure-sso",
    "review-audit-log",
    "choose-plan",
}
# The engineer's own steps on any plan from team up.
ENGINEER_STEPS = {
    "connect-warehouse",
    "install-tracking-sdk",
    "write-first-query",
    "define-first-metric",
    "model-your-data",
    "turn-query-into-chart",
}
TEAM_PLAN_STEPS = {"schedule-report", "deliver-reports-to-slack", "set-metric-alert", "enable-push-alerts"}


#################################################################
# Every query file is documented
#################################################################


@pytest.mark.parametrize("rq", sorted(QUERIES.glob("*.rq")), ids=lambda p: p.name)
def test_every_competency_query_states_its_question_and_parameters(rq):
    lines = rq.read_text(encoding="utf-8").splitlines()
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line)
    assert header and header[0].rstrip().endswith("?"), "the first line states the question"
    assert any("Parameters:" in line or "No parameters" in line for line in header)


#################################################################
# prerequisites.rq
#################################################################


def test_prerequisites_of_a_four_deep_step_include_the_whole_chain(store):
    rows = ask(store, "prerequisites", step=demo("deliver-reports-to-slack"))
    assert [row["prerequisite"] for row in rows] == [
        "explore-sample-data",
        "build-first-chart",
        "create-dashboard",
        "schedule-report",
    ]
    assert rows[0]["label"] == "Explore the sample dataset"


def test_prerequisites_follow_every_branch(store):
    rows = ask(store, "prerequisites", step=demo("comment-on-chart"))
    assert ids(rows, "prerequisite") == {"build-first-chart", "explore-sample-data", "invite-teammates"}


def test_prerequisites_of_a_first_step_are_none(store):
    assert ask(store, "prerequisites", step=demo("take-product-tour")) == []


#################################################################
# steps-for-area.rq
#################################################################


def test_steps_for_an_area_include_steps_for_features_nested_below_it(store):
    rows = ask(store, "steps-for-area", area=demo("reporting"))
    assert {(row["step"], row["feature"]) for row in rows} == {
        ("weekly-insights-digest", "reporting"),
        ("schedule-report", "scheduled-reports"),
        ("deliver-reports-to-slack", "chat-delivery"),  # two levels below Reporting
        ("set-metric-alert", "metric-alerts"),
        ("enable-push-alerts", "metric-alerts"),  # not its Mobile dashboards feature
    }


def test_steps_for_an_area_no_step_introduces_directly_come_from_its_parts(store):
    rows = ask(store, "steps-for-area", area=demo("exploration"))
    assert {(row["step"], row["feature"]) for row in rows} == {
        ("explore-sample-data", "visual-explorer"),
        ("write-first-query", "sql-editor"),
        ("turn-query-into-chart", "sql-editor"),
    }


def test_steps_for_a_top_level_area_cover_the_whole_subtree(store):
    rows = ask(store, "steps-for-area", area=demo("administration"))
    assert ids(rows, "step") == ADMINISTRATION_STEPS


def test_steps_for_the_orphan_feature_are_none(store):
    assert ask(store, "steps-for-area", area=demo("data-lineage")) == []


#################################################################
# reachable-steps.rq
#################################################################


def test_reachable_steps_for_analyst_on_free_plan_exclude_team_and_enterprise_steps(store):
    rows = ask(store, "reachable-steps", role=demo("analyst"), plan=demo("free"))
    assert ids(rows, "step") == OPEN_TO_EVERYONE | {
        "write-first-query",
        "add-calculated-field",
        "turn-query-into-chart",
    }


def test_reachable_steps_exclude_an_open_step_whose_prerequisite_needs_a_higher_plan(store):
    # enable-push-alerts has no plan of its own but requires set-metric-alert (team).
    free = ids(ask(store, "reachable-steps", role=demo("analyst"), plan=demo("free")), "step")
    team = ids(ask(store, "reachable-steps", role=demo("analyst"), plan=demo("team")), "step")
    assert "enable-push-alerts" not in free
    assert "enable-push-alerts" in team


def test_reachable_steps_for_analyst_on_enterprise_plan_include_team_steps_through_plan_inclusion(store):
    rows = ask(store, "reachable-steps", role=demo("analyst"), plan=demo("enterprise"))
    assert ids(rows, "step") == OPEN_TO_EVERYONE | TEAM_PLAN_STEPS | {
        "write-first-query",
        "add-calculated-field",
        "turn-query-into-chart",
    }


def test_reachable_steps_for_engineer_on_team_plan_exclude_enterprise_steps(store):
    rows = ask(store, "reachable-steps", role=demo("engineer"), plan=demo("team"))
    assert ids(rows, "step") == OPEN_TO_EVERYONE | TEAM_PLAN_STEPS | ENGINEER_STEPS


def test_reachable_steps_for_engineer_exclude_a_step_whose_prerequisite_targets_another_role(store):
    # restrict-rows targets engineers on enterprise, but requires set-up-roles, which is for admins only.
    rows = ask(store, "reachable-steps", role=demo("engineer"), plan=demo("enterprise"))
    assert ids(rows, "step") == OPEN_TO_EVERYONE | TEAM_PLAN_STEPS | ENGINEER_STEPS | {"embed-dashboard"}


def test_reachable_steps_for_admin_on_enterprise_plan_include_every_admin_step(store):
    rows = ask(store, "reachable-steps", role=demo("admin"), plan=demo("enterprise"))
    assert ids(rows, "step") == OPEN_TO_EVERYONE | TEAM_PLAN_STEPS | ADMINISTRATION_STEPS | {"connect-warehouse"}


def test_reachable_steps_for_manager_on_free_plan(store):
    rows = ask(store, "reachable-steps", role=demo("manager"), plan=demo("free"))
    assert ids(rows, "step") == OPEN_TO_EVERYONE | {"weekly-insights-digest", "choose-plan"}
    assert all(row["label"] for row in rows)


#################################################################
# orphan-features.rq
#################################################################


def test_orphan_features_are_exactly_those_no_step_teaches_at_or_below(store):
    # Exploration is introduced by no step directly but is covered through its parts,
    # so the only orphan is the Data lineage graph leaf.
    assert ask(store, "orphan-features") == [{"feature": "data-lineage", "label": "Data lineage graph"}]


#################################################################
# step-depth.rq
#################################################################

# Longest prerequisite chain of every step, and its number of transitive prerequisites.
EXPECTED_DEPTH = {
    "take-product-tour": (0, 0),
    "explore-sample-data": (0, 0),
    "upload-spreadsheet": (0, 0),
    "connect-warehouse": (0, 0),
    "install-tracking-sdk": (0, 0),
    "learn-data-sources": (0, 0),
    "build-first-chart": (1, 1),
    "write-first-query": (1, 1),
    "add-calculated-field": (1, 1),
    "define-first-metric": (1, 1),
    "model-your-data": (2, 2),
    "create-dashboard": (2, 2),
    "add-dashboard-filters": (3, 3),
    "turn-query-into-chart": (2, 2),
    "invite-teammates": (0, 0),
    "share-dashboard": (3, 3),
    "comment-on-chart": (2, 3),
    "get-mobile-app": (3, 3),
    "schedule-report": (3, 3),
    "deliver-reports-to-slack": (4, 4),
    "set-metric-alert": (2, 2),
    "enable-push-alerts": (3, 3),
    "weekly-insights-digest": (0, 0),
    "embed-dashboard": (4, 4),
    "open-admin-console": (0, 0),
    "set-up-roles": (1, 1),
    "restrict-rows": (2, 2),
    "configure-sso": (1, 1),
    "review-audit-log": (1, 1),
    "choose-plan": (0, 0),
    "how-teams-collaborate": (0, 0),
}


def test_step_depth_is_the_longest_prerequisite_chain_of_every_step(store):
    rows = ask(store, "step-depth")
    assert {row["step"]: (row["depth"], row["prerequisiteCount"]) for row in rows} == EXPECTED_DEPTH
    assert [row["step"] for row in rows] == list(EXPECTED_DEPTH)  # in default journey order


def test_step_depth_counts_the_longest_chain_not_every_prerequisite(store):
    # comment-on-chart requires build-first-chart (which requires explore-sample-data) and invite-teammates.
    row = next(row for row in ask(store, "step-depth") if row["step"] == "comment-on-chart")
    assert (row["depth"], row["prerequisiteCount"]) == (2, 3)


def test_step_depth_reads_the_same_with_materialised_transitive_prerequisites(store):
    # The service stores OWL entailments next to the catalog: wf:requires shortcuts must not change depths.
    shortcuts = ox.Store()
    shortcuts.extend(store)
    entailments = ox.NamedNode("https://w3id.org/wayfinder/graph/entailments")
    for quad in store.query(
        "PREFIX wf: <https://w3id.org/wayfinder/ontology#> "
        "CONSTRUCT { ?s wf:requires ?p } WHERE { ?s wf:requires+ ?p }",
        use_default_graph_as_union=True,
    ):
        shortcuts.add(ox.Quad(quad.subject, quad.predicate, quad.object, entailments))
    rows = ask(shortcuts, "step-depth")
    assert {row["step"]: (row["depth"], row["prerequisiteCount"]) for row in rows} == EXPECTED_DEPTH


#################################################################
# The demo catalog's shape
#################################################################


def instances(store: ox.Store, cls: str) -> set[str]:
    return {q.subject.value.removeprefix(DEMO) for q in store.quads_for_pattern(None, RDF_TYPE, wf(cls))}


def objects(store: ox.Store, subject: str, predicate: str) -> set[str]:
    return {q.object.value.removeprefix(DEMO) for q in store.quads_for_pattern(demo(subject), wf(predicate), None)}


def test_demo_catalog_has_the_promised_size_and_vocabulary(store):
    steps = instances(store, "Step")
    features = instances(store, "Feature")
    assert len(steps) >= 25
    assert len(features) >= 15
    assert len(instances(store, "Role")) == 4
    assert len(instances(store, "Industry")) == 3
    assert instances(store, "Plan") == {"free", "team", "enterprise"}
    channels = {channel for step in steps for channel in objects(store, step, "availableOn")}
    assert channels == {WF + "Web", WF + "Mobile", WF + "InApp", WF + "Email"}
    assert any(objects(store, step, "forRole") for step in steps)
    assert any(len(objects(store, step, "forRole")) == 2 for step in steps)
    assert any(objects(store, step, "requiresPlan") for step in steps)


def test_every_demo_step_has_a_title_comment_feature_channel_and_unique_default_order(store):
    label = ox.NamedNode("http://www.w3.org/2000/01/rdf-schema#label")
    comment = ox.NamedNode("http://www.w3.org/2000/01/rdf-schema#comment")
    orders = []
    for step in instances(store, "Step"):
        assert list(store.quads_for_pattern(demo(step), label, None)), step
        assert list(store.quads_for_pattern(demo(step), comment, None)), step
        assert objects(store, step, "introduces") <= instances(store, "Feature"), step
        assert objects(store, step, "introduces"), step
        assert objects(store, step, "availableOn"), step
        (order,) = [int(q.object.value) for q in store.quads_for_pattern(demo(step), wf("defaultOrder"), None)]
        orders.append(order)
    assert sorted(orders) == list(range(10, 10 * len(orders) + 1, 10))


def test_every_demo_local_name_is_unique(store):
    subjects = {
        q.subject.value for q in store.quads_for_pattern(None, RDF_TYPE, None) if q.subject.value.startswith(DEMO)
    }
    local_names = Counter(iri.rsplit("/", 1)[-1] for iri in subjects)
    assert [name for name, n in local_names.items() if n > 1] == []


def test_demo_prerequisites_have_no_cycle_and_chains_reach_depth_four(store):
    requires = {step: objects(store, step, "requires") for step in instances(store, "Step")}
    depth: dict[str, int] = {}

    def longest(step: str, path: tuple[str, ...]) -> int:
        assert step not in path, f"prerequisite cycle: {' -> '.join((*path, step))}"
        if step not in depth:
            depth[step] = max((1 + longest(p, (*path, step)) for p in requires[step]), default=0)
        return depth[step]

    assert max(longest(step, ()) for step in requires) == 4


def test_demo_feature_hierarchy_is_at_least_three_levels_deep(store):
    part_of = {feature: objects(store, feature, "partOf") for feature in instances(store, "Feature")}

    def levels(feature: str) -> int:
        return 1 + max((levels(parent) for parent in part_of[feature]), default=0)

    assert max(levels(feature) for feature in part_of) >= 3
    assert levels("chat-delivery") == 4
