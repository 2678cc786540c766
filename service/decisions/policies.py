"""Ranking policies: versioned rule sets kept as Turtle, and how they score candidates.

A policy version's rule score for a step is the sum of: its place in the
unpersonalised journey, a depth term, an unlock term, an affinity term (the
user used a feature in the same area; personalised only) and the weights of
the rules that match. The final score mixes it with a model score by the
version's weights. Rules that read the user's profile or behaviour apply only
to personalised decisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from service.errors import NotFound
from service.knowledge import vocab
from service.knowledge.catalog import Catalog, StepInfo
from service.knowledge.store import GraphStore

PERSONAL_CONDITIONS = ("whenRole", "whenIndustry", "whenPlan", "whenUsedFeature")
MIN_EVIDENCE = 20  # completers of a step in the user's segment before their outcomes are cited
LIFT_TO_CITE = 1.2  # activation ratio a segment's completers must reach to be cited


@dataclass
class Rule:
    iri: str
    weight: float
    reason: str | None = None
    conditions: dict[str, list[str]] = field(default_factory=dict)

    @property
    def personal(self) -> bool:
        return any(self.conditions.get(c) for c in PERSONAL_CONDITIONS)


@dataclass
class PolicyVersion:
    iri: str
    policy: str
    version: str
    status: str
    rule_weight: float = 1.0
    model_weight: float = 0.0
    depth_weight: float = 0.0
    unlock_weight: float = 0.0
    affinity_weight: float = 0.0
    approved_by: str | None = None
    rules: list[Rule] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{vocab.local_id(self.policy)}@{self.version}"


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


def read_policies(store: GraphStore, queries: dict[str, str]) -> dict[str, PolicyVersion]:
    """Return every policy version in the store, by IRI."""
    versions: dict[str, PolicyVersion] = {}
    for row in store.select(queries["policy-versions"]):
        num = lambda name, default=0.0, row=row: float(row[name].value) if row[name] is not None else default  # noqa: E731
        versions[row["version"].value] = PolicyVersion(
            iri=row["version"].value,
            policy=row["policy"].value,
            version=row["name"].value,
            status=row["status"].value,
            rule_weight=num("ruleWeight", 1.0),
            model_weight=num("modelWeight"),
            depth_weight=num("depthWeight"),
            unlock_weight=num("unlockWeight"),
            affinity_weight=num("affinityWeight"),
            approved_by=row["approvedBy"].value if row["approvedBy"] is not None else None,
        )
    rules: dict[tuple[str, str], Rule] = {}
    for row in store.select(queries["policy-rules"]):
        version = versions.get(row["version"].value)
        if version is None:
            continue
        key = (version.iri, row["rule"].value)
        rule = rules.get(key)
        if rule is None:
            rule = rules[key] = Rule(
                row["rule"].value,
                float(row["weight"].value),
                row["reason"].value if row["reason"] is not None else None,
            )
            version.rules.append(rule)
        if row["link"] is not None:
            values = rule.conditions.setdefault(vocab.local_id(row["link"].value), [])
            if row["value"].value not in values:
                values.append(row["value"].value)
    for version in versions.values():
        version.rules.sort(key=lambda r: r.iri)
    return versions


def active_version(versions: dict[str, PolicyVersion], policy_id: str) -> PolicyVersion:
    """Return the active version of the policy whose ID is ``policy_id``."""
    active = [v for v in versions.values() if vocab.local_id(v.policy) == policy_id and v.status == "active"]
    if not active:
        raise NotFound(f"no active version of policy {policy_id!r}; load one into the store (ontology/policies/)")
    return max(active, key=lambda v: _version_key(v.version))


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in version.replace("-", ".").split("."))


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
    scored = []
    for iri in candidates:
        step = catalog.step(iri)
        rule_score = 1.0 - order.get(iri, n) / n + policy.depth_weight * step.depth
        reasons: list[tuple[float, str]] = []
        unlocks = [s for s in step.required_by if s in catalog.entities and context.may_reach(catalog.step(s))]
        if unlocks:
            rule_score += policy.unlock_weight * len(unlocks)
            first = min(unlocks, key=lambda s: order.get(s, n))
            reasons.append((policy.unlock_weight * len(unlocks), f"Needed before {catalog.title(first)}"))
        if context.personalized and policy.affinity_weight:
            path = _affinity(step, context, catalog)
            if path:
                rule_score += policy.affinity_weight
                reasons.append((policy.affinity_weight + 1.0, path))
        for rule in policy.rules:
            if _matches(rule, step, context, catalog):
                rule_score += rule.weight
                if rule.reason and rule.weight > 0:
                    reasons.append((rule.weight, rule.reason.format(step=step.title)))
        model_score = model_scores.get(iri)
        if model_score is not None and model_score > 0:
            evidence = _similar_users(model, context, step, catalog)
            if evidence:
                reasons.append((policy.model_weight * model_score, evidence))
        score = policy.rule_weight * rule_score + policy.model_weight * (model_score or 0.0)
        texts = [text for _, text in sorted(reasons, key=lambda r: -r[0])]
        texts.append(_introduces(step, catalog))
        scored.append(Scored(iri, round(score, 6), round(rule_score, 6), model_score, _first_unique(texts, 3)))
    scored.sort(key=lambda s: (-s.score, order.get(s.step, n), s.step))
    return scored


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
    if c.get("targetStep") and step.iri not in c["targetStep"]:
        return False
    if c.get("targetFeature") and not any(
        catalog.under(f, area) for f in step.introduces for area in c["targetFeature"]
    ):
        return False
    return True


def _affinity(step: StepInfo, context: Context, catalog: Catalog) -> str | None:
    """Return the graph path from the step's feature to a feature the user used, in words.

    Only the feature itself and its nearest area count, and never a top-level
    area: everything is part of the product, which explains nothing.
    """
    for feature in step.introduces:
        if feature in context.used_features:
            return f"More on {catalog.title(feature)}, which you started using"
    for feature in step.introduces:
        for area in catalog.parents.get(feature, []):
            if not catalog.parents.get(area):
                continue
            for used in context.used_features:
                if catalog.under(used, area):
                    return f"Unlocks {catalog.title(feature)}, part of {catalog.title(area)}, which you started using"
    return None


def _similar_users(model: Scorer, context: Context, step: StepInfo, catalog: Catalog) -> str | None:
    """Cite how the user's segment fared after this step, when the model saw enough of them.

    Only segments with at least MIN_EVIDENCE completers of the step count (small groups
    say little and could single people out), and only a clear lift (LIFT_TO_CITE).
    """
    outcome = getattr(model, "segment_outcome", None)
    found = outcome(context, step.iri) if outcome is not None else None
    if not found:
        return None
    completers, ratio = found
    if completers < MIN_EVIDENCE or ratio < LIFT_TO_CITE:
        return None
    segment = f"{catalog.title(context.role)}s in {catalog.title(context.industry)}"
    return f"{segment} who completed this step activated {ratio:.1f}x as often"


def _introduces(step: StepInfo, catalog: Catalog) -> str:
    if not step.introduces:
        return "Next in the recommended journey"
    feature = step.introduces[0]
    areas = catalog.areas(feature)
    if areas:
        return f"Introduces {catalog.title(feature)}, part of {catalog.title(areas[0])}"
    return f"Introduces {catalog.title(feature)}"


def _first_unique(texts: list[str], limit: int) -> list[str]:
    seen: list[str] = []
    for text in texts:
        if text not in seen:
            seen.append(text)
    return seen[:limit]
