"""Pacing policies: frequency caps, cool-downs, snoozes, quiet hours and session budgets, kept as Turtle.

A policy version names its pacing with ``wf:pacing``; one that names none is paced
by the ontology's ``wf:DefaultPacing`` (snoozes only). This module reads every
pacing policy from the store (``queries/service/policy-pacing*.rq``) and checks
what the shapes cannot: that durations are positive day-time durations, that a
default time zone is one the IANA database names, and that hold-back reasons name
only the placeholders their kind offers. How pacing holds candidates back is
:mod:`service.decisions.holdback`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta

import rdflib
from rdflib.namespace import XSD

from service.clock import time_zone
from service.errors import SyntaxProblem
from service.knowledge import vocab
from service.knowledge.store import GraphStore, bound, value
from service.knowledge.templates import Namer, Wording, read_templates

DEFAULT_PACING = vocab.WF_NS + "DefaultPacing"


@dataclass(frozen=True)
class FrequencyCap:
    """At most ``max_shown`` showings in any ``window``: of every step (per user) or of each step (per step)."""

    iri: str
    max_shown: int
    window: timedelta
    per_step: bool
    channels: frozenset[str] = frozenset()  # channel IRIs it counts and holds on; empty: every channel

    def counts(self, channel: str) -> bool:
        return not self.channels or channel in self.channels


@dataclass(frozen=True)
class QuietHours:
    """A daily span of local time in which the channels show nothing; past midnight when ``start`` > ``end``."""

    iri: str
    start: time
    end: time
    channels: frozenset[str]

    def covers(self, local: time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


@dataclass(frozen=True)
class Pacing:
    iri: str
    snooze: timedelta
    time_zone: str
    templates: Mapping[str, Wording]  # kind of hold-back reason (local name of its property) -> its words
    show_cool_down: timedelta | None = None
    dismissal_cool_down: timedelta | None = None
    session_budget: int | None = None
    caps: tuple[FrequencyCap, ...] = ()
    quiet_hours: tuple[QuietHours, ...] = field(default=())
    locale: str | None = None  # the locale its reasons are given in (``dataclasses.replace`` per decision)
    namer: Namer | None = None  # how its reasons name steps (IRI, language) -> name; None: by IRI

    @property
    def counts_showings(self) -> bool:
        """Whether anything beyond snoozes and dismissals holds steps back: caps, cool-downs, a session budget."""
        return bool(self.caps or self.show_cool_down or self.session_budget)

    @property
    def lookback(self) -> timedelta:
        """How far back a decision must read what was shown to apply the caps and the cross-channel cool-down."""
        spans = [c.window for c in self.caps] + ([self.show_cool_down] if self.show_cool_down else [])
        return max(spans, default=timedelta(0))

    def say(self, kind: str, **values: object) -> str:
        """The reason of this kind in the ``locale`` (its translation, or the plain words), placeholders filled."""
        return self.templates[kind].say(self.locale, self.namer, **values)


@dataclass(frozen=True)
class FeedbackPressure:
    """How a policy version eases off a user after negative feedback (``wf:FeedbackPressure``)."""

    iri: str
    window: timedelta
    share: float  # of the steps asked for, shown within the window (rounded down, at least one)
    rating_at_most: int  # a rating at or below is negative
    sentiment_below: float  # a text scored below is negative
    templates: Mapping[str, Wording]
    locale: str | None = None  # the locale its reasons are given in (``dataclasses.replace`` per decision)
    namer: Namer | None = None  # how its reasons name steps (IRI, language) -> name; None: by IRI

    def negative(self, *, thumbs_up: bool | None, rating: int | None, sentiment: float | None) -> bool:
        """Whether one feedback is negative: a thumb down, a low rating or a text of low sentiment."""
        return (
            thumbs_up is False
            or (rating is not None and rating <= self.rating_at_most)
            or (sentiment is not None and sentiment < self.sentiment_below)
        )

    def eased(self, limit: int) -> int:
        return max(1, int(limit * self.share))

    def say(self, kind: str, **values: object) -> str:
        """The reason of this kind in the ``locale`` (its translation, or the plain words), placeholders filled."""
        return self.templates[kind].say(self.locale, self.namer, **values)


def read_pressures(
    store: GraphStore, queries: Mapping[str, str], placeholders: Mapping[str, set[str]]
) -> dict[str, FeedbackPressure]:
    """Return the feedback pressure of each policy version that names one, by version IRI; SyntaxProblem for
    anything malformed."""
    templates = read_templates(
        store.select(queries["policy-feedback-templates"]),
        owner="pressure",
        placeholders=placeholders,
        missing="template: a feedback pressure states every reason it gives",
        owner_kind="a feedback pressure",
    )
    pressures: dict[str, FeedbackPressure] = {}
    for row in store.select(queries["policy-feedback-pressure"]):
        iri = bound(row, "pressure").value
        share = _number(value(row, "share"), iri, "pressureShare", 0.0, 1.0)
        rating = _number(value(row, "ratingAtMost"), iri, "negativeRatingAtMost", 0, 10)
        sentiment = _number(value(row, "sentimentBelow"), iri, "negativeSentimentBelow", -1.0, 1.0)
        if rating != int(rating):
            raise SyntaxProblem(iri, f"wf:negativeRatingAtMost {rating} is not an integer from 0 to 10")
        pressures[bound(row, "version").value] = FeedbackPressure(
            iri,
            window=duration(value(row, "window"), iri, "pressureWindow"),
            share=share,
            rating_at_most=int(rating),
            sentiment_below=sentiment,
            templates=templates.get(iri, {}),
        )
    return pressures


def _number(text: str | None, source: str, name: str, low: float, high: float) -> float:
    try:
        number = float(text) if text is not None else None
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise SyntaxProblem(source, f"wf:{name} {text!r} is not a number from {low} to {high}")
    return number


def read_pacings(
    store: GraphStore, queries: Mapping[str, str], placeholders: Mapping[str, set[str]]
) -> dict[str, Pacing]:
    """Return every pacing policy in the store, by IRI; anything malformed raises SyntaxProblem.

    ``placeholders`` maps a template kind to the placeholders it offers (``policy-placeholders.rq``)."""
    templates = read_templates(
        store.select(queries["policy-pacing-templates"]),
        owner="pacing",
        placeholders=placeholders,
        missing="template: a pacing policy states every hold-back reason",
        owner_kind="a pacing policy",
    )
    caps: dict[str, dict[str, FrequencyCap]] = {}
    quiet: dict[str, dict[str, QuietHours]] = {}
    for row in store.select(queries["policy-pacing-limits"]):
        iri, limit, channel = bound(row, "pacing").value, bound(row, "limit").value, value(row, "channel")
        if bound(row, "kind").value == vocab.WF_NS + "FrequencyCap":
            known = caps.setdefault(iri, {}).get(limit)
            if known is None:
                known = FrequencyCap(
                    limit,
                    max_shown=_positive_int(value(row, "maxShown"), limit, "maxShown"),
                    window=duration(value(row, "window"), limit, "capWindow"),
                    per_step=bound(row, "scope").value == vocab.WF_NS + "PerStep",
                )
            caps[iri][limit] = _with_channel(known, channel)
        else:
            hours = quiet.setdefault(iri, {}).get(limit)
            if hours is None:
                start, end = (
                    _time(value(row, "from"), limit, "quietFrom"),
                    _time(value(row, "until"), limit, "quietUntil"),
                )
                if start == end:
                    raise SyntaxProblem(limit, "wf:quietFrom and wf:quietUntil are the same time: give two")
                hours = QuietHours(limit, start, end, frozenset())
            quiet[iri][limit] = QuietHours(
                hours.iri, hours.start, hours.end, hours.channels | {bound(row, "channel").value}
            )
    pacings: dict[str, Pacing] = {}
    for row in store.select(queries["policy-pacing"]):
        iri = bound(row, "pacing").value
        zone = value(row, "defaultTimeZone")
        if zone is None:
            raise SyntaxProblem(iri, "no wf:defaultTimeZone: state the IANA zone of quiet hours, such as UTC")
        try:
            time_zone(zone)
        except ValueError as exc:
            raise SyntaxProblem(iri, f"wf:defaultTimeZone {exc}") from None
        budget = value(row, "sessionBudget")
        pacings[iri] = Pacing(
            iri,
            snooze=duration(value(row, "snoozeDuration"), iri, "snoozeDuration"),
            time_zone=zone,
            templates=templates.get(iri, {}),
            show_cool_down=_optional_duration(value(row, "showCoolDown"), iri, "showCoolDown"),
            dismissal_cool_down=_optional_duration(value(row, "dismissalCoolDown"), iri, "dismissalCoolDown"),
            session_budget=_positive_int(budget, iri, "sessionBudget") if budget is not None else None,
            caps=tuple(sorted(caps.get(iri, {}).values(), key=lambda c: c.iri)),
            quiet_hours=tuple(sorted(quiet.get(iri, {}).values(), key=lambda q: q.iri)),
        )
    return pacings


def duration(text: str | None, source: str, name: str) -> timedelta:
    """Return a positive xsd:dayTimeDuration as a timedelta; SyntaxProblem otherwise."""
    if text is None:
        raise SyntaxProblem(source, f"no wf:{name}: state a positive duration such as P1D or PT12H")
    parsed = rdflib.Literal(text, datatype=XSD.dayTimeDuration).toPython()
    if not isinstance(parsed, timedelta) or parsed <= timedelta(0):
        raise SyntaxProblem(source, f"wf:{name} {text!r} is not a positive day-time duration such as P1D or PT12H")
    return parsed


def _optional_duration(text: str | None, source: str, name: str) -> timedelta | None:
    return duration(text, source, name) if text is not None else None


def _positive_int(text: str | None, source: str, name: str) -> int:
    try:
        number = int(text or "")
    except ValueError:
        number = 0
    if number < 1:
        raise SyntaxProblem(source, f"wf:{name} {text!r} is not a positive integer")
    return number


def _time(text: str | None, source: str, name: str) -> time:
    try:
        parsed = time.fromisoformat(text or "")
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is not None or parsed.second or parsed.microsecond:
        raise SyntaxProblem(source, f"wf:{name} {text!r} is not a local time on the minute such as 21:00:00")
    return parsed


def _with_channel(cap: FrequencyCap, channel: str | None) -> FrequencyCap:
    if channel is None:
        return cap
    return FrequencyCap(cap.iri, cap.max_shown, cap.window, cap.per_step, cap.channels | {channel})
