"""Every audit record the service writes, built here: decisions, erasures and changes, as PROV-O activities.

The flows gather what a record says (``service.decisions.decide``, ``service.audit.erasure``);
this module turns it into triples; ``service.audit.chain`` chains and stores them. A record
names a user only by pseudonym.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import pyoxigraph as ox

from service.clock import datetime_literal, parse_datetime
from service.knowledge import vocab


class Candidate(Protocol):
    """A scored candidate step, as ranking returns it."""

    step: str
    score: float
    rule_score: float
    model_score: float | None
    reasons: list[str]


class Shown(Protocol):
    """What a shown step was shown with (``service.knowledge.content.ServedContent``)."""

    @property
    def source(self) -> str | None: ...  # the content's IRI; None where the step's label was shown

    @property
    def locale(self) -> str: ...

    @property
    def version(self) -> str: ...


class Held(Protocol):
    """What pacing held back (``service.decisions.holdback.Hold``): a step, or the whole decision (step None)."""

    @property
    def reason(self) -> str: ...

    @property
    def until(self) -> datetime | None: ...

    @property
    def step(self) -> str | None: ...


def decision_record(
    record: ox.NamedNode,
    *,
    started: datetime,
    ended: datetime,
    pseudonym: str,
    channel: str,
    personalized: bool,
    limit: int,
    policy: str,
    model: str | None,
    variant: str | None,
    used: Iterable[str],
    candidates: Sequence[Candidate],
    shown: Mapping[str, int],
    propensities: Mapping[str, float] | None = None,
    explored: bool | None = None,
    locale: str | None = None,
    contents: Mapping[str, Shown] | None = None,
    held_back: Sequence[Held] = (),
    paced_limit: int | None = None,
    delivery: str | None = None,
) -> list[ox.Triple]:
    """Return the record of a decision: context, what it used, every candidate, and the ``shown`` steps' ranks
    (and, when its policy version explores, their propensities and whether the slate was the random one).

    ``locale`` is the locale the client asked for; ``contents`` maps a shown step to what it was shown with:
    the content's IRI (None for the step's label), the locale served and the content version. ``held_back`` is
    what pacing held back (one ``wf:heldBack`` literal, :func:`held_back_literal`) and ``paced_limit`` how many
    steps it let the decision show, where that is fewer than ``limit``. ``delivery`` is the IRI of the outbox
    message that hands the decision to its channel's sender, where there is one.

    ``channel``, ``policy``, ``model`` and ``used`` are IRIs. Every candidate is in one ``wf:candidates`` literal
    (:func:`candidates_literal`); each shown one is also a node with its step, score and rank (a ``wf:RankedCandidate`` by the range of
    ``wf:hasCandidate``; the type is left out, as each triple costs about 200 bytes on disk).
    """
    T, L = ox.Triple, ox.Literal
    triples = [
        T(record, vocab.RDF_TYPE, vocab.DECISION),
        T(record, vocab.RDF_TYPE, vocab.PROV_ACTIVITY),
        T(record, vocab.PROV_STARTED_AT, datetime_literal(started)),
        T(record, vocab.PROV_ENDED_AT, datetime_literal(ended)),
        T(record, vocab.SUBJECT_PSEUDONYM, L(pseudonym)),
        T(record, vocab.DECISION_CHANNEL, ox.NamedNode(channel)),
        T(record, vocab.PERSONALIZED, L("true" if personalized else "false", datatype=vocab.XSD_BOOLEAN)),
        T(record, vocab.REQUESTED_LIMIT, L(str(limit), datatype=vocab.XSD_INTEGER)),
        T(record, vocab.POLICY_VERSION_OF_DECISION, ox.NamedNode(policy)),
        T(record, vocab.PROV_WAS_ASSOCIATED_WITH, ox.NamedNode(policy)),
    ]
    if model:
        triples += [
            T(record, vocab.MODEL_VERSION_OF_DECISION, ox.NamedNode(model)),
            T(record, vocab.PROV_WAS_ASSOCIATED_WITH, ox.NamedNode(model)),
        ]
    if variant:
        triples.append(T(record, vocab.VARIANT, L(variant)))
    if locale is not None:
        triples.append(T(record, vocab.REQUESTED_LOCALE, L(locale)))
    if explored is not None:
        triples.append(T(record, vocab.EXPLORED, L("true" if explored else "false", datatype=vocab.XSD_BOOLEAN)))
    for iri in dict.fromkeys(used):
        triples.append(T(record, vocab.PROV_USED, ox.NamedNode(iri)))
    contents = contents or {}
    triples.append(T(record, vocab.CANDIDATES, candidates_literal(candidates, shown, propensities, contents)))
    if held_back:
        triples.append(T(record, vocab.HELD_BACK, held_back_literal(held_back)))
    if paced_limit is not None and paced_limit < limit:
        triples.append(T(record, vocab.PACED_LIMIT, L(str(paced_limit), datatype=vocab.XSD_INTEGER)))
    if delivery is not None:
        triples.append(T(record, vocab.HAS_DELIVERY, ox.NamedNode(delivery)))
    # The shown steps as nodes too, so that lineage queries join them (step, score, rank); the rest of what a
    # candidate says (rule and model score, propensity, reasons) is in the candidate set above.
    for i, scored in enumerate(candidates, start=1):
        if scored.step not in shown:
            continue
        node = ox.NamedNode(f"{record.value}/candidate/{i}")
        triples += [
            T(record, vocab.HAS_CANDIDATE, node),
            T(node, vocab.CANDIDATE_STEP, ox.NamedNode(scored.step)),
            T(node, vocab.SCORE, _double(scored.score)),
            T(node, vocab.RANK, L(str(shown[scored.step]), datatype=vocab.XSD_INTEGER)),
        ]
        if scored.step in contents:
            shown_with = contents[scored.step]
            if shown_with.source is not None:
                triples.append(T(node, vocab.SHOWN_CONTENT, ox.NamedNode(shown_with.source)))
            triples.append(T(node, vocab.CONTENT_VERSION, L(shown_with.version)))
    return triples


@dataclass
class RecordedCandidate:
    """A candidate as a decision record holds it; ``rank``, ``propensity`` and ``reasons`` only when shown."""

    step: str
    score: float
    rule_score: float
    model_score: float | None
    rank: int | None = None
    propensity: float | None = None
    reasons: list[str] = field(default_factory=list)
    locale: str | None = None  # the locale its content was served in, when shown
    content_version: str | None = None


def candidates_literal(
    candidates: Sequence[Candidate],
    shown: Mapping[str, int],
    propensities: Mapping[str, float] | None,
    contents: Mapping[str, Shown] | None = None,
) -> ox.Literal:
    """Return a decision's candidate set as one ``rdf:JSON`` literal: an array in ranking order of objects with
    ``step`` (IRI), ``score``, ``ruleScore``, ``modelScore`` (when the model scored it) and, for a shown step,
    ``rank``, ``reasons``, ``propensity`` (when its policy version explores), and ``locale`` and ``content``
    (the content version) of what it was shown with. Keys are sorted, so that the same candidates give the
    same literal."""
    entries = []
    for scored in candidates:
        entry: dict = {"step": scored.step, "score": float(scored.score), "ruleScore": float(scored.rule_score)}
        if scored.model_score is not None:
            entry["modelScore"] = float(scored.model_score)
        if scored.step in shown:
            entry["rank"] = shown[scored.step]
            entry["reasons"] = list(scored.reasons)
            if propensities is not None:
                entry["propensity"] = float(propensities[scored.step])
            if contents and scored.step in contents:
                entry["locale"], entry["content"] = contents[scored.step].locale, contents[scored.step].version
        entries.append(entry)
    return ox.Literal(json.dumps(entries, sort_keys=True, separators=(",", ":")), datatype=vocab.RDF_JSON)


def read_candidates(text: str) -> list[RecordedCandidate]:
    """Return the candidates of a ``wf:candidates`` literal's text, in ranking order."""
    return [
        RecordedCandidate(
            entry["step"],
            entry["score"],
            entry["ruleScore"],
            entry.get("modelScore"),
            entry.get("rank"),
            entry.get("propensity"),
            list(entry.get("reasons", [])),
            entry.get("locale"),
            entry.get("content"),
        )
        for entry in json.loads(text)
    ]


@dataclass(frozen=True)
class RecordedHold:
    """A hold as a decision record keeps it."""

    reason: str
    until: datetime | None
    step: str | None


def held_back_literal(held: Sequence[Held]) -> ox.Literal:
    """Return what pacing held back as one ``rdf:JSON`` literal: an array, in the order pacing found them, of
    objects with ``reason``, ``until`` (a UTC time, absent for a session budget) and ``step`` (IRI, absent for a
    hold on the whole decision)."""
    entries = []
    for hold in held:
        entry: dict = {"reason": hold.reason}
        if hold.until is not None:
            entry["until"] = datetime_literal(hold.until).value
        if hold.step is not None:
            entry["step"] = hold.step
        entries.append(entry)
    return ox.Literal(json.dumps(entries, sort_keys=True, separators=(",", ":")), datatype=vocab.RDF_JSON)


def read_held_back(text: str) -> list[RecordedHold]:
    """Return the holds of a ``wf:heldBack`` literal's text."""
    return [
        RecordedHold(
            entry["reason"],
            parse_datetime(entry["until"]) if "until" in entry else None,
            entry.get("step"),
        )
        for entry in json.loads(text)
    ]


def erasure_record(record: ox.NamedNode, *, at: datetime, requested_by: str, removed: int) -> list[ox.Triple]:
    """Return the record of an erasure: when, at whose request and how much went; never whom."""
    T = ox.Triple
    return [
        T(record, vocab.RDF_TYPE, vocab.ERASURE),
        T(record, vocab.RDF_TYPE, vocab.PROV_ACTIVITY),
        T(record, vocab.PROV_STARTED_AT, datetime_literal(at)),
        T(record, vocab.REQUESTED_BY, ox.Literal(requested_by)),
        T(record, vocab.TRIPLES_REMOVED, ox.Literal(str(removed), datatype=vocab.XSD_INTEGER)),
    ]


def change_record(
    record: ox.NamedNode,
    *,
    kind: str,
    by: str,
    at: datetime,
    entity: str,
    state: dict,
    classes: Sequence[ox.NamedNode],
) -> list[ox.Triple]:
    """Return the record of a change to a versioned entity (an experiment, a flag): who, when, what kind, and the
    entity's whole state after it, as canonical JSON; ``classes`` are the record's own (besides prov:Activity)."""
    T, L = ox.Triple, ox.Literal
    return [
        *(T(record, vocab.RDF_TYPE, c) for c in classes),
        T(record, vocab.RDF_TYPE, vocab.PROV_ACTIVITY),
        T(record, vocab.PROV_STARTED_AT, datetime_literal(at)),
        T(record, vocab.REQUESTED_BY, L(by)),
        T(record, vocab.CHANGE_KIND, L(kind)),
        T(record, vocab.PROV_USED, ox.NamedNode(entity)),
        T(record, vocab.STATE_AFTER, L(json.dumps(state, sort_keys=True, separators=(",", ":")))),
    ]


def approval_record(
    record: ox.NamedNode, *, by: str, role: str, at: datetime, entity: str, content: str, verdict: str
) -> list[ox.Triple]:
    """Return the record of an approval (or rejection) by ``by``, acting in ``role``, of the ``entity`` whose content
    hash is ``content``."""
    T, L = ox.Triple, ox.Literal
    return [
        T(record, vocab.APPROVER_ROLE, L(role)),
        T(record, vocab.RDF_TYPE, vocab.APPROVAL),
        T(record, vocab.RDF_TYPE, vocab.PROV_ACTIVITY),
        T(record, vocab.PROV_STARTED_AT, datetime_literal(at)),
        T(record, vocab.APPROVED_BY, L(by)),
        T(record, vocab.PROV_USED, ox.NamedNode(entity)),
        T(record, vocab.APPROVED_CONTENT, L(content)),
        T(record, vocab.VERDICT, L(verdict)),
    ]


def fairness_report_record(
    record: ox.NamedNode,
    *,
    at: datetime,
    version: str,
    governance: str | None,
    users: int,
    groups: int,
    figures: Mapping,
    breaches: Sequence[str],
) -> list[ox.Triple]:
    """Return the record of a fairness report on a model or policy ``version`` (an IRI), under the ``governance``
    policy whose limits it applied: counts, figures (canonical JSON) and breaches in words; it names no user."""
    T, L = ox.Triple, ox.Literal
    triples = [
        T(record, vocab.RDF_TYPE, vocab.FAIRNESS_REPORT),
        T(record, vocab.RDF_TYPE, vocab.PROV_ENTITY),
        T(record, vocab.PROV_GENERATED_AT, datetime_literal(at)),
        T(record, vocab.PROV_WAS_DERIVED_FROM, ox.NamedNode(version)),
        T(record, vocab.REPORTED_USERS, L(str(users), datatype=vocab.XSD_INTEGER)),
        T(record, vocab.REPORTED_GROUPS, L(str(groups), datatype=vocab.XSD_INTEGER)),
        T(record, vocab.PASSED_GATE, L("false" if breaches else "true", datatype=vocab.XSD_BOOLEAN)),
        T(record, vocab.FAIRNESS_FIGURES, L(json.dumps(figures, sort_keys=True, separators=(",", ":")))),
        *(T(record, vocab.BREACH, L(text)) for text in breaches),
    ]
    if governance is not None:
        triples.append(T(record, vocab.PROV_USED, ox.NamedNode(governance)))
    return triples


def impact_record(
    record: ox.NamedNode,
    *,
    at: datetime,
    entity: str,
    content: str,
    baseline: str,
    high_impact: bool,
    role: str,
    ranked: int,
    changed: int,
    figures: Mapping,
    governance: str | None,
) -> list[ox.Triple]:
    """Return the record of an impact assessment of one ``content`` of a policy or model version (``entity``)
    against the ``baseline`` serving then: counts per high-impact step, never users."""
    T, L = ox.Triple, ox.Literal
    triples = [
        T(record, vocab.RDF_TYPE, vocab.IMPACT_ASSESSMENT),
        T(record, vocab.RDF_TYPE, vocab.PROV_ENTITY),
        T(record, vocab.PROV_GENERATED_AT, datetime_literal(at)),
        T(record, vocab.PROV_WAS_DERIVED_FROM, ox.NamedNode(entity)),
        T(record, vocab.ASSESSED_CONTENT, L(content)),
        T(record, vocab.BASELINE, L(baseline)),
        T(record, vocab.HIGH_IMPACT, L("true" if high_impact else "false", datatype=vocab.XSD_BOOLEAN)),
        T(record, vocab.REQUIRES_ROLE, L(role)),
        T(record, vocab.RANKED_SUBJECTS, L(str(ranked), datatype=vocab.XSD_INTEGER)),
        T(record, vocab.CHANGED_SUBJECTS, L(str(changed), datatype=vocab.XSD_INTEGER)),
        T(record, vocab.IMPACT_FIGURES, L(json.dumps(figures, sort_keys=True, separators=(",", ":")))),
    ]
    if governance is not None:
        triples.append(T(record, vocab.PROV_USED, ox.NamedNode(governance)))
    return triples


def offline_record(record: ox.NamedNode, *, experiment: str, figures: Sequence[Mapping]) -> list[ox.Triple]:
    """Return the record of the offline evidence an experiment started on: each arm's estimate against control's."""
    T, L = ox.Triple, ox.Literal
    return [
        T(record, vocab.RDF_TYPE, vocab.OFFLINE_EVALUATION),
        T(record, vocab.RDF_TYPE, vocab.PROV_ENTITY),
        T(record, vocab.PROV_WAS_DERIVED_FROM, ox.NamedNode(experiment)),
        T(record, vocab.ESTIMATES, L(json.dumps(list(figures), sort_keys=True))),
    ]


def _double(value: float) -> ox.Literal:
    return ox.Literal(repr(float(value)), datatype=vocab.XSD_DOUBLE)
