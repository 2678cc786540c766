"""Training on two processes (torch.distributed, gloo, data parallel over the training users) gives a model as good
as one process's on the same data and seed."""

from __future__ import annotations

import dataclasses

import torch

from embeddings.evaluate import mean_ndcg, model_scores
from embeddings.train import train_model
from tests.embeddings.conftest import QUICK


def held_out_ndcg(result, exported, world) -> float:
    users = result.split.test
    return mean_ndcg(
        model_scores(result.model, exported, users),
        users=[exported.iris("user")[i] for i in users.tolist()],
        truth=world.truth_table(),
        step_index=exported.index["step"],
    )


def test_two_processes_train_a_model_within_0_01_ndcg_of_one(world, exported, trained):
    two = train_model(exported, seed=0, options=QUICK, truth=world.truth_table(), progress=False, processes=2)
    assert two.metrics["processes"] == 2
    assert torch.equal(two.split.test, trained.split.test)
    alone, shared = held_out_ndcg(trained, exported, world), held_out_ndcg(two, exported, world)
    assert shared > 0.7  # it learnt: popularity scores far lower on this world
    assert abs(shared - alone) <= 0.01, (alone, shared)
    # Each process fitted on half the users: the parameters are close to one process's, not equal to them.
    differs = [k for k, v in two.model.state_dict().items() if not torch.equal(v, trained.model.state_dict()[k])]
    assert differs


def test_batches_of_users_train_as_well_as_the_whole_set_at_once(world, exported, trained):
    batched = train_model(
        exported,
        seed=0,
        options=dataclasses.replace(QUICK, batch_users=600),
        truth=world.truth_table(),
        progress=False,
    )
    assert abs(held_out_ndcg(batched, exported, world) - held_out_ndcg(trained, exported, world)) <= 0.03
