"""A heterogeneous GraphSAGE that scores the activation uplift of a step for a user, inductively.

Catalog encoder: learned embeddings of features, roles, industries and plans (catalog
entities, never users; steps start from one shared vector and are described by the
catalog around them), then ``layers`` rounds of ``HeteroConv(SAGEConv)`` over the
catalog relations and their reverses (``introduces``, ``partOf`` closure, ``requires``
closure, ``forRole``, ``requiresPlan``, ``includesPlan``), with residual connections.

User encoder: one more SAGE hop, from catalog nodes into the user, over the user's own
relations only: ``hasRole``, ``hasIndustry``, ``hasPlan`` and the sum over the features
of their consented ``FeatureUsed`` events. Users are sinks: nothing flows from users
into the catalog, so a user's embedding is a function of their profile, their first
events and the catalog, never a per-user ID, and a new user is embedded without
retraining, exactly as in training. Completed and dismissed steps are NOT inputs: they
are the treatment whose effect the objective measures.

Heads: a feature's output vector ``y_f``; a step's vector is its own output plus the
vectors of the features it introduces, scaled by a per-step factor. ``uplift(u, s) =
<h_u, z_s> + b_s`` is the additive contribution of completing ``s`` to ``u``'s
activation log-odds; ``base(u)`` is the log-odds without any step; ``<h_u, y_f>`` are
the logits of the auxiliary task (which feature ``u`` uses). Tying steps to the features
they introduce lets the plentiful feature-use events teach the user side which parts
of the catalog a user leans to, while the scarce activation outcomes only have to
calibrate steps.

Wide part (``ModelConfig.wide``): the additive uplift gains a linear term over the
knowledge-graph crosses of the tabular baselines (``embeddings/baselines.py``), learnt
jointly with the rest or set from a stacked logistic regression (``embeddings/stack.py``):
a bias per step and per area, role x the step's feature area and role x step, industry
x area and industry x step, plan x area, the step's depth and what it unlocks, and, for
each of the user's first events, one weight when its feature is in the step's area and
one when it is the feature the step introduces. The area of a
feature is its top ancestor through the ``partOf`` closure; the structure is read from
the catalog relations the model runs on, so a served model needs nothing more. Every
term is a table per profile node (or used feature) and step, so serving stays lookups.

``UpliftEnsemble`` averages members trained from different seeds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import cast

import torch
from torch import Tensor, nn
from torch_geometric.nn import HeteroConv, SAGEConv
from torch_geometric.typing import EdgeType
from torch_geometric.utils import scatter

from embeddings.export import CATALOG_TYPES
from embeddings.inputs import UserInputs

PROFILE_TYPES = ("role", "industry", "plan")
INTRODUCES = ("step", "introduces", "feature")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a member (stored in the artefact)."""

    sizes: dict[str, int]
    relations: tuple[tuple[str, str, str], ...]
    hidden: int = 16
    layers: int = 2
    dropout: float = 0.2
    out_scale: float = 0.1
    wide: bool = False  # the linear knowledge-graph crosses beside the embeddings (see the module docstring)
    deep_weight: float = 1.0  # the embeddings' uplift is scaled by this (a stacked model's weight on it)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict) -> ModelConfig:
        return cls(**{**value, "relations": tuple(tuple(r) for r in value["relations"])})


class UpliftGNN(nn.Module):
    """Catalog GraphSAGE plus an inductive user hop; scores the activation uplift of steps."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        embedding = {
            kind: nn.Embedding(1 if kind == "step" else max(config.sizes[kind], 1), h) for kind in CATALOG_TYPES
        }
        for emb in embedding.values():
            nn.init.normal_(emb.weight, std=0.5)
        self.embedding = nn.ModuleDict(embedding)
        self.convs = nn.ModuleList(
            HeteroConv({tuple(rel): SAGEConv((h, h), h) for rel in config.relations}, aggr="sum")
            for _ in range(config.layers)
        )
        self.user_in = nn.ModuleDict({kind: nn.Linear(h, h, bias=False) for kind in (*PROFILE_TYPES, "feature")})
        self.user_bias = nn.Parameter(torch.zeros(h))
        self.user_out = nn.Linear(h, h)
        self.step_out = nn.Linear(h, h)
        self.step_bias = nn.Linear(h, 1)
        self.feature_out = nn.Linear(h, h)
        self.step_scale = nn.Parameter(torch.zeros(config.sizes["step"]))  # log of a per-step factor
        self.step_offset = nn.Parameter(torch.zeros(config.sizes["step"]))
        self.base = nn.Linear(h, 1)
        with torch.no_grad():
            self.step_out.weight.mul_(config.out_scale)
            self.step_bias.weight.mul_(config.out_scale)
        if config.wide:
            sizes = config.sizes
            n_steps, n_features = sizes["step"], sizes["feature"]
            self.wide = nn.ParameterDict(
                {
                    "step": nn.Parameter(torch.zeros(n_steps)),
                    "role_area": nn.Parameter(torch.zeros(max(sizes["role"], 1), n_features)),
                    "role_step": nn.Parameter(torch.zeros(max(sizes["role"], 1), n_steps)),
                    "industry_area": nn.Parameter(torch.zeros(max(sizes["industry"], 1), n_features)),
                    "industry_step": nn.Parameter(torch.zeros(max(sizes["industry"], 1), n_steps)),
                    "plan_area": nn.Parameter(torch.zeros(max(sizes["plan"], 1), n_features)),
                    "area": nn.Parameter(torch.zeros(n_features)),
                    "structure": nn.Parameter(torch.zeros(2)),  # depth, unlocks
                    "used": nn.Parameter(torch.zeros(2)),  # a first event in the step's area, of its feature
                }
            )

    def wide_parameters(self) -> list[nn.Parameter]:
        """Return the parameters of the wide part (none without one)."""
        return list(self.wide.parameters()) if self.config.wide else []

    def identity_parameters(self) -> list[nn.Parameter]:
        """Return the parameters that belong to one catalog node each (regularised more)."""
        return [*self.embedding.parameters(), self.step_scale, self.step_offset]

    def encode_catalog(self, edge_index_dict: dict[EdgeType, Tensor]) -> dict[str, Tensor]:
        """Return the embedding of every catalog node after message passing."""
        x: dict[str, Tensor] = {kind: cast(nn.Embedding, emb).weight for kind, emb in self.embedding.items()}
        x["step"] = x["step"].expand(self.config.sizes["step"], -1)
        edges = {rel: e for rel, e in edge_index_dict.items() if e.numel()}
        for conv in self.convs:
            out: dict[str, Tensor] = cast(HeteroConv, conv)(x, edges) if edges else {}
            x = {kind: x[kind] + torch.tanh(out[kind]) if kind in out else x[kind] for kind in x}
        return x

    def user_projections(self, catalog: dict[str, Tensor]) -> dict[str, Tensor]:
        """Return each profile node and feature projected into the user's input space."""
        return {kind: self.user_in[kind](catalog[kind]) for kind in (*PROFILE_TYPES, "feature")}

    def encode_users(self, catalog: dict[str, Tensor], users: UserInputs) -> Tensor:
        """Return user embeddings from their profile and first events (the inductive hop)."""
        pre = add_user_rows(self.user_bias.expand(users.size, -1), self.user_projections(catalog), users)
        hidden = nn.functional.dropout(torch.tanh(pre), self.config.dropout, self.training)
        return self.user_out(hidden)

    def step_heads(self, catalog: dict[str, Tensor], edge_index_dict: dict[EdgeType, Tensor]) -> tuple[Tensor, Tensor]:
        """Return each step's output vector and uplift bias."""
        step = catalog["step"]
        introduces = edge_index_dict[INTRODUCES]
        z = self.step_out(step) + scatter(
            self.feature_out(catalog["feature"])[introduces[1]],
            introduces[0],
            dim=0,
            dim_size=step.size(0),
            reduce="mean",
        )
        return z * self.step_scale.exp().unsqueeze(1), self.step_bias(step).squeeze(-1) + self.step_offset

    def wide_tables(self, edge_index_dict: dict[EdgeType, Tensor]) -> dict[str, Tensor]:
        """Return the wide part as tables over steps: ``step`` [S] and per ``role``, ``industry``, ``plan``,
        ``feature`` (a first event's feature) [nodes, S]; the uplift adds the rows of the user's own."""
        w = self.wide
        structure = catalog_structure(edge_index_dict, self.config.sizes)
        area, feature = structure["step_area"], structure["step_feature"]
        same_area = (structure["feature_area"].unsqueeze(1) == area.unsqueeze(0)).to(w["used"].dtype)
        its_feature = nn.functional.one_hot(feature, self.config.sizes["feature"]).t().to(w["used"].dtype)
        return {
            "step": w["step"]
            + w["area"][area]
            + w["structure"][0] * structure["depth"]
            + w["structure"][1] * structure["unlocks"],
            "role": w["role_area"][:, area] + w["role_step"],
            "industry": w["industry_area"][:, area] + w["industry_step"],
            "plan": w["plan_area"][:, area],
            "feature": w["used"][0] * same_area + w["used"][1] * its_feature,
        }

    def wide_uplift(self, edge_index_dict: dict[EdgeType, Tensor], users: UserInputs) -> Tensor:
        """Return the wide part's [users, steps] uplift (a model with a wide part only)."""
        tables = self.wide_tables(edge_index_dict)
        return add_user_rows(tables["step"].expand(users.size, -1), tables, users)

    def usage_logits(self, catalog: dict[str, Tensor], h: Tensor) -> Tensor:
        """Return [users, features] logits of which feature each user uses (the auxiliary task)."""
        return h @ self.feature_out(catalog["feature"]).t()

    def usage_log_probs(self, catalog: dict[str, Tensor], users: UserInputs) -> Tensor:
        """Return [users, features] log-probabilities of which feature each user uses, from their inputs."""
        return nn.functional.log_softmax(self.usage_logits(catalog, self.encode_users(catalog, users)), dim=1)

    def forward(self, edge_index_dict: dict[EdgeType, Tensor], users: UserInputs) -> tuple[Tensor, Tensor]:
        """Return the [users, steps] uplift matrix and the users' base log-odds."""
        catalog = self.encode_catalog(edge_index_dict)
        h = self.encode_users(catalog, users)
        return self.uplift(catalog, edge_index_dict, h, users), self.base(h).squeeze(-1)

    def uplift(
        self, catalog: dict[str, Tensor], edge_index_dict: dict[EdgeType, Tensor], h: Tensor, users: UserInputs
    ) -> Tensor:
        """Return the [users, steps] uplift of users embedded as ``h``: the embeddings' part, and the wide part."""
        z, b = self.step_heads(catalog, edge_index_dict)
        uplift = self.config.deep_weight * (h @ z.t() + b)  # x 1.0 (exact) unless stacked
        return uplift + self.wide_uplift(edge_index_dict, users) if self.config.wide else uplift


def add_user_rows(start: Tensor, rows: dict[str, Tensor], users: UserInputs) -> Tensor:
    """Return ``start`` ([users, d]) plus, for each user, the row of each of their profile nodes
    (``rows[kind]``; an unknown node adds nothing) and the rows of the features of their first events."""
    out = start
    for kind in PROFILE_TYPES:
        idx = getattr(users, kind)
        known = (idx >= 0).unsqueeze(1)
        out = out + torch.where(known, rows[kind][idx.clamp(min=0)], torch.zeros(()))
    if users.used_user.numel():
        out = out + scatter(
            rows["feature"][users.used_feature], users.used_user, dim=0, dim_size=users.size, reduce="sum"
        )
    return out


def catalog_structure(edge_index_dict: dict[EdgeType, Tensor], sizes: dict[str, int]) -> dict[str, Tensor]:
    """Return what the wide part reads of the catalog, from its relations.

    ``step_feature``: the (lowest-numbered) feature a step introduces; ``feature_area``: a
    feature's top ancestor through the ``partOf`` closure (itself when it has none);
    ``step_area``: that of its feature; ``depth`` and ``unlocks``: how many steps it
    requires, and how many require it (the ``requires`` closure).
    """
    n_steps, n_features = sizes["step"], sizes["feature"]
    introduces = edge_index_dict[INTRODUCES]
    step_feature = torch.full((n_steps,), n_features, dtype=torch.long)
    step_feature = step_feature.scatter_reduce(0, introduces[0], introduces[1], reduce="amin")
    step_feature = torch.where(step_feature == n_features, 0, step_feature)
    part_of = edge_index_dict.get(("feature", "partOf", "feature"), torch.empty((2, 0), dtype=torch.long))
    has_parent = torch.zeros(n_features, dtype=torch.bool)
    has_parent[part_of[0]] = True
    feature_area = torch.arange(n_features)
    tops = ~has_parent[part_of[1]]  # closure: every feature links to its top ancestor directly
    feature_area[part_of[0][tops]] = part_of[1][tops]
    requires = edge_index_dict.get(("step", "requires", "step"), torch.empty((2, 0), dtype=torch.long))
    return {
        "step_feature": step_feature,
        "feature_area": feature_area,
        "step_area": feature_area[step_feature],
        "depth": torch.bincount(requires[0], minlength=n_steps).float(),
        "unlocks": torch.bincount(requires[1], minlength=n_steps).float(),
    }


class UpliftEnsemble(nn.Module):
    """Members trained from different seeds; their uplifts and base log-odds are averaged."""

    def __init__(self, config: ModelConfig, members: Iterable[nn.Module]) -> None:
        super().__init__()
        self.config = config
        self.members = nn.ModuleList(members)

    def gnns(self) -> list[UpliftGNN]:
        """Return the members."""
        return [cast(UpliftGNN, member) for member in self.members]

    @classmethod
    def untrained(cls, config: ModelConfig, members: int) -> UpliftEnsemble:
        """Return an ensemble of freshly initialised members (to load a state dict into)."""
        return cls(config, [UpliftGNN(config) for _ in range(members)])

    def forward(self, edge_index_dict: dict[EdgeType, Tensor], users: UserInputs) -> tuple[Tensor, Tensor]:
        """Return the mean [users, steps] uplift and mean base log-odds of the members."""
        outputs = [member(edge_index_dict, users) for member in self.members]
        return (torch.stack([o[0] for o in outputs]).mean(0), torch.stack([o[1] for o in outputs]).mean(0))
