"""NDCG@k against the planted truth for the model and the baselines, and the per-segment lift table.

Candidates of a user are the steps their role and plan allow (``World.truth``), ranked
all at once; prerequisites are not applied. Gains are the true step values.

Baselines:
- popularity: how many training users completed the step (imitating the logged clicks);
- segment lift: per (role, industry) segment, the share of users who activated after
  completing the step, minus the segment's activation rate (shrunk towards the step's
  share over all segments when a cell is small);
- rules: a stand-in for the service's rules-only ranking, after ``service.knowledge.policies.rank``
  with the default policy's weights (place in the default journey, prerequisites and
  unlocks counted over the ``wf:requires`` closure, affinity with a used feature's
  nearest non-top area), read from the shipped ``ontology/policies/default.ttl``
  (:func:`rule_weights`), but without hand-written rules, which a synthetic catalog does
  not have;
- random: a fixed-seed shuffle, for scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pyoxigraph as ox
import torch
from torch import Tensor

from embeddings.evidence import segment_counts
from embeddings.export import Export
from embeddings.inputs import catalog_edges, user_inputs
from embeddings.model import UpliftEnsemble, UpliftGNN
from embeddings.queries import ROOT, query, select
from service.knowledge import vocab

DEFAULT_POLICY = ROOT / "ontology" / "policies" / "default.ttl"


@cache
def rule_weights(path: Path = DEFAULT_POLICY, *, policy: str = "default") -> dict[str, float]:
    """Return the depth, unlock and affinity weights of the policy's highest active version in a Turtle file.

    Read as the service reads policy versions (``queries/service/policy-versions.rq``); a
    weight a version does not state is 0, as in ``service.knowledge.policies``.
    """
    store = ox.Store()
    store.load(path.read_bytes(), format=ox.RdfFormat.TURTLE)
    columns = ("policy", "name", "status", "depthWeight", "unlockWeight", "affinityWeight")
    active = [
        row
        for row in select(store, query("service/policy-versions"), *columns)
        if row[0] is not None and vocab.local_id(row[0]) == policy and row[2] == "active"
    ]
    if not active:
        raise ValueError(f"{path}: no active version of policy {policy!r}")
    *_, depth, unlock, affinity = max(active, key=lambda row: _version_key(row[1] or ""))
    return {"depth": float(depth or 0.0), "unlock": float(unlock or 0.0), "affinity": float(affinity or 0.0)}


def _version_key(version: str) -> tuple:
    """Order version strings as the service does: "1.10.0" after "1.9.0"."""
    return tuple(int(p) if p.isdigit() else p for p in version.replace("-", ".").split("."))


def ndcg_at_k(scores: Sequence[float] | np.ndarray, gains: Sequence[float] | np.ndarray, *, k: int = 5) -> float:
    """Return NDCG@k of ranking by scores (ties keep the given order) with these gains."""
    scores, gains = np.asarray(scores, dtype=float), np.asarray(gains, dtype=float)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    top = np.argsort(-scores, kind="stable")[:k]
    ideal = np.sort(gains)[::-1][:k]
    best = float((ideal * discount[: ideal.size]).sum())
    return float((gains[top] * discount[: top.size]).sum()) / best if best > 0 else 0.0


def mean_ndcg(
    scores: np.ndarray,
    *,
    users: Sequence[str],
    truth: Mapping[str, Mapping[str, float]],
    step_index: Mapping[str, int],
    k: int = 5,
) -> float:
    """Return the mean NDCG@k over users of a [users, steps] score matrix against the truth."""
    values = user_ndcg(scores, users=users, truth=truth, step_index=step_index, k=k)
    return float(np.mean(values)) if values.size else 0.0


def user_ndcg(
    scores: np.ndarray,
    *,
    users: Sequence[str],
    truth: Mapping[str, Mapping[str, float]],
    step_index: Mapping[str, int],
    k: int = 5,
) -> np.ndarray:
    """Return each user's NDCG@k of a [users, steps] score matrix against the truth (users without candidates: none)."""
    values = []
    for row, user in enumerate(users):
        candidates = [(step_index[s], g) for s, g in truth[user].items() if s in step_index]
        if candidates:
            idx, gains = zip(*candidates, strict=True)
            values.append(ndcg_at_k(scores[row, list(idx)], gains, k=k))
    return np.array(values, dtype=float)


@torch.no_grad()
def model_scores(model: UpliftGNN | UpliftEnsemble, export: Export, users: Tensor) -> np.ndarray:
    """Return the model's [users, steps] uplift scores for exported users, read inductively."""
    model.eval()
    uplift, _ = model(catalog_edges(export.data), user_inputs(export.data, users))
    return uplift.numpy().astype(float)


@torch.no_grad()
def usage_scores(model: UpliftGNN | UpliftEnsemble, export: Export, users: Tensor) -> np.ndarray:
    """Return the usage head's [users, features] log-probabilities of which feature each exported user
    uses, read inductively from their profile and events (an ensemble's is the mean over its members)."""
    members = model.gnns() if isinstance(model, UpliftEnsemble) else [model]
    edges, inputs = catalog_edges(export.data), user_inputs(export.data, users)
    rows = []
    for member in members:
        member.eval()
        catalog = member.encode_catalog(edges)
        rows.append(member.usage_log_probs(catalog, inputs))
    return torch.stack(rows).mean(0).numpy().astype(float)


def popularity_scores(export: Export, train: Tensor) -> np.ndarray:
    """Return how many training users completed each step."""
    edge_index = export.data["user", "completed", "step"].edge_index
    keep = torch.isin(edge_index[0], train)
    return np.bincount(edge_index[1][keep].numpy(), minlength=int(export.data["step"].num_nodes)).astype(float)


@dataclass
class SegmentLift:
    """Per (role, industry) segment and step: completers, their activation share and the lift."""

    completers: np.ndarray  # [roles, industries, steps]
    share: np.ndarray  # [roles, industries, steps], shrunk
    base_rate: np.ndarray  # [roles, industries]
    global_share: np.ndarray  # [steps]

    @property
    def lift(self) -> np.ndarray:
        return self.share - self.base_rate[:, :, None]

    def scores(self, role: int, industry: int) -> np.ndarray:
        """Return the lift of each step for a segment (the global share when it is unknown)."""
        if role < 0 or industry < 0:
            return self.global_share
        return self.lift[role, industry]

    def table(self, export: Export, *, top: int = 3) -> list[dict]:
        """Return the top steps by lift of every segment that has users, as rows."""
        roles, industries, steps = export.iris("role"), export.iris("industry"), export.iris("step")
        rows = []
        for r in range(self.completers.shape[0]):
            for i in range(self.completers.shape[1]):
                if not self.completers[r, i].any():
                    continue
                best = np.argsort(-self.lift[r, i], kind="stable")[:top]
                rows.append(
                    {
                        "role": roles[r],
                        "industry": industries[i],
                        "activation_rate": round(float(self.base_rate[r, i]), 4),
                        "top_steps": [
                            {
                                "step": steps[s],
                                "completers": int(self.completers[r, i, s]),
                                "share": round(float(self.share[r, i, s]), 4),
                                "lift": round(float(self.lift[r, i, s]), 4),
                            }
                            for s in best
                        ],
                    }
                )
        return rows


def segment_lift(export: Export, train: Tensor, *, prior: float = 10.0) -> SegmentLift:
    """Return the segment activation-lift baseline fitted on the training users."""
    c = segment_counts(export, train)
    y = export.data["user"].y[train].numpy()
    overall = float(y.mean()) if y.size else 0.0
    global_share = (c.activators.sum((0, 1)) + prior * overall) / (c.completers.sum((0, 1)) + prior)
    share = (c.activators + prior * global_share) / (c.completers + prior)
    base_rate = (c.activated + prior * overall) / (c.users + prior)
    return SegmentLift(completers=c.completers, share=share, base_rate=base_rate, global_share=global_share)


def segment_scores(lift: SegmentLift, export: Export, users: Tensor) -> np.ndarray:
    """Return the segment-lift [users, steps] scores."""
    inputs = user_inputs(export.data, users)
    return (
        np.stack([lift.scores(int(r), int(i)) for r, i in zip(inputs.role, inputs.industry, strict=True)])
        if users.numel()
        else np.zeros((0, int(export.data["step"].num_nodes)))
    )


def rules_scores(export: Export, users: Tensor, *, weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Return the rules-only stand-in's [users, steps] scores (see the module docstring).

    ``weights``: ``depth``, ``unlock`` and ``affinity``; by default the shipped default policy's.
    """
    weights = weights if weights is not None else rule_weights()
    data = export.data
    n_steps, n_features = int(data["step"].num_nodes), int(data["feature"].num_nodes)
    order = data["step"].default_order.numpy()
    rank = np.argsort(np.argsort(np.nan_to_num(order, nan=np.inf), kind="stable"), kind="stable")
    requires = data["step", "requires", "step"].edge_index.numpy()
    depth = np.bincount(requires[0], minlength=n_steps).astype(float)  # prerequisites, transitively
    unlocks = np.bincount(requires[1], minlength=n_steps).astype(float)
    part_of = data["feature", "partOf", "feature"].edge_index.numpy()
    ancestors: list[set[int]] = [set() for _ in range(n_features)]
    for f, a in part_of.T:
        ancestors[f].add(int(a))
    # nearest area: the ancestor with the most ancestors of its own; top-level areas never count
    nearest = [max(a, key=lambda x: len(ancestors[x])) if a else -1 for a in ancestors]
    introduces = data["step", "introduces", "feature"].edge_index.numpy()
    static = 1.0 - rank / n_steps + weights["depth"] * depth + weights["unlock"] * unlocks
    inputs = user_inputs(data, users)
    used: list[set[int]] = [set() for _ in range(users.numel())]
    for u, f in zip(inputs.used_user.tolist(), inputs.used_feature.tolist(), strict=True):
        used[u].add(f)
    scores = np.tile(static, (users.numel(), 1))
    for row, features in enumerate(used):
        for s, f in introduces.T:
            area = nearest[f]
            near = area >= 0 and ancestors[area] and any(area == g or area in ancestors[g] for g in features)
            if f in features or near:
                scores[row, s] += weights["affinity"]
    return scores


def random_scores(n_users: int, n_steps: int, *, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n_users, n_steps))


def evaluate(
    model: UpliftGNN | UpliftEnsemble,
    export: Export,
    *,
    train: Tensor,
    test: Tensor,
    truth: Mapping[str, Mapping[str, float]],
    k: int = 5,
) -> dict[str, float]:
    """Return NDCG@k against the truth on the test users for the model and every baseline."""
    users = [export.iris("user")[i] for i in test.tolist()]
    step_index = export.index["step"]
    lift = segment_lift(export, train)
    popularity = popularity_scores(export, train)
    matrices = {
        "model": model_scores(model, export, test),
        "segment_lift": segment_scores(lift, export, test),
        "popularity": np.tile(popularity, (test.numel(), 1)),
        "rules": rules_scores(export, test),
        "random": random_scores(test.numel(), len(step_index)),
    }
    return {
        name: mean_ndcg(scores, users=users, truth=truth, step_index=step_index, k=k)
        for name, scores in matrices.items()
    }
