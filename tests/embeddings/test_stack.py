"""The stacked ranker: cross-fitted GNN scores and knowledge-graph crosses in one regression, served as one model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import sparse

from embeddings.baselines import all_pairs, catalog_view, completion_sums, pair_features, user_view
from embeddings.evaluate import mean_ndcg, model_scores, popularity_scores
from embeddings.scoring import Scorer, save_model
from embeddings.stack import fold_users, gnn_features, stack_ensemble
from embeddings.train import train_model
from tests.embeddings.conftest import QUICK, assert_served_as_batch_scored

STACK = dataclasses.replace(QUICK, epochs=80, stack=True)


@pytest.fixture(scope="module")
def stacked(world, exported):
    return train_model(exported, seed=0, options=STACK, progress=False)


def test_folds_partition_the_training_users_and_need_two_at_least():
    users = torch.arange(100, 161)
    parts = fold_users(users, 3, seed=4)
    assert sorted(torch.cat(parts).tolist()) == users.tolist()
    assert sorted(p.numel() for p in parts) == [20, 20, 21]
    assert [p.tolist() for p in parts] == [p.tolist() for p in fold_users(users, 3, seed=4)]  # seeded
    with pytest.raises(ValueError, match="folds"):
        fold_users(users, 1, seed=0)


def test_a_wide_gnn_is_not_stacked(exported):
    with pytest.raises(ValueError, match="wide"):
        train_model(exported, options=dataclasses.replace(STACK, wide=True), progress=False)


def test_the_folded_model_is_the_stacked_regression(exported, stacked):
    """Its log-odds are the regression's, and each step's uplift is the weighted GNN uplift plus the crosses."""
    gnn, model, split = stacked.gnn, stacked.model, stacked.split
    assert gnn is not None and model.config.wide and not gnn.config.wide
    assert stacked.metrics["stack_deep_weight"] == pytest.approx(model.config.deep_weight, abs=1e-6)
    # refit on the same folds to reach the regression itself (the training run keeps only the folded model)
    catalog = catalog_view(exported)
    users = split.validation
    view = user_view(exported, catalog, users)
    for scale in (1.0, 0.3):  # the GNN's columns as they are, and shrunk (a stronger penalty on them)
        fit = stack_ensemble(
            exported, full=gnn, folds=[(gnn, split.train)], validation=users, grid=(0.1,), scales=(scale,)
        )
        assert fit.gnn_scale == scale
        x = sparse.hstack([completion_sums(catalog, view), scale * gnn_features(gnn, exported, users)]).tocsr()
        folded = gnn_features(fit.model, exported, users)  # [sum of uplift over completed, base]
        assert np.allclose(folded.sum(1), fit.regression.decision_function(x), atol=1e-4)
        rows, steps = all_pairs(catalog, view)
        features = pair_features(catalog, view, rows, steps)
        crosses = (features @ fit.regression.coef_[0][:-2]).reshape(-1, catalog.n_steps)
        expected = fit.deep_weight * model_scores(gnn, exported, users) + crosses
        assert np.allclose(model_scores(fit.model, exported, users), expected, atol=1e-4)
        assert fit.deep_weight == pytest.approx(scale * fit.regression.coef_[0][-2])
        assert abs(fit.deep_weight) > 0  # the GNN's uplift carries weight


def test_the_penalty_on_the_gnn_columns_is_chosen_on_validation_loss(exported, stacked):
    gnn, split = stacked.gnn, stacked.split
    folds, grid = [(gnn, split.train)], (0.03, 0.3)
    alone = {
        scale: stack_ensemble(
            exported, full=gnn, folds=folds, validation=split.validation, grid=grid, scales=(scale,)
        ).validation_loss
        for scale in (1.0, 0.1)
    }
    fit = stack_ensemble(exported, full=gnn, folds=folds, validation=split.validation, grid=grid, scales=(1.0, 0.1))
    assert fit.validation_loss == min(alone.values())
    assert fit.gnn_scale == min(alone, key=alone.__getitem__)


def test_the_stacked_model_is_served_as_it_is_batch_scored(world, exported, stacked, tmp_path):
    path = tmp_path / "stacked.pt"
    scorer = Scorer.load(path, sha256=save_model(stacked.model, exported, path))
    assert_served_as_batch_scored(world, exported, stacked.model, scorer, stacked.split.test[:20])


def test_stacking_ranks_held_out_users_well_on_a_small_fixed_world(world, exported, stacked):
    split = stacked.split
    users = [exported.iris("user")[i] for i in split.test.tolist()]
    truth, index = world.truth_table(), exported.index["step"]
    ndcg = mean_ndcg(model_scores(stacked.model, exported, split.test), users=users, truth=truth, step_index=index)
    popular = np.tile(popularity_scores(exported, split.train), (split.test.numel(), 1))
    assert ndcg > mean_ndcg(popular, users=users, truth=truth, step_index=index) + 0.2
    assert ndcg > 0.75
