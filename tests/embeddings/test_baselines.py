"""The tabular baselines on knowledge-graph features, and the world families they are measured on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.gnn import families as bench_families
from embeddings.baselines import (
    AdditiveLogistic,
    CompletionBoosting,
    all_pairs,
    catalog_view,
    pair_features,
    user_view,
)
from embeddings.evaluate import mean_ndcg, popularity_scores, user_ndcg
from embeddings.world import FAMILIES, family_params, generate_world
from tests.embeddings.conftest import SIZES


@pytest.fixture(scope="module")
def views(exported, trained):
    catalog = catalog_view(exported)
    split = trained.split
    return catalog, *(user_view(exported, catalog, ix) for ix in (split.train, split.validation, split.test))


def test_the_catalog_view_reads_areas_depth_and_unlocks_from_the_exported_graph(world, exported):
    catalog = catalog_view(exported)
    steps = [world.steps.index(s) for s in exported.iris("step")]
    true_area = [world.feature_area[world.step_feature[s]] for s in steps]
    # the same partition of steps into areas (the view numbers areas its own way): a one-to-one map
    assert len(set(zip(catalog.step_area, true_area, strict=True))) == len(set(true_area)) == catalog.n_areas

    def closure(s: int) -> set[int]:
        out: set[int] = set()
        todo = list(world.step_requires[s])
        while todo:
            t = todo.pop()
            if t not in out:
                out.add(t)
                todo += world.step_requires[t]
        return out

    assert [int(d) for d in catalog.depth] == [len(closure(s)) for s in steps]
    unlocks = [sum(s in closure(t) for t in range(len(world.steps))) for s in steps]
    assert [int(u) for u in catalog.unlocks] == unlocks


def test_pair_features_put_one_value_in_each_one_hot_block(views):
    catalog, train, *_ = views
    rows, steps = all_pairs(catalog, train)
    phi = pair_features(catalog, train, rows[:50], steps[:50]).toarray()
    assert phi.shape[0] == 50
    step_block = phi[:, : catalog.n_steps]
    assert (step_block.sum(1) == 1).all() and (step_block.argmax(1) == steps[:50]).all()
    area_block = phi[:, catalog.n_steps : catalog.n_steps + catalog.n_areas]
    assert (area_block.argmax(1) == catalog.step_area[steps[:50]]).all()


def test_the_additive_logistic_baseline_learns_the_truth_on_a_small_world(world, exported, trained, views):
    catalog, train, validation, test = views
    model = AdditiveLogistic(catalog).fit(train, validation)
    scores = model.scores(test)
    assert scores.shape == (len(test.role), catalog.n_steps)
    users = [exported.iris("user")[i] for i in trained.split.test.tolist()]
    truth, index = world.truth_table(), exported.index["step"]
    ndcg = mean_ndcg(scores, users=users, truth=truth, step_index=index)
    popular = np.tile(popularity_scores(exported, trained.split.train), (len(users), 1))
    assert ndcg > mean_ndcg(popular, users=users, truth=truth, step_index=index) + 0.2
    assert ndcg > 0.75
    assert model.c in (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def test_gradient_boosting_scores_each_step_as_if_completed_alone(world, exported, trained, views):
    catalog, train, validation, test = views
    model = CompletionBoosting(catalog, seed=0).fit(train, validation)
    scores = model.scores(test)
    assert scores.shape == (len(test.role), catalog.n_steps)
    assert ((scores > 0) & (scores < 1)).all()
    users = [exported.iris("user")[i] for i in trained.split.test.tolist()]
    truth, index = world.truth_table(), exported.index["step"]
    popular = np.tile(popularity_scores(exported, trained.split.train), (len(users), 1))
    assert mean_ndcg(scores, users=users, truth=truth, step_index=index) > mean_ndcg(
        popular, users=users, truth=truth, step_index=index
    )


def test_user_ndcg_is_what_mean_ndcg_averages(world, exported, trained, views):
    catalog, *_, test = views
    users = [exported.iris("user")[i] for i in trained.split.test.tolist()]
    scores = np.random.default_rng(0).random((len(users), catalog.n_steps))
    each = user_ndcg(scores, users=users, truth=world.truth_table(), step_index=exported.index["step"])
    assert each.shape == (len(users),) and ((0 <= each) & (each <= 1)).all()
    assert each.mean() == pytest.approx(
        mean_ndcg(scores, users=users, truth=world.truth_table(), step_index=exported.index["step"])
    )


def test_the_interaction_family_is_the_default_world_draw_for_draw():
    default = generate_world(seed=4, n_users=60, **SIZES)
    family = generate_world(seed=4, n_users=60, params=family_params("interaction"), **SIZES)
    assert all(
        np.array_equal(a.values, b.values) and a.journey == b.journey
        for a, b in zip(default.users, family.users, strict=True)
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_is_seeded_and_has_a_truth(family):
    a = generate_world(seed=4, n_users=80, params=family_params(family), **SIZES)
    b = generate_world(seed=4, n_users=80, params=family_params(family), **SIZES)
    assert all(np.array_equal(x.values, y.values) for x, y in zip(a.users, b.users, strict=True))
    assert all(v >= 0 for u in a.users for v in a.truth(u).values())
    with pytest.raises(ValueError, match="unknown world family"):
        family_params("nope")


def test_plan_gated_areas_are_worth_a_fraction_below_their_plan():
    params = family_params("plan_gated", value_noise=0.0)
    world = generate_world(seed=4, n_users=400, params=params, **SIZES)
    step_area = np.array([world.feature_area[f] for f in world.step_feature])
    n_areas = len(world.areas)
    share: dict[int, set[float]] = {0: set(), 2: set()}
    for u in world.users:
        if u.plan in share:
            full = world.step_quality * n_areas * u.need[step_area]
            share[u.plan] |= {round(float(v / f), 6) for v, f in zip(u.values, full, strict=True) if f > 1e-9}
    assert share[2] == {1.0}  # the top plan reaches every area
    assert share[0] == {1.0, params.plan_gate_factor}  # a free user gets a fraction of the gated areas


def test_the_families_bench_runs_end_to_end_on_a_tiny_world(tmp_path):
    out = tmp_path / "families.json"
    bench_families.main(
        [
            "--families", "additive", "--seeds", "1", "--train", "200",
            "--validation", "100", "--test", "100", "--members", "1", "--out", str(out),
        ]
    )  # fmt: skip
    result = json.loads(out.read_text())
    (pooled,) = result["pooled"]
    assert set(pooled["ndcg5"]) >= {*bench_families.METHODS, "segment_oracle"}
    assert all(lo <= pooled["ndcg5"][m] <= hi for m, (lo, hi) in pooled["ndcg5_interval"].items())
    assert pooled["best_baseline"] in bench_families.BASELINES
    assert result["command"] and (tmp_path / "families.md").exists()
