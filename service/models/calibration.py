"""Rule calibration: a policy version's rule score and a model's score put on one scale, from held-out outcomes.

A model scores a step by its additive contribution to the user's activation log-odds
(``embeddings.stack``); a policy version scores it in units of its own weights (journey,
depth, unlock, affinity, rules). A weighted sum of the two (``wf:WeightedSum``) depends
on both units, so its weights mean nothing by themselves. For each policy version that
mixes by ``wf:CalibratedSum``, training fits on the held-out validation users (who never
trained the model), and where they are fewer than ``MIN_USERS`` (a few hundred users in all)
on the training users too, each scored by the stacked model built on the fold GNN that never
saw them (the cross-fitting of ``embeddings.stack``), so that few users still get a mix:

    P(activated) = sigmoid(c + g * base(u) + n[k(u)] + b * sum of model(u, s) + a * sum of rules(u, s))

with both sums over the steps ``u`` completed and ``n[k]`` a term per number ``k`` of steps
completed. Users who complete more steps activate more often whatever the steps, and the
logged journeys complete steps in the journey's order, so without one term per count a
rule score would be credited with how many steps, not which, a user completed. ``rules(u, s)`` is the version's rule score of
the step as it ranks it for that user (personalised, before any completion, averaged over
the catalog's channels). ``b`` and ``a`` turn each score into activation log-odds; the
ranking then adds ``modelWeight x b x model + ruleWeight x a x rules``, so weights of 1 and 1
are what the held-out outcomes say, and scaling every rule weight of a version by k only
divides ``a`` by k. Neither weight is below 0 (:func:`fit_units`): a score the outcomes weigh
negatively beside the other is left out of the mix.

The calibrations travel in the model's artefact (``embeddings.scoring``), keyed by the
policy version and its content hash: a model holds none for a version that did not
exist, or changed, when it was trained, and then does not serve that version.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from embeddings.export import Export
from embeddings.inputs import catalog_edges, completion_matrix, user_inputs
from embeddings.model import UpliftEnsemble
from service.decisions.ranking import Context, rank
from service.knowledge.policies import PolicyVersion
from service.runtime import Runtime

MIN_USERS = 50  # held-out users (of both outcomes) below which no calibration is fitted
C = 1e4  # inverse L2 strength, on standardised columns: as good as none, but finite where a count separates


def rule_calibrations(
    runtime: Runtime,
    export: Export,
    model: UpliftEnsemble,
    users: torch.Tensor,
    *,
    out_of_fold: Sequence[tuple[UpliftEnsemble, torch.Tensor]] = (),
) -> dict[str, dict[str, float | int | str | None]]:
    """Return, per calibrated policy version (IRI), its content hash and the fitted units of both scores.

    ``users`` are the held-out users, scored by ``model``. Where they are fewer than MIN_USERS, the training
    users of ``out_of_fold`` join them, each scored by the model whose GNN never trained on them
    (``embeddings.stack.Stacked.out_of_fold``): with few users, a calibration from all of them rather than none.
    """
    versions = [v for v in runtime.knowledge.policies.values() if v.calibrated and v.model_weight]
    scored = [(model, users)] if users.numel() >= MIN_USERS else [(model, users), *out_of_fold]
    everyone = torch.cat([u for _, u in scored])
    data = export.data
    activated = data["user"].y[everyone].numpy().astype(int)
    if not versions or everyone.numel() < MIN_USERS or activated.min() == activated.max():
        return {}
    with torch.no_grad():
        parts = [scorer(catalog_edges(data), user_inputs(data, u)) for scorer, u in scored]
    uplift, base = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    done = completion_matrix(data, everyone).numpy()
    model_sums = (uplift.numpy() * done).sum(1)
    completed = done.sum(1).astype(int)
    counts = np.eye(completed.max() + 1)[completed][:, 1:]  # one column per number of steps completed but 0
    contexts = _contexts(runtime, export, everyone)
    out: dict[str, dict[str, float | int | str | None]] = {}
    for version in versions:
        rules = rule_scores(runtime, version, contexts, export.iris("step"))
        model_units, rule_units = fit_units(
            model_sums, (rules * done).sum(1), np.column_stack([base.numpy(), counts]), activated
        )
        out[version.iri] = {
            "content_hash": version.content_hash,
            "model": model_units,
            "rules": rule_units,
            "users": int(everyone.numel()),
            "held_out": int(users.numel()),  # of which held out; the others, out of fold
        }
    return out


def fit_units(model: np.ndarray, rules: np.ndarray, controls: np.ndarray, activated: np.ndarray) -> tuple[float, float]:
    """Return the (model, rules) weights of the calibration regression, neither below 0.

    A score is evidence for a step, never against it: when one fits a negative weight (the
    held-out outcomes say it adds nothing the other does not), it is left out and weighs 0.
    """
    keep = [True, True]
    while True:
        columns = [c for c, k in zip((model, rules), keep, strict=True) if k]
        x = np.column_stack([*columns, controls])
        spread = x.std(axis=0)
        spread[spread == 0] = 1.0  # a constant column (say, no rule ever scores) fits a zero weight
        # fitted on standardised columns, so the units of a score change nothing but its weight
        fit = LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(x / spread, activated)
        weights = iter(fit.coef_[0][: len(columns)] / spread[: len(columns)])
        units = [float(next(weights)) if k else 0.0 for k in keep]
        negative = [u < 0 for u in units]
        if not any(negative):
            return units[0], units[1]
        keep = [k and not n for k, n in zip(keep, negative, strict=True)]


def rule_scores(
    runtime: Runtime, version: PolicyVersion, contexts: list[list[Context]], steps: list[str]
) -> np.ndarray:
    """Return the [users, steps] rule score of a version, each user's averaged over their contexts (channels)."""
    catalog = runtime.knowledge.catalog
    column = {s: k for k, s in enumerate(steps)}
    out = np.zeros((len(contexts), len(steps)))
    for row, channels in enumerate(contexts):
        for context in channels:
            for scored in rank(steps, policy=version, context=context, catalog=catalog, model=None):
                out[row, column[scored.step]] += scored.rule_score / len(channels)
    return out


def _contexts(runtime: Runtime, export: Export, users: torch.Tensor) -> list[list[Context]]:
    """Return, per user, what a personalised decision on each channel reads of them before any completion."""
    data = export.data
    inputs = user_inputs(data, users)
    iris = {kind: export.iris(kind) for kind in ("role", "industry", "plan", "feature")}
    used: list[list[str]] = [[] for _ in range(users.numel())]
    for u, f in zip(inputs.used_user.tolist(), inputs.used_feature.tolist(), strict=True):
        used[u].append(iris["feature"][f])
    catalog = runtime.knowledge.catalog
    channels = list(runtime.knowledge.codes.channels.values())
    out = []
    for k in range(users.numel()):
        role, industry, plan = (
            iris[kind][int(i)] if int(i) >= 0 else None
            for kind, i in (("role", inputs.role[k]), ("industry", inputs.industry[k]), ("plan", inputs.plan[k]))
        )
        out.append(
            [
                Context(
                    channel=channel,
                    personalized=True,
                    role=role,
                    industry=industry,
                    plan=plan,
                    used_features=used[k],
                    eligible_roles=[role] if role else [],
                    eligible_plans=catalog.plans_included(plan) if plan else [],
                )
                for channel in channels
            ]
        )
    return out
