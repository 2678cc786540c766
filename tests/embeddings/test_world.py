"""The synthetic onboarding world: seeded, planted truth, catalog shapes, store layout."""

from __future__ import annotations

import ast
from typing import Any

import numpy as np
import pyoxigraph as ox
import pytest
import rdflib
from pyshacl import validate

from embeddings.evaluate import ndcg_at_k
from embeddings.world import WORLD_BASE, bayes_values, catalog_turtle, generate_world
from service.knowledge import vocab
from service.synthetic import load_world, user_nquads
from tests.paths import ROOT

SIZES: dict[str, Any] = {"n_steps": 20, "n_features": 30, "n_areas": 4, "n_roles": 4, "n_industries": 3}


@pytest.fixture(scope="module")
def world():
    return generate_world(seed=5, n_users=400, **SIZES)


def test_same_seed_same_world_and_rdf(world):
    again = generate_world(seed=5, n_users=400, **SIZES)
    assert catalog_turtle(again) == catalog_turtle(world)
    assert user_nquads(again) == user_nquads(world)
    other = generate_world(seed=6, n_users=400, **SIZES)
    assert user_nquads(other) != user_nquads(world)


def test_truth_follows_the_area_need_not_the_default_order(world):
    step_area = np.array([world.feature_area[f] for f in world.step_feature])
    for user in world.users[:50]:
        expected = world.step_quality * len(world.areas) * user.need[step_area]
        assert np.abs(user.values - expected).max() < 0.5  # only the small noise apart
        truth = world.truth(user)
        assert set(truth) == {world.steps[s] for s in world.eligible(user)}
    # Logged completions follow the default order, whatever the value.
    counts = np.zeros(len(world.steps))
    for user in world.users:
        for s in user.completed:
            counts[s] += 1
    order = np.array(world.step_order)
    assert np.corrcoef(counts, -order)[0, 1] > 0.5


def test_first_events_tell_about_the_need(world):
    hits = [world.feature_area[f] == int(np.argmax(u.need)) for u in world.users for f in u.early_features]
    assert np.mean(hits) > 1.5 / len(world.areas)
    seg = np.mean(
        [
            ndcg_at_k(bayes_values(world, u, early=False)[world.eligible(u)], u.values[world.eligible(u)])
            for u in world.users[:150]
        ]
    )
    full = np.mean(
        [ndcg_at_k(bayes_values(world, u)[world.eligible(u)], u.values[world.eligible(u)]) for u in world.users[:150]]
    )
    assert full > seg  # segment helps, first events help more: neither is the whole truth
    assert full < 0.999


def test_catalog_turtle_conforms_to_the_catalog_shapes(world):
    data = rdflib.Graph().parse(ROOT / "ontology" / "wayfinder.ttl")
    data.parse(data=catalog_turtle(world), format="turtle")
    shapes = rdflib.Graph().parse(ROOT / "shapes" / "catalog.ttl")
    conforms, _, text = validate(data, shacl_graph=shapes, inference="none", allow_warnings=True)
    assert conforms, text
    steps = set(data.subjects(rdflib.RDF.type, rdflib.URIRef(vocab.STEP.value)))
    assert steps == {rdflib.URIRef(s) for s in world.steps}
    assert all(str(s).startswith(WORLD_BASE) for s in steps)


def test_nquads_follow_the_store_layout(world):
    store = ox.Store()
    load_world(store, world)
    user = world.users[0]
    graph = vocab.user_graph(user.id)
    assert ox.Quad(ox.NamedNode(user.iri), vocab.RDF_TYPE, vocab.USER, graph) in store
    assert ox.Quad(ox.NamedNode(user.iri), vocab.HAS_ROLE, ox.NamedNode(world.roles[user.role]), graph) in store
    events = list(store.quads_for_pattern(None, vocab.BY_USER, ox.NamedNode(user.iri), None))
    assert events and all(q.graph_name == graph for q in events)
    assert all(isinstance(q.subject, ox.NamedNode) and q.subject.value.startswith(vocab.EVENT_BASE) for q in events)
    records = list(store.quads_for_pattern(None, vocab.HAS_DATA_SUBJECT, ox.NamedNode(user.iri), None))
    assert records and all(q.graph_name == vocab.CONSENT_GRAPH for q in records)
    assert any(store.quads_for_pattern(None, vocab.RDF_TYPE, vocab.STEP, world.catalog_graph))
    analytics = sum(u.analytics_active() for u in world.users)
    assert 0.7 * len(world.users) < analytics < len(world.users)  # most, not all


def test_the_shipped_sample_loads(tmp_path):
    store = ox.Store()
    folder = ROOT / "data" / "world"
    store.load(path=str(folder / "catalog.ttl"), format=ox.RdfFormat.TURTLE, to_graph=vocab.catalog_graph("world-7"))
    store.bulk_load(path=str(folder / "users.nq"), format=ox.RdfFormat.N_QUADS)
    users = list(store.quads_for_pattern(None, vocab.RDF_TYPE, vocab.USER, None))
    assert len(users) == 30


def test_the_world_imports_nothing_from_the_service_but_the_vocabulary():
    tree = ast.parse((ROOT / "embeddings" / "world.py").read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }
    assert {name for name in names if name.split(".")[0] == "service"} == {"service.knowledge.vocab"}
