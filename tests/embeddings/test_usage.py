"""The usage objective (``TrainOptions(objective="usage")``): first events by time, the usage head, the export's times."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pyoxigraph as ox
import pytest
import torch

from embeddings.evaluate import usage_scores
from embeddings.export import export_graph
from embeddings.inputs import UserInputs, catalog_edges, user_inputs
from embeddings.train import TrainOptions, mask_used, train_model
from service.knowledge import vocab
from service.synthetic import SyntheticConsent, SyntheticEvent, SyntheticUser, user_quads


def inputs(users: list[int], features: list[int], times: list[float] | None) -> UserInputs:
    n = max(users) + 1
    return UserInputs(
        role=torch.full((n,), -1),
        industry=torch.full((n,), -1),
        plan=torch.full((n,), -1),
        used_user=torch.tensor(users),
        used_feature=torch.tensor(features),
        used_at=torch.tensor(times, dtype=torch.float64) if times is not None else None,
    )


def pairs(users: torch.Tensor, features: torch.Tensor) -> set[tuple[int, int]]:
    return set(zip(users.tolist(), features.tolist(), strict=True))


def test_keep_k_keeps_each_users_first_events_by_time_and_hides_the_rest():
    # user 0 used features 7, 8, 9, 6 at 30, 10, 20, 40; user 1 used 5 and 4 at 2 and 1; user 2 used 3
    users = inputs([0, 0, 0, 0, 1, 1, 2], [7, 8, 9, 6, 5, 4, 3], [30, 10, 20, 40, 2, 1, 5])
    rest, who, hidden = mask_used(users, torch.Generator().manual_seed(0), keep=2)
    assert pairs(rest.used_user, rest.used_feature) == {(0, 8), (0, 9), (1, 4)}
    assert pairs(who, hidden) == {(0, 7), (0, 6), (1, 5), (2, 3)}  # two or fewer events: all but the last kept
    assert rest.used_at is not None and sorted(rest.used_at.tolist()) == [1.0, 10.0, 20.0]


def test_without_times_keep_k_keeps_k_random_events_and_keep_none_hides_one_per_user():
    users = inputs([0] * 6 + [1] * 3, list(range(9)), None)
    for seed in range(5):
        rest, who, hidden = mask_used(users, torch.Generator().manual_seed(seed), keep=2)
        assert torch.bincount(rest.used_user).tolist() == [2, 2]
        assert pairs(rest.used_user, rest.used_feature) | pairs(who, hidden) == pairs(
            users.used_user, users.used_feature
        )
        assert not pairs(rest.used_user, rest.used_feature) & pairs(who, hidden)
    draws = {tuple(mask_used(users, torch.Generator().manual_seed(s), keep=2)[2].tolist()) for s in range(5)}
    assert len(draws) > 1  # random, not the first ones
    rest, who, _ = mask_used(users, torch.Generator().manual_seed(0))
    assert sorted(who.tolist()) == [0, 1] and rest.used_user.numel() == 7


def test_the_export_stamps_each_used_feature_with_when_the_service_first_recorded_it():
    catalog = ox.NamedNode("https://example.org/catalog")
    a, b = "https://example.org/feature/a", "https://example.org/feature/b"
    quads = [ox.Quad(ox.NamedNode(f), vocab.RDF_TYPE, vocab.FEATURE, catalog) for f in (a, b)]
    start = datetime(2026, 11, 1, tzinfo=UTC)
    at = [start + timedelta(hours=h) for h in (5, 2, 9)]
    user = SyntheticUser(
        id="u1",
        registered_at=start,
        pseudonym="p1",
        consents=[SyntheticConsent("c1", vocab.ANALYTICS.value, True, start)],
        events=[
            SyntheticEvent("e1", vocab.FEATURE_USED.value, at[0], feature=a),
            SyntheticEvent("e2", vocab.FEATURE_USED.value, at[1], feature=a),
            SyntheticEvent("e3", vocab.FEATURE_USED.value, at[2], feature=b),
        ],
    )
    store = ox.Store()
    store.extend(quads + user_quads(user))
    export = export_graph(store)
    got = user_inputs(export.data, torch.tensor([0]))
    first = dict(zip(got.used_feature.tolist(), got.used_at.tolist(), strict=True))
    index = export.index["feature"]
    assert first == {index[a]: at[1].timestamp(), index[b]: at[2].timestamp()}


def test_the_usage_objective_learns_more_than_which_features_are_popular(exported):
    options = TrainOptions(objective="usage", members=1, epochs=60, stack=False, usage_inputs=1)
    result = train_model(exported, seed=0, options=options, progress=False)
    assert result.gnn is None and "stack_c" not in result.metrics
    split = result.split
    scores = usage_scores(result.model, exported, split.validation)
    np.testing.assert_allclose(np.logaddexp.reduce(scores, axis=1), 0.0, atol=1e-5)  # log-probabilities

    # What each validation user's hidden features cost under the model and under popularity, from the same inputs.
    data = exported.data
    val = user_inputs(data, split.validation)
    rest, who, hidden = mask_used(val, torch.Generator().manual_seed(0), keep=1)
    member = result.model.gnns()[0]
    with torch.no_grad():
        catalog = member.encode_catalog(catalog_edges(data))
        log_p = torch.log_softmax(member.usage_logits(catalog, member.encode_users(catalog, rest)), dim=1)
    model_loss = -log_p[who, hidden].mean().item()
    used = data["user", "used", "feature"].edge_index
    counts = torch.bincount(used[1][torch.isin(used[0], split.train)], minlength=int(data["feature"].num_nodes)) + 1.0
    popularity_loss = -(counts / counts.sum()).log()[hidden].mean().item()
    assert model_loss < popularity_loss < math.log(int(data["feature"].num_nodes))


def test_an_unknown_objective_and_a_usage_objective_without_events_are_refused(exported):
    with pytest.raises(ValueError, match="objective"):
        train_model(exported, options=TrainOptions(objective="clicks"), progress=False)
    data = exported.data.clone()
    data["user", "used", "feature"].edge_index = torch.empty((2, 0), dtype=torch.long)
    data["user", "used", "feature"].first_at = torch.empty(0, dtype=torch.float64)
    with pytest.raises(ValueError, match="FeatureUsed"):
        train_model(type(exported)(data=data, index=exported.index), options=TrainOptions(objective="usage"))
