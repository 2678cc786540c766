"""A seeded synthetic onboarding world with a planted truth, and its catalog in the Wayfinder vocabulary.

The generative story (every draw comes from one ``numpy`` generator seeded with ``seed``):

Catalog.
    ``n_areas`` top-level feature areas; the other features hang below them through
    ``wf:partOf`` (sub-areas part of an area, leaf features part of a sub-area or an
    area), so a feature's AREA is its top ancestor. Each step introduces one non-area
    feature; steps are spread evenly over the areas. Each child of an area (a
    sub-area, or a feature right below the area) has a hidden quality
    ``U(1 - quality_spread, 1 + quality_spread)``; a step's quality ``q_s`` is that of the
    group its feature is in, reached through ``wf:partOf``, times ``U(1 - step_jitter,
    1 + step_jitter)``. The default order (``wf:defaultOrder``) is a random
    permutation: it knows nothing about value. About a third of the steps require an
    earlier step (``wf:requires``), a few are for one or two roles only
    (``wf:forRole``) and some need the team or enterprise plan (``wf:requiresPlan``;
    plans nest free < team < enterprise through ``wf:includesPlan``).

Users.
    Role, industry and plan are drawn from skewed categorical distributions. A hidden
    need vector over the areas is ``need = softmax(R[role] + I[industry] + sigma * eps)``
    with ``R``, ``I`` Gaussian tables and ``eps`` standard normal per user and area:
    the segment tells a good part of the need, not all of it.

Early events.
    Before the onboarding flow, each user uses ``1 + Binomial(3, 0.5)`` features
    (``wf:FeatureUsed``): each picks an area with probability proportional to
    ``need ** early_sharpness`` (or, with probability ``early_noise``, uniformly), then a
    random feature in that area. These are the user's consented first events and they
    correlate with the individual part of the need. Feature use is logged only then.

Truth.
    The true value of step ``s`` for user ``u`` is
    ``v(u, s) = q_s * n_areas * need[u, area(feature(s))] + N(0, value_noise)``, clipped
    at 0: quality times how much more than an average area the user needs the step's
    area, so the scale of values (and of the activation signal) does not depend on
    how many areas the catalog has.

Logged journeys (the unpersonalised default flow).
    Each user will complete ``1 + Poisson(engagement)`` steps. Steps are shown in
    default order jittered by ``N(0, order_jitter)`` positions (a share ``explore`` of
    users get a random order), skipping steps the user's role or plan excludes and steps
    whose prerequisites are not completed yet. A shown step is dismissed with
    probability ``p_dismiss``, completed with probability ``p_complete``, else ignored
    (nothing logged). Completion never looks at value: logged clicks follow popularity.

Outcome.
    The user activates (``wf:Activated``) with probability
    ``sigmoid(alpha + beta * sum of v(u, s) over completed steps)``; an activated user on
    a plan below the top converts (``wf:Converted``) with probability 0.3.

Truth families (``WorldParams.family``; the story above is ``interaction``).
    The truth can be built in other ways, so that an evaluation is not fitted to one
    design (``FAMILIES``); every family keeps the catalog, journeys, outcome and consent
    story above, and draws its own hidden tables after the default ones, so the
    ``interaction`` world of a seed stays the same draw for draw.

    ``interaction``: role x area and industry x area effects through the need (above).
    ``additive``: ``v(u, s) = q_s + A[role, s] + B[industry, s]``, Gaussian tables of
    scale ``additive_scale``, per step and not by area: the catalog's structure says
    nothing of who needs a step. The early events follow a need over areas from the
    mean effect of each area's steps for the segment.
    ``plan_gated``: as ``interaction``, but some areas pay off only on a high enough plan
    (``plan_gates`` areas need team, one needs enterprise): below it, a step of such an
    area is worth ``plan_gate_factor`` of its value.
    ``prerequisite``: as ``interaction``, and a step also carries ``carry`` times the value
    of the steps that require it (what it unlocks), with more prerequisite links
    (``p_requires``).
    ``noisy``: as ``interaction``, with a weaker segment signal, noisier needs, values and
    first events and a weaker activation signal.

Consent.
    ANALYTICS is given at registration by most users; some of them withdraw it later
    and a few of those give it again (the latest record counts). PERSONALIZATION and
    MARKETING are drawn independently. Events are logged as the privacy shapes
    allow at the time: FeatureUsed needs PERSONALIZATION or ANALYTICS, Activated and
    Converted need ANALYTICS. Users who later withdraw keep their earlier events in the
    file: the exporter must leave them out.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pyoxigraph as ox

from service.knowledge import vocab

WORLD_BASE = vocab.BASE + "world/"
PLAN_NAMES = ("free", "team", "enterprise")
ROLE_NAMES = ("analyst", "engineer", "manager", "admin", "designer", "marketer", "sales", "support")
INDUSTRY_NAMES = ("retail", "fintech", "healthcare", "education", "logistics", "media", "gaming", "public-sector")
CHANNELS = (vocab.WEB, vocab.MOBILE, vocab.IN_APP, vocab.EMAIL)
PURPOSES = {"Analytics": vocab.ANALYTICS, "Personalization": vocab.PERSONALIZATION, "Marketing": vocab.MARKETING}
START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class WorldParams:
    """The knobs of the generative story (defaults are the ones the bench and tests use)."""

    sigma: float = 0.8
    quality_spread: float = 0.25
    step_jitter: float = 0.05
    role_scale: float = 1.2
    industry_scale: float = 0.9
    early_sharpness: float = 2.0
    early_noise: float = 0.1
    value_noise: float = 0.05
    engagement: float = 5.0
    order_jitter: float = 6.0
    explore: float = 0.2
    p_dismiss: float = 0.12
    p_complete: float = 0.8
    alpha: float = -3.0
    beta: float = 0.5
    p_analytics: float = 0.9
    p_withdraw: float = 0.06
    p_regrant: float = 0.3
    p_personalization: float = 0.8
    p_marketing: float = 0.4
    family: str = "interaction"  # how the truth is built: one of FAMILIES
    p_requires: float = 0.3  # share of steps that require an earlier one
    additive_scale: float = 0.5  # ``additive``: scale of the per-step segment effects
    plan_gates: int = 2  # ``plan_gated``: areas that need the team plan (one more needs enterprise)
    plan_gate_factor: float = 0.2  # ``plan_gated``: share of the value below the area's plan
    carry: float = 0.6  # ``prerequisite``: share of an unlocked step's value a prerequisite carries


FAMILIES = ("interaction", "additive", "plan_gated", "prerequisite", "noisy")


def family_params(family: str, **overrides: float) -> WorldParams:
    """Return the parameters of a truth family (see the module docstring), with overrides."""
    if family not in FAMILIES:
        raise ValueError(f"unknown world family {family!r}: one of {', '.join(FAMILIES)}")
    base: dict = {"family": family}
    if family == "prerequisite":
        base["p_requires"] = 0.55
    if family == "noisy":
        base.update(
            sigma=1.6, role_scale=0.8, industry_scale=0.6, value_noise=0.4, early_noise=0.4, early_sharpness=1.0
        )
        base["beta"] = 0.35
    return WorldParams(**{**base, **overrides})


@dataclass(eq=False)
class UserRecord:
    """One synthetic user: profile, hidden need, consents and logged history."""

    id: str
    role: int
    industry: int
    plan: int
    need: np.ndarray  # hidden, over areas
    values: np.ndarray  # hidden true value of every step
    early_features: list[int]
    journey: list[tuple[int, bool]]  # (step, completed) in the order shown; False: dismissed
    activated: bool
    converted: bool
    consents: list[tuple[str, bool, int]]  # (purpose name, granted, minute offset)
    pseudonym: str
    registered_at: datetime

    @property
    def iri(self) -> str:
        return vocab.USER_BASE + self.id

    @property
    def completed(self) -> list[int]:
        return [s for s, done in self.journey if done]

    @property
    def dismissed(self) -> list[int]:
        return [s for s, done in self.journey if not done]

    def analytics_active(self) -> bool:
        """Whether the user's latest ANALYTICS record gives consent."""
        records = [(at, not granted, granted) for name, granted, at in self.consents if name == "Analytics"]
        return bool(records) and max(records)[2]


@dataclass(eq=False)
class World:
    """A catalog, its users and the planted truth."""

    seed: int
    name: str
    params: WorldParams
    roles: list[str]
    industries: list[str]
    plans: list[str]  # lowest first; each includes the one before
    features: list[str]
    feature_parent: list[int]  # -1 for an area
    feature_area: list[int]  # index into areas
    areas: list[int]  # feature index of each area
    steps: list[str]
    step_feature: list[int]
    step_order: list[int]
    step_requires: list[list[int]]
    step_roles: list[list[int]]
    step_plan: list[int]  # -1: every plan
    step_channels: list[list[int]]
    step_quality: np.ndarray
    role_table: np.ndarray | None = None  # hidden: [roles, areas] part of the need logits
    industry_table: np.ndarray | None = None  # hidden: [industries, areas]
    users: list[UserRecord] = field(default_factory=list)
    _by_id: dict[str, UserRecord] = field(default_factory=dict, init=False, repr=False)

    @property
    def catalog_graph(self) -> ox.NamedNode:
        return vocab.catalog_graph(self.name)

    def eligible(self, user: UserRecord) -> list[int]:
        """Return the steps the user's role and plan allow (prerequisites not applied)."""
        return [
            s
            for s in range(len(self.steps))
            if (not self.step_roles[s] or user.role in self.step_roles[s]) and self.step_plan[s] <= user.plan
        ]

    def truth(self, user: UserRecord) -> dict[str, float]:
        """Return the user's true value of each eligible step, by step IRI."""
        return {self.steps[s]: float(user.values[s]) for s in self.eligible(user)}

    def truth_table(self) -> dict[str, dict[str, float]]:
        """Return every user's true step values, by user IRI then step IRI."""
        return {u.iri: self.truth(u) for u in self.users}

    def user(self, user_id: str) -> UserRecord:
        """Return the user with this ID."""
        if len(self._by_id) != len(self.users):
            self._by_id = {u.id: u for u in self.users}
        return self._by_id[user_id]


def generate_world(
    *,
    seed: int,
    n_users: int,
    n_steps: int = 40,
    n_features: int = 60,
    n_areas: int = 6,
    n_roles: int = 5,
    n_industries: int = 6,
    params: WorldParams | None = None,
    name: str | None = None,
) -> World:
    """Generate a world: catalog, users with hidden needs, logged journeys and outcomes."""
    params = params or WorldParams()
    if n_features < 2 * n_areas or n_steps < n_areas:
        raise ValueError("need at least two features and one step per area")
    rng = np.random.default_rng(seed)
    world = _catalog(
        rng,
        seed=seed,
        n_steps=n_steps,
        n_features=n_features,
        n_areas=n_areas,
        n_roles=n_roles,
        n_industries=n_industries,
        params=params,
        name=name or f"world-{seed}",
    )
    _users(rng, world, n_users=n_users)
    return world


def _names(pool: tuple[str, ...], n: int, prefix: str) -> list[str]:
    return [pool[i] if i < len(pool) else f"{prefix}-{i}" for i in range(n)]


def _catalog(
    rng: np.random.Generator,
    *,
    seed: int,
    n_steps: int,
    n_features: int,
    n_areas: int,
    n_roles: int,
    n_industries: int,
    params: WorldParams,
    name: str,
) -> World:
    roles = [WORLD_BASE + "role-" + n for n in _names(ROLE_NAMES, n_roles, "role")]
    industries = [WORLD_BASE + "industry-" + n for n in _names(INDUSTRY_NAMES, n_industries, "industry")]
    plans = [WORLD_BASE + "plan-" + n for n in PLAN_NAMES]
    parent = [-1] * n_areas
    area = list(range(n_areas))
    n_sub = max(n_areas, (n_features - n_areas) // 4)
    for i in range(n_sub):  # sub-areas, at least one per area
        a = i if i < n_areas else int(rng.integers(n_areas))
        parent.append(a)
        area.append(a)
    while len(parent) < n_features:  # leaves below a sub-area or, less often, an area
        p = int(rng.integers(n_areas, n_areas + n_sub)) if rng.random() < 0.8 else int(rng.integers(n_areas))
        parent.append(p)
        area.append(area[p])
    features = [WORLD_BASE + (f"area-{i}" if i < n_areas else f"feature-{i:03d}") for i in range(n_features)]
    by_area = {a: [f for f in range(n_areas, n_features) if area[f] == a] for a in range(n_areas)}
    step_area = rng.permutation(np.arange(n_steps) % n_areas)
    step_feature = [int(rng.choice(by_area[int(a)])) for a in step_area]
    order = rng.permutation(n_steps)
    requires: list[list[int]] = [[] for _ in range(n_steps)]
    for s in range(n_steps):
        earlier = [t for t in range(n_steps) if order[t] < order[s]]
        if earlier and rng.random() < params.p_requires:
            same = [t for t in earlier if step_area[t] == step_area[s]]
            requires[s].append(int(rng.choice(same or earlier)))
    step_roles = [
        sorted(int(r) for r in rng.choice(n_roles, size=int(rng.integers(1, 3)), replace=False))
        if rng.random() < 0.1
        else []
        for _ in range(n_steps)
    ]
    step_plan = [int(rng.choice([-1, 1, 2], p=[0.77, 0.15, 0.08])) for _ in range(n_steps)]
    channels = [[0] + [c for c in (1, 2, 3) if rng.random() < 0.4] for _ in range(n_steps)]
    return World(
        seed=seed,
        name=name,
        params=params,
        roles=roles,
        industries=industries,
        plans=plans,
        features=features,
        feature_parent=parent,
        feature_area=area,
        areas=list(range(n_areas)),
        steps=[WORLD_BASE + f"step-{s:03d}" for s in range(n_steps)],
        step_feature=step_feature,
        step_order=[int(o) for o in order],
        step_requires=requires,
        step_roles=step_roles,
        step_plan=step_plan,
        step_channels=channels,
        step_quality=_quality(rng, parent, step_feature, params),
    )


def _quality(rng: np.random.Generator, parent: list[int], step_feature: list[int], params: WorldParams) -> np.ndarray:
    """Return each step's quality: that of its feature's group (the child of the area above it), jittered."""
    group_quality = rng.uniform(1 - params.quality_spread, 1 + params.quality_spread, len(parent))

    def group(f: int) -> int:
        while parent[f] >= 0 and parent[parent[f]] >= 0:
            f = parent[f]
        return f

    jitter = rng.uniform(1 - params.step_jitter, 1 + params.step_jitter, len(step_feature))
    return np.array([group_quality[group(f)] for f in step_feature]) * jitter


def _users(rng: np.random.Generator, world: World, *, n_users: int) -> None:
    p = world.params
    n_areas, n_steps = len(world.areas), len(world.steps)
    world.role_table = rng.normal(0.0, p.role_scale, (len(world.roles), n_areas))
    world.industry_table = rng.normal(0.0, p.industry_scale, (len(world.industries), n_areas))
    role_weights = rng.dirichlet(np.full(len(world.roles), 3.0))
    industry_weights = rng.dirichlet(np.full(len(world.industries), 3.0))
    step_area = np.array([world.feature_area[f] for f in world.step_feature])
    area_features = [
        [f for f in range(n_areas, len(world.features)) if world.feature_area[f] == a] for a in range(n_areas)
    ]
    rank = np.argsort(np.argsort(world.step_order))
    family = _Family(rng, world, step_area)  # the other families' tables, drawn after the default ones
    for i in range(n_users):
        role = int(rng.choice(len(world.roles), p=role_weights))
        industry = int(rng.choice(len(world.industries), p=industry_weights))
        plan = int(rng.choice(3, p=[0.6, 0.3, 0.1]))
        logits = family.need_logits(role, industry) + p.sigma * rng.standard_normal(n_areas)
        need = np.exp(logits - logits.max())
        need /= need.sum()
        relative = n_areas * need[step_area]  # 1 for an area the user needs as much as any other
        noise = rng.normal(0.0, p.value_noise, n_steps)
        values = np.clip(family.values(role, industry, plan, relative) + noise, 0.0, None)
        pick = need**p.early_sharpness
        pick /= pick.sum()
        early = []
        for _ in range(1 + int(rng.binomial(3, 0.5))):
            a = int(rng.integers(n_areas)) if rng.random() < p.early_noise else int(rng.choice(n_areas, p=pick))
            early.append(int(rng.choice(area_features[a])))
        journey = _journey(rng, world, role=role, plan=plan, rank=rank)
        completed = [s for s, done in journey if done]
        total = float(values[completed].sum()) if completed else 0.0
        activated = bool(rng.random() < 1.0 / (1.0 + math.exp(-(p.alpha + p.beta * total))))
        converted = activated and plan < 2 and bool(rng.random() < 0.3)
        world.users.append(
            UserRecord(
                id=f"{world.name}-u{i:05d}",
                role=role,
                industry=industry,
                plan=plan,
                need=need,
                values=values,
                early_features=early,
                journey=journey,
                activated=activated,
                converted=converted,
                consents=_consents(rng, p),
                pseudonym=rng.bytes(16).hex(),
                registered_at=START + timedelta(minutes=7 * i),
            )
        )


class _Family:
    """How a world's truth family turns a user's segment and need into step values (before noise)."""

    def __init__(self, rng: np.random.Generator, world: World, step_area: np.ndarray) -> None:
        p = world.params
        if p.family not in FAMILIES:
            raise ValueError(f"unknown world family {p.family!r}: one of {', '.join(FAMILIES)}")
        self.p, self.world, self.step_area = p, world, step_area
        assert world.role_table is not None and world.industry_table is not None
        n_steps, n_areas = len(world.steps), len(world.areas)
        if p.family == "additive":
            self.role_effect = rng.normal(0.0, p.additive_scale, (len(world.roles), n_steps))
            self.industry_effect = rng.normal(0.0, p.additive_scale, (len(world.industries), n_steps))
            # the need that drives first events: each area's mean step effect for the segment, scaled
            # (every area has a step: generate_world spreads the steps evenly over the areas)
            area_mean = lambda table: np.stack([table[:, step_area == a].mean(1) for a in range(n_areas)], 1)  # noqa: E731
            world.role_table = area_mean(self.role_effect) / p.additive_scale * p.role_scale
            world.industry_table = area_mean(self.industry_effect) / p.additive_scale * p.industry_scale
        if p.family == "plan_gated":
            gated = rng.permutation(n_areas)[: min(n_areas, p.plan_gates + 1)]
            self.area_plan = np.zeros(n_areas, dtype=int)
            self.area_plan[gated[: p.plan_gates]] = 1
            self.area_plan[gated[p.plan_gates :]] = 2
        if p.family == "prerequisite":
            self.unlocked_by = [[t for t in range(n_steps) if s in world.step_requires[t]] for s in range(n_steps)]

    def need_logits(self, role: int, industry: int) -> np.ndarray:
        w = self.world
        assert w.role_table is not None and w.industry_table is not None
        return w.role_table[role] + w.industry_table[industry]

    def values(self, role: int, industry: int, plan: int, relative: np.ndarray) -> np.ndarray:
        """Return the step values before noise, from the segment, plan and the need relative to an average area."""
        p, quality = self.p, self.world.step_quality
        if p.family == "additive":
            return quality + self.role_effect[role] + self.industry_effect[industry]
        values = quality * relative
        if p.family == "plan_gated":
            values = np.where(self.area_plan[self.step_area] <= plan, values, p.plan_gate_factor * values)
        if p.family == "prerequisite":
            values = values + p.carry * np.array([values[t].sum() for t in self.unlocked_by])
        return values


def _journey(
    rng: np.random.Generator, world: World, *, role: int, plan: int, rank: np.ndarray
) -> list[tuple[int, bool]]:
    p = world.params
    n_steps = len(world.steps)
    target = 1 + int(rng.poisson(p.engagement))
    keys = (
        rng.permutation(n_steps).astype(float)
        if rng.random() < p.explore
        else rank + rng.normal(0, p.order_jitter, n_steps)
    )
    allowed = [
        s
        for s in range(n_steps)
        if (not world.step_roles[s] or role in world.step_roles[s]) and world.step_plan[s] <= plan
    ]
    seen: set[int] = set()
    journey: list[tuple[int, bool]] = []
    done: set[int] = set()
    while len(done) < target:
        ready = [s for s in allowed if s not in seen and all(r in done for r in world.step_requires[s])]
        if not ready:
            break
        s = min(ready, key=lambda t: keys[t])
        seen.add(s)
        u = rng.random()
        if u < p.p_dismiss:
            journey.append((s, False))
        elif u < p.p_dismiss + (1 - p.p_dismiss) * p.p_complete:
            journey.append((s, True))
            done.add(s)
    return journey


def _consents(rng: np.random.Generator, p: WorldParams) -> list[tuple[str, bool, int]]:
    records: list[tuple[str, bool, int]] = []
    if rng.random() < p.p_analytics:
        records.append(("Analytics", True, 0))
        if rng.random() < p.p_withdraw:
            records.append(("Analytics", False, 600))
            if rng.random() < p.p_regrant:
                records.append(("Analytics", True, 900))
    if rng.random() < p.p_personalization:
        records.append(("Personalization", True, 0))
    if rng.random() < p.p_marketing:
        records.append(("Marketing", True, 0))
    return records


def bayes_values(
    world: World, user: UserRecord, *, early: bool = True, samples: int = 4000, seed: int = 0
) -> np.ndarray:
    """Return the posterior mean value of every step given the user's segment (and first events).

    The best any ranking can do from what a new user reveals, knowing the generative
    story and its hidden tables: a reference ceiling, by importance sampling.
    """
    p = world.params
    if p.family not in ("interaction", "noisy"):
        raise ValueError(f"the posterior is written for the need-driven truth, not the {p.family} family")
    if world.role_table is None or world.industry_table is None:
        raise ValueError("the world has no users, so no hidden tables: generate it with generate_world")
    rng = np.random.default_rng([seed, zlib.crc32(user.id.encode())])
    n_areas = len(world.areas)
    logits = world.role_table[user.role] + world.industry_table[user.industry]
    logits = logits + p.sigma * rng.standard_normal((samples, n_areas))
    need = np.exp(logits - logits.max(axis=1, keepdims=True))
    need /= need.sum(axis=1, keepdims=True)
    weights = np.ones(samples)
    if early:
        pick = need**p.early_sharpness
        pick = (1 - p.early_noise) * pick / pick.sum(axis=1, keepdims=True) + p.early_noise / n_areas
        log_w = sum(np.log(pick[:, world.feature_area[f]]) for f in user.early_features)
        weights = np.exp(log_w - np.max(log_w))
    mean_need = (weights[:, None] * need).sum(axis=0) / weights.sum()
    step_area = np.array([world.feature_area[f] for f in world.step_feature])
    return world.step_quality * n_areas * mean_need[step_area]


def logged_events(world: World, user: UserRecord) -> list[tuple[ox.NamedNode, str | None, str | None]]:
    """Return the user's logged events in order, one a minute after registration: (class, step IRI, feature IRI).

    As the privacy shapes allow at registration: the first feature uses need PERSONALIZATION
    or ANALYTICS, the outcomes (activated, converted) need ANALYTICS; steps are always logged.
    """
    given = {purpose for purpose, granted, minutes in user.consents if granted and minutes == 0}
    events: list[tuple[ox.NamedNode, str | None, str | None]] = []
    if given & {"Personalization", "Analytics"}:
        events += [(vocab.FEATURE_USED, None, world.features[f]) for f in user.early_features]
    events += [
        (vocab.STEP_COMPLETED if done else vocab.STEP_DISMISSED, world.steps[s], None) for s, done in user.journey
    ]
    if "Analytics" in given and user.activated:
        events.append((vocab.ACTIVATED, None, None))
        if user.converted:
            events.append((vocab.CONVERTED, None, None))
    return events


# -- RDF: the catalog (the users' quads are the service's: service/synthetic.py) --------


def _label(iri: str) -> str:
    name = vocab.local_id(iri)
    for kind in ("role-", "industry-", "plan-"):
        name = name.removeprefix(kind)
    return name.replace("-", " ").capitalize()


def _wf(node: ox.NamedNode) -> str:
    return "wf:" + node.value.removeprefix(vocab.WF_NS)


def catalog_turtle(world: World) -> str:
    """Return the world's catalog as Turtle in the Wayfinder vocabulary."""
    lines = [
        f"@prefix wf: <{vocab.WF_NS}> .",
        f"@prefix world: <{WORLD_BASE}> .",
        f"@prefix rdfs: <{vocab.RDFS_NS}> .",
        "",
        f"# Synthetic catalog {world.name} (seed {world.seed}), generated by embeddings/world.py.",
        "",
    ]
    q = lambda iri: "world:" + vocab.local_id(iri)  # noqa: E731
    label = "rdfs:label"
    for cls, iris in ((vocab.ROLE, world.roles), (vocab.INDUSTRY, world.industries)):
        lines += [f'{q(i)} a {_wf(cls)} ; {label} "{_label(i)}"@en .' for i in iris]
    for k, plan in enumerate(world.plans):
        includes = f" ;\n    {_wf(vocab.INCLUDES_PLAN)} {q(world.plans[k - 1])}" if k else ""
        lines.append(f'{q(plan)} a {_wf(vocab.PLAN)} ; {label} "{_label(plan)}"@en{includes} .')
    for f, iri in enumerate(world.features):
        parent = world.feature_parent[f]
        part = f" ;\n    {_wf(vocab.PART_OF)} {q(world.features[parent])}" if parent >= 0 else ""
        lines.append(f'{q(iri)} a {_wf(vocab.FEATURE)} ; {label} "{_label(iri)}"@en{part} .')
    for s, iri in enumerate(world.steps):
        feature = world.features[world.step_feature[s]]
        props = [
            f'{label} "Try {_label(feature).lower()} ({vocab.local_id(iri)})"@en',
            f"{_wf(vocab.INTRODUCES)} {q(feature)}",
            f"{_wf(vocab.AVAILABLE_ON)} " + ", ".join(_wf(CHANNELS[c]) for c in world.step_channels[s]),
            f"{_wf(vocab.DEFAULT_ORDER)} {10 * (world.step_order[s] + 1)}",
        ]
        props += [f"{_wf(vocab.REQUIRES)} {q(world.steps[t])}" for t in world.step_requires[s]]
        props += [f"{_wf(vocab.FOR_ROLE)} {q(world.roles[r])}" for r in world.step_roles[s]]
        if world.step_plan[s] >= 0:
            props.append(f"{_wf(vocab.REQUIRES_PLAN)} {q(world.plans[world.step_plan[s]])}")
        lines.append(f"{q(iri)} a {_wf(vocab.STEP)} ;\n    " + " ;\n    ".join(props) + " .")
    return "\n".join(lines) + "\n"
