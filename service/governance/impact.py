"""High-impact steps: whether a policy or model version alters who sees them, and the second role it then needs.

A catalog marks steps that touch pricing, data sharing or permissions with ``wf:impactArea``.
Whether a candidate version changes who is shown them is measured, not guessed from its rules: the
``wf:impactSampleSize`` most recently registered users (the governance policy's; 200 by default)
are ranked as :mod:`service.decisions.decide` would rank them now (their candidates on each channel
where a high-impact step is available, their consent deciding what ranking may read of them), once
by what serves now (the baseline) and once with the candidate in its place; the top
:data:`SHOWN` steps of each ranking (the ranked slate, not an exploring one's random draw) are
compared on their high-impact steps. Nothing is recorded for the users.

- For a policy version: under the serving version of the same policy (none serving: nobody sees
  anything now) and under the candidate, both with the active model.
- For a model version: under the serving version of the default policy (with API keys, before one
  is approved, the version its file declares active), scored by the active model (none: no model)
  and by the candidate, where the policy mixes a model in and the user allows personalisation.

The change is high-impact when any (user, channel) would be shown a different set of high-impact
steps, or one of them at another rank (prominence is exposure too: the fairness gate weighs it by
position). With no user registered nobody's exposure changes, so nothing is high-impact yet. An
assessment is a chained ``wf:ImpactAssessment`` derived from the version, naming the content hash it
judged, its baseline and its counts per step (never users); it is made once per content and baseline.
With approvals required, an approval standing of a high-impact content counts only once principals of
two roles approved it, one of them the governance policy's ``wf:highImpactApproverRole`` (auditor by
default): :func:`service.governance.approvals.second_role` reads the assessment.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING

import pyoxigraph as ox

from service.audit.records import impact_record
from service.clock import now, parse_datetime
from service.decisions.candidates import candidate_steps
from service.decisions.consent import current_consents
from service.decisions.decide import context_of
from service.decisions.ranking import Context, Scored, rank, serving_model
from service.decisions.users import events, profile
from service.errors import Conflict, NotFound
from service.governance.gates import gates
from service.knowledge import vocab
from service.knowledge.catalog import Catalog
from service.knowledge.policies import PolicyVersion, active_version, read_policies
from service.knowledge.store import bound

if TYPE_CHECKING:
    from service.decisions.ranking import Scorer
    from service.models.records import ModelVersion
    from service.runtime import Runtime

NO_BASELINE = "none"
DEFAULT_POLICY = "default"  # the policy a model version is assessed under (its serving version)
SHOWN = 5  # the top of a ranking compared: nextSteps' default limit


@dataclass(frozen=True)
class StepImpact:
    """One high-impact step: for how many of the (user, channel) pairs ranked the baseline and the candidate show it."""

    step: str  # IRI
    before: int
    after: int
    gained: int  # pairs that would newly be shown it
    lost: int  # pairs that would no longer be shown it
    moved: int = 0  # pairs that would be shown it at another rank


@dataclass(frozen=True)
class Assessment:
    """Whether a version's content alters who sees the catalog's high-impact steps, against a baseline."""

    entity: str  # the policy or model version's IRI
    content: str  # the content hash judged
    baseline: str  # the serving version compared with (a label or model version), or "none"
    role: str  # the second role a high-impact change needs
    ranked: int  # (user, channel) pairs ranked
    changed: int  # of them, those that would be shown other high-impact steps, or at other ranks
    steps: tuple[StepImpact, ...]
    at: datetime = field(default_factory=now)
    record: str | None = None

    @property
    def high_impact(self) -> bool:
        return self.changed > 0

    def figures(self) -> dict:
        return {
            "steps": {
                s.step: {"before": s.before, "after": s.after, "gained": s.gained, "lost": s.lost, "moved": s.moved}
                for s in self.steps
            },
            "ranked": self.ranked,
            "changed": self.changed,
        }

    def summary(self) -> str:
        """The assessment in words, as refusals quote it."""
        if not self.steps:
            return "the catalog marks no high-impact step"
        moved = [
            f"{vocab.local_id(s.step)} +{s.gained}/-{s.lost}/moved {s.moved}"
            for s in self.steps
            if s.gained or s.lost or s.moved
        ]
        if not moved:
            return f"no change to who sees a high-impact step for {self.ranked} (user, channel) pairs ranked now"
        return (
            f"{self.changed} of {self.ranked} (user, channel) pairs ranked now would be shown other high-impact "
            f"steps ({', '.join(moved)})"
        )


def policy_baseline(runtime: Runtime, version: PolicyVersion) -> PolicyVersion | None:
    """The version of the same policy serving now (the highest active one), or None."""
    try:
        return active_version(runtime.knowledge.policies, vocab.local_id(version.policy))
    except NotFound:
        return None


def model_baseline(runtime: Runtime, model: ModelVersion) -> ModelVersion | None:
    """The model version serving now, unless it is ``model`` itself, or None."""
    from service.models.records import active

    current = active(runtime)
    return current if current is not None and current.iri != model.iri else None


def assess_policy(runtime: Runtime, version: PolicyVersion) -> Assessment:
    """The stored assessment of the version's content against the serving version, or a new one, stored."""
    baseline = policy_baseline(runtime, version)
    label = baseline.label if baseline is not None else NO_BASELINE
    stored = latest(runtime, version.iri, version.content_hash or "")
    if stored is not None and stored.baseline == label:
        return stored
    scorer = cache(lambda: _active_scorer(runtime))  # loaded when someone is ranked, once

    def before(subject: _Subject) -> list[Scored]:
        return subject.rank(baseline, scorer()) if baseline is not None else []

    def after(subject: _Subject) -> list[Scored]:
        return subject.rank(version, scorer())

    return store(runtime, _assess(runtime, version.iri, version.content_hash or "", label, before, after))


def assess_model(runtime: Runtime, model: ModelVersion) -> Assessment:
    """The stored assessment of the model version against the serving one, or a new one, stored."""
    from service.models.serving import version_scorer  # torch: only when a model version is assessed

    current = model_baseline(runtime, model)
    label = current.version if current is not None else NO_BASELINE
    stored = latest(runtime, model.iri, model.artifact_hash)
    if stored is not None and stored.baseline == label:
        return stored

    def load(version: ModelVersion, whose: str) -> Scorer:
        try:
            return version_scorer(runtime, version)
        except (ValueError, RuntimeError) as exc:
            raise Conflict(
                f"model version {model.version} cannot be assessed: {whose} artefact does not load ({exc})"
            ) from exc

    baseline = cache(lambda: load(current, "the serving version's") if current is not None else None)
    candidate = cache(lambda: load(model, "its"))
    policy = cache(lambda: _model_policy(runtime))
    return store(
        runtime,
        _assess(
            runtime,
            model.iri,
            model.artifact_hash,
            label,
            lambda subject: subject.rank(policy(), baseline()),
            lambda subject: subject.rank(policy(), candidate()),
        ),
    )


@dataclass(frozen=True)
class _Subject:
    """One user on one channel, as ranking would see them now."""

    candidates: list[str]
    context: Context
    catalog: Catalog

    def rank(self, policy: PolicyVersion, model: Scorer | None) -> list[Scored]:
        used = serving_model(policy, model, personalized=self.context.personalized)
        return rank(self.candidates, policy=policy, context=self.context, catalog=self.catalog, model=used)


def _assess(
    runtime: Runtime,
    entity: str,
    content: str,
    baseline: str,
    before: Callable[[_Subject], list[Scored]],
    after: Callable[[_Subject], list[Scored]],
) -> Assessment:
    limits = gates(runtime)
    catalog = runtime.catalog
    marked = catalog.high_impact
    counts = {s: [0, 0, 0, 0, 0] for s in marked}  # before, after, gained, lost, moved
    ranked = changed = 0
    channels = sorted({c for s in marked for c in catalog.step(s).channels})
    for subject in _subjects(runtime, limits.impact_sample, channels) if marked else ():
        ranked += 1
        shown_before = _shown(before(subject), counts)
        shown_after = _shown(after(subject), counts)
        changed += shown_before != shown_after
        for step, position in shown_before.items():
            counts[step][0] += 1
            counts[step][3] += step not in shown_after
            counts[step][4] += step in shown_after and shown_after[step] != position
        for step in shown_after:
            counts[step][1] += 1
            counts[step][2] += step not in shown_before
    return Assessment(
        entity=entity,
        content=content,
        baseline=baseline,
        role=limits.high_impact_role,
        ranked=ranked,
        changed=changed,
        steps=tuple(StepImpact(s, *c) for s, c in counts.items()),
    )


def _subjects(runtime: Runtime, size: int, channels: list[str]) -> Iterator[_Subject]:
    """The most recent ``size`` users, on each of the channels, as ranking would see them now."""
    catalog = runtime.catalog
    for row in runtime.store.select(runtime.queries["recent-users"])[:size]:
        node = bound(row, "user")
        assert isinstance(node, ox.NamedNode)
        user_id = node.value.removeprefix(vocab.USER_BASE)
        stored = profile(runtime, user_id)
        if stored is None:
            continue
        consent_now = current_consents(runtime, user_id)
        personal = consent_now.get("PERSONALIZATION")
        history = events(runtime, user_id)
        for channel in channels:
            context = context_of(
                stored, history, channel_iri=channel, personalized=bool(personal and personal.granted), catalog=catalog
            )
            yield _Subject(candidate_steps(runtime, node, channel), context, catalog)


def _shown(ranked: list[Scored], marked: dict) -> dict[str, int]:
    """The high-impact steps among the top of a ranking, with their ranks."""
    return {s.step: k for k, s in enumerate(ranked[:SHOWN], start=1) if s.step in marked}


def _model_policy(runtime: Runtime) -> PolicyVersion:
    """The policy version a model version ranks under: the default policy's serving one, or the declared active."""
    for versions in (runtime.knowledge.policies, read_policies(runtime.store, runtime.queries)):
        try:
            return active_version(versions, DEFAULT_POLICY)
        except NotFound:
            continue
    raise NotFound(f"no active version of policy {DEFAULT_POLICY!r} to assess a model version under: load one")


def _active_scorer(runtime: Runtime) -> Scorer | None:
    from service.models.serving import active_scorer  # torch: only when someone is ranked with a model

    return active_scorer(runtime)


def store(runtime: Runtime, assessment: Assessment) -> Assessment:
    """Append the assessment to the audit trail as a ``wf:ImpactAssessment``; return it with its record."""
    node = ox.NamedNode(vocab.IMPACT_ASSESSMENT_BASE + str(uuid.uuid4()))
    runtime.trail.append(
        node,
        impact_record(
            node,
            at=assessment.at,
            entity=assessment.entity,
            content=assessment.content,
            baseline=assessment.baseline,
            high_impact=assessment.high_impact,
            role=assessment.role,
            ranked=assessment.ranked,
            changed=assessment.changed,
            figures=assessment.figures(),
            governance=gates(runtime).policy,
        ),
    )
    return replace(assessment, record=node.value)


def latest(runtime: Runtime, entity: str, content: str) -> Assessment | None:
    """The most recent stored assessment of the entity's ``content``, or None."""
    rows = runtime.store.select(
        runtime.queries["impact-assessments"].bind(entity=ox.NamedNode(entity), content=ox.Literal(content))
    )
    if not rows:
        return None
    row = rows[0]
    figures = json.loads(bound(row, "figures").value)
    return Assessment(
        entity=entity,
        content=content,
        baseline=bound(row, "baseline").value,
        role=bound(row, "role").value,
        ranked=int(figures["ranked"]),
        changed=int(figures["changed"]),
        steps=tuple(
            StepImpact(step, c["before"], c["after"], c["gained"], c["lost"], c.get("moved", 0))
            for step, c in figures["steps"].items()
        ),
        at=parse_datetime(bound(row, "at").value),
        record=bound(row, "assessment").value,
    )
