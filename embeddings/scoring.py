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
import io
import pickle
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch_geometric.typing import EdgeType

from embeddings.evidence import SegmentCounts
from embeddings.export import CATALOG_TYPES, Export
from embeddings.inputs import catalog_edges
from embeddings.model import PROFILE_TYPES, ModelConfig, UpliftEnsemble
from service.knowledge import vocab

FORMAT = "wayfinder-uplift-gnn/1"
EVIDENCE = ("users", "activated", "completers", "activators")


def artefact_bytes(
    model: UpliftEnsemble,
    export: Export,
    *,
    metrics: dict | None = None,
    evidence: SegmentCounts | None = None,
    calibrations: dict[str, dict] | None = None,
) -> bytes:
    """Return the model artefact: state dict, config, catalog index maps and relations, segment evidence, and
    the rule calibrations (``service.models.calibration``: per policy version IRI, its content hash and units).

    Nothing in it is about one user: the model's parameters belong to catalog entities and
    shared layers, the evidence is counts per (role, industry) segment, and a calibration
    is three numbers fitted over many users.
    """
    edges = catalog_edges(export.data)
    payload = {
        "format": FORMAT,
        "config": model.config.to_dict(),
        "members": len(model.members),
        "state_dict": model.state_dict(),
        "index": {kind: dict(export.index[kind]) for kind in CATALOG_TYPES},
        "edges": {"__".join(rel): e.clone() for rel, e in edges.items()},
        "metrics": dict(metrics or {}),
        "calibrations": {iri: dict(c) for iri, c in sorted((calibrations or {}).items())},
    }
    if evidence is not None:
        payload["evidence"] = {name: torch.from_numpy(getattr(evidence, name).copy()) for name in EVIDENCE}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def save_model(
    model: UpliftEnsemble,
    export: Export,
    path: str | Path,
    *,
    metrics: dict | None = None,
    evidence: SegmentCounts | None = None,
) -> str:
    """Write the model artefact to a file; return its SHA-256."""
    data = artefact_bytes(model, export, metrics=metrics, evidence=evidence)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


class ArtefactMismatch(ValueError):
    """The artefact's SHA-256 is not the one expected."""


def load_payload(data: bytes, *, sha256: str | None = None, name: str = "artefact") -> dict:
    """Return an artefact's payload, checking its hash if given."""
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ArtefactMismatch(f"{name}: SHA-256 is not {sha256}")
    try:
        payload = torch.load(io.BytesIO(data), weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise ValueError(f"{name}: not a {FORMAT} artefact: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{name}: not a {FORMAT} artefact")
    return payload


def _unpack(payload: dict) -> tuple[UpliftEnsemble, dict, dict[EdgeType, Tensor]]:
    config = ModelConfig.from_dict(payload["config"])
    model = UpliftEnsemble.untrained(config, payload["members"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    edges = {tuple(key.split("__")): e for key, e in payload["edges"].items()}
    return model, payload["index"], edges


def load_model(path: str | Path, *, sha256: str | None = None) -> tuple[UpliftEnsemble, dict, dict[EdgeType, Tensor]]:
    """Return the ensemble, the catalog index maps and relations of an artefact, checking its hash if given."""
    return _unpack(load_payload(Path(path).read_bytes(), sha256=sha256, name=str(path)))


def model_of(data: bytes, *, sha256: str | None = None) -> UpliftEnsemble:
    """Return the ensemble of an artefact held in memory, checking its hash if given."""
    return _unpack(load_payload(data, sha256=sha256))[0]


class Scorer:
    """Precomputed catalog side of a trained model; scores a new user's candidates without a graph pass.

    Also fits ``service.knowledge.policies.Scorer``: ``version`` and ``score(context, steps)``.
    """

    def __init__(
        self,
        model: UpliftEnsemble,
        index: dict[str, dict[str, int]],
        edges: dict[EdgeType, Tensor],
        *,
        version: str = "unversioned",
        evidence: dict[str, np.ndarray] | None = None,
        calibrations: dict[str, dict] | None = None,
    ) -> None:
        self.version = version
        self.calibrations = dict(calibrations or {})
        self.iri = vocab.MODEL_BASE + version
        self.index = index
        self.evidence = evidence
        self.wide = model.config.wide  # without a wide part, no lookups to add
        wide_kinds = tuple(f"wide_{k}" for k in ("step", *PROFILE_TYPES, "feature")) if self.wide else ()
        parts: dict[str, list[np.ndarray]] = {
            k: [] for k in (*PROFILE_TYPES, "feature", "bias", "w", "b", "z", "zb", *wide_kinds)
        }
        with torch.no_grad():
            for member in model.gnns():
                member.eval()
                catalog = member.encode_catalog(edges)
                proj = member.user_projections(catalog)
                for kind in (*PROFILE_TYPES, "feature"):
                    parts[kind].append(proj[kind].numpy())
                parts["bias"].append(member.user_bias.numpy())
                parts["w"].append(member.user_out.weight.numpy())
                parts["b"].append(member.user_out.bias.numpy())
                z, zb = member.step_heads(catalog, edges)
                weight = model.config.deep_weight  # a stacked model's weight on the embeddings' uplift
                parts["z"].append(weight * z.numpy())
                parts["zb"].append(weight * zb.numpy())
                if self.wide:  # the wide part as tables over steps
                    for kind, table in member.wide_tables(edges).items():
                        parts[f"wide_{kind}"].append(table.numpy())
        self._arrays = {k: np.ascontiguousarray(np.stack(v)).astype(np.float64) for k, v in parts.items()}

    @classmethod
    def load(cls, path: str | Path, *, sha256: str | None = None) -> Scorer:
        """Load an artefact (checking its hash if given) and precompute its catalog side."""
        data = Path(path).read_bytes()
        return cls.from_bytes(data, sha256=sha256, version=(sha256 or hashlib.sha256(data).hexdigest())[:16])

    @classmethod
    def from_bytes(cls, data: bytes, *, sha256: str | None = None, version: str = "unversioned") -> Scorer:
        """Load an artefact held in memory (checking its hash if given)."""
        payload = load_payload(data, sha256=sha256, name=f"model {version}")
        model, index, edges = _unpack(payload)
        evidence = {k: v.numpy() for k, v in payload["evidence"].items()} if "evidence" in payload else None
        calibrations = payload.get("calibrations")  # none in an artefact written before calibrations existed
        return cls(model, index, edges, version=version, evidence=evidence, calibrations=calibrations)

    def calibration(self, policy) -> tuple[float, float] | None:
        """Return the (model, rules) units fitted for a policy version as it is now (same content hash), or None."""
        fitted = self.calibrations.get(policy.iri)
        if fitted is None or fitted.get("content_hash") != policy.content_hash:
            return None
        return float(fitted["model"]), float(fitted["rules"])

    @property
    def steps(self) -> list[str]:
        return list(self.index["step"])

    def user_vector(
        self,
        *,
        role: str | None = None,
        industry: str | None = None,
        plan: str | None = None,
        used_features: Iterable[str] = (),
    ) -> np.ndarray:
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

    def scores(
        self,
        *,
        role: str | None = None,
        industry: str | None = None,
        plan: str | None = None,
        used_features: Iterable[str] = (),
        candidates: Sequence[str],
    ) -> list[float]:
        """Return the activation uplift of each candidate step IRI (KeyError for a step the model never saw)."""
        idx = [self.index["step"][s] for s in candidates]
        h = self.user_vector(role=role, industry=industry, plan=plan, used_features=used_features)
        a = self._arrays
        per_member = np.einsum("mch,mh->mc", a["z"][:, idx], h) + a["zb"][:, idx]
        if self.wide:
            per_member += self._wide_scores(idx, role=role, industry=industry, plan=plan, used_features=used_features)
        return per_member.mean(axis=0).tolist()

    def _wide_scores(
        self, idx: list[int], *, role: str | None, industry: str | None, plan: str | None, used_features: Iterable[str]
    ) -> np.ndarray:
        """Return the wide part's [members, candidates] uplift: the rows of the user's profile nodes and features."""
        a = self._arrays
        per_member = a["wide_step"][:, idx].copy()
        for kind, iri in (("role", role), ("industry", industry), ("plan", plan)):
            i = self.index[kind].get(iri) if iri is not None else None
            if i is not None:
                per_member += a[f"wide_{kind}"][:, i, idx]
        features = [self.index["feature"][f] for f in dict.fromkeys(used_features) if f in self.index["feature"]]
        if features:
            per_member += a["wide_feature"][:, features][:, :, idx].sum(axis=1)
        return per_member

    def segment_outcome(self, context, step: str) -> tuple[int, float] | None:
        """Return (completers, activation ratio) of the step in the user's role and industry segment.

        The ratio is the activation share of the segment's users who completed the step over
        the segment's activation rate, from the training users; None without evidence.
        """
        if self.evidence is None or context.role is None or context.industry is None:
            return None
        r, i = self.index["role"].get(context.role), self.index["industry"].get(context.industry)
        s = self.index["step"].get(step)
        if r is None or i is None or s is None:
            return None
        e = self.evidence
        users, activated = float(e["users"][r, i]), float(e["activated"][r, i])
        completers, activators = float(e["completers"][r, i, s]), float(e["activators"][r, i, s])
        if not users or not activated or not completers:
            return None
        return int(completers), (activators / completers) / (activated / users)

    def score(self, context, steps: list[str]) -> dict[str, float]:
        """Score the steps the model knows for a ``service.knowledge.policies.Context``; others are left out."""
        known = [s for s in steps if s in self.index["step"]]
        values = self.scores(
            role=context.role,
            industry=context.industry,
            plan=context.plan,
            used_features=context.used_features,
            candidates=known,
        )
        return dict(zip(known, values, strict=True))
