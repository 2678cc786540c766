"""Tabular baselines on knowledge-graph features, fitted on the same exported users as the GNN.

Every baseline reads only what the GNN reads of a user (role, industry, plan and the
consented first ``FeatureUsed`` events) and learns from the same outcome (activation
after the logged completions); it scores every (user, step) pair, and a higher score
means a better next step.

Knowledge-graph features of a (user, step) pair (:func:`pair_features`), read from the
export's catalog relations: the step itself; its feature area (the top ancestor of the
feature it introduces, through the ``wf:partOf`` closure); its depth (how many steps it
requires, transitively) and how many steps it unlocks; the plan it needs; and the user
crossed with the step: role x area, industry x area, plan x area, role x step,
industry x step, how many of the user's first events fell in the step's area, and
whether the user already used the feature it introduces.

- :class:`AdditiveLogistic` (scikit-learn ``LogisticRegression``): the GNN's objective
  with a linear scorer. ``P(activated) = sigmoid(b + w . sum of phi(u, s) over the steps
  u completed)``, so ``w . phi(u, s)`` is the step's additive contribution to the user's
  log-odds; the L2 strength is chosen by the validation users' log-loss.
- :class:`CompletionBoosting` (scikit-learn ``HistGradientBoostingClassifier``): an
  S-learner. Activation from the user's inputs, the steps completed (one column per
  step, and their count per area) and their number; a step scores what the model
  predicts for the user with that step completed alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse  # type: ignore[import-untyped, unused-ignore]
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from torch import Tensor

from embeddings.export import Export
from embeddings.inputs import catalog_edges, catalog_sizes, user_inputs
from embeddings.model import catalog_structure

C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


@dataclass(frozen=True)
class CatalogView:
    """The catalog as arrays: what the baselines know of each step."""

    n_steps: int
    n_areas: int
    n_roles: int
    n_industries: int
    n_plans: int
    area_feature: np.ndarray  # [areas] the feature node of each area (its top ancestor)
    step_area: np.ndarray  # [steps] area index of the feature the step introduces
    step_feature: np.ndarray  # [steps] the (first) feature it introduces
    feature_area: np.ndarray  # [features] area index
    depth: np.ndarray  # [steps] steps it requires, transitively
    unlocks: np.ndarray  # [steps] steps that require it, transitively
    step_plan: np.ndarray  # [steps] plan it needs, -1 when none


def catalog_view(export: Export) -> CatalogView:
    """Return the catalog arrays of an export: the structure the GNN's wide part reads
    (``embeddings.model.catalog_structure``), with the areas numbered from 0."""
    data = export.data
    structure = {k: v.numpy() for k, v in catalog_structure(catalog_edges(data), catalog_sizes(data)).items()}
    areas = sorted(set(structure["feature_area"].tolist()))
    number = np.zeros(int(data["feature"].num_nodes), dtype=int)
    number[areas] = np.arange(len(areas))
    feature_area = number[structure["feature_area"]]
    step_plan = np.full(int(data["step"].num_nodes), -1, dtype=int)
    if ("step", "requiresPlan", "plan") in data.edge_types:
        for s, p in data["step", "requiresPlan", "plan"].edge_index.numpy().T:
            step_plan[s] = max(step_plan[s], p)
    return CatalogView(
        n_steps=int(data["step"].num_nodes),
        n_areas=len(areas),
        n_roles=int(data["role"].num_nodes),
        n_industries=int(data["industry"].num_nodes),
        n_plans=int(data["plan"].num_nodes),
        area_feature=np.array(areas, dtype=int),
        step_area=feature_area[structure["step_feature"]],
        step_feature=structure["step_feature"],
        feature_area=feature_area,
        depth=structure["depth"].astype(float),
        unlocks=structure["unlocks"].astype(float),
        step_plan=step_plan,
    )


@dataclass(frozen=True)
class UserView:
    """What the baselines may read of a set of users, and (for training) their outcome."""

    role: np.ndarray  # [n], -1 unknown
    industry: np.ndarray
    plan: np.ndarray
    early_area: np.ndarray  # [n, areas] first feature uses per area
    early_features: list[set[int]]
    completed: list[list[int]]
    activated: np.ndarray  # [n] 0/1


def user_view(export: Export, catalog: CatalogView, users: Tensor) -> UserView:
    """Return the baselines' view of these exported users (node indices), in the order given."""
    data = export.data
    inputs = user_inputs(data, users)
    n = users.numel()
    early_area = np.zeros((n, catalog.n_areas))
    early_features: list[set[int]] = [set() for _ in range(n)]
    for u, f in zip(inputs.used_user.tolist(), inputs.used_feature.tolist(), strict=True):
        early_area[u, catalog.feature_area[f]] += 1
        early_features[u].add(f)
    position = {int(u): k for k, u in enumerate(users.tolist())}
    completed: list[list[int]] = [[] for _ in range(n)]
    for u, s in data["user", "completed", "step"].edge_index.numpy().T.tolist():
        if u in position:
            completed[position[u]].append(s)
    return UserView(
        role=inputs.role.numpy(),
        industry=inputs.industry.numpy(),
        plan=inputs.plan.numpy(),
        early_area=early_area,
        early_features=early_features,
        completed=completed,
        activated=data["user"].y[users].numpy().astype(int),
    )


def blocks(c: CatalogView) -> dict[str, int]:
    """Return the width of each feature block of :func:`pair_features`, in column order."""
    return {
        "step": c.n_steps,
        "area": c.n_areas,
        "depth": 1,
        "unlocks": 1,
        "plan_gate": c.n_plans,
        "role_x_area": c.n_roles * c.n_areas,
        "industry_x_area": c.n_industries * c.n_areas,
        "plan_x_area": c.n_plans * c.n_areas,
        "early_uses_in_area": 1,
        "used_the_feature": 1,
        "role_x_step": c.n_roles * c.n_steps,
        "industry_x_step": c.n_industries * c.n_steps,
    }


def pair_features(c: CatalogView, users: UserView, rows: np.ndarray, steps: np.ndarray) -> sparse.csr_matrix:
    """Return the sparse knowledge-graph features of the pairs (``users`` row ``rows[i]``, step ``steps[i]``)."""
    widths = blocks(c)
    start = dict(zip(widths, np.cumsum([0, *widths.values()])[:-1].tolist(), strict=True))
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    pair = np.arange(len(rows))
    at: list[np.ndarray] = []

    def put(block: str, offset: np.ndarray, value: np.ndarray | float = 1.0, where: np.ndarray | None = None) -> None:
        keep = np.ones(len(rows), dtype=bool) if where is None else where
        at.append(pair[keep])
        cols.append(start[block] + offset[keep])
        vals.append(np.broadcast_to(np.asarray(value, dtype=float), (len(rows),))[keep])

    area = c.step_area[steps]
    role, industry, plan = users.role[rows], users.industry[rows], users.plan[rows]
    zero = np.zeros(len(rows), dtype=int)
    put("step", steps)
    put("area", area)
    put("depth", zero, c.depth[steps])
    put("unlocks", zero, c.unlocks[steps])
    put("plan_gate", c.step_plan[steps], where=c.step_plan[steps] >= 0)
    put("role_x_area", role * c.n_areas + area, where=role >= 0)
    put("industry_x_area", industry * c.n_areas + area, where=industry >= 0)
    put("plan_x_area", plan * c.n_areas + area, where=plan >= 0)
    put("early_uses_in_area", zero, users.early_area[rows, area])
    used = np.array([c.step_feature[s] in users.early_features[r] for r, s in zip(rows, steps, strict=True)], bool)
    put("used_the_feature", zero, used.astype(float))
    put("role_x_step", role * c.n_steps + steps, where=role >= 0)
    put("industry_x_step", industry * c.n_steps + steps, where=industry >= 0)
    return sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(at), np.concatenate(cols))),
        shape=(len(rows), sum(widths.values())),
    )


def all_pairs(c: CatalogView, users: UserView) -> tuple[np.ndarray, np.ndarray]:
    n = len(users.role)
    return np.repeat(np.arange(n), c.n_steps), np.tile(np.arange(c.n_steps), n)


def completion_sums(c: CatalogView, users: UserView) -> sparse.csr_matrix:
    """Return, per user, the sum of the pair features of the steps they completed."""
    rows = np.array([u for u, done in enumerate(users.completed) for _ in done], dtype=int)
    steps = np.array([s for done in users.completed for s in done], dtype=int)
    n = len(users.role)
    if not len(rows):
        return sparse.csr_matrix((n, sum(blocks(c).values())))
    phi = pair_features(c, users, rows, steps)
    summing = sparse.csr_matrix((np.ones(len(rows)), (rows, np.arange(len(rows)))), shape=(n, len(rows)))
    return (summing @ phi).tocsr()


def fit_on_validation(
    x_train, y_train: np.ndarray, x_val, y_val: np.ndarray, grid: tuple[float, ...], *, max_iter: int = 2000
) -> tuple[float, float, LogisticRegression]:
    """Return (validation log-loss, C, model) of the logistic regression whose L2 strength in the grid fits the
    validation users best."""
    best: tuple[float, float, LogisticRegression] | None = None
    for c in grid:
        model = LogisticRegression(C=c, max_iter=max_iter).fit(x_train, y_train)
        loss = log_loss(y_val, model.predict_proba(x_val)[:, 1], labels=[0, 1])
        if best is None or loss < best[0]:
            best = (loss, c, model)
    assert best is not None, "an empty grid"
    return best


class AdditiveLogistic:
    """Logistic regression of activation on the summed pair features of the completed steps."""

    def __init__(self, catalog: CatalogView) -> None:
        self.catalog = catalog
        self.model: LogisticRegression | None = None
        self.c: float | None = None

    def fit(self, train: UserView, validation: UserView, *, grid: tuple[float, ...] = C_GRID) -> AdditiveLogistic:
        x_train, x_val = completion_sums(self.catalog, train), completion_sums(self.catalog, validation)
        _, self.c, self.model = fit_on_validation(x_train, train.activated, x_val, validation.activated, grid)
        return self

    def scores(self, users: UserView) -> np.ndarray:
        """Return the [users, steps] additive log-odds contribution of each step."""
        assert self.model is not None, "fit first"
        rows, steps = all_pairs(self.catalog, users)
        phi = pair_features(self.catalog, users, rows, steps)
        return (phi @ self.model.coef_[0]).reshape(len(users.role), self.catalog.n_steps)


class CompletionBoosting:
    """Gradient boosting of activation on the user's inputs and completed steps; a step scores its effect alone."""

    def __init__(self, catalog: CatalogView, *, seed: int = 0) -> None:
        self.catalog = catalog
        self.seed = seed
        self.model: HistGradientBoostingClassifier | None = None

    def _features(self, users: UserView, completed: list[list[int]]) -> np.ndarray:
        c = self.catalog
        n = len(users.role)
        profile = np.zeros((n, c.n_roles + c.n_industries + c.n_plans))
        for offset, values in ((0, users.role), (c.n_roles, users.industry), (c.n_roles + c.n_industries, users.plan)):
            known = values >= 0
            profile[np.flatnonzero(known), offset + values[known]] = 1.0
        done = np.zeros((n, c.n_steps))
        for u, steps in enumerate(completed):
            done[u, steps] = 1.0
        per_area = done @ np.eye(c.n_areas)[c.step_area]
        return np.hstack([profile, users.early_area, done, per_area, done.sum(1, keepdims=True)])

    def fit(self, train: UserView, validation: UserView) -> CompletionBoosting:
        x = self._features(train, train.completed)
        self.model = HistGradientBoostingClassifier(
            learning_rate=0.05, max_iter=400, max_leaf_nodes=15, l2_regularization=1.0, random_state=self.seed
        )
        # the stopping point is chosen on the validation users' log-loss
        x_val, y_val = self._features(validation, validation.completed), validation.activated
        best: tuple[float, int] | None = None
        self.model.set_params(max_iter=400, early_stopping=False).fit(x, train.activated)
        for k, p in enumerate(self.model.staged_predict_proba(x_val), start=1):
            loss = log_loss(y_val, p[:, 1], labels=[0, 1])
            if best is None or loss < best[0]:
                best = (loss, k)
        assert best is not None
        self.model.set_params(max_iter=best[1]).fit(x, train.activated)
        return self

    def scores(self, users: UserView) -> np.ndarray:
        """Return the [users, steps] predicted activation with each step completed alone."""
        assert self.model is not None, "fit first"
        n, s = len(users.role), self.catalog.n_steps
        rows, steps = all_pairs(self.catalog, users)
        repeated = UserView(
            role=users.role[rows],
            industry=users.industry[rows],
            plan=users.plan[rows],
            early_area=users.early_area[rows],
            early_features=[users.early_features[r] for r in rows],
            completed=[[int(step)] for step in steps],
            activated=users.activated[rows],
        )
        x = self._features(repeated, repeated.completed)
        return self.model.predict_proba(x)[:, 1].reshape(n, s)
