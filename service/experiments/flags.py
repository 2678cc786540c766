"""Feature flags that pin which policy version serves a user: targeting, percentage rollouts, prerequisites, a kill switch.

A flag pins the version of one policy. Its variants each name a policy version; its
targeting is an ordered list of rules, each with conditions on the user's segment (role,
industry, plan, the request's channel, signup cohort as ``YYYY-MM``) and either one
variant or a split of variants by weight (a percentage rollout: weights summing below 1
leave the rest to the next rule). Prerequisites name other flags and the variant each
must evaluate to. Evaluation (:func:`evaluate`), in order:

1. no such flag: reason ERROR, error code FLAG_NOT_FOUND;
2. the kill switch is off: the default variant, reason DISABLED;
3. a prerequisite evaluates to another variant: the default variant, reason DEFAULT;
4. the first rule whose conditions all hold: its variant (TARGETING_MATCH), or the split's
   variant for the user's bucket (SPLIT; bucketing as experiments bucket, with the flag's ID
   as seed: :mod:`service.experiments.bucketing`); a split that leaves the bucket out
   falls through to the next rule;
5. otherwise the default variant: reason STATIC when the flag has no rules, DEFAULT else.

Details follow OpenFeature's evaluation details (value, variant, reason, error code). An
industry condition reads the user's industry only under a personalisation consent, as
ranking does; without it, it does not hold. Flags are versioned data in the experiments
graph (each change bumps the version and is a chained ``wf:FlagChange`` record with the
whole definition after it). In ``nextSteps`` a user assigned in a running experiment is
served by their arm; the others by the policy's flag, when it yields a variant, and by
the policy's active version otherwise. The decision record names the flag, its version,
the variant and the reason.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime

import pyoxigraph as ox

from service.audit.records import change_record
from service.clock import datetime_literal, now, parse_datetime
from service.errors import Conflict, InvalidInput, NotFound
from service.experiments.bucketing import HASH_VERSION, bucket
from service.experiments.registry import ID_PATTERN, SERVABLE
from service.knowledge import vocab
from service.knowledge.policies import PolicyVersion
from service.knowledge.store import bound, value
from service.runtime import Runtime

ATTRIBUTES = ("role", "industry", "plan", "channel", "cohort")
MAX_RULES = 50
STATIC, DEFAULT, TARGETING_MATCH, SPLIT, DISABLED, ERROR = (
    "STATIC",
    "DEFAULT",
    "TARGETING_MATCH",
    "SPLIT",
    "DISABLED",
    "ERROR",
)


@dataclass(frozen=True)
class Condition:
    attribute: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Rule:
    conditions: tuple[Condition, ...] = ()
    variant: str | None = None
    split: tuple[tuple[str, float], ...] = ()  # (variant, weight), the weights summing to at most 1


@dataclass(frozen=True)
class Prerequisite:
    flag: str
    variant: str


@dataclass(frozen=True)
class Flag:
    id: str
    policy: str  # the policy ID whose version the flag pins
    variants: tuple[tuple[str, str], ...]  # (name, policy version label)
    default_variant: str
    rules: tuple[Rule, ...] = ()
    prerequisites: tuple[Prerequisite, ...] = ()
    enabled: bool = True
    version: int = 1
    created_by: str = ""
    created_at: datetime | None = None

    @property
    def iri(self) -> str:
        return vocab.FLAG_BASE + self.id

    def version_of(self, variant: str) -> str:
        return dict(self.variants)[variant]

    def targeting(self) -> dict:
        return {
            "rules": [asdict(r) for r in self.rules],
            "prerequisites": [asdict(p) for p in self.prerequisites],
        }

    def state(self) -> dict:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat() if self.created_at else None
        return data


@dataclass(frozen=True)
class Segment:
    """What targeting reads of a user: their pseudonym (the bucketing unit) and segment attributes (local IDs)."""

    pseudonym: str
    role: str | None = None
    industry: str | None = None
    plan: str | None = None
    channel: str | None = None
    cohort: str | None = None  # signup month, YYYY-MM

    def get(self, attribute: str) -> str | None:
        return getattr(self, attribute)


@dataclass(frozen=True)
class Evaluation:
    flag: str
    value: str | None  # the variant's policy version label
    variant: str | None
    reason: str
    error_code: str | None = None
    flag_version: int | None = None
    bucket: int | None = None
    detail: str = ""

    @property
    def decided(self) -> bool:
        """Whether the flag chose a variant for this user (targeting or split), rather than falling back."""
        return self.reason in (TARGETING_MATCH, SPLIT)


def checked(runtime: Runtime, flag: Flag, *, field_prefix: str = "input") -> Flag:
    """Return the flag when its definition holds together; raise InvalidInput naming the first bad field."""
    if not ID_PATTERN.fullmatch(flag.id or ""):
        raise InvalidInput(
            f"{field_prefix}.id", "1 to 64 letters, digits, '.', '_' or '-', starting with one of the first"
        )
    by_label = {v.label: v for v in runtime.knowledge.policies.values()}
    policies = {vocab.local_id(v.policy) for v in by_label.values()}
    if flag.policy not in policies:
        raise InvalidInput(f"{field_prefix}.policy", f"no policy {flag.policy!r}; known: {', '.join(sorted(policies))}")
    names: set[str] = set()
    if not flag.variants:
        raise InvalidInput(f"{field_prefix}.variants", "a flag has at least one variant")
    for i, (name, label) in enumerate(flag.variants):
        where = f"{field_prefix}.variants[{i}]"
        if not ID_PATTERN.fullmatch(name or "") or len(name) > 40:
            raise InvalidInput(f"{where}.name", "1 to 40 letters, digits, '.', '_' or '-'")
        if name in names:
            raise InvalidInput(f"{where}.name", f"two variants are named {name!r}")
        names.add(name)
        version = by_label.get(label)
        if version is None or vocab.local_id(version.policy) != flag.policy:
            raise InvalidInput(f"{where}.policyVersion", f"no version {label!r} of policy {flag.policy!r}")
        if version.status not in SERVABLE:
            raise InvalidInput(
                f"{where}.policyVersion",
                f"{label} is {version.status}: a variant serves an active or candidate version",
            )
    if flag.default_variant not in names:
        raise InvalidInput(f"{field_prefix}.defaultVariant", f"{flag.default_variant!r} is not one of the variants")
    if len(flag.rules) > MAX_RULES:
        raise InvalidInput(f"{field_prefix}.rules", f"at most {MAX_RULES} rules")
    for i, rule in enumerate(flag.rules):
        where = f"{field_prefix}.rules[{i}]"
        if (rule.variant is None) == (not rule.split):
            raise InvalidInput(where, "a rule serves either one variant or a split, not both and not neither")
        if rule.variant is not None and rule.variant not in names:
            raise InvalidInput(f"{where}.variant", f"{rule.variant!r} is not one of the variants")
        total = 0.0
        for k, (name, weight) in enumerate(rule.split):
            if name not in names:
                raise InvalidInput(f"{where}.split[{k}].variant", f"{name!r} is not one of the variants")
            if not math.isfinite(weight) or weight <= 0:
                raise InvalidInput(f"{where}.split[{k}].weight", f"a positive share, got {weight}")
            total += weight
        if total > 1 + 1e-9:
            raise InvalidInput(f"{where}.split", f"the weights are shares of users and sum to at most 1, got {total:g}")
        for k, condition in enumerate(rule.conditions):
            if condition.attribute not in ATTRIBUTES:
                raise InvalidInput(
                    f"{where}.conditions[{k}].attribute", f"one of {', '.join(ATTRIBUTES)}, got {condition.attribute!r}"
                )
            if not condition.values:
                raise InvalidInput(f"{where}.conditions[{k}].values", "at least one value")
    for i, prerequisite in enumerate(flag.prerequisites):
        if prerequisite.flag == flag.id:
            raise InvalidInput(f"{field_prefix}.prerequisites[{i}].flag", "a flag is not its own prerequisite")
        other = find(runtime, prerequisite.flag)
        if other is None:
            raise InvalidInput(f"{field_prefix}.prerequisites[{i}].flag", f"no flag {prerequisite.flag!r}")
        if prerequisite.variant not in dict(other.variants):
            raise InvalidInput(
                f"{field_prefix}.prerequisites[{i}].variant",
                f"flag {other.id!r} has no variant {prerequisite.variant!r}",
            )
        if _reaches(runtime, other, flag.id):
            raise InvalidInput(
                f"{field_prefix}.prerequisites[{i}].flag", f"flag {other.id!r} depends on {flag.id!r}: a cycle"
            )
    return flag


def _reaches(runtime: Runtime, start: Flag, target: str, seen: set[str] | None = None) -> bool:
    seen = seen or set()
    for p in start.prerequisites:
        if p.flag == target:
            return True
        if p.flag not in seen:
            seen.add(p.flag)
            other = find(runtime, p.flag)
            if other is not None and _reaches(runtime, other, target, seen):
                return True
    return False


def flags(runtime: Runtime) -> list[Flag]:
    """Every flag in the store, by ID."""
    found: dict[str, dict] = {}
    for row in runtime.store.select(runtime.queries["flags"]):
        flag_id = bound(row, "id").value
        entry = found.setdefault(
            flag_id,
            {
                "policy": vocab.local_id(bound(row, "policy").value),
                "enabled": bound(row, "enabled").value == "true",
                "version": int(bound(row, "version").value),
                "default_variant": bound(row, "defaultVariant").value,
                "targeting": json.loads(bound(row, "targeting").value),
                "created_by": bound(row, "createdBy").value,
                "created_at": parse_datetime(bound(row, "createdAt").value),
                "variants": {},
            },
        )
        if value(row, "variantName") is not None:
            entry["variants"][bound(row, "variantName").value] = bound(row, "servedBy").value
    policies = runtime.knowledge.policies
    result = []
    for flag_id, entry in sorted(found.items()):
        targeting = entry.pop("targeting")
        variants = tuple(
            (name, policies[iri].label if iri in policies else vocab.local_id(iri))
            for name, iri in sorted(entry.pop("variants").items())
        )
        rules, prerequisites = _targeting_of(targeting)
        result.append(Flag(flag_id, variants=variants, rules=rules, prerequisites=prerequisites, **entry))
    return result


def _targeting_of(targeting: dict) -> tuple[tuple[Rule, ...], tuple[Prerequisite, ...]]:
    rules = tuple(
        Rule(
            conditions=tuple(Condition(c["attribute"], tuple(c["values"])) for c in r["conditions"]),
            variant=r["variant"],
            split=tuple((s[0], float(s[1])) for s in r["split"]),
        )
        for r in targeting["rules"]
    )
    return rules, tuple(Prerequisite(p["flag"], p["variant"]) for p in targeting["prerequisites"])


def from_state(data: dict) -> Flag:
    """A flag from the plain data of :meth:`Flag.state` (as change records and change requests keep it)."""
    rules, prerequisites = _targeting_of({"rules": data["rules"], "prerequisites": data["prerequisites"]})
    return Flag(
        id=data["id"],
        policy=data["policy"],
        variants=tuple((str(n), str(v)) for n, v in data["variants"]),
        default_variant=data["default_variant"],
        rules=rules,
        prerequisites=prerequisites,
        enabled=bool(data["enabled"]),
        version=int(data["version"]),
        created_by=data["created_by"],
        created_at=parse_datetime(data["created_at"]) if data["created_at"] else None,
    )


def find(runtime: Runtime, flag_id: str) -> Flag | None:
    return next((f for f in flags(runtime) if f.id == flag_id), None)


def save(runtime: Runtime, flag: Flag, *, by: str, kind: str) -> Flag:
    """Create (kind "create") or replace (any other kind) a flag's definition, as its next version."""
    with runtime.trail.exclusive():
        current = find(runtime, flag.id)
        if kind == "create":
            if current is not None:
                raise Conflict(
                    f"input.id: a flag {flag.id!r} exists", details=[{"field": "input.id", "reason": "duplicate flag"}]
                )
            for other in flags(runtime):
                if other.policy == flag.policy:
                    raise Conflict(f"flag {other.id!r} pins policy {flag.policy!r} already: change that flag instead")
            after = replace(flag, version=1, created_by=by, created_at=now())
        else:
            if current is None:
                raise NotFound(f"no flag {flag.id!r}")
            if flag.policy != current.policy:
                raise InvalidInput(
                    "input.policy", f"flag {flag.id!r} pins policy {current.policy!r}; make a new flag for another"
                )
            after = replace(
                flag, version=current.version + 1, created_by=current.created_by, created_at=current.created_at
            )
        checked(runtime, after)
        record = ox.NamedNode(vocab.FLAG_CHANGE_BASE + str(uuid.uuid4()))
        triples = change_record(
            record, kind=kind, by=by, at=now(), entity=after.iri, state=after.state(), classes=[vocab.FLAG_CHANGE]
        )
        g = vocab.EXPERIMENTS_GRAPH
        remove = list(runtime.store.quads(subject=vocab.EXPERIMENTS_NODE, predicate=vocab.REVISION, graph=g))
        if current is not None:
            remove += _stored_quads(runtime, current)
        runtime.trail.append(
            record,
            triples,
            extra=[
                *_state_quads(runtime, after),
                ox.Quad(vocab.EXPERIMENTS_NODE, vocab.REVISION, ox.Literal(uuid.uuid4().hex), g),
            ],
            remove=remove,
        )
    return after


def set_enabled(runtime: Runtime, flag_id: str, enabled: bool, *, by: str) -> Flag:
    """Turn the flag on, or off (the kill switch: everyone gets the default variant)."""
    current = find(runtime, flag_id)
    if current is None:
        raise NotFound(f"no flag {flag_id!r}")
    return save(runtime, replace(current, enabled=enabled), by=by, kind="enable" if enabled else "disable")


def evaluate(
    flag: Flag | None,
    segment: Segment,
    lookup: Callable[[str], Flag | None],
    *,
    flag_id: str = "",
    _seen: frozenset[str] = frozenset(),
) -> Evaluation:
    """Evaluate a flag for a user's segment (see the module's docstring for the order); ``lookup`` finds prerequisites."""
    if flag is None:
        return Evaluation(flag_id, None, None, ERROR, "FLAG_NOT_FOUND", detail=f"no flag {flag_id!r}")

    def fallback(reason: str, detail: str = "") -> Evaluation:
        return Evaluation(
            flag.id,
            flag.version_of(flag.default_variant),
            flag.default_variant,
            reason,
            None,
            flag.version,
            detail=detail,
        )

    if not flag.enabled:
        return fallback(DISABLED, "the flag is off")
    for p in flag.prerequisites:
        if p.flag in _seen:
            return Evaluation(flag.id, None, None, ERROR, "GENERAL", flag.version, detail="prerequisite cycle")
        other = evaluate(lookup(p.flag), segment, lookup, flag_id=p.flag, _seen=_seen | {flag.id})
        if other.variant != p.variant:
            return fallback(DEFAULT, f"prerequisite {p.flag} is {other.variant}, not {p.variant}")
    for i, rule in enumerate(flag.rules):
        if not all(segment.get(c.attribute) in c.values for c in rule.conditions):
            continue
        if rule.variant is not None:
            return Evaluation(
                flag.id,
                flag.version_of(rule.variant),
                rule.variant,
                TARGETING_MATCH,
                None,
                flag.version,
                detail=f"rule {i}",
            )
        at = bucket(flag.id, segment.pseudonym, version=HASH_VERSION)
        edge = 0.0
        for name, weight in rule.split:
            edge += weight
            if at < round(edge * 10_000):
                return Evaluation(flag.id, flag.version_of(name), name, SPLIT, None, flag.version, at, f"rule {i}")
    return fallback(STATIC if not flag.rules else DEFAULT)


def for_policy(runtime: Runtime, policy_id: str) -> Flag | None:
    """The flag that pins the policy's version, if any (one per policy)."""
    return next((f for f in flags(runtime) if f.policy == policy_id), None)


def serving(runtime: Runtime, evaluation: Evaluation) -> PolicyVersion | None:
    """The policy version an evaluation pins, when it chose one that may serve."""
    if not evaluation.decided or evaluation.value is None:
        return None
    version = next((v for v in runtime.knowledge.policies.values() if v.label == evaluation.value), None)
    return version if version is not None and version.status in SERVABLE else None


def record_triples(decision: ox.NamedNode, flag: Flag, evaluation: Evaluation) -> list[ox.Triple]:
    """What a decision record says of the flag evaluation that chose its policy version."""
    T, L = ox.Triple, ox.Literal
    triples = [
        T(decision, vocab.EVALUATED_FLAG, ox.NamedNode(flag.iri)),
        T(decision, vocab.FLAG_VERSION, L(str(evaluation.flag_version), datatype=vocab.XSD_INTEGER)),
        T(decision, vocab.FLAG_VARIANT, L(evaluation.variant or "")),
        T(decision, vocab.FLAG_REASON, L(evaluation.reason)),
    ]
    if evaluation.bucket is not None:
        triples.append(T(decision, vocab.FLAG_BUCKET, L(str(evaluation.bucket), datatype=vocab.XSD_INTEGER)))
    return triples


def _state_quads(runtime: Runtime, flag: Flag) -> list[ox.Quad]:
    g, L = vocab.EXPERIMENTS_GRAPH, ox.Literal
    node = ox.NamedNode(flag.iri)
    by_label = {v.label: v for v in runtime.knowledge.policies.values()}
    policy_iri = by_label[flag.version_of(flag.default_variant)].policy
    quads = [
        ox.Quad(node, vocab.RDF_TYPE, vocab.FEATURE_FLAG, g),
        ox.Quad(node, vocab.FLAG_ID, L(flag.id), g),
        ox.Quad(node, vocab.PINS_POLICY, ox.NamedNode(policy_iri), g),
        ox.Quad(node, vocab.FLAG_ENABLED, L("true" if flag.enabled else "false", datatype=vocab.XSD_BOOLEAN), g),
        ox.Quad(node, vocab.FLAG_VERSION, L(str(flag.version), datatype=vocab.XSD_INTEGER), g),
        ox.Quad(node, vocab.DEFAULT_VARIANT, L(flag.default_variant), g),
        ox.Quad(node, vocab.TARGETING, L(json.dumps(flag.targeting(), sort_keys=True, separators=(",", ":"))), g),
        ox.Quad(node, vocab.CREATED_BY, L(flag.created_by), g),
        ox.Quad(node, vocab.PROV_GENERATED_AT, datetime_literal(flag.created_at or now()), g),
    ]
    for name, label in flag.variants:
        variant = ox.NamedNode(f"{flag.iri}/variant/{name}")
        quads += [
            ox.Quad(node, vocab.HAS_FLAG_VARIANT, variant, g),
            ox.Quad(variant, vocab.ARM_NAME, L(name), g),
            ox.Quad(variant, vocab.SERVED_BY, ox.NamedNode(by_label[label].iri), g),
        ]
    return quads


def _stored_quads(runtime: Runtime, flag: Flag) -> list[ox.Quad]:
    node = ox.NamedNode(flag.iri)
    g = vocab.EXPERIMENTS_GRAPH
    quads = list(runtime.store.quads(subject=node, graph=g))
    for q in list(quads):
        if q.predicate == vocab.HAS_FLAG_VARIANT and isinstance(q.object, ox.NamedNode):
            quads += runtime.store.quads(subject=q.object, graph=g)
    return quads


def segment_of(
    pseudonym: str,
    *,
    role: str | None,
    industry: str | None,
    plan: str | None,
    channel: str,
    registered_at: datetime | None,
) -> Segment:
    """The segment targeting reads (``role``, ``industry``, ``plan`` as IRIs; ``industry`` None unless personalised)."""
    local = lambda iri: vocab.local_id(iri) if iri else None  # noqa: E731
    return Segment(
        pseudonym,
        role=local(role),
        industry=local(industry),
        plan=local(plan),
        channel=channel,
        cohort=registered_at.strftime("%Y-%m") if registered_at else None,
    )
