"""Serving a model: new users scored without retraining, fast, from an artefact checked by its hash."""

from __future__ import annotations

import hashlib
import io
import time

import numpy as np
import pytest
import torch

from embeddings.evaluate import model_scores, ndcg_at_k, popularity_scores
from embeddings.evidence import segment_counts
from embeddings.scoring import ArtefactMismatch, Scorer, artefact_bytes, load_model, load_payload, save_model
from tests.embeddings.conftest import N_STORED, assert_served_as_batch_scored, edges_of, request_of


def test_new_users_are_scored_without_retraining(world, exported, trained):
    new_users = world.users[N_STORED:]
    assert not any(u.iri in exported.index["user"] for u in new_users)
    scorer = Scorer(trained.model, exported.index, edges_of(exported))
    popularity = popularity_scores(exported, trained.split.train)
    model_ndcg, popular_ndcg = [], []
    for user in new_users:
        candidates = [world.steps[s] for s in world.eligible(user)]
        scores = scorer.scores(**request_of(world, user), candidates=candidates)
        assert len(scores) == len(candidates) and np.isfinite(scores).all()
        gains = [world.truth(user)[s] for s in candidates]
        model_ndcg.append(ndcg_at_k(scores, gains))
        popular_ndcg.append(ndcg_at_k([popularity[exported.index["step"][s]] for s in candidates], gains))
    assert np.mean(model_ndcg) > np.mean(popular_ndcg) + 0.2
    # The serving path is the model: same scores as the batch path for exported users.
    assert_served_as_batch_scored(world, exported, trained.model, scorer, trained.split.test[:20])


def test_scoring_is_fast(world, exported, trained):
    scorer = Scorer(trained.model, exported.index, edges_of(exported))
    user = world.users[-1]
    candidates = [world.steps[s] for s in world.eligible(user)]
    request = request_of(world, user)
    scorer.scores(**request, candidates=candidates)
    times = []
    for _ in range(200):
        t = time.perf_counter()
        scorer.scores(**request, candidates=candidates)
        times.append(time.perf_counter() - t)
    assert np.median(times) < 0.002


def test_unknown_iris(world, exported, trained):
    scorer = Scorer(trained.model, exported.index, edges_of(exported))
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
    direct = Scorer(trained.model, exported.index, edges_of(exported))
    user = world.users[-2]
    candidates = [world.steps[s] for s in world.eligible(user)]
    assert loaded.scores(**request_of(world, user), candidates=candidates) == direct.scores(
        **request_of(world, user), candidates=candidates
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
    from service.decisions.ranking import Context

    scorer = Scorer(trained.model, exported.index, edges_of(exported))
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


def test_the_segment_evidence_travels_in_the_artefact(world, exported, trained):
    from service.decisions.ranking import Context

    counts = segment_counts(exported, trained.split.train)
    data = artefact_bytes(trained.model, exported, evidence=counts)
    scorer = Scorer.from_bytes(data, sha256=hashlib.sha256(data).hexdigest(), version="v1")
    assert scorer.version == "v1" and scorer.iri.endswith("/model/v1")
    r, i, s = np.unravel_index(np.argmax(counts.completers), counts.completers.shape)
    context = Context(
        channel="WEB", personalized=True, role=exported.iris("role")[r], industry=exported.iris("industry")[i]
    )
    completers, ratio = scorer.segment_outcome(context, exported.iris("step")[s])  # type: ignore[misc]
    assert completers == int(counts.completers[r, i, s])
    rate = counts.activated[r, i] / counts.users[r, i]
    assert ratio == pytest.approx((counts.activators[r, i, s] / counts.completers[r, i, s]) / rate)
    without = Scorer.from_bytes(artefact_bytes(trained.model, exported))
    assert without.segment_outcome(context, exported.iris("step")[s]) is None


@pytest.mark.parametrize(
    "data",
    [b"not a model at all", b"PK\x03\x04 not a zip either", None],
    ids=["bytes", "broken-zip", "not-a-payload"],
)
def test_bytes_that_are_not_an_artefact_are_refused_as_such(data):
    if data is None:  # a well-formed torch file that is not a Wayfinder artefact
        buffer = io.BytesIO()
        torch.save(torch.zeros(3), buffer)
        data = buffer.getvalue()
    with pytest.raises(ValueError, match="not a wayfinder-uplift-gnn/1 artefact"):
        load_payload(data, sha256=hashlib.sha256(data).hexdigest())
    with pytest.raises(ValueError):
        Scorer.from_bytes(data)


@pytest.fixture(scope="module")
def trained_wide(exported):
    from embeddings.train import TrainOptions, train_model

    return train_model(
        exported, seed=0, options=TrainOptions(members=1, epochs=60, wide=True, stack=False), progress=False
    )


def test_a_wide_model_is_served_as_it_is_batch_scored_and_survives_its_artefact(
    world, exported, trained_wide, tmp_path
):
    model = trained_wide.model
    assert model.config.wide
    assert any(p.abs().sum() > 0 for p in model.gnns()[0].wide_parameters())  # it learnt a wide part
    path = tmp_path / "wide.pt"
    sha = save_model(model, exported, path)
    scorer = Scorer.load(path, sha256=sha)
    assert_served_as_batch_scored(world, exported, model, scorer, trained_wide.split.test[:20])


def test_the_wide_part_reads_areas_and_prerequisites_from_the_catalog_relations(world, exported):
    from embeddings.baselines import catalog_view
    from embeddings.inputs import catalog_sizes
    from embeddings.model import catalog_structure

    structure = catalog_structure(edges_of(exported), catalog_sizes(exported.data))
    view = catalog_view(exported)  # the baselines read the same structure their own way
    assert structure["depth"].tolist() == view.depth.tolist()
    assert structure["unlocks"].tolist() == view.unlocks.tolist()
    assert structure["step_feature"].tolist() == view.step_feature.tolist()
    pairs = set(zip(structure["step_area"].tolist(), view.step_area.tolist(), strict=True))
    assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})  # the same partition into areas
    features = exported.iris("feature")
    assert {features[a] for a in structure["step_area"].tolist()} <= {world.features[a] for a in world.areas}
