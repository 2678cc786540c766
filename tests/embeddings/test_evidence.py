"""Segment evidence: outcome counts per (role, industry) segment, consistent with the exported users."""

from __future__ import annotations

import torch

from embeddings.evidence import segment_counts
from embeddings.inputs import completion_matrix, user_inputs


def test_segment_counts_add_up_to_the_users_counted(exported):
    users = torch.arange(int(exported.data["user"].num_nodes))
    counts = segment_counts(exported, users)
    inputs = user_inputs(exported.data, users)
    known = (inputs.role >= 0) & (inputs.industry >= 0)
    assert counts.users.sum() == int(known.sum())
    assert counts.activated.sum() == float(exported.data["user"].y[known].sum())
    assert counts.completers.sum() == float(completion_matrix(exported.data, users)[known].sum())
    assert (counts.activators <= counts.completers).all() and (counts.completers <= counts.users[:, :, None]).all()
    assert counts.activated.sum() > 0


def test_segment_counts_of_no_users_are_zero(exported):
    counts = segment_counts(exported, torch.empty(0, dtype=torch.long))
    assert counts.users.shape == (int(exported.data["role"].num_nodes), int(exported.data["industry"].num_nodes))
    assert not counts.users.any() and not counts.completers.any()
