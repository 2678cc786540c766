"""The traffic a model version is judged on: the latest personalised decisions, as their audit records tell them.

Model health (``service.models.monitoring``) compares a version's training profile with this. Each decision
says what the model read of the user in its ``prov:used`` (the role, industry and plan terms, the feature-use
events, the consent records it read) and what was scored (its ``wf:candidates`` set: every candidate, its model
score and the shown ones' ranks); ``queries/service/decision-inputs.rq`` and ``decision-candidates.rq`` read them back. An event
erased or purged since is gone from the store: such a decision still tells its scores, not its inputs.

Outcomes come from the analytics log (``service.analytics``), never from the user's graph: an ACTIVATED event
recorded at or after the decision and before the activation KPI's window closes (``queries/kpi/activation.sql``,
14 days), counting an open window with what has arrived, as the KPI does. The log keeps activations only of
users who consent to ANALYTICS, so only decisions of users who had given it at the time tell an outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pyoxigraph as ox

from service.analytics import feed
from service.analytics.kpis import read_kpis
from service.analytics.log import epoch_s
from service.audit.records import read_candidates
from service.clock import parse_datetime
from service.knowledge import vocab
from service.knowledge.store import Row, bound, value
from service.models.profiles import NONE
from service.runtime import Runtime

DAY_S = 86_400.0
_PROFILE_TYPES = {vocab.ROLE.value: "role", vocab.INDUSTRY.value: "industry", vocab.PLAN.value: "plan"}
# Activations of the given pseudonyms, by record time: the KPI's own column (recorded_s, the server's clock).
ACTIVATIONS = "SELECT subject, recorded_s FROM events WHERE type = 'ACTIVATED' AND list_contains(?, subject)"


@dataclass
class Decision:
    """One personalised decision as recorded: what it read of the user and what it scored."""

    iri: str
    at: datetime
    subject: str  # the user's pseudonym
    model: str | None  # the IRI of the model version that scored it; None: rules only
    profile: dict[str, str] = field(default_factory=dict)  # role, industry, plan -> IRI
    features: set[str] = field(default_factory=set)  # features of the feature-use events it read
    events_gone: bool = False  # an event it read is no longer in the store (erased or purged)
    analytics: bool = False  # it read an ANALYTICS consent record that gave consent
    candidates: dict[str, tuple[float | None, int | None]] = field(default_factory=dict)  # step -> (score, rank)

    def value(self, name: str) -> str:
        """The decision's role, industry or plan IRI, or ``(none)``."""
        return self.profile.get(name, NONE)

    @property
    def top(self) -> float | None:
        """The model score of the step shown first, when the model scored it."""
        return next((score for score, rank in self.candidates.values() if rank == 1), None)


def latest(runtime: Runtime, *, window: int, model: str | None = None) -> list[Decision]:
    """The latest ``window`` personalised decisions (those ``model`` scored, when given), oldest first."""
    rows = runtime.store.select(runtime.queries["personalized-decisions"])
    chosen = [r for r in rows if model is None or value(r, "model") == model][-window:]
    if not chosen:
        return []
    decisions = {
        bound(r, "decision").value: Decision(
            bound(r, "decision").value, parse_datetime(bound(r, "at").value), "", value(r, "model")
        )
        for r in chosen
    }
    since = bound(chosen[0], "at")
    assert isinstance(since, ox.Literal)
    for row in runtime.store.select(runtime.queries["decision-inputs"].bind(since=since)):
        decision = decisions.get(bound(row, "decision").value)
        if decision is not None:
            decision.subject = bound(row, "subject").value
            _read_used(decision, row)
    for row in runtime.store.select(runtime.queries["decision-candidates"].bind(since=since)):
        decision = decisions.get(bound(row, "decision").value)
        if decision is None:
            continue
        if (kept := value(row, "candidates")) is not None:
            for recorded in read_candidates(kept):
                decision.candidates[recorded.step] = (recorded.model_score, recorded.rank)
        else:  # a candidate node of a record written before candidate sets
            score, rank = value(row, "modelScore"), value(row, "rank")
            decision.candidates[bound(row, "step").value] = (
                float(score) if score is not None else None,
                int(rank) if rank is not None else None,
            )
    return list(decisions.values())


def _read_used(decision: Decision, row: Row) -> None:
    item, kind = bound(row, "item").value, value(row, "type")
    if kind in _PROFILE_TYPES:
        decision.profile[_PROFILE_TYPES[kind]] = item
    elif kind == vocab.FEATURE_USED.value and (feature := value(row, "feature")):
        decision.features.add(feature)
    elif kind is None and item.startswith(vocab.EVENT_BASE):
        decision.events_gone = True
    if value(row, "purpose") == vocab.ANALYTICS.value and value(row, "status") == vocab.CONSENT_GIVEN.value:
        decision.analytics = True


def activated_after(runtime: Runtime, decisions: list[Decision]) -> list[bool]:
    """Whether each decision's user activated after it, within the activation KPI's window (see the module)."""
    window_s = read_kpis(runtime.settings.queries_dir / "kpi")["activation"].window_days * DAY_S
    subjects = sorted({d.subject for d in decisions})
    times: dict[str, list[float]] = {}
    for subject, recorded_s in feed.for_analysis(runtime).query(ACTIVATIONS, [subjects]):
        times.setdefault(subject, []).append(float(recorded_s))
    outcomes = []
    for d in decisions:
        start = epoch_s(d.at, "at")
        outcomes.append(any(start <= t < start + window_s for t in times.get(d.subject, ())))
    return outcomes
