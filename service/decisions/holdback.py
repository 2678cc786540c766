"""Pacing a decision: which ranked candidates are held back, and why, before the slate is drawn.

The pacing policy (:mod:`service.knowledge.pacing`, Turtle) says how often and when
prompts may be shown; this module applies it to one decision, from what the store
says was shown and done before. A step counts as shown when a decision returned it
(``queries/service/shown-recently.rq`` reads the records); snoozes, dismissals and
session starts are the user's events (``queries/service/pacing-events.rq``). Every
time is the service's own clock: when decisions were made and events recorded.

:func:`hold_back` is pure: the same pacing, candidates and history give the same
holds, so a decision's holds can be checked again from what its record names.
Holds are of two kinds:

- on a step (snoozed, shown on another channel within the cool-down, at its
  per-step cap, or new in a session whose budget is spent): that step is left out;
- on the whole decision (quiet hours on the channel, a cool-down after a dismissal,
  a per-user cap that is full or nearly so): fewer steps, or none, are shown.

A version's feedback pressure (``wf:FeedbackPressure``) adds both kinds after
negative feedback, for its window: the step judged is held back, and the decision
shows at most a share of the steps asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

import pyoxigraph as ox

from service.clock import as_utc, datetime_literal, parse_datetime, time_zone
from service.decisions.ranking import Scored
from service.knowledge.pacing import FeedbackPressure, FrequencyCap, Pacing
from service.knowledge.store import Row, bound
from service.knowledge.templates import Named
from service.runtime import Runtime

SNOOZED, DISMISSED, SESSION = "STEP_SNOOZED", "STEP_DISMISSED", "SESSION_STARTED"


@dataclass(frozen=True)
class Showing:
    """One step a past decision returned: which decision, when (the service's clock), on which channel (IRI)."""

    decision: str
    at: datetime
    channel: str
    step: str


@dataclass(frozen=True)
class PacingEvent:
    """A snooze, dismissal or session start, with when the service recorded it and the channel it came from."""

    iri: str
    type: str
    recorded_at: datetime
    step: str | None = None
    channel: str | None = None


@dataclass(frozen=True)
class FeedbackEvent:
    """A feedback the user gave on a step, with when the service recorded it and what pressure reads of it."""

    iri: str
    step: str
    recorded_at: datetime
    thumbs_up: bool | None = None
    rating: int | None = None
    sentiment: float | None = None


class ShownReader(Protocol):
    """Where pacing may read past showings from instead of the records (:class:`service.decisions.showings.ShownLog`)."""

    def history(
        self, runtime: Runtime, pseudonym: str, *, since: datetime | None, session_since: datetime | None
    ) -> tuple[list[Showing], frozenset[str]]: ...


@dataclass(frozen=True)
class Hold:
    """A candidate (``step``) or the whole decision (``step`` None) held back, in the pacing's words."""

    reason: str
    until: datetime | None  # when it ends; None for a session budget (the next session)
    step: str | None = None
    evidence: tuple[str, ...] = ()  # the decisions and events that caused it (IRIs)


@dataclass
class Paced:
    """What pacing leaves of a ranking: the candidates that may be shown, in order, and how many."""

    eligible: list[Scored]
    limit: int
    holds: list[Hold] = field(default_factory=list)


@dataclass(frozen=True)
class History:
    """What pacing reads of a user: their past showings and pacing events, their time zone and registration."""

    shown: Sequence[Showing] = ()
    events: Sequence[PacingEvent] = ()
    time_zone: str | None = None
    registered_at: datetime | None = None
    session_steps: frozenset[str] = frozenset()  # the steps shown since the session started
    feedback: Sequence[FeedbackEvent] = ()  # within the feedback pressure's window, where the version has one


def hold_back(
    pacing: Pacing,
    ranked: list[Scored],
    *,
    limit: int,
    channel: str,
    at: datetime,
    history: History,
    channel_codes: Mapping[str, str],
    title: Callable[[str, str | None], str] = lambda step, language: step,
    pressure: FeedbackPressure | None = None,
    locale: str | None = None,
) -> Paced:
    """Apply the pacing to a ranking for a decision on ``channel`` (IRI) made at ``at``; ``channel_codes`` names
    channels by their API codes and ``title`` steps in a language (None: by their titles), in the reasons. ``pressure`` is the
    version's feedback pressure, where it has one and the user consents to FEEDBACK. Reasons are in ``locale``
    where the pacing has words for it, and name steps in the language of those words."""
    pacing = replace(pacing, locale=locale, namer=title)
    pressure = replace(pressure, locale=locale, namer=title) if pressure is not None else None

    def code(iri: str | None) -> str:
        return channel_codes.get(iri, "an unknown channel") if iri else "a channel not reported"

    user_caps = [
        (cap, _counted(cap, history.shown, at)) for cap in pacing.caps if not cap.per_step and cap.counts(channel)
    ]
    whole = _whole_decision(pacing, channel=channel, at=at, history=history, user_caps=user_caps, code=code)
    if whole is not None:
        return Paced([], 0, [whole])
    negative = _negative_feedback(pressure, history.feedback, at) if pressure is not None else []
    holds: list[Hold] = []
    for scored in ranked:
        hold = _step_hold(pacing, scored.step, channel=channel, at=at, history=history, code=code)
        if hold is None and pressure is not None:
            hold = _judged_hold(pressure, scored.step, negative)
        if hold is not None:
            holds.append(hold)
    held = {h.step for h in holds}
    eligible = [s for s in ranked if s.step not in held]
    if pacing.session_budget is not None:
        eligible, spent = _session_budget(pacing, eligible, at=at, history=history)
        holds += spent
    paced = limit
    for cap, counted in user_caps:
        remaining = cap.max_shown - len(counted)
        if remaining < min(paced, len(eligible)):  # the cap cuts what would be shown
            paced = remaining
            holds.append(_user_cap_hold(pacing, cap, counted, code))
    if pressure is not None and negative and pressure.eased(limit) < min(paced, len(eligible)):
        paced = pressure.eased(limit)
        until = negative[-1].recorded_at + pressure.window
        reason = pressure.say("feedbackPressureReason", max=paced, until=_when(until))
        holds.append(Hold(reason, until, None, tuple(f.iri for f in negative)))
    return Paced(eligible, paced, holds)


def _negative_feedback(
    pressure: FeedbackPressure, feedback: Sequence[FeedbackEvent], at: datetime
) -> list[FeedbackEvent]:
    """The negative feedback within the pressure's window at ``at``, oldest first."""
    return [
        f
        for f in feedback
        if at - pressure.window < f.recorded_at <= at
        and pressure.negative(thumbs_up=f.thumbs_up, rating=f.rating, sentiment=f.sentiment)
    ]


def _judged_hold(pressure: FeedbackPressure, step: str, negative: list[FeedbackEvent]) -> Hold | None:
    """A hold on a step the user judged negatively within the window."""
    about = [f for f in negative if f.step == step]
    if not about:
        return None
    until = about[-1].recorded_at + pressure.window
    reason = pressure.say("negativeFeedbackReason", step=Named(step), until=_when(until))
    return Hold(reason, until, step, tuple(f.iri for f in about))


def _whole_decision(
    pacing: Pacing,
    *,
    channel: str,
    at: datetime,
    history: History,
    user_caps: list[tuple[FrequencyCap, list[Showing]]],
    code: Callable[[str | None], str],
) -> Hold | None:
    """A hold on every prompt of the decision: quiet hours, a cool-down after a dismissal, a full per-user cap."""
    for quiet in pacing.quiet_hours:
        if channel not in quiet.channels:
            continue
        zone_name = history.time_zone or pacing.time_zone
        zone = time_zone(zone_name)
        local = as_utc(at).astimezone(zone)
        if quiet.covers(local.time().replace(tzinfo=None)):
            end = local.replace(hour=quiet.end.hour, minute=quiet.end.minute, second=0, microsecond=0)
            if end <= local:
                end = (local + timedelta(days=1)).replace(
                    hour=quiet.end.hour, minute=quiet.end.minute, second=0, microsecond=0
                )
            until = as_utc(end)
            reason = pacing.say(
                "quietHoursReason",
                channel=code(channel),
                **{"from": quiet.start.strftime("%H:%M")},
                to=quiet.end.strftime("%H:%M"),
                timeZone=zone_name,
                until=_when(until),
            )
            return Hold(reason, until)
    if pacing.dismissal_cool_down is not None:
        recent = [
            e for e in history.events if e.type == DISMISSED and at - pacing.dismissal_cool_down < e.recorded_at <= at
        ]
        if recent:
            latest = recent[-1]
            until = latest.recorded_at + pacing.dismissal_cool_down
            reason = pacing.say("dismissalCoolDownReason", channel=code(latest.channel), until=_when(until))
            return Hold(reason, until, evidence=(latest.iri,))
    for cap, counted in user_caps:
        if len(counted) >= cap.max_shown:
            return _user_cap_hold(pacing, cap, counted, code)
    return None


def _step_hold(
    pacing: Pacing,
    step: str,
    *,
    channel: str,
    at: datetime,
    history: History,
    code: Callable[[str | None], str],
) -> Hold | None:
    """A hold on one candidate: snoozed, shown on another channel within the cool-down, or at its per-step cap."""
    snoozes = [e for e in history.events if e.type == SNOOZED and e.step == step and e.recorded_at <= at]
    if snoozes and at < snoozes[-1].recorded_at + pacing.snooze:
        latest = snoozes[-1]
        until = latest.recorded_at + pacing.snooze
        reason = pacing.say("snoozedReason", step=Named(step), channel=code(latest.channel), until=_when(until))
        return Hold(reason, until, step, (latest.iri,))
    if pacing.show_cool_down is not None:
        elsewhere = [
            s
            for s in history.shown
            if s.step == step and s.channel != channel and at - pacing.show_cool_down < s.at <= at
        ]
        if elsewhere:
            last = elsewhere[-1]
            until = last.at + pacing.show_cool_down
            reason = pacing.say(
                "shownElsewhereReason", step=Named(step), channel=code(last.channel), until=_when(until)
            )
            return Hold(reason, until, step, (last.decision,))
    for cap in pacing.caps:
        if not cap.per_step or not cap.counts(channel):
            continue
        counted = [s for s in _counted(cap, history.shown, at) if s.step == step]
        if len(counted) >= cap.max_shown:
            until = counted[len(counted) - cap.max_shown].at + cap.window
            reason = pacing.say(
                "stepCapReason",
                step=Named(step),
                count=len(counted),
                max=cap.max_shown,
                window=_duration(cap.window),
                until=_when(until),
            )
            return Hold(reason, until, step, tuple(dict.fromkeys(s.decision for s in counted)))
    return None


def _session_budget(
    pacing: Pacing, eligible: list[Scored], *, at: datetime, history: History
) -> tuple[list[Scored], list[Hold]]:
    """Keep the steps already shown this session and as many new ones as the budget has left; hold the rest."""
    assert pacing.session_budget is not None
    starts = [e for e in history.events if e.type == SESSION and e.recorded_at <= at]
    this_session = history.session_steps
    left = pacing.session_budget - len(this_session)
    kept: list[Scored] = []
    holds: list[Hold] = []
    for scored in eligible:
        if scored.step in this_session:
            kept.append(scored)
        elif left > 0:
            kept.append(scored)
            left -= 1
        else:
            reason = pacing.say("sessionBudgetReason", count=len(this_session), max=pacing.session_budget)
            holds.append(Hold(reason, None, scored.step, (starts[-1].iri,) if starts else ()))
    return kept, holds


def _counted(cap: FrequencyCap, shown: Sequence[Showing], at: datetime) -> list[Showing]:
    """The showings a cap counts at ``at``: in its window, on its channels, oldest first."""
    return [s for s in shown if cap.counts(s.channel) and at - cap.window < s.at <= at]


def _user_cap_hold(
    pacing: Pacing, cap: FrequencyCap, counted: list[Showing], code: Callable[[str | None], str]
) -> Hold:
    """The words of a per-user cap: how many were shown, and when enough of them leave the window for one more."""
    over = max(0, len(counted) - cap.max_shown)
    until = counted[over].at + cap.window if counted else None
    channels = ", ".join(sorted(code(c) for c in cap.channels)) if cap.channels else "every channel"
    reason = pacing.say(
        "userCapReason",
        count=len(counted),
        max=cap.max_shown,
        window=_duration(cap.window),
        channels=channels,
        until=_when(until) if until else "",
    )
    return Hold(reason, until, None, tuple(dict.fromkeys(s.decision for s in counted)))


def _when(moment: datetime) -> str:
    """A UTC time to the minute, as reasons give it: 2026-12-03T08:00Z."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%MZ")


def _duration(span: timedelta) -> str:
    """A duration as reasons give it: 1d, 12h, 1d12h, 30min."""
    minutes = int(span.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    text = (f"{days}d" if days else "") + (f"{hours}h" if hours else "") + (f"{minutes}min" if minutes else "")
    return text or f"{int(span.total_seconds())}s"


def history_of(
    runtime: Runtime,
    user: ox.NamedNode,
    graph: ox.NamedNode,
    *,
    pseudonym: str,
    pacing: Pacing,
    channel: str,
    at: datetime,
    time_zone_name: str | None,
    registered_at: datetime | None,
    pressure: FeedbackPressure | None = None,
    shown_log: ShownReader | None = None,
) -> History:
    """Read what the pacing needs of a user from the store: the user's snoozes, dismissals and session starts,
    the showings within its look-back, for a session budget the steps shown since the session started, and for
    a feedback pressure the feedback within its window. With ``shown_log`` (an embedded store's log of what
    decisions showed, :mod:`service.decisions.showings`), the showings are read from it instead of the records."""
    codes = {iri: code for code, iri in runtime.knowledge.codes.events.items()}
    events = [
        PacingEvent(
            bound(row, "event").value,
            codes.get(bound(row, "type").value, ""),
            parse_datetime(bound(row, "recordedAt").value),
            row["step"].value if row["step"] is not None else None,
            row["channel"].value if row["channel"] is not None else None,
        )
        for row in runtime.store.select(runtime.queries["pacing-events"].bind(user=user, userGraph=graph))
    ]
    begun: datetime | None = None
    if pacing.session_budget is not None:
        starts = [e.recorded_at for e in events if e.type == SESSION and e.recorded_at <= at]
        begun = (starts[-1] if starts else registered_at) or at
    # Showings on the decision's own channel count only for a cap on it; those before the look-back not at all.
    own = any(cap.counts(channel) for cap in pacing.caps)
    since = at - pacing.lookback if pacing.lookback else None
    if shown_log is not None and (since is not None or begun is not None):
        logged, steps = shown_log.history(runtime, pseudonym, since=since, session_since=begun)
        if not own:
            logged = [s for s in logged if s.channel != channel]
        return History(
            logged, events, time_zone_name, registered_at, steps, _feedback(runtime, user, graph, pressure, at)
        )
    session: frozenset[str] = frozenset()
    if begun is not None:
        query = runtime.queries["shown-this-session"].bind(
            pseudonym=ox.Literal(pseudonym), since=datetime_literal(begun)
        )
        session = frozenset(bound(row, "step").value for row in runtime.store.select(query))
    shown: list[Showing] = []
    if since is not None:
        query = runtime.queries["shown-recently"].bind(
            pseudonym=ox.Literal(pseudonym),
            since=datetime_literal(since),
            skipChannel=None if own else ox.NamedNode(channel),
        )
        shown = showings_of(runtime.store.select(query))
    return History(shown, events, time_zone_name, registered_at, session, _feedback(runtime, user, graph, pressure, at))


def showings_of(rows: Iterable[Row]) -> list[Showing]:
    """The showings in rows of ``shown-recently.rq``: decision, when, channel, step."""
    return [
        Showing(
            bound(row, "decision").value,
            parse_datetime(bound(row, "at").value),
            bound(row, "channel").value,
            bound(row, "step").value,
        )
        for row in rows
    ]


def _feedback(
    runtime: Runtime, user: ox.NamedNode, graph: ox.NamedNode, pressure: FeedbackPressure | None, at: datetime
) -> list[FeedbackEvent]:
    """The user's feedback within the pressure's window (none without a pressure)."""
    if pressure is None:
        return []
    query = runtime.queries["feedback-recent"].bind(
        user=user, userGraph=graph, since=datetime_literal(at - pressure.window)
    )
    return [
        FeedbackEvent(
            bound(row, "event").value,
            bound(row, "step").value,
            parse_datetime(bound(row, "recordedAt").value),
            thumbs_up=row["thumbsUp"].value == "true" if row["thumbsUp"] is not None else None,
            rating=int(row["rating"].value) if row["rating"] is not None else None,
            sentiment=float(row["sentiment"].value) if row["sentiment"] is not None else None,
        )
        for row in runtime.store.select(query)
    ]
