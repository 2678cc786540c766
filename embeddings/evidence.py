"""Segment evidence: outcome counts per (role, industry) segment of the training users.

An artefact carries them (``embeddings.scoring``) so that an explanation can say how users
of the same segment who completed a step fared; the segment-lift baseline
(``embeddings.evaluate``) is fitted on them. Counts per segment, never about one user.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor

from embeddings.export import Export
from embeddings.inputs import completion_matrix, user_inputs


@dataclass
class SegmentCounts:
    """Raw outcome counts per (role, industry) segment: users, activators, and per step completers."""

    users: np.ndarray  # [roles, industries]
    activated: np.ndarray  # [roles, industries]
    completers: np.ndarray  # [roles, industries, steps]
    activators: np.ndarray  # [roles, industries, steps]: completers who activated


def segment_counts(export: Export, users: Tensor) -> SegmentCounts:
    """Count, per segment of these users, who activated and who completed each step."""
    data = export.data
    n_roles, n_industries, n_steps = (int(data[k].num_nodes) for k in ("role", "industry", "step"))
    inputs = user_inputs(data, users)
    y = data["user"].y[users].numpy()
    role, industry = inputs.role.numpy(), inputs.industry.numpy()
    known = (role >= 0) & (industry >= 0)
    done = completion_matrix(data, users).numpy()
    counts = SegmentCounts(
        users=np.zeros((n_roles, n_industries)),
        activated=np.zeros((n_roles, n_industries)),
        completers=np.zeros((n_roles, n_industries, n_steps)),
        activators=np.zeros((n_roles, n_industries, n_steps)),
    )
    np.add.at(counts.completers, (role[known], industry[known]), done[known])
    np.add.at(counts.activators, (role[known], industry[known]), done[known] * y[known, None])
    np.add.at(counts.users, (role[known], industry[known]), 1.0)
    np.add.at(counts.activated, (role[known], industry[known]), y[known])
    return counts
