"""Training, evaluation against the planted truth, determinism, new users, and the artefact."""

from __future__ import annotations

import dataclasses
import hashlib
import time

import numpy as np
import pyoxigraph as ox
import pytest
import torch

from embeddings.evaluate import evaluate, mean_ndcg, model_scores, ndcg_at_k, popularity_scores, segment_lift
from embeddings.export import export_graph
from embeddings.scoring import ArtefactMismatch, Scorer, load_model, save_model
from embeddings.train import TrainOptions, train_model
from embeddings.world import generate_world
from service.synthetic import load_world

SIZES = {"n_steps": 20, "n_features": 30, "n_areas": 4, "n_roles": 4, "n_industries": 3}
N_STORED = 2500
N_NEW = 400
QUICK = TrainOptions(members=1, epochs=150)


@pytest.fixture(scope="module")
def world():
    return generate_world(seed=9, n_users=N_STORED + N_NEW, **SIZES)


@pytest.fixture(scope="module")
def exported(world):
    store = ox.Store()
    load_world(store, dataclasses.replace(world, users=world.users[:N_STORED]))  # the last users stay unseen
    return export_graph(store)


@pytest.fixture(scope="module")
def trained(world, exported):
    return train_model(exported, seed=0, options=QUICK, truth=world.truth_table(), progress=False)


def test_ndcg():
    assert ndcg_at_k([3, 2, 1], [3, 2, 1], k=2) == pytest.approx(1.0)
    assert ndcg_at_k([1, 2, 3], [3, 2, 0], k=1) == pytest.approx(0.0)
    assert 0 < ndcg_at_k([2, 3, 1], [3, 2, 1], k=2) < 1


def test_short_training_beats_popularity_against_the_truth(world, exported, trained):
    metrics = evaluate(
        trained.model, exported, train=trained.split.train, test=trained.split.test, truth=world.truth_table()
    )
    assert metrics["model"] > metrics["popularity"] + 0.2
    assert metrics["model"] > metrics["random"] + 0.2
    assert metrics["model"] > metrics["segment_lift"]
    assert "val_ndcg5" in trained.metrics and any("val_loss" in row for row in trained.history)


def test_segment_lift_table(exported, trained):
    lift = segment_lift(exported, trained.split.train)
    rows = lift.table(exported, top=2)
    assert rows and all(len(r["top_steps"]) == 2 for r in rows)
    assert rows[0]["top_steps"][0]["lift"] >= rows[0]["top_steps"][1]["lift"]
    assert popularity_scores(exported, trained.split.train).sum() > 0


def test_same_seed_same_scores(exported):
    options = TrainOptions(members=2, epochs=10, eval_every=5)
    first = train_model(exported, seed=4, options=options, progress=False)
    second = train_model(exported, seed=4, options=options, progress=False)
    other = train_model(exported, seed=5, options=dataclasses.replace(options, members=1), progress=False)
    users = first.split.test
    a, b = model_scores(first.model, exported, users), model_scores(second.model, exported, users)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, model_scores(other.model, exported, other.split.test[: users.numel()]))
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key])


def _request(world, user) -> dict:
    return {
        "role": world.roles[user.role],
        "industry": world.industries[user.industry],
        "plan": world.plans[user.plan],
        "used_features": [world.features[f] for f in user.early_features],
    }


def test_new_users_are_scored_without_retraining(world, exported, trained):
    new_users = world.users[N_STORED:]
    assert not any(u.iri in exported.index["user"] for u in new_users)
    scorer = Scorer(trained.model, exported.index, _edges(exported))
    popularity = popularity_scores(exported, trained.split.train)
    model_ndcg, popular_ndcg = [], []
    for user in new_users:
        candidates = [world.steps[s] for s in world.eligible(user)]
        scores = scorer.scores(**_request(world, user), candidates=candidates)
        assert len(scores) == len(candidates) and np.isfinite(scores).all()
        gains = [world.truth(user)[s] for s in candidates]
        model_ndcg.append(ndcg_at_k(scores, gains))
        popular_ndcg.append(ndcg_at_k([popularity[exported.index["step"][s]] for s in candidates], gains))
    assert np.mean(model_ndcg) > np.mean(popular_ndcg) + 0.2
    # The serving path is the model: same scores as the batch path for exported users.
    users = trained.split.test[:20]
    batch = model_scores(trained.model, exported, users)
    steps = exported.iris("step")
    for row, i in enumerate(users.tolist()):
        user = world.user(exported.iris("user")[i].rsplit("/", 1)[-1])
        assert np.allclose(scorer.scores(**_request(world, user), candidates=steps), batch[row], atol=1e-5)


def test_scoring_is_fast(world, exported, trained):
    scorer = Scorer(trained.model, exported.index, _edges(exported))
    user = world.users[-1]
    candidates = [world.steps[s] for s in world.eligible(user)]
    request = _request(world, user)
    scorer.scores(**request, candidates=candidates)
    times = []
    for _ in range(200):
        t = time.perf_counter()
        scorer.scores(**request, candidates=candidates)
        times.append(time.perf_counter() - t)
    assert np.median(times) < 0.002


def test_unknown_iris(world, exported, trained):
    scorer = Scorer(trained.model, exported.index, _edges(exported))
    plain = scorer.scores(candidates=world.steps[:3])
    assert plain == scorer.scores(
        role="https://example.org/unknown", used_features=["https://example.org/x"], candidates=world.steps[:3]
    )
    with pytest.raises(KeyError):
        scorer.scores(candidates=["https://example.org/not-a-step"])


def test_artefact_round_trip_with_its_hash(world, exported, trained, tmp_path):
    path = tmp_path / "model.pt"
    sha = save_model(trained.model, exported, path, metrics={"val_ndcg5": trained.metrics["val_ndcg5"]})
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    loaded = Scorer.load(path, sha256=sha)
    direct = Scorer(trained.model, exported.index, _edges(exported))
    user = world.users[-2]
    candidates = [world.steps[s] for s in world.eligible(user)]
    assert loaded.scores(**_request(world, user), candidates=candidates) == direct.scores(
        **_request(world, user), candidates=candidates
    )
    assert loaded.version == sha[:16]
    model, index, _ = load_model(path)
    assert set(index) == {"step", "feature", "role", "industry", "plan"}  # no user data in the artefact
    assert np.array_equal(
        model_scores(model, exported, trained.split.test), model_scores(trained.model, exported, trained.split.test)
    )
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ArtefactMismatch):
        Scorer.load(path, sha256=sha)


def test_scorer_fits_the_service_protocol(world, exported, trained):
    from service.decisions.policies import Context

    scorer = Scorer(trained.model, exported.index, _edges(exported))
    user = world.users[-3]
    context = Context(
        channel="WEB",
        personalized=True,
        role=world.roles[user.role],
        industry=world.industries[user.industry],
        plan=world.plans[user.plan],
        used_features=[world.features[f] for f in user.early_features],
    )
    scores = scorer.score(context, [world.steps[0], "https://example.org/unknown"])
    assert list(scores) == [world.steps[0]]


def _edges(exported):
    from embeddings.inputs import catalog_edges

    return catalog_edges(exported.data)


def test_mean_ndcg_uses_the_truths_candidates(world, exported, trained):
    users = [exported.iris("user")[i] for i in trained.split.test.tolist()]
    scores = model_scores(trained.model, exported, trained.split.test)
    assert 0.0 < mean_ndcg(scores, users=users, truth=world.truth_table(), step_index=exported.index["step"]) <= 1.0
