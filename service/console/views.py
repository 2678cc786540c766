"""What each console page shows, read through the same modules and queries as the API and the auditors' SPARQL.

Nothing here writes: a page reads decision records (``lineage/why-decision``, ``decision``), the chain, the
analysis snapshots the guardrail monitor stored, and the analysis as ``experimentResults`` computes it now.
Search fields are parsed here, and a bad one is refused with its name and the reason, before any query runs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import pyoxigraph as ox

from service.analytics import feed
from service.analytics.kpis import read_kpis
from service.analytics.kpis import units as kpi_units
from service.audit import sealed
from service.audit.chain import RecordCheck, check_record
from service.clock import datetime_literal
from service.console.drawing import Lineage, Node, Point, Series
from service.decisions import decide, subjects, users
from service.decisions.decide import UUID_PATTERN, Recommendation, read_decision
from service.delivery.outbox import Message, read_message
from service.errors import InvalidInput, WayfinderError
from service.experiments import analysis, registry
from service.experiments.registry import Experiment
from service.governance import approvals
from service.knowledge import vocab
from service.knowledge.store import bound, plain, value
from service.models import records
from service.runtime import Runtime


@dataclass(frozen=True)
class DecisionFilter:
    """The decision search's fields, as typed (empty where not given)."""

    user: str = ""  # a user ID (while the user exists) or a pseudonym
    start: str = ""  # ISO date and time, UTC where no offset is given
    end: str = ""
    policy: str = ""  # a policy version's label, default@1.2.0
    model: str = ""  # a model version
    arm: str = ""  # an experiment arm's name

    @classmethod
    def of(cls, params: Mapping[str, str]) -> DecisionFilter:
        return cls(**{name: params.get(name, "").strip()[:200] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class DecisionRow:
    id: str
    at: str
    channel: str
    pseudonym: str
    personalized: bool
    policy: str
    model: str | None
    arm: str | None


def _when(name: str, text: str) -> ox.Literal | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            name, f"a date and time, as 2026-11-30T09:00 (UTC unless an offset is given), not {text!r}"
        ) from None
    return datetime_literal(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def policy_labels(runtime: Runtime) -> dict[str, str]:
    """Every policy version's label (default@1.2.0) and IRI."""
    return {version.label: iri for iri, version in runtime.knowledge.policies.items()}


def model_names(runtime: Runtime) -> list[str]:
    return [v.version for v in records.versions(runtime)]


def search(runtime: Runtime, wanted: DecisionFilter) -> list[DecisionRow]:
    """The newest decisions (at most 50) that match every field given; raise InvalidInput naming a bad field."""
    start, end = _when("start", wanted.start), _when("end", wanted.end)
    labels = policy_labels(runtime)
    if wanted.policy and wanted.policy not in labels:
        raise InvalidInput("policy", f"no policy version {wanted.policy!r}; one of {', '.join(sorted(labels))}")
    if wanted.model and wanted.model not in model_names(runtime):
        raise InvalidInput("model", f"no model version {wanted.model!r} in the registry")
    pseudonym = None
    if wanted.user:
        try:
            profile = users.profile(runtime, wanted.user)
        except InvalidInput:  # not a user ID: a pseudonym
            profile = None
        pseudonym = profile.pseudonym if profile else wanted.user
    channels = {iri: code for code, iri in runtime.knowledge.codes.channels.items()}
    query = runtime.queries["console/decisions"].bind(
        pseudonym=ox.Literal(pseudonym) if pseudonym else None,
        **{"from": start, "to": end},
        policy=ox.NamedNode(labels[wanted.policy]) if wanted.policy else None,
        model=ox.NamedNode(vocab.MODEL_BASE + wanted.model) if wanted.model else None,
        variant=ox.Literal(wanted.arm) if wanted.arm else None,
    )
    policies = runtime.knowledge.policies
    found = []
    for row in runtime.store.select(query):
        policy_iri = bound(row, "policy").value
        found.append(
            DecisionRow(
                id=vocab.local_id(bound(row, "decision").value),
                at=bound(row, "at").value,
                channel=channels.get(bound(row, "channel").value, vocab.local_id(bound(row, "channel").value)),
                pseudonym=bound(row, "pseudonym").value,
                personalized=bound(row, "personalized").value == "true",
                policy=policies[policy_iri].label if policy_iri in policies else vocab.local_id(policy_iri),
                model=vocab.local_id(model) if (model := value(row, "modelVersion")) else None,
                arm=value(row, "arm"),
            )
        )
    return found


@dataclass(frozen=True)
class Used:
    """One thing a decision used, as the auditors' lineage query names it."""

    kind: str  # consent | event | knowledge | profile
    item: str  # its IRI
    detail: str


@dataclass
class DecisionView:
    recommendation: Recommendation
    pseudonym: str
    used: list[Used]  # what lineage/why-decision says the decision used
    policy_hash: str | None
    approved_by: str | None
    check: RecordCheck
    delivery: Message | None
    lineage: Lineage
    titles: dict[str, str] = field(default_factory=dict)  # step IRI -> title


def decision(runtime: Runtime, decision_id: str) -> DecisionView | None:
    """A recorded decision with its lineage and the standing of its record in the chain, or None."""
    if not UUID_PATTERN.fullmatch(decision_id):
        raise InvalidInput("id", "a decision ID is a UUID, as 8-4-4-4-12 hexadecimal digits")
    rec = read_decision(runtime, decision_id)
    if rec is None:
        return None
    node = ox.NamedNode(vocab.DECISION_BASE + rec.decision_id)
    with sealed.holding(runtime.store, runtime.sealed, node) as store:
        rows = store.select(runtime.queries["lineage/why-decision"].bind(decision=node))
        own = {q.predicate.value: plain(q.object).value for q in store.quads(subject=node, graph=vocab.AUDIT_GRAPH)}
        check = check_record(store, node, anchors=runtime.trail.anchors(), sealed=runtime.sealed)
    head = rows[0] if rows else None
    used = [
        Used(bound(r, "kind").value, bound(r, "item").value, value(r, "detail") or "")
        for r in rows
        if value(r, "kind") not in (None, "returned")
    ]
    pseudonym = own.get(vocab.SUBJECT_PSEUDONYM.value, "")
    catalog = runtime.catalog
    titles = {s.step: catalog.title(s.step) if s.step in catalog.entities else s.step for s in rec.candidates}
    lineage = Lineage(
        decision=Node("decision", node.value, rec.decision_id, f"{rec.channel}, {rec.at.isoformat() if rec.at else ''}")
    )
    lineage.used = [_used_node(u) for u in used]
    approved = head["approvedBy"].value if head is not None and head["approvedBy"] is not None else None
    lineage.how.append(
        Node("policy", rec.policy_version, rec.policy_version, f"approved by {approved}" if approved else "")
    )
    if rec.model_version:
        lineage.how.append(Node("model", vocab.MODEL_BASE + rec.model_version, rec.model_version))
    if rec.variant:
        experiment_iri = own.get(vocab.IN_EXPERIMENT.value, "")
        why = own.get(vocab.ASSIGNMENT_REASON.value, "")
        detail = f"experiment {vocab.local_id(experiment_iri)}" + (f": {why}" if why else "")
        lineage.how.append(Node("arm", rec.variant, rec.variant, detail))
    if vocab.EVALUATED_FLAG.value in own:
        flag = own[vocab.EVALUATED_FLAG.value]
        variant, why = own.get(vocab.FLAG_VARIANT.value, ""), own.get(vocab.FLAG_REASON.value, "")
        detail = f"variant {variant or 'none'}" + (f", {why}" if why else "")
        lineage.how.append(Node("flag", flag, vocab.local_id(flag), detail))
    shown = {s.step for s in rec.steps}
    for s in rec.candidates:
        kind = "shown" if s.step in shown else "candidate"
        rank = next((i for i, t in enumerate(rec.steps, start=1) if t.step == s.step), None)
        detail = f"rank {rank}, score {s.score:.3f}" if rank else f"score {s.score:.3f}"
        lineage.gave.append(Node(kind, s.step, titles[s.step], detail))
    for hold in rec.held_back:
        lineage.gave.append(Node("held", hold.step or "", titles.get(hold.step or "", hold.step or "all"), hold.reason))
    return DecisionView(
        recommendation=rec,
        pseudonym=pseudonym,
        used=used,
        policy_hash=head["policyHash"].value if head is not None and head["policyHash"] is not None else None,
        approved_by=approved,
        check=check,
        delivery=read_message(runtime.store, rec.delivery_id) if rec.delivery_id else None,
        lineage=lineage,
        titles=titles,
    )


def _used_node(used: Used) -> Node:
    """A thing the decision used, named as a person reads it: the purpose of a consent record, the type of an
    event, the graph and number of a knowledge version, the label of a profile fact."""
    if used.kind == "consent":
        purpose, _, status = used.detail.partition(" ")
        label = vocab.local_id(purpose) if purpose else vocab.local_id(used.item)
        return Node(used.kind, used.item, label, vocab.local_id(status) if status else "erased since")
    if used.kind == "event":
        return Node(used.kind, used.item, used.detail or "erased since", vocab.local_id(used.item))
    if used.kind == "knowledge":
        name = used.item.removeprefix(vocab.BASE + "knowledge-version/")
        graph, _, number = name.rpartition("/")
        return Node(used.kind, used.item, f"{graph} v{number}", "")
    return Node(used.kind, used.item, used.detail or vocab.local_id(used.item), vocab.local_id(used.item))


@dataclass
class ExperimentView:
    experiment: Experiment
    now: analysis.Analysis
    charts: dict[str, list[Series]]  # KPI -> one series per arm, from the stored snapshots and the analysis now
    snapshots: int
    rollbacks: list[dict]
    funnel: list[str] = field(default_factory=list)  # exposed, then each share KPI by its window
    funnel_counts: dict[str, list[int]] = field(default_factory=dict)  # arm -> users at each stage
    durations: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # KPI in hours -> arm -> users per bin


DURATION_BINS = ((1, "< 1 h"), (6, "1-6 h"), (24, "6-24 h"), (72, "1-3 d"), (168, "3-7 d"), (float("inf"), "> 7 d"))


def _funnel_and_durations(runtime: Runtime, experiment_id: str, now: analysis.Analysis) -> tuple:
    """Users per arm exposed and counted by each share KPI (activation, retention, conversion, by window), and
    each KPI measured in hours (time to first value) as a distribution, from the KPI files on the analytics log."""
    elog = feed.log(runtime)  # as ``analyse`` just read it: on a shared store, for_analysis would rebuild it again
    kpis = read_kpis(runtime.settings.queries_dir / "kpi")
    arms = [a.name for a in now.arms]
    exposed = {a.name: a.users for a in now.arms}
    shares = sorted((k for k in kpis.values() if k.unit == "share"), key=lambda k: (k.window_days, k.name))
    stages = ["exposed", *(k.name for k in shares)]
    counts = {arm: [exposed[arm]] + [0] * len(shares) for arm in arms}
    for index, kpi in enumerate(shares, start=1):
        for unit in kpi_units(elog, kpi, experiment_id, now=now.at):
            if unit.arm in counts and unit.value:
                counts[unit.arm][index] += 1
    durations: dict[str, dict[str, list[int]]] = {}
    for kpi in (k for k in kpis.values() if k.unit == "hours"):
        bins = {arm: [0] * len(DURATION_BINS) for arm in arms}
        for unit in kpi_units(elog, kpi, experiment_id, now=now.at):
            if unit.arm in bins and unit.value is not None:
                bins[unit.arm][next(i for i, (edge, _) in enumerate(DURATION_BINS) if unit.value < edge)] += 1
        durations[kpi.name] = bins
    return stages, counts, durations


def experiment(runtime: Runtime, experiment_id: str) -> ExperimentView | None:
    """An experiment, its analysis now, each KPI over time per arm, and its rollbacks with their evidence."""
    found = registry.find(runtime, experiment_id)
    if found is None:
        return None
    now = analysis.analyse(runtime, experiment_id)
    moments: list[tuple[datetime, list[dict], bool]] = []
    rows = runtime.store.select(runtime.queries["console/snapshots"].bind(experiment=ox.NamedNode(found.iri)))
    for row in rows:
        stored = json.loads(bound(row, "analysis").value)
        moments.append((datetime.fromisoformat(stored["at"]), stored["results"], False))
    moments.append((now.at, json.loads(json.dumps(now.snapshot()["results"])), True))
    charts: dict[str, dict[str, list[Point]]] = {}
    for at, results, current in moments:
        for arm in results:
            for kpi in arm["kpis"]:
                if kpi.get("estimate") is None:
                    continue
                charts.setdefault(kpi["kpi"], {}).setdefault(arm["arm"], []).append(
                    Point(at, kpi["estimate"], kpi.get("lower"), kpi.get("upper"), now=current)
                )
    rollbacks = [
        {
            "arm": bound(r, "arm").value,
            "at": bound(r, "at").value,
            "agent": vocab.local_id(value(r, "agent") or ""),
            "on_behalf_of": value(r, "onBehalfOf") or "",
            "snapshot": value(r, "snapshot") or "",
            "guardrails": [
                g
                for g in json.loads(value(r, "analysis") or "{}").get("guardrails", [])
                if g.get("arm") == value(r, "arm")
            ],
        }
        for r in runtime.store.select(runtime.queries["lineage/rollbacks"])
        if value(r, "experimentId") == experiment_id
    ]
    stages, counts, durations = _funnel_and_durations(runtime, experiment_id, now)
    return ExperimentView(
        experiment=found,
        now=now,
        charts={kpi: [Series(arm, points) for arm, points in arms.items()] for kpi, arms in charts.items()},
        snapshots=len(rows),
        rollbacks=rollbacks,
        funnel=stages,
        funnel_counts=counts,
        durations=durations,
    )


@dataclass
class ChannelPreview:
    channel: str
    recommendation: Recommendation | None
    refused: str | None = None  # why nothing can be shown there (a step off that channel, a consent missing)


def preview(runtime: Runtime, user_id: str, *, locale: str | None) -> list[ChannelPreview]:
    """What each channel would show the user now, with content and reasons; nothing is recorded."""
    if not user_id:
        raise InvalidInput("user", "name a user by their ID")
    subjects.user_node(user_id, "user")  # a malformed ID is refused, naming the field
    if users.profile(runtime, user_id) is None:
        raise InvalidInput("user", f"no user {user_id!r}")
    return _each_channel(runtime, user_id, locale=locale)


def _each_channel(
    runtime: Runtime, user_id: str, *, locale: str | None, draft: users.Prepared | None = None
) -> list[ChannelPreview]:
    shown = []
    for channel in runtime.knowledge.codes.channels:
        try:
            found = decide.preview(runtime, user_id, channel=channel, locale=locale, draft=draft)
            shown.append(ChannelPreview(channel, found))
        except WayfinderError as exc:
            shown.append(ChannelPreview(channel, None, exc.message))
    return shown


@dataclass(frozen=True)
class MadeUp:
    """A made-up profile from the preview form: the fields of ``registerUser``, by their GraphQL names."""

    role: str | None = None
    industry: str | None = None
    plan: str | None = None
    signup_channel: str | None = None
    consents: tuple[str, ...] = ()
    time_zone: str | None = None

    @classmethod
    def of(cls, params: Mapping[str, str], consents: list[str]) -> MadeUp:
        def field_(name: str) -> str | None:
            return params.get(name, "").strip()[:200] or None

        return cls(
            role=field_("role"),
            industry=field_("industry"),
            plan=field_("plan"),
            signup_channel=field_("signupChannel"),
            consents=tuple(c.strip()[:64] for c in consents[:32]),
            time_zone=field_("timeZone"),
        )


def preview_made_up(runtime: Runtime, made_up: MadeUp, *, locale: str | None) -> list[ChannelPreview]:
    """What each channel would show now to a new user of this profile, who is not in the store: registered as
    ``registerUser`` would register them (and refused as it would refuse them, naming the field), then decided
    for without a record. Nothing is written."""
    draft = users.prepare(
        runtime,
        users.Registration(
            id=f"preview-{uuid.uuid4().hex}",
            role=made_up.role,
            industry=made_up.industry,
            plan=made_up.plan,
            signup_channel=made_up.signup_channel,
            consents=list(made_up.consents),
            time_zone=made_up.time_zone,
        ),
    )
    return _each_channel(runtime, draft.profile.id, locale=locale, draft=draft)


def profile_options(runtime: Runtime) -> dict[str, list[tuple[str, str]]]:
    """The catalog's roles, industries and plans (ID, title) by segment field, as the forms offer them."""
    catalog = runtime.catalog
    return {
        name: sorted((e.id, catalog.title(e.iri)) for e in catalog.by_id[kind].values())
        for name, kind in SEGMENT_KINDS.items()
    }


@dataclass
class ModelRow:
    version: records.ModelVersion
    fairness: list[dict]  # the fairness reports that judged it, oldest first
    health: list[dict]  # its health reports, newest first
    approvals: list[approvals.Approval] = field(default_factory=list)  # every verdict on it, oldest first


def models(runtime: Runtime) -> list[ModelRow]:
    """Every model version, newest first, with its metrics, approvals, fairness and health reports."""
    found = []
    for version in reversed(records.versions(runtime)):
        node = ox.NamedNode(version.iri)
        fairness = [
            {"at": bound(r, "at").value, "passed": bound(r, "passed").value == "true", "breaches": value(r, "breaches")}
            for r in runtime.store.select(runtime.queries["lineage/fairness-reports"].bind(version=node))
        ]
        health: dict[str, dict] = {}
        for r in runtime.store.select(runtime.queries["lineage/model-health"].bind(model=node)):
            report = health.setdefault(
                bound(r, "report").value,
                {
                    "at": bound(r, "at").value,
                    "occasion": value(r, "occasion"),
                    "verdict": value(r, "verdict"),
                    "alerts": [],
                },
            )
            if value(r, "alert"):
                report["alerts"].append(value(r, "alert"))
        found.append(ModelRow(version, fairness, list(health.values()), approvals.of(runtime, version.iri)))
    return found


@dataclass
class ConsentView:
    purposes: list[str]
    days: list[str]
    counts: dict[tuple[str, str, str], int]  # (day, purpose, status) -> records
    charts: dict[str, list[Series]]  # purpose -> grants and withdrawals per day
    erasures: list[dict]
    history: list[dict] | None  # one user's consent history, when one was asked for


EPOCH = date(1970, 1, 1)


def consent(runtime: Runtime, user_id: str = "") -> ConsentView:
    """Consent records by purpose and day, every erasure, and one user's consent history when asked for."""
    counts: dict[tuple[str, str, str], int] = {}
    statement = (runtime.settings.queries_dir / "console" / "consent-by-day.sql").read_text()
    for day, purpose, granted, n in feed.for_analysis(runtime).query(statement):
        key = ((EPOCH + timedelta(days=int(day))).isoformat(), purpose, "granted" if granted else "withdrawn")
        counts[key] = int(n)
    days = sorted({d for d, _, _ in counts})
    purposes = sorted({p for _, p, _ in counts})
    charts = {
        purpose: [
            Series(
                status,
                [
                    Point(datetime.fromisoformat(d).replace(tzinfo=UTC), counts.get((d, purpose, status), 0))
                    for d in days
                ],
            )
            for status in ("granted", "withdrawn")
        ]
        for purpose in purposes
    }
    erasures = [
        {
            "id": vocab.local_id(bound(r, "erasure").value),
            "at": bound(r, "at").value,
            "by": bound(r, "requestedBy").value,
            "removed": int(bound(r, "removed").value),
        }
        for r in runtime.store.select(runtime.queries["console/erasures"])
    ]
    history = None
    if user_id:
        node = subjects.user_node(user_id, "user")  # a malformed ID is refused, naming the field
        history = [
            {
                "record": vocab.local_id(bound(r, "record").value),
                "purpose": vocab.local_id(bound(r, "purpose").value),
                "granted": bound(r, "status").value == vocab.CONSENT_GIVEN.value,
                "at": bound(r, "at").value,
                "recorded_at": value(r, "recordedAt"),
            }
            for r in runtime.store.select(runtime.queries["lineage/consent-history"].bind(user=node))
        ]
    return ConsentView(purposes, days, counts, charts, erasures, history)


@dataclass(frozen=True)
class JourneyStep:
    iri: str
    id: str
    title: str
    depth: int
    requires: list[str]  # IRIs
    introduces: list[str]  # feature titles, each with its nearest area
    completers: int
    activated: int  # completers who activated

    def rate(self, users: int) -> float | None:
        return self.completers / users if users else None

    @property
    def activation(self) -> float | None:
        return self.activated / self.completers if self.completers else None


@dataclass
class JourneyView:
    steps: list[JourneyStep]
    users: int  # users of the segment in the analytics log
    segment: dict[str, str]  # role / industry / plan -> local ID ("" for any)
    options: dict[str, list[tuple[str, str]]]  # role / industry / plan -> (local ID, title)


SEGMENT_KINDS = {"role": "Role", "industry": "Industry", "plan": "Plan"}


def journeys(runtime: Runtime, params: Mapping[str, str]) -> JourneyView:
    """The catalog's steps with their prerequisites and features, and the segment's completion and activation
    rates from the analytics log; raise InvalidInput naming an unknown segment field."""
    catalog = runtime.catalog
    options = profile_options(runtime)
    segment = {name: params.get(name, "").strip()[:200] for name in SEGMENT_KINDS}
    for name, chosen in segment.items():
        if chosen and chosen not in {i for i, _ in options[name]}:
            raise InvalidInput(name, f"no {name} {chosen!r} in the catalog")
    args = [v for name in SEGMENT_KINDS for v in (segment[name] or None, segment[name] or None)]
    folder = runtime.settings.queries_dir / "console"
    elog = feed.for_analysis(runtime)
    counts = {
        step: (int(completers), int(activated))
        for step, completers, activated in elog.query((folder / "step-rates.sql").read_text(), args)
    }
    users_n = int(elog.query((folder / "segment-size.sql").read_text(), args)[0][0])
    steps = []
    for step in sorted(catalog.steps, key=lambda s: (s.depth, s.order, s.title)):
        introduces = []
        for feature in step.introduces:
            areas = catalog.areas(feature)
            introduces.append(catalog.title(feature) + (f" ({catalog.title(areas[0])})" if areas else ""))
        completers, activated = counts.get(step.id, (0, 0))
        steps.append(
            JourneyStep(step.iri, step.id, step.title, step.depth, step.requires, introduces, completers, activated)
        )
    return JourneyView(steps, users_n, segment, options)
