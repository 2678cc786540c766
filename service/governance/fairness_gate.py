"""The fairness gate: a fairness report on a candidate model or policy version, stored with the version it judged.

Who counts: the users who hold a FAIRNESS consent now and declared a protected group
(``queries/service/fairness-population.rq``; the group is stored only under that consent and
deleted when it is withdrawn, and each user's current consent is checked again here). What counts
of each, offline (nothing is recorded for the user, no decision is written):

- exposure: what the version would show them now. It ranks their current candidates on the
  channel (web by default) as ``service.decisions.decide`` does: their PERSONALIZATION consent
  decides what ranking may read of them, and never the protected group, which no ranking
  ``Context`` holds. A policy version ranks with its own weights and rules, and with the active
  model when it mixes one in; a model version scores under the active version of the default
  policy. The top ``limit`` steps are what it would show (an exploring version's random slates
  are left out: they show every group alike).
- activation: whether the user has an ACTIVATED event.

:func:`service.governance.fairness.report` computes the figures by group, with the governance
policy's minimum group size, and the governance policy's limits (``service.governance.gates``)
judge them. The report is a ``wf:FairnessReport``, a ``prov:Entity`` derived from the judged
version and using the governance policy, chained in the audit trail: its figures as JSON, its
breaches in words, how many users and groups it counted, never who.

:func:`require_fair` is the gate that ``lifecycle.promote`` and ``approvals.approve_policy`` (an
approving verdict) call: past a limit it refuses with the breaches, having stored the report and
nothing else. Without a fairness limit in the governance policy nothing is judged or stored. A
version judged on no consenting user passes, and its report says it counted none.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING

import pyoxigraph as ox

from service.audit.records import fairness_report_record
from service.clock import now
from service.decisions.candidates import candidate_steps
from service.decisions.consent import current_consents
from service.decisions.decide import MAX_LIMIT, context_of
from service.decisions.ranking import rank, serving_model
from service.decisions.users import events, profile
from service.errors import Conflict, InvalidInput, NotFound
from service.governance.fairness import Breach, FairnessReport, Limits, Thresholds, report
from service.governance.gates import Gates, gates
from service.knowledge import vocab
from service.knowledge.policies import PolicyVersion, active_version, read_policies
from service.knowledge.store import bound
from service.models.records import ModelVersion, Status, find
from service.runtime import Runtime

if TYPE_CHECKING:
    from service.decisions.ranking import Scorer

DEFAULT_POLICY = "default"  # the policy a model version is judged under (its active version)
POLICY, MODEL = "policy version", "model version"
N_BOOT, SEED = 1000, 0  # a fixed seed: the same data gives the same report


@dataclass(frozen=True)
class Population:
    """What a report is computed from, one entry per counted user, in no user's name: the group's ID, whether
    they activated, and the (step ID, rank) pairs the version would show them."""

    groups: tuple[str, ...]
    activated: tuple[int, ...]
    shown: tuple[tuple[tuple[str, int], ...], ...]


@dataclass(frozen=True)
class Judgement:
    """A fairness report on one version, and what the governance policy's limits make of it."""

    version: str  # as asked: a model version's name or a policy version's label
    subject: str  # the judged version's IRI
    kind: str  # POLICY or MODEL
    ranked_by: str  # the label of the policy version that ranked
    channel: str
    limit: int
    at: datetime
    gates: Gates
    users: int
    report: FairnessReport | None  # None when no consenting user declared a group
    breaches: tuple[Breach, ...]
    record: str | None = None  # the stored wf:FairnessReport, once stored

    @property
    def passed(self) -> bool:
        return not self.breaches

    @property
    def groups(self) -> int:
        return len(self.report.groups) if self.report is not None else 0

    def figures(self) -> dict:
        """The report as JSON-ready data: what it judged, the limits it applied and every figure."""
        g = self.gates
        return {
            "version": self.version,
            "kind": self.kind,
            "rankedBy": self.ranked_by,
            "channel": self.channel,
            "limit": self.limit,
            "protectedAttribute": g.protected_attribute,
            "limits": {
                "minGroupSize": g.min_group_size,
                "maxActivationDifference": g.max_activation_difference,
                "minExposureRatio": g.min_exposure_ratio,
            },
            "users": self.users,
            "report": asdict(self.report) if self.report is not None else None,
        }


def thresholds(limits: Gates) -> Thresholds:
    """The fairness limits of a governance policy, as :meth:`FairnessReport.breaches` reads them."""
    return Thresholds(
        activation=Limits(max_difference=limits.max_activation_difference),
        exposure=Limits(min_ratio=limits.min_exposure_ratio),
    )


def gated(limits: Gates) -> bool:
    """Whether the governance policy sets a fairness limit (without one, nothing is judged)."""
    return limits.max_activation_difference is not None or limits.min_exposure_ratio is not None


def judge(
    runtime: Runtime,
    version: str,
    *,
    channel: str = "WEB",
    limit: int = 5,
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> Judgement:
    """Return the fairness report on a model version (by name) or policy version (by label), not stored."""
    limits = gates(runtime)
    subject, policy, model = _candidate(runtime, version)
    people = population(runtime, policy, model=model, channel=channel, limit=limit)
    found = None
    if people.groups:
        found = report(
            people.groups,
            people.activated,
            people.shown,
            min_group_size=limits.min_group_size,
            n_boot=n_boot,
            seed=seed,
        )
    return Judgement(
        version=version,
        subject=subject,
        kind=MODEL if model is not None else POLICY,
        ranked_by=policy.label if policy is not None else f"no active version of {DEFAULT_POLICY}",
        channel=channel,
        limit=limit,
        at=now(),
        gates=limits,
        users=len(people.groups),
        report=found,
        breaches=tuple(found.breaches(thresholds(limits))) if found is not None else (),
    )


def record(runtime: Runtime, judgement: Judgement) -> Judgement:
    """Store the report as a chained ``wf:FairnessReport`` derived from the version it judged; return it stored."""
    node = ox.NamedNode(vocab.FAIRNESS_REPORT_BASE + str(uuid.uuid4()))
    triples = fairness_report_record(
        node,
        at=judgement.at,
        version=judgement.subject,
        governance=judgement.gates.policy,
        users=judgement.users,
        groups=judgement.groups,
        figures=judgement.figures(),
        breaches=[str(b) for b in judgement.breaches],
    )
    runtime.trail.append(node, triples)
    return replace(judgement, record=node.value)


def require_fair(runtime: Runtime, version: str) -> Judgement | None:
    """The gate: judge the version and store the report; refuse (Conflict) when it breaches a fairness limit.

    None, judging nothing, when the governance policy sets no fairness limit, or for a model version that
    serves already (``promote`` refuses that itself).
    """
    limits = gates(runtime)
    if not gated(limits) or ("@" not in version and find(runtime, version).status is Status.ACTIVE):
        return None
    judged = record(runtime, judge(runtime, version))
    if judged.breaches:
        listed = "; ".join(str(b) for b in judged.breaches)
        raise Conflict(
            f"{judged.kind} {version} is refused by the fairness gate ({limits.policy}): {listed}. "
            f"Fairness report {judged.record}",
            details=[{"field": "version", "reason": str(b), "report": judged.record} for b in judged.breaches],
        )
    return judged


def population(
    runtime: Runtime,
    policy: PolicyVersion | None,
    *,
    model: ModelVersion | None = None,
    channel: str = "WEB",
    limit: int = 5,
) -> Population:
    """Each consenting user's group, activation and the steps ``policy`` (scoring with ``model``, or with the active
    model when None) would show them now on the channel, offline; NotFound without a policy when there is anyone
    to rank for."""
    codes = runtime.knowledge.codes
    if channel not in codes.channels:
        raise InvalidInput("channel", f"unknown channel {channel!r}")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput("limit", f"must be between 1 and {MAX_LIMIT}, got {limit}")
    fairness = next((c for c, iri in codes.purposes.items() if iri == vocab.FAIRNESS_MONITORING.value), None)
    catalog = runtime.catalog
    channel_iri = codes.channels[channel]

    @cache
    def scorer() -> Scorer | None:  # loaded for the first personalised user, once
        return _scorer(runtime, model)

    groups: list[str] = []
    activated: list[int] = []
    shown: list[tuple[tuple[str, int], ...]] = []
    for row in runtime.store.select(runtime.queries["fairness-population"]):
        user, group = bound(row, "user"), bound(row, "group").value
        user_id = user.value.removeprefix(vocab.USER_BASE)
        consent_now = current_consents(runtime, user_id)
        held = consent_now.get(fairness) if fairness is not None else None
        stored = profile(runtime, user_id)
        if held is None or not held.granted or stored is None or group not in catalog.entities:
            continue
        if policy is None:
            raise NotFound(
                f"no active version of policy {DEFAULT_POLICY!r} to judge a model version under: load or approve one"
            )
        personal = consent_now.get("PERSONALIZATION")
        personalized = bool(personal and personal.granted)
        history = events(runtime, user_id)
        # What a decision may read of the user, as service.decisions.decide builds it: no protected group.
        context = context_of(stored, history, channel_iri=channel_iri, personalized=personalized, catalog=catalog)
        used = serving_model(policy, scorer(), personalized=True) if policy.model_weight and personalized else None
        ranked = rank(
            candidate_steps(runtime, ox.NamedNode(user.value), channel_iri),
            policy=policy,
            context=context,
            catalog=catalog,
            model=used,
        )
        groups.append(vocab.local_id(group))
        activated.append(int(any(e.type == "ACTIVATED" for e in history)))
        shown.append(tuple((vocab.local_id(s.step), k) for k, s in enumerate(ranked[:limit], start=1)))
    return Population(tuple(groups), tuple(activated), tuple(shown))


def _candidate(runtime: Runtime, version: str) -> tuple[str, PolicyVersion | None, ModelVersion | None]:
    """The judged version's IRI, the policy version that ranks, and the model version judged (None for a policy).

    A model version ranks under the default policy's serving version; with API keys, before any is approved, under
    the version its file declares active (what will serve); None when there is neither."""
    policies = runtime.knowledge.policies
    if "@" in version:
        found = next((v for v in policies.values() if v.label == version), None)
        if found is None:
            known = ", ".join(sorted(v.label for v in policies.values()))
            raise NotFound(
                f"no policy version {version!r}; the versions are {known}",
                details=[{"field": "version", "reason": "unknown policy version"}],
            )
        return found.iri, found, None
    model = find(runtime, version)
    try:
        return model.iri, active_version(policies, DEFAULT_POLICY), model
    except NotFound:
        pass
    try:
        return model.iri, active_version(read_policies(runtime.store, runtime.queries), DEFAULT_POLICY), model
    except NotFound:
        return model.iri, None, model


def _scorer(runtime: Runtime, model: ModelVersion | None) -> Scorer | None:
    """The scorer of the judged model version, or the active one's when none is judged (None when none serves)."""
    if model is None:
        from service.models.serving import active_scorer  # torch, imported only when a model scores

        return active_scorer(runtime)
    from service.models.serving import version_scorer  # torch, imported only when a model scores

    try:
        return version_scorer(runtime, model)
    except (ValueError, RuntimeError) as exc:
        raise Conflict(f"model version {model.version} cannot be judged: its artefact does not load ({exc})") from exc
