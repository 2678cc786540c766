"""A stacked ranker: the GNN's uplift as one feature of a logistic regression on knowledge-graph crosses.

On the world families of ``bench/gnn/families.py`` a logistic regression on the
crosses of ``embeddings/baselines.py`` ranks better than the GNN alone, and the GNN
still knows something the crosses do not (how a user's first events place them in
the catalog). Stacking gives the regression the GNN's scores as features and lets the
validation users decide how much each is worth:

1. ``full``, the GNN ensemble trained on all training users, and for cross-fitting one
   ensemble per fold of the training users, trained on the other folds. A training
   user's GNN features come from the fold model that never saw them: an in-sample GNN
   score fits its own users and crowds the crosses out.
2. Per user: the summed pair features of the steps they completed
   (``embeddings.baselines.completion_sums``), the sum of the GNN's uplift over the same
   steps, and the GNN's base log-odds. One ``LogisticRegression`` of activation; its L2
   strength, and how much more the GNN's columns are penalised than the crosses
   (``GNN_SCALES``), are chosen on the validation users' log-loss, their GNN features coming
   from ``full`` as they will at serving. (A weaker penalty on the GNN's columns lowered the
   validation loss and ranked worse: ``bench/gnn/README.md``.)
3. Folded into one ``UpliftEnsemble`` (:func:`fold_in`): each member of ``full`` with its
   embeddings' uplift scaled by the regression's weight on it (``ModelConfig.deep_weight``),
   its base log-odds scaled by the weight on the base plus the intercept, and the
   crosses' coefficients written into its wide part's tables. The model's ``uplift(u, s)``
   is then exactly the regression's additive contribution of step ``s`` to ``u``'s
   log-odds, and the ``Scorer`` serves it as it serves any wide model: lookups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np
import torch
from scipy import sparse  # type: ignore[import-untyped, unused-ignore]
from sklearn.linear_model import LogisticRegression
from torch import Tensor

from embeddings.baselines import (
    C_GRID,
    CatalogView,
    blocks,
    catalog_view,
    completion_sums,
    fit_on_validation,
    user_view,
)
from embeddings.export import Export
from embeddings.inputs import catalog_edges, completion_matrix, user_inputs
from embeddings.model import UpliftEnsemble, UpliftGNN

# What the GNN's two columns are multiplied by before the fit, chosen with the L2 strength on the validation users:
# 1 penalises them as the crosses, 0.3 and 0.1 about 11 and 100 times as much, for worlds where the GNN knows little.
GNN_SCALES = (1.0, 0.3, 0.1)


@dataclass(frozen=True)
class Stacked:
    """The folded model and what the regression chose."""

    model: UpliftEnsemble
    c: float  # the chosen inverse L2 strength
    deep_weight: float  # the regression's weight on the GNN's uplift
    base_weight: float  # and on its base log-odds
    validation_loss: float
    regression: LogisticRegression  # on [completion_sums, gnn_scale x gnn_features] of a user
    gnn_scale: float = 1.0  # what the GNN's columns were multiplied by, chosen with the L2 strength on validation
    # Each fold's users, with the regression folded into the GNN trained without them: what the model would say of
    # them had their GNN never seen them (the regression's crosses did; their L2 strength was chosen on validation).
    out_of_fold: list[tuple[UpliftEnsemble, Tensor]] = field(default_factory=list)


def fold_users(users: Tensor, folds: int, *, seed: int) -> list[Tensor]:
    """Return the users split at random into ``folds`` parts of (nearly) equal size, each sorted."""
    if not 2 <= folds <= users.numel():
        raise ValueError(f"cannot cross-fit {users.numel()} users in {folds} folds")
    order = users[torch.randperm(users.numel(), generator=torch.Generator().manual_seed(seed))]
    return [part.sort().values for part in order.tensor_split(folds)]


@torch.no_grad()
def gnn_features(model: UpliftEnsemble, export: Export, users: Tensor) -> np.ndarray:
    """Return [users, 2]: the sum of the model's uplift over each user's completed steps, and its base log-odds."""
    data = export.data
    uplift, base = model(catalog_edges(data), user_inputs(data, users))
    return np.column_stack([(uplift * completion_matrix(data, users)).sum(1).numpy(), base.numpy()]).astype(float)


def stack_ensemble(
    export: Export,
    *,
    full: UpliftEnsemble,
    folds: Sequence[tuple[UpliftEnsemble, Tensor]],
    validation: Tensor,
    grid: tuple[float, ...] = C_GRID,
    scales: tuple[float, ...] = GNN_SCALES,
) -> Stacked:
    """Fit the stacked regression and fold it into ``full``.

    ``folds`` pairs each fold's users with the ensemble trained without them; together
    they are the training users. ``full`` must have no wide part of its own.
    """
    if full.config.wide:
        raise ValueError("stacking writes the wide part: the GNN it starts from must not have one")
    catalog = catalog_view(export)
    train_users = torch.cat([users for _, users in folds])
    deep_train = np.vstack([gnn_features(model, export, users) for model, users in folds])
    train_view, val_view = user_view(export, catalog, train_users), user_view(export, catalog, validation)
    sums_train, sums_val = completion_sums(catalog, train_view), completion_sums(catalog, val_view)
    deep_val = gnn_features(full, export, validation)
    best = None
    for scale in scales:  # the GNN's columns shrunk by `scale`: an L2 penalty on them 1 / scale**2 times the crosses'
        x_train = sparse.hstack([sums_train, deep_train * scale]).tocsr()
        x_val = sparse.hstack([sums_val, deep_val * scale]).tocsr()
        fitted = fit_on_validation(x_train, train_view.activated, x_val, val_view.activated, grid, max_iter=3000)
        if best is None or fitted[0] < best[0][0]:
            best = (fitted, scale)
    assert best is not None
    (loss, c, regression), scale = best
    coef = regression.coef_[0].copy()
    coef[-2:] *= scale
    deep_weight, base_weight = float(coef[-2]), float(coef[-1])
    folded = partial(
        fold_in,
        catalog=catalog,
        weights=coef[:-2],
        deep_weight=deep_weight,
        base_weight=base_weight,
        intercept=float(regression.intercept_[0]),
    )
    return Stacked(
        model=folded(full),
        c=c,
        deep_weight=deep_weight,
        base_weight=base_weight,
        validation_loss=float(loss),
        regression=regression,
        gnn_scale=scale,
        out_of_fold=[(folded(model), users) for model, users in folds],
    )


def wide_tables(catalog: CatalogView, weights: np.ndarray, n_features: int) -> dict[str, np.ndarray]:
    """Return the wide part's parameters (``UpliftGNN.wide``) that score the pair features with ``weights``.

    Every term that depends on the step alone (the step, its area, depth, unlocks and
    plan gate) goes into the per-step bias.
    """
    widths = blocks(catalog)
    w = dict(zip(widths, np.split(weights, np.cumsum(list(widths.values()))[:-1]), strict=True))
    c = catalog
    gated = c.step_plan >= 0
    step = w["step"] + w["area"][c.step_area] + w["depth"][0] * c.depth + w["unlocks"][0] * c.unlocks
    step = step + np.where(gated, w["plan_gate"][c.step_plan.clip(min=0)], 0.0)

    def by_area(rows: int, block: np.ndarray) -> np.ndarray:
        out = np.zeros((max(rows, 1), n_features))
        out[:rows, c.area_feature] = block.reshape(rows, c.n_areas)
        return out

    def by_step(rows: int, block: np.ndarray) -> np.ndarray:
        out = np.zeros((max(rows, 1), c.n_steps))
        out[:rows] = block.reshape(rows, c.n_steps)
        return out

    return {
        "step": step,
        "role_area": by_area(c.n_roles, w["role_x_area"]),
        "role_step": by_step(c.n_roles, w["role_x_step"]),
        "industry_area": by_area(c.n_industries, w["industry_x_area"]),
        "industry_step": by_step(c.n_industries, w["industry_x_step"]),
        "plan_area": by_area(c.n_plans, w["plan_x_area"]),
        "area": np.zeros(n_features),
        "structure": np.zeros(2),
        "used": np.array([w["early_uses_in_area"][0], w["used_the_feature"][0]]),
    }


def fold_in(
    full: UpliftEnsemble,
    catalog: CatalogView,
    weights: np.ndarray,
    *,
    deep_weight: float,
    base_weight: float,
    intercept: float,
) -> UpliftEnsemble:
    """Return ``full`` with the regression folded in: scaled embeddings' uplift and base, crosses as its wide part."""
    config = replace(full.config, wide=True, deep_weight=deep_weight)
    tables = wide_tables(catalog, weights, config.sizes["feature"])
    members = []
    for gnn in full.gnns():
        member = UpliftGNN(config)
        missing, unexpected = member.load_state_dict(gnn.state_dict(), strict=False)
        assert not unexpected and all(k.startswith("wide.") for k in missing), (missing, unexpected)
        with torch.no_grad():
            for name, table in tables.items():
                member.wide[name].copy_(torch.from_numpy(table))
            member.base.weight.mul_(base_weight)
            member.base.bias.mul_(base_weight).add_(intercept)
        members.append(member.eval())
    return UpliftEnsemble(config, members).eval()
