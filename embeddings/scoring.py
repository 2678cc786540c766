"""The serving path: a model artefact on disk, and fast scores for a new user's candidate steps.

The artefact is one ``torch.save`` file: the ensemble's state dict, its config, the
catalog's IRI -> index maps and the catalog relations the encoder runs on (no user
data). Its SHA-256 is returned on save and checked on load.

At load, :class:`Scorer` runs the catalog encoder once and keeps, per member, every
profile node and feature projected into the user's input space, the user head and the
step vectors. A request then costs one sum of a few vectors, a ``tanh``, one small
matrix product and a dot product per candidate, in numpy: no graph pass.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch_geometric.typing import EdgeType

from service import vocab

from .export import CATALOG_TYPES, Export
from .inputs import catalog_edges
from .model import PROFILE_TYPES, ModelConfig, UpliftEnsemble

FORMAT = "wayfinder-uplift-gnn/1"


def file_sha256(path: str | Path) -> str:
    """Return the hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_model(model: UpliftEnsemble, export: Export, path: str | Path, *, metrics: dict | None = None) -> str:
    """Write the model artefact (state dict, config, catalog index maps and relations); return its SHA-256."""
    edges = catalog_edges(export.data)
    payload = {
        "format": FORMAT,
        "config": model.config.to_dict(),
        "members": len(model.members),
        "state_dict": model.state_dict(),
        "index": {kind: dict(export.index[kind]) for kind in CATALOG_TYPES},
        "edges": {"__".join(rel): e.clone() for rel, e in edges.items()},
        "metrics": dict(metrics or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return file_sha256(path)


class ArtefactMismatch(ValueError):
    """The artefact's SHA-256 is not the one expected."""


def load_model(path: str | Path, *, sha256: str | None = None) -> tuple[UpliftEnsemble, dict, dict[EdgeType, Tensor]]:
    """Return the ensemble, the catalog index maps and relations of an artefact, checking its hash if given."""
    if sha256 is not None and file_sha256(path) != sha256:
        raise ArtefactMismatch(f"{path}: SHA-256 is not {sha256}")
    payload = torch.load(path, weights_only=True)
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} artefact")
    config = ModelConfig.from_dict(payload["config"])
    model = UpliftEnsemble.untrained(config, payload["members"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    edges = {tuple(key.split("__")): e for key, e in payload["edges"].items()}
    return model, payload["index"], edges


class Scorer:
    """Precomputed catalog side of a trained model; scores a new user's candidates without a graph pass.

    Also fits ``service.policies.Scorer``: ``version`` and ``score(context, steps)``.
    """

    def __init__(self, model: UpliftEnsemble, index: dict[str, dict[str, int]], edges: dict[EdgeType, Tensor],
                 *, version: str = "unversioned") -> None:
        self.version = version
        self.iri = vocab.MODEL_BASE + version
        self.index = index
        parts: dict[str, list[np.ndarray]] = {k: [] for k in (*PROFILE_TYPES, "feature", "bias", "w", "b", "z", "zb")}
        with torch.no_grad():
            for member in model.members:
                member.eval()
                catalog = member.encode_catalog(edges)
                proj = member.user_projections(catalog)
                for kind in (*PROFILE_TYPES, "feature"):
                    parts[kind].append(proj[kind].numpy())
                parts["bias"].append(member.user_bias.numpy())
                parts["w"].append(member.user_out.weight.numpy())
                parts["b"].append(member.user_out.bias.numpy())
                z, zb = member.step_heads(catalog, edges)
                parts["z"].append(z.numpy())
                parts["zb"].append(zb.numpy())
        self._arrays = {k: np.ascontiguousarray(np.stack(v)).astype(np.float64) for k, v in parts.items()}

    @classmethod
    def load(cls, path: str | Path, *, sha256: str | None = None) -> "Scorer":
        """Load an artefact (checking its hash if given) and precompute its catalog side."""
        model, index, edges = load_model(path, sha256=sha256)
        return cls(model, index, edges, version=(sha256 or file_sha256(path))[:16])

    @property
    def steps(self) -> list[str]:
        return list(self.index["step"])

    def user_vector(self, *, role: str | None = None, industry: str | None = None, plan: str | None = None,
                    used_features: Iterable[str] = ()) -> np.ndarray:
        """Return the [members, hidden] embedding of a user from IRIs; unknown IRIs are ignored."""
        a = self._arrays
        pre = a["bias"].copy()
        for kind, iri in (("role", role), ("industry", industry), ("plan", plan)):
            i = self.index[kind].get(iri) if iri is not None else None
            if i is not None:
                pre += a[kind][:, i]
        features = [self.index["feature"][f] for f in dict.fromkeys(used_features) if f in self.index["feature"]]
        if features:
            pre += a["feature"][:, features].sum(axis=1)
        return np.einsum("mh,mkh->mk", np.tanh(pre), a["w"]) + a["b"]

    def scores(self, *, role: str | None = None, industry: str | None = None, plan: str | None = None,
               used_features: Iterable[str] = (), candidates: Sequence[str]) -> list[float]:
        """Return the activation uplift of each candidate step IRI (KeyError for a step the model never saw)."""
        idx = [self.index["step"][s] for s in candidates]
        h = self.user_vector(role=role, industry=industry, plan=plan, used_features=used_features)
        a = self._arrays
        per_member = np.einsum("mch,mh->mc", a["z"][:, idx], h) + a["zb"][:, idx]
        return per_member.mean(axis=0).tolist()

    def score(self, context, steps: list[str]) -> dict[str, float]:
        """Score the steps the model knows for a ``service.policies.Context``; others are left out."""
        known = [s for s in steps if s in self.index["step"]]
        values = self.scores(role=context.role, industry=context.industry, plan=context.plan,
                             used_features=context.used_features, candidates=known)
        return dict(zip(known, values))
