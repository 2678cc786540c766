"""Ranking: how a policy version scores candidate steps, and the reasons it gives.

A version's rule score for a step is the sum of: a journey term (its journey
weight x (1 - the step's place in the unpersonalised journey / the number of
steps)), a depth term, an unlock term, an affinity term (the user used a feature
in the same area; personalised only) and the weights of the rules that match.
The final score mixes it with a model score by the version's weights: as they are
(``wf:WeightedSum``) or each score first put in activation log-odds by the model's
calibration for the version (``wf:CalibratedSum``, ``service.models.calibration``). Rules that
read the user's profile or behaviour apply only to personalised decisions. Every
reason is one of the version's templates (:mod:`service.knowledge.policies`),
filled in with the placeholders its kind offers; the model's evidence is cited
only past the version's evidence threshold and lift to cite.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

from service.knowledge.catalog import Catalog, StepInfo
from service.knowledge.policies import PolicyVersion, Rule
from service.knowledge.templates import Named


@dataclass
class Context:
    """What a decision may read of the user: profile fields are None when not personalised."""

    channel: str
    personalized: bool
    role: str | None = None
    industry: str | None = None
    plan: str | None = None
    used_features: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    # Eligibility facts, read in every decision (they decide what the user may see):
    # used only to leave out steps the user can never reach.
    eligible_roles: list[str] = field(default_factory=list)
    eligible_plans: list[str] = field(default_factory=list)
    locale: str | None = None  # the locale the reasons are given in (their translations, and the titles they name)

    def may_reach(self, step: StepInfo) -> bool:
        role_ok = not step.roles or any(r in step.roles for r in self.eligible_roles)
        plan_ok = all(p in self.eligible_plans for p in step.plans)
        return role_ok and plan_ok


@dataclass
class Scored:
    step: str
    score: float
    rule_score: float
    model_score: float | None = None
    reasons: list[str] = field(default_factory=list)


class Scorer(Protocol):
    """A model that scores candidate steps for a context (the GNN slots in here)."""

    version: str

    def score(self, context: Context, steps: list[str]) -> dict[str, float]: ...

    def calibration(self, policy: PolicyVersion) -> tuple[float, float] | None: ...


def serving_model(policy: PolicyVersion, model: Scorer | None, *, personalized: bool) -> Scorer | None:
    """Return the model a decision under this version uses: none without a model weight or a personalisation
    consent, and none for a calibrated version (``wf:CalibratedSum``) the model holds no calibration of."""
    if model is None or not policy.model_weight or not personalized:
        return None
    if policy.calibrated and model.calibration(policy) is None:
        return None
    return model


def rank(
    candidates: list[str],
    *,
    policy: PolicyVersion,
    context: Context,
    catalog: Catalog,
    model: Scorer | None = None,
) -> list[Scored]:
    """Score and order candidate steps, best first, each with 1 to 3 reasons."""
    n = max(len(catalog.by_id["Step"]), 1)
    order = {s.iri: i for i, s in enumerate(catalog.steps)}
    model_scores = model.score(context, candidates) if model is not None and policy.model_weight else {}
    units = model.calibration(policy) if model is not None and policy.calibrated else None
    model_units, rule_units = units or (1.0, 1.0)  # a weighted sum takes both scores in their own units
    scored = []
    for iri in candidates:
        step = catalog.step(iri)
        rule_score = policy.journey_weight * (1.0 - order.get(iri, n) / n) + policy.depth_weight * step.depth
        reasons: list[tuple[float, str]] = []
        unlocks = [s for s in step.required_by if s in catalog.entities and context.may_reach(catalog.step(s))]
        if unlocks:
            rule_score += policy.unlock_weight * len(unlocks)
            first = min(unlocks, key=lambda s: order.get(s, n))
            text = _say(
                policy,
                context,
                catalog,
                "unlockReason",
                step=Named(iri),
                unlocked=Named(first),
            )
            reasons.append((policy.unlock_weight * len(unlocks), text))
        if context.personalized and policy.affinity_weight:
            path = _affinity(policy, step, context, catalog)
            if path:
                rule_score += policy.affinity_weight
                reasons.append((policy.affinity_weight + 1.0, path))  # the user's own behaviour explains best
        for rule in policy.rules:
            if _matches(rule, step, context, catalog):
                rule_score += rule.weight
                if rule.reason and rule.weight > 0:
                    text = rule.reason.say(context.locale, catalog.title_in, step=Named(step.iri))
                    reasons.append((rule.weight, text))
        model_score = model_scores.get(iri)
        if model is not None and model_score is not None and model_score > 0:
            evidence = _similar_users(policy, model, context, step, catalog)
            if evidence:
                reasons.append((policy.model_weight * model_units * model_score, evidence))
        score = policy.rule_weight * rule_units * rule_score + policy.model_weight * model_units * (model_score or 0.0)
        texts = [text for _, text in sorted(reasons, key=lambda r: -r[0])]
        texts.append(_introduces(policy, step, catalog, context))
        scored.append(Scored(iri, round(score, 6), round(rule_score, 6), model_score, _first_unique(texts, 3)))
    scored.sort(key=lambda s: (-s.score, order.get(s.step, n), s.step))
    return scored


@dataclass(frozen=True)
class Slate:
    """What a decision shows: the steps in order, each one's position-wise propensity, and whether it explored."""

    steps: list[Scored]
    propensities: list[float]
    explored: bool


def slate(ranked: list[Scored], *, limit: int, exploration_rate: float, seed: int) -> Slate:
    """The steps to show: the ranked top ``limit``, or, with probability ``exploration_rate``, a uniformly random
    ordered sample of the candidates, drawn from ``seed`` (the decision's ID, so the trail reproduces it).

    A step's propensity at rank k is (1 - rate) when the ranked slate has it at k, plus rate / n (a uniform
    slate puts any of the n candidates at any rank with probability 1 / n): exact, so the slate estimators
    of :mod:`service.governance.offline` apply to the log.
    """
    k = min(limit, len(ranked))
    if not exploration_rate:  # the common case, on the next-steps path: no draw to seed
        return Slate(ranked[:k], [1.0] * k, False)
    draw = random.Random(seed)
    explored = draw.random() < exploration_rate
    shown = draw.sample(ranked, k) if explored else ranked[:k]
    return Slate(shown, [propensity(ranked, s.step, i, exploration_rate) for i, s in enumerate(shown)], explored)


def propensity(ranked: list[Scored], step: str, position: int, exploration_rate: float) -> float:
    """The probability that a policy exploring at this rate shows ``step`` at ``position`` (0-based)."""
    ranked_there = position < len(ranked) and ranked[position].step == step
    return (1.0 - exploration_rate) * ranked_there + exploration_rate / len(ranked)


def _say(policy: PolicyVersion, context: Context, catalog: Catalog, kind: str, **values: str | Named) -> str:
    """Return the version's reason of this kind in the decision's locale, with its placeholders filled in
    (entities named in the language of the words picked)."""
    return policy.templates[kind].say(context.locale, catalog.title_in, **values)


def _matches(rule: Rule, step: StepInfo, context: Context, catalog: Catalog) -> bool:
    if rule.personal and not context.personalized:
        return False
    c = rule.conditions
    if c.get("whenRole") and context.role not in c["whenRole"]:
        return False
    if c.get("whenIndustry") and context.industry not in c["whenIndustry"]:
        return False
    if c.get("whenPlan") and context.plan not in c["whenPlan"]:
        return False
    if c.get("whenChannel") and context.channel not in c["whenChannel"]:
        return False
    if c.get("whenUsedFeature") and not any(
        catalog.under(used, area) for used in context.used_features for area in c["whenUsedFeature"]
    ):
        return False
    if c.get("whenReachedValue") and (c["whenReachedValue"][0] in ("true", "1")) != catalog.reached_value(
        context.used_features
    ):
        return False
    if c.get("targetStep") and step.iri not in c["targetStep"]:
        return False
    if c.get("targetFeature") and not any(
        catalog.under(f, area) for f in step.introduces for area in c["targetFeature"]
    ):
        return False
    return True


def _affinity(policy: PolicyVersion, step: StepInfo, context: Context, catalog: Catalog) -> str | None:
    """Return the graph path from the step's feature to a feature the user used, in words.

    Only the feature itself and its nearest area count, and never a top-level
    area: everything is part of the product, which explains nothing.
    """
    for feature in step.introduces:
        if feature in context.used_features:
            return _say(
                policy,
                context,
                catalog,
                "usedFeatureReason",
                step=Named(step.iri),
                feature=Named(feature),
            )
    for feature in step.introduces:
        for area in catalog.parents.get(feature, []):
            if not catalog.parents.get(area):
                continue
            for used in context.used_features:
                if catalog.under(used, area):
                    return _say(
                        policy,
                        context,
                        catalog,
                        "usedAreaReason",
                        step=Named(step.iri),
                        feature=Named(feature),
                        area=Named(area),
                    )
    return None


def _similar_users(
    policy: PolicyVersion, model: Scorer, context: Context, step: StepInfo, catalog: Catalog
) -> str | None:
    """Cite how the user's segment fared after this step, when the model saw enough of them.

    Only segments with at least the version's evidence threshold of completers of the
    step count (small groups say little and could single people out), and only a
    clear lift (the version's lift to cite).
    """
    outcome = getattr(model, "segment_outcome", None)
    found = outcome(context, step.iri) if outcome is not None else None
    if not found or context.role is None or context.industry is None:
        return None
    completers, ratio = found
    if completers < policy.min_evidence or ratio < policy.lift_to_cite:
        return None
    return _say(
        policy,
        context,
        catalog,
        "similarUsersReason",
        step=Named(step.iri),
        role=Named(context.role),
        industry=Named(context.industry),
        lift=f"{ratio:.1f}",
        completers=str(completers),
    )


def _introduces(policy: PolicyVersion, step: StepInfo, catalog: Catalog, context: Context) -> str:
    if not step.introduces:
        return _say(policy, context, catalog, "journeyReason", step=Named(step.iri))
    feature = step.introduces[0]
    areas = catalog.areas(feature)
    if areas:
        return _say(
            policy,
            context,
            catalog,
            "introducesAreaReason",
            step=Named(step.iri),
            feature=Named(feature),
            area=Named(areas[0]),
        )
    return _say(
        policy,
        context,
        catalog,
        "introducesReason",
        step=Named(step.iri),
        feature=Named(feature),
    )


def _first_unique(texts: list[str], limit: int) -> list[str]:
    seen: list[str] = []
    for text in texts:
        if text not in seen:
            seen.append(text)
    return seen[:limit]
