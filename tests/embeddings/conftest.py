"""A synthetic world exported from a real store, and a short training run on it, built once per session.

The last users of the world stay out of the store: they are the new users a trained
model has never seen.
"""

from __future__ import annotations

import dataclasses

import pyoxigraph as ox
import pytest

from embeddings.export import Export, export_graph
from embeddings.inputs import catalog_edges
from embeddings.train import TrainOptions, train_model
from embeddings.world import World, generate_world
from service.synthetic import load_world

SIZES = {"n_steps": 20, "n_features": 30, "n_areas": 4, "n_roles": 4, "n_industries": 3}
N_STORED = 2500
N_NEW = 400
QUICK = TrainOptions(members=1, epochs=150)


@pytest.fixture(scope="session")
def world():
    return generate_world(seed=9, n_users=N_STORED + N_NEW, **SIZES)


@pytest.fixture(scope="session")
def exported(world):
    store = ox.Store()
    load_world(store, dataclasses.replace(world, users=world.users[:N_STORED]))  # the last users stay unseen
    return export_graph(store)


@pytest.fixture(scope="session")
def trained(world, exported):
    return train_model(exported, seed=0, options=QUICK, truth=world.truth_table(), progress=False)


def request_of(world: World, user) -> dict:
    """What a scoring request says of a user: profile IRIs and the features of their first events."""
    return {
        "role": world.roles[user.role],
        "industry": world.industries[user.industry],
        "plan": world.plans[user.plan],
        "used_features": [world.features[f] for f in user.early_features],
    }


def assert_served_as_batch_scored(world: World, exported: Export, model, scorer, users) -> None:
    """The serving path is the model: a Scorer gives exported users the scores of the batch path."""
    import numpy as np

    from embeddings.evaluate import model_scores

    batch = model_scores(model, exported, users)
    steps = exported.iris("step")
    for row, i in enumerate(users.tolist()):
        user = world.user(exported.iris("user")[i].rsplit("/", 1)[-1])
        assert np.allclose(scorer.scores(**request_of(world, user), candidates=steps), batch[row], atol=1e-5)


def edges_of(exported: Export):
    return catalog_edges(exported.data)
