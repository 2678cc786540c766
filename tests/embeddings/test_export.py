"""Export of a store to PyG: counts, index maps, and only users with an active ANALYTICS consent."""

from __future__ import annotations

from datetime import UTC, datetime

import pyoxigraph as ox
import pytest

from embeddings.export import consent_records, consented_users, export_graph
from embeddings.world import generate_world
from service.clock import datetime_literal
from service.knowledge import vocab
from service.synthetic import load_world

SIZES = {"n_steps": 20, "n_features": 30, "n_areas": 4, "n_roles": 4, "n_industries": 3}


@pytest.fixture(scope="module")
def world():
    return generate_world(seed=3, n_users=600, **SIZES)


@pytest.fixture(scope="module")
def exported(world):
    store = ox.Store()
    load_world(store, world)
    return export_graph(store)


def test_counts_match_the_world(world, exported):
    data, index = exported.data, exported.index
    kept = [u for u in world.users if u.analytics_active()]
    assert data["user"].num_nodes == len(kept) == len(index["user"])
    assert data["step"].num_nodes == len(world.steps)
    assert data["feature"].num_nodes == len(world.features)
    assert (data["role"].num_nodes, data["industry"].num_nodes, data["plan"].num_nodes) == (4, 3, 3)
    assert data["user", "completed", "step"].num_edges == sum(len(set(u.completed)) for u in kept)
    assert data["user", "dismissed", "step"].num_edges == sum(len(set(u.dismissed)) for u in kept)
    assert data["user", "used", "feature"].num_edges == sum(len(set(u.early_features)) for u in kept)
    assert data["user", "hasRole", "role"].num_edges == len(kept)
    assert data["step", "introduces", "feature"].num_edges == len(world.steps)
    ancestors = 0
    for f in range(len(world.features)):
        p = world.feature_parent[f]
        while p >= 0:
            ancestors, p = ancestors + 1, world.feature_parent[p]
    assert data["feature", "partOf", "feature"].num_edges == ancestors  # the transitive closure
    assert data["plan", "includesPlan", "plan"].num_edges == 3  # free < team < enterprise, closed
    for rel in ("completed", "used", "hasRole", "introduces", "partOf"):
        assert any(t[1] == f"rev_{rel}" for t in data.edge_types)
    for user in kept[:100]:
        i = index["user"][user.iri]
        assert bool(data["user"].y[i]) == user.activated
    assert data["user"].y.sum() > 0


def test_index_maps_point_at_the_right_nodes(world, exported):
    user = next(u for u in world.users if u.analytics_active() and u.completed)
    i = exported.index["user"][user.iri]
    edge_index = exported.data["user", "completed", "step"].edge_index
    done = {exported.iris("step")[s] for s in edge_index[1][edge_index[0] == i].tolist()}
    assert done == {world.steps[s] for s in user.completed}


def test_users_without_an_active_analytics_consent_are_absent(world, exported):
    never = [u for u in world.users if not any(name == "Analytics" for name, _, _ in u.consents)]
    withdrawn = [u for u in world.users if [g for n, g, _ in u.consents if n == "Analytics"] == [True, False]]
    regranted = [u for u in world.users if [g for n, g, _ in u.consents if n == "Analytics"] == [True, False, True]]
    assert never and withdrawn
    for user in never + withdrawn:
        assert user.iri not in exported.index["user"]
    for user in regranted:
        assert user.iri in exported.index["user"]


def _record(
    store: ox.Store, user: ox.NamedNode, name: str, purpose: ox.NamedNode, status: ox.NamedNode, at: datetime
) -> None:
    record, g = ox.NamedNode(vocab.CONSENT_BASE + name), vocab.CONSENT_GRAPH
    for p, o in (
        (vocab.RDF_TYPE, vocab.CONSENT_RECORD),
        (vocab.HAS_DATA_SUBJECT, user),
        (vocab.HAS_PURPOSE, purpose),
        (vocab.HAS_CONSENT_STATUS, status),
        (vocab.HAS_LEGAL_BASIS, vocab.CONSENT_LEGAL_BASIS),
        (vocab.IS_INDICATED_AT_TIME, datetime_literal(at)),
    ):
        store.add(ox.Quad(record, p, o, g))


def test_the_latest_record_decides_and_a_tie_means_withdrawn():
    store = ox.Store()
    at = lambda hour: datetime(2026, 3, 1, hour, tzinfo=UTC)  # noqa: E731
    cases = {
        "late-withdrawal": [(vocab.CONSENT_GIVEN, at(9)), (vocab.CONSENT_WITHDRAWN, at(10))],
        "regiven": [(vocab.CONSENT_WITHDRAWN, at(9)), (vocab.CONSENT_GIVEN, at(11)), (vocab.CONSENT_GIVEN, at(8))],
        "tie": [(vocab.CONSENT_GIVEN, at(9)), (vocab.CONSENT_WITHDRAWN, at(9))],
        "other-purpose-only": [],
        "given": [(vocab.CONSENT_GIVEN, at(9))],
    }
    for user_id, records in cases.items():
        user = vocab.user_iri(user_id)
        store.add(ox.Quad(user, vocab.RDF_TYPE, vocab.USER, vocab.user_graph(user_id)))
        for k, (status, when) in enumerate(records):
            _record(store, user, f"{user_id}-{k}", vocab.ANALYTICS, status, when)
        _record(store, user, f"{user_id}-p", vocab.PERSONALIZATION, vocab.CONSENT_GIVEN, at(12))
    assert consented_users(store) == {vocab.USER_BASE + "regiven", vocab.USER_BASE + "given"}
    assert len(consented_users(store, purpose=vocab.PERSONALIZATION)) == 5
    exported = export_graph(store)
    assert set(exported.index["user"]) == {vocab.USER_BASE + "regiven", vocab.USER_BASE + "given"}


def test_the_export_reads_the_record_the_service_reads_for_each_user(world):
    """One consent rule: the export's records are those consent-current.rq gives user by user, as the service asks."""
    from service.knowledge.queries import Query
    from tests.paths import ROOT

    store = ox.Store()
    load_world(store, world)
    current = Query.load(ROOT / "queries" / "service" / "consent-current.rq")
    exported = consent_records(store)
    for user in world.users[:60]:
        node = ox.NamedNode(user.iri)
        rows = list(store.query(current.bind(user=node, purpose=vocab.ANALYTICS), use_default_graph_as_union=True))
        granted = [r["record"].value for r in rows if r["status"] == vocab.CONSENT_GIVEN]
        assert len(rows) <= 1
        assert exported.get(user.iri) == (granted[0] if granted else None)
        assert (user.iri in exported) == user.analytics_active()
