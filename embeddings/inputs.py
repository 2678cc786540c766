"""Data preparation: from an exported ``HeteroData`` to the tensors the model reads."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.typing import EdgeType

from embeddings.export import CATALOG_RELATIONS, CATALOG_TYPES


@dataclass
class UserInputs:
    """What the model may read of a batch of users: profile and consented first events (-1: unknown)."""

    role: Tensor  # [n] long
    industry: Tensor  # [n] long
    plan: Tensor  # [n] long
    used_user: Tensor  # [e] long, position of the user in the batch
    used_feature: Tensor  # [e] long
    used_at: Tensor | None = None  # [e] float64, when the user first used it (seconds), where the export says

    @property
    def size(self) -> int:
        return int(self.role.numel())


def catalog_edges(data: HeteroData) -> dict[EdgeType, Tensor]:
    """Return the catalog relations and their reverses: the graph the catalog encoder runs on."""
    edges: dict[EdgeType, Tensor] = {}
    for rel, (src, dst) in CATALOG_RELATIONS.items():
        for edge_type in ((src, rel, dst), (dst, f"rev_{rel}", src)):
            if edge_type in data.edge_types:
                edges[edge_type] = data[edge_type].edge_index
            elif edge_type[1].startswith("rev_") and (src, rel, dst) in data.edge_types:
                edges[edge_type] = data[src, rel, dst].edge_index.flip(0)
            else:
                edges[edge_type] = torch.empty((2, 0), dtype=torch.long)
    return edges


def catalog_sizes(data: HeteroData) -> dict[str, int]:
    """Return the number of nodes of each catalog type."""
    return {kind: int(data[kind].num_nodes) for kind in CATALOG_TYPES}


def _single(data: HeteroData, rel: str, dst: str, users: Tensor) -> Tensor:
    edge_index = data["user", rel, dst].edge_index
    value = torch.full((int(data["user"].num_nodes),), -1, dtype=torch.long)
    value[edge_index[0]] = edge_index[1]
    return value[users]


def user_inputs(data: HeteroData, users: Tensor) -> UserInputs:
    """Return the model inputs of these exported users (node indices), in the order given."""
    position = torch.full((int(data["user"].num_nodes),), -1, dtype=torch.long)
    position[users] = torch.arange(users.numel())
    used_edges = data["user", "used", "feature"]
    used = used_edges.edge_index
    keep = position[used[0]] >= 0
    first_at = getattr(used_edges, "first_at", None)
    return UserInputs(
        role=_single(data, "hasRole", "role", users),
        industry=_single(data, "hasIndustry", "industry", users),
        plan=_single(data, "hasPlan", "plan", users),
        used_user=position[used[0][keep]],
        used_feature=used[1][keep],
        used_at=first_at[keep] if first_at is not None else None,
    )


def completion_matrix(data: HeteroData, users: Tensor) -> Tensor:
    """Return a dense [users, steps] 0/1 matrix of completed steps."""
    position = torch.full((int(data["user"].num_nodes),), -1, dtype=torch.long)
    position[users] = torch.arange(users.numel())
    edge_index = data["user", "completed", "step"].edge_index
    keep = position[edge_index[0]] >= 0
    matrix = torch.zeros((users.numel(), int(data["step"].num_nodes)))
    matrix[position[edge_index[0][keep]], edge_index[1][keep]] = 1.0
    return matrix
