"""Policy versions: versioned ranking rules kept as Turtle (``ontology/policies/``), read from the store.

A version is immutable once active: a change is a new version, and the highest
active version of a policy serves (:func:`active_version`); retired versions stay
in the store, so the decisions they made stay explainable. Besides its weights
and rules, a version states its journey weight, when the model's evidence is
cited (evidence threshold, lift to cite) and the words of every reason, as
templates with named placeholders, checked here against those their kind offers
(``wf:placeholder``). A version written before these existed states none of
them; it is read with the ontology's ``wf:whenAbsent`` values, the ones it was
ranked with when it served (``queries/service/policy-*.rq``). How a version
ranks is :mod:`service.decisions.ranking`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from service.errors import NotFound, SyntaxProblem
from service.knowledge import vocab
from service.knowledge.pacing import DEFAULT_PACING, FeedbackPressure, Pacing, read_pacings, read_pressures
from service.knowledge.store import GraphStore, Row, bound, value
from service.knowledge.templates import Wording, read_templates

PERSONAL_CONDITIONS = ("whenRole", "whenIndustry", "whenPlan", "whenUsedFeature", "whenReachedValue")
OLDER_ONTOLOGY = "or the store's ontology is older than ontology/wayfinder.ttl: reload it (wayfinder migrate)"


@dataclass
class Rule:
    iri: str
    weight: float
    reason: Wording | None = None  # a template: {step} is the step's title (or label, in a translation)
    conditions: dict[str, list[str]] = field(default_factory=dict)

    @property
    def personal(self) -> bool:
        return any(self.conditions.get(c) for c in PERSONAL_CONDITIONS)


@dataclass(kw_only=True)
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
    journey_weight: float
    min_evidence: int  # completers of a step in the user's segment before their outcomes are cited
    lift_to_cite: float  # activation ratio a segment's completers must reach to be cited
    templates: dict[str, Wording]  # kind of reason (the local name of its wf:reasonTemplate property) -> its words
    approved_by: str | None = None
    rules: list[Rule] = field(default_factory=list)
    content_hash: str | None = None  # wf:contentHash, over the version and its rules (what an approval judges)
    # The share of decisions that show a uniformly random slate of the candidates instead of the ranked one, so
    # that every shown step has a known propensity and other policies can be evaluated offline on the log.
    exploration_rate: float = 0.0
    # wf:mixing: how the rule and model scores are put on one scale (absent: a weighted sum, as every older version)
    calibrated: bool = False
    # wf:pacing: caps, cool-downs, snoozes and quiet hours (absent: wf:DefaultPacing); None only for a version
    # made outside the store, which is then not paced
    pacing: Pacing | None = None
    # wf:feedbackPressure: fewer prompts after negative feedback (None: feedback changes nothing)
    feedback_pressure: FeedbackPressure | None = None

    @property
    def label(self) -> str:
        return f"{vocab.local_id(self.policy)}@{self.version}"


def read_policies(store: GraphStore, queries: Mapping[str, str]) -> dict[str, PolicyVersion]:
    """Return every policy version in the store, by IRI; a malformed template raises SyntaxProblem."""
    placeholders: dict[str, set[str]] = {}
    for row in store.select(queries["policy-placeholders"]):
        placeholders.setdefault(vocab.local_id(bound(row, "property").value), set()).add(
            bound(row, "placeholder").value
        )
    templates = read_templates(
        store.select(queries["policy-templates"]),
        owner="version",
        placeholders=placeholders,
        missing="template, and the ontology gives none (wf:whenAbsent): state one",
        owner_kind="a version",
    )
    pacings = read_pacings(store, queries, placeholders)
    pressures = read_pressures(store, queries, placeholders)
    versions: dict[str, PolicyVersion] = {}
    for row in store.select(queries["policy-versions"]):
        iri = bound(row, "version").value
        if iri not in templates:
            raise SyntaxProblem(
                iri, f"the ontology declares no kind of reason template (wf:reasonTemplate), {OLDER_ONTOLOGY}"
            )
        versions[iri] = PolicyVersion(
            iri=iri,
            policy=bound(row, "policy").value,
            version=bound(row, "name").value,
            status=bound(row, "status").value,
            rule_weight=_number(row, "ruleWeight", 1.0),
            model_weight=_number(row, "modelWeight", 0.0),
            depth_weight=_number(row, "depthWeight", 0.0),
            unlock_weight=_number(row, "unlockWeight", 0.0),
            affinity_weight=_number(row, "affinityWeight", 0.0),
            journey_weight=float(_stated(row, "journeyWeight", iri)),
            min_evidence=int(_stated(row, "minEvidence", iri)),
            lift_to_cite=float(_stated(row, "liftToCite", iri)),
            templates=templates.get(iri, {}),
            approved_by=value(row, "approvedBy"),
            content_hash=value(row, "contentHash"),
            exploration_rate=_number(row, "explorationRate", 0.0),
            calibrated=value(row, "mixing") == vocab.CALIBRATED_SUM.value,
            pacing=_pacing(pacings, value(row, "pacing"), iri),
            feedback_pressure=pressures.get(iri),
        )
    reasons = read_templates(
        store.select(queries["policy-rule-reasons"]),
        owner="rule",
        placeholders=placeholders,
        missing="reason: state its plain words",
        owner_kind="a rule",
    )
    rules: dict[tuple[str, str], Rule] = {}
    for row in store.select(queries["policy-rules"]):
        version = versions.get(bound(row, "version").value)
        if version is None:
            continue
        key = (version.iri, bound(row, "rule").value)
        rule = rules.get(key)
        if rule is None:
            reason = reasons.get(key[1], {}).get("reasonText")
            rule = rules[key] = Rule(key[1], float(bound(row, "weight").value), reason)
            version.rules.append(rule)
        link = value(row, "link")
        if link is not None:
            values = rule.conditions.setdefault(vocab.local_id(link), [])
            if bound(row, "value").value not in values:
                values.append(bound(row, "value").value)
    for version in versions.values():
        version.rules.sort(key=lambda r: r.iri)
    return versions


def _pacing(pacings: dict[str, Pacing], iri: str | None, version: str) -> Pacing:
    pacing = pacings.get(iri or DEFAULT_PACING)
    if pacing is None:
        if iri is None:
            raise SyntaxProblem(version, f"the ontology has no wf:DefaultPacing, {OLDER_ONTOLOGY}")
        raise SyntaxProblem(version, f"wf:pacing names {iri}, which is no wf:PacingPolicy in the store")
    return pacing


def active_version(versions: dict[str, PolicyVersion], policy_id: str) -> PolicyVersion:
    """Return the active version of the policy whose ID is ``policy_id``: the highest, when several are active."""
    active = [v for v in versions.values() if vocab.local_id(v.policy) == policy_id and v.status == "active"]
    if not active:
        raise NotFound(
            f"no active version of policy {policy_id!r}; load one into the store (ontology/policies/); with API keys,"
            " a version serves once approved (approvePolicyVersion, `wayfinder policy approve`)"
        )
    return max(active, key=lambda v: _version_key(v.version))


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in version.replace("-", ".").split("."))


def _number(row: Row, name: str, default: float) -> float:
    text = value(row, name)
    return float(text) if text is not None else default


def _stated(row: Row, name: str, version: str) -> str:
    text = value(row, name)
    if text is None:
        raise SyntaxProblem(
            version, f"no wf:{name}, and the ontology gives none (wf:whenAbsent): state one, {OLDER_ONTOLOGY}"
        )
    return text
