"""Training: the same seed gives the same model, bit for bit; another seed another one."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from embeddings.evaluate import model_scores
from embeddings.train import TrainOptions, train_model


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
