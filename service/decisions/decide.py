"""Next-steps decisions: consent, assignment, candidates, ranking, explanation, record.

This module knows nothing of GraphQL; the API calls :func:`next_steps`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import pyoxigraph as ox

from service.audit import sealed
from service.audit.records import decision_record, read_candidates, read_held_back
from service.clock import now, parse_datetime
from service.decisions import showings
from service.decisions.candidates import candidate_steps, draft_candidates, graph_of
from service.decisions.consent import ConsentState, current_among, current_consents
from service.decisions.holdback import Hold, Showing, history_of, hold_back
from service.decisions.idempotency import IdempotencyKey, check_replay, receipt_changes, request_hash, stored_receipt
from service.decisions.ranking import Context, Scored, Scorer, rank, serving_model, slate
from service.decisions.subjects import UUID_PATTERN, require_user
from service.decisions.users import Prepared, Profile, events, profile
from service.delivery.outbox import message_quads, new_delivery_id, payload_of
from service.errors import ConsentRequired, InvalidInput
from service.experiments import flags
from service.experiments.assignment import assign, current, flag_choice
from service.experiments.exposure import exposed
from service.experiments.flags import segment_of
from service.knowledge import vocab
from service.knowledge.catalog import Catalog
from service.knowledge.content import ServedContent, parse_locale
from service.knowledge.leases import lease
from service.knowledge.policies import PolicyVersion, active_version
from service.knowledge.store import bound
from service.metrics import CANDIDATES, DECISIONS
from service.runtime import Runtime
from service.telemetry import tracer

MAX_LIMIT = 50
log = logging.getLogger("wayfinder.decide")


@dataclass
class Recommendation:
    decision_id: str
    steps: list[Scored]
    personalized: bool
    policy_version: str
    model_version: str | None = None
    variant: str | None = None
    candidates: list[Scored] = field(default_factory=list)
    at: datetime | None = None
    channel: str = "WEB"
    limit: int = 5
    # Set when the policy version explores: each shown step's position-wise propensity, and whether it explored.
    propensities: list[float] | None = None
    explored: bool = False
    locale: str | None = None  # the locale the client asked for
    contents: dict[str, ServedContent] = field(default_factory=dict)  # what each shown step was shown with
    held_back: list[Hold] = field(default_factory=list)  # what pacing held back, and why
    paced_limit: int | None = None  # how many steps pacing let the decision show, where fewer than ``limit``
    delivery_id: str | None = None  # the outbox message that hands the decision to its channel's sender


def next_steps(
    runtime: Runtime,
    user_id: str,
    *,
    channel: str = "WEB",
    limit: int = 5,
    policy_id: str = "default",
    model: Scorer | None = None,
    locale: str | None = None,
    deliver: bool = False,
    idempotency: IdempotencyKey | None = None,
) -> Recommendation:
    """Decide, explain and record the user's next steps on a channel, with their content for a locale.

    With ``deliver``, the decision is also handed to the channel's sender: it writes an outbox message in
    the same transaction as its record (none when it shows nothing), and is refused unless the catalog
    names a sender for the channel, the deployment configures its webhook and the user consents to its
    purpose. With an ``idempotency`` key too, a retry of a delivery that was recorded returns that
    decision again (as recorded) and decides and sends nothing.
    """
    if channel not in runtime.knowledge.codes.channels:
        raise InvalidInput("channel", f"unknown channel {channel!r}")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput("limit", f"must be between 1 and {MAX_LIMIT}, got {limit}")
    locale = parse_locale(locale)
    receipt = None
    if idempotency is not None:
        if not deliver:
            raise InvalidInput(idempotency.field, "only a delivery takes an idempotency key")
        asked = {"user": user_id, "channel": channel, "limit": limit, "locale": locale, "policy": policy_id}
        receipt = (idempotency, request_hash([asked]))
    with contextlib.ExitStack() as keyed:
        if receipt is not None:
            keyed.enter_context(_KEY_LOCKS[zlib.crc32(receipt[0].node.value.encode()) % len(_KEY_LOCKS)])
            replayed = _replayed(runtime, *receipt)
            if replayed is not None:
                return replayed
        with tracer.start_as_current_span("decide", attributes={"channel": channel, "limit": limit}) as span:
            rec = _decide(
                runtime,
                user_id,
                channel=channel,
                limit=limit,
                policy_id=policy_id,
                model=model,
                locale=locale,
                deliver=deliver,
                receipt=receipt,
            )
            span.set_attribute("decision_id", rec.decision_id)
    DECISIONS.labels(rec.policy_version, rec.variant or "", str(rec.personalized).lower()).inc()
    CANDIDATES.observe(len(rec.candidates))
    log.info(
        "decision",
        extra={
            "decision_id": rec.decision_id,
            "policy_version": rec.policy_version,
            "model_version": rec.model_version,
            "personalized": rec.personalized,
            "candidates": len(rec.candidates),
            "returned": len(rec.steps),
        },
    )
    return rec


def preview(
    runtime: Runtime,
    user_id: str,
    *,
    channel: str = "WEB",
    limit: int = 5,
    locale: str | None = None,
    draft: Prepared | None = None,
) -> Recommendation:
    """What ``next_steps`` would return now, recorded nowhere: no decision record, no exposure to an experiment,
    no showing that pacing would count later. Its ``decision_id`` names no record. Where the serving version
    explores, the slate is drawn with another seed than a real decision's.

    With a ``draft`` (:func:`users.prepare`), for a user registered so, who is not in the store and has no
    history (the console's preview of a made-up profile); its pseudonym, drawn at random, places it in any
    running experiment."""
    if channel not in runtime.knowledge.codes.channels:
        raise InvalidInput("channel", f"unknown channel {channel!r}")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput("limit", f"must be between 1 and {MAX_LIMIT}, got {limit}")
    return _decide(
        runtime,
        user_id,
        channel=channel,
        limit=limit,
        policy_id="default",
        model=None,
        locale=parse_locale(locale),
        record=False,
        draft=draft,
    )


def _decide(
    runtime: Runtime,
    user_id: str,
    *,
    channel: str,
    limit: int,
    policy_id: str,
    model: Scorer | None,
    locale: str | None,
    deliver: bool = False,
    receipt: tuple[IdempotencyKey, str] | None = None,
    record: bool = True,
    draft: Prepared | None = None,
) -> Recommendation:
    started = now()
    knowledge = runtime.knowledge
    catalog = knowledge.catalog
    channel_iri = knowledge.codes.channels[channel]
    if draft is None:
        user = require_user(runtime, user_id)
        consent_now = current_consents(runtime, user_id)
        stored = profile(runtime, user_id)
        assert stored is not None
        history = events(runtime, user_id)
    else:  # a made-up user, never stored: read from the draft's own quads, with no history (record is False)
        user, stored, history = ox.NamedNode(draft.profile.iri), draft.profile, []
        consent_now = current_among(draft.quads, runtime.queries["consent-current"], knowledge.codes.purposes).get(
            user, {}
        )
    personalized = bool(consent_now.get("PERSONALIZATION") and consent_now["PERSONALIZATION"].granted)
    if deliver:
        may_deliver(runtime, user_id, channel, consent_now)

    serving = current(runtime)  # the running experiments and flags, read once per decision
    assignment = assign(runtime, policy_id, stored.pseudonym, state=serving)
    pinned = None
    if assignment is None:
        segment = _segment(stored, personalized=personalized, channel=channel)
        pinned = flag_choice(runtime, policy_id, segment, state=serving)
    if assignment is not None:
        policy = assignment.serving
    elif pinned is not None:
        policy = next(v for v in knowledge.policies.values() if v.label == pinned[1].value)
    else:
        policy = active_version(knowledge.policies, policy_id)
    with tracer.start_as_current_span("sparql.candidates"):
        if draft is None:
            candidates = candidate_steps(runtime, user, channel_iri)
        else:
            candidates = draft_candidates(runtime, user, draft.quads, channel_iri)
    context = context_of(stored, history, channel_iri=channel_iri, personalized=personalized, catalog=catalog)
    context.locale = locale
    used_model = None
    if policy.model_weight and personalized:
        with tracer.start_as_current_span("model.active"):
            if model is None:
                from service.models.serving import active_scorer  # torch, imported when a model may serve

                model = active_scorer(runtime)
            used_model = serving_model(policy, model, personalized=personalized)
    decision_id = str(uuid.uuid4())
    with tracer.start_as_current_span("rank", attributes={"candidates": len(candidates)}):
        ranked = rank(candidates, policy=policy, context=context, catalog=catalog, model=used_model)
    # A decision that pacing counts in reads what was shown before and adds to it: one user's such decisions
    # run one at a time (in this process, and on a shared store across processes), so that two at once
    # cannot both take the last place of a cap.
    with _one_at_a_time(runtime, policy, stored.pseudonym) if record else contextlib.nullcontext():
        eligible, paced_limit, held = ranked, limit, []
        if policy.pacing is not None:
            # Feedback eases the pressure only under the user's FEEDBACK consent, the purpose it was given for.
            feedback_consent = consent_now.get("FEEDBACK")
            pressure = policy.feedback_pressure if feedback_consent and feedback_consent.granted else None
            paced_at = now()  # under the lock: every decision of this user that pacing counts is in the store
            with tracer.start_as_current_span("pacing"):
                history_read = history_of(
                    runtime,
                    user,
                    graph_of(user),
                    pseudonym=stored.pseudonym,
                    pacing=policy.pacing,
                    channel=channel_iri,
                    at=paced_at,
                    time_zone_name=stored.time_zone,
                    registered_at=stored.recorded_at,
                    pressure=pressure,
                    shown_log=showings.log_of(runtime),
                )
                paced = hold_back(
                    policy.pacing,
                    ranked,
                    limit=limit,
                    channel=channel_iri,
                    at=paced_at,
                    history=history_read,
                    channel_codes={iri: code for code, iri in knowledge.codes.channels.items()},
                    title=catalog.title_in,
                    pressure=pressure,
                    locale=locale,
                )
            eligible, paced_limit, held = paced.eligible, paced.limit, paced.holds
        shown = slate(
            eligible, limit=paced_limit, exploration_rate=policy.exploration_rate, seed=exploration_seed(decision_id)
        )

        # What the decision read: the consent state, the eligibility facts (role, plan,
        # step events) and, when personalised, the rest of the profile and behaviour.
        used: list[str] = [state.record for state in consent_now.values()]
        used += [iri for iri in (stored.role, stored.plan) if iri]
        if personalized and stored.industry:
            used.append(stored.industry)
        used += [
            e.iri
            for e in history
            if e.type in ("STEP_COMPLETED", "STEP_DISMISSED") or personalized and e.type == "FEATURE_USED"
        ]
        used += [iri for hold in held for iri in hold.evidence]  # the past decisions and events pacing held back by
        used += knowledge.versions.values()  # the catalog and policy versions: the decision can be re-derived later

        recommendation = Recommendation(
            decision_id=decision_id,
            steps=shown.steps,
            personalized=personalized,
            policy_version=policy.label,
            model_version=getattr(used_model, "version", None),
            variant=assignment.arm.name if assignment else None,
            candidates=ranked,
            at=started,
            channel=channel,
            limit=limit,
            propensities=shown.propensities if policy.exploration_rate else None,
            explored=shown.explored,
            locale=locale,
            contents=_contents(catalog, shown.steps, channel_iri, locale),
            held_back=held,
            paced_limit=paced_limit if paced_limit < limit else None,
            delivery_id=new_delivery_id() if deliver and shown.steps else None,
        )
        if not record:  # a preview: nothing is written
            return recommendation
        node = ox.NamedNode(vocab.DECISION_BASE + decision_id)
        triples = decision_triples(
            node,
            recommendation,
            policy=policy,
            channel_iri=channel_iri,
            pseudonym=stored.pseudonym,
            used=used,
            started=started,
            model_iri=getattr(used_model, "iri", None),
        )
        extra: list[ox.Quad] = []
        if recommendation.delivery_id is not None:  # the outbox message, committed with the node
            extra += message_quads(
                recommendation.delivery_id,
                decision=node,
                channel=channel_iri,
                pseudonym=stored.pseudonym,
                payload=payload_of(
                    decision_id,
                    channel=channel,
                    locale=locale,
                    steps=[s.step for s in shown.steps],
                    contents=recommendation.contents,
                    titles={s.step: catalog.title(s.step) for s in shown.steps},
                ),
                at=started,
            )
        if pinned is not None:
            triples += flags.record_triples(node, *pinned)
        if assignment is not None:
            triples += assignment.record_triples(node)
            if assignment.new:
                extra = assignment.assignment_quads(stored.pseudonym)
        stale: list[ox.Quad] = []
        if receipt is not None:  # the key's receipt, committed with the decision it names
            receipt_quads, stale = receipt_changes(runtime.store, receipt[0], receipt[1], [], decision=node.value)
            extra += receipt_quads
        with tracer.start_as_current_span("audit.append"):
            runtime.trail.append(node, triples, extra=extra, remove=stale)
        showings.recorded(
            runtime, stored.pseudonym, [Showing(node.value, started, channel_iri, s.step) for s in shown.steps]
        )
    if assignment is not None and assignment.new:
        exposed(runtime, assignment, stored.pseudonym, started)
    return recommendation


def may_deliver(runtime: Runtime, user_id: str, channel: str, consents: dict[str, ConsentState]) -> None:
    """Refuse a delivery the catalog, the deployment or the user's consent does not allow, before anything is decided."""
    knowledge = runtime.knowledge
    purpose = knowledge.catalog.senders.get(knowledge.codes.channels[channel])
    if purpose is None:
        senders = sorted(code for code, iri in knowledge.codes.channels.items() if iri in knowledge.catalog.senders)
        raise InvalidInput(
            "channel",
            f"the catalog names no sender for {channel}, so its decisions are shown in the product only "
            f"(channels with a sender: {', '.join(senders) or 'none'})",
        )
    if channel not in runtime.settings.senders:
        raise InvalidInput("channel", f"no sender webhook is configured for {channel} (WAYFINDER_SENDERS)")
    code = knowledge.codes.purpose_code(purpose)
    state = consents.get(code)
    if state is None or not state.granted:
        raise ConsentRequired(
            f"channel: {channel} messages are sent only with consent for {code}, which user {user_id!r} has not given",
            details=[{"field": "channel", "reason": "consent required", "purposes": [code]}],
        )


_PACING_LOCKS = tuple(threading.Lock() for _ in range(64))
_KEY_LOCKS = tuple(threading.Lock() for _ in range(16))  # a retry racing its first try waits for it, in a process


def _replayed(runtime: Runtime, key: IdempotencyKey, digest: str) -> Recommendation | None:
    """The decision a keyed delivery recorded, where this is its retry; None where the key is unused."""
    found = stored_receipt(runtime.store, key, ttl_s=runtime.settings.idempotency_ttl_s)
    if found is None or found.decision is None:
        return None
    check_replay(found, key, digest)
    return read_decision(runtime, vocab.local_id(found.decision))


@contextlib.contextmanager
def _one_at_a_time(runtime: Runtime, policy: PolicyVersion, pseudonym: str) -> Iterator[None]:
    """Where the version's pacing counts past showings: a lock per user (striped) in this process and, on a
    shared store, the user's lease across processes (:mod:`service.knowledge.leases`); nothing otherwise."""
    if policy.pacing is None or not policy.pacing.counts_showings:
        yield
        return
    with contextlib.ExitStack() as held:
        held.enter_context(_PACING_LOCKS[zlib.crc32(pseudonym.encode()) % len(_PACING_LOCKS)])
        if runtime.store.url is not None:
            held.enter_context(lease(runtime.store, "paced:" + pseudonym))
        yield


def _contents(catalog: Catalog, steps: list[Scored], channel_iri: str, locale: str | None) -> dict[str, ServedContent]:
    """Return what each shown step is shown with on the channel (every candidate is on it)."""
    served = {s.step: catalog.content(s.step, channel_iri, locale) for s in steps if s.step in catalog.entities}
    return {step: content for step, content in served.items() if content is not None}


def context_of(stored: Profile, history: list, *, channel_iri: str, personalized: bool, catalog: Catalog) -> Context:
    """What a decision may read of the user: the profile and behaviour only when personalised, the eligibility facts
    (role, plan, completed steps) always; never a protected group."""
    return Context(
        channel=channel_iri,
        personalized=personalized,
        role=stored.role if personalized else None,
        industry=stored.industry if personalized else None,
        plan=stored.plan if personalized else None,
        used_features=[e.feature for e in history if personalized and e.type == "FEATURE_USED" and e.feature],
        completed=[e.step for e in history if e.type == "STEP_COMPLETED" and e.step],
        eligible_roles=[stored.role] if stored.role else [],
        eligible_plans=catalog.plans_included(stored.plan) if stored.plan else [],
    )


def exploration_seed(decision_id: str) -> int:
    """The seed a decision's exploration draws from: its own (random) ID, so its record reproduces the slate."""
    return uuid.UUID(decision_id).int


def _segment(stored: Profile, *, personalized: bool, channel: str) -> flags.Segment:
    """What flag targeting reads of the user; the industry only under a personalisation consent, as ranking."""
    return segment_of(
        stored.pseudonym,
        role=stored.role,
        industry=stored.industry if personalized else None,
        plan=stored.plan,
        channel=channel,
        registered_at=stored.registered_at,
    )


def flag_details(runtime: Runtime, flag_id: str, user_id: str, *, channel: str = "WEB") -> flags.Evaluation:
    """Evaluate a flag for a user as a decision would now (OpenFeature-style details); records nothing."""
    if channel not in runtime.knowledge.codes.channels:
        raise InvalidInput("channel", f"unknown channel {channel!r}")
    require_user(runtime, user_id)
    stored = profile(runtime, user_id)
    assert stored is not None
    consent = current_consents(runtime, user_id).get("PERSONALIZATION")
    segment = _segment(stored, personalized=bool(consent and consent.granted), channel=channel)
    every = {f.id: f for f in flags.flags(runtime)}
    return flags.evaluate(every.get(flag_id), segment, every.get, flag_id=flag_id)


def decision_triples(
    record: ox.NamedNode,
    rec: Recommendation,
    *,
    policy: PolicyVersion,
    channel_iri: str,
    pseudonym: str,
    used: list[str],
    started: datetime,
    model_iri: str | None,
) -> list[ox.Triple]:
    """Return the audit record of a decision (built by ``service.audit.records``); it names the user by pseudonym."""
    return decision_record(
        record,
        started=started,
        ended=now(),
        pseudonym=pseudonym,
        channel=channel_iri,
        personalized=rec.personalized,
        limit=rec.limit,
        policy=policy.iri,
        model=model_iri,
        variant=rec.variant,
        used=used,
        candidates=rec.candidates,
        shown={s.step: i for i, s in enumerate(rec.steps, start=1)},
        propensities={s.step: p for s, p in zip(rec.steps, rec.propensities, strict=True)}
        if rec.propensities
        else None,
        explored=rec.explored if rec.propensities else None,
        locale=rec.locale,
        contents=rec.contents,
        held_back=rec.held_back,
        paced_limit=rec.paced_limit,
        delivery=vocab.DELIVERY_BASE + rec.delivery_id if rec.delivery_id else None,
    )


def read_decision(runtime: Runtime, decision_id: str) -> Recommendation | None:
    """Return a recorded decision as it was returned, or None when there is none."""
    if not UUID_PATTERN.fullmatch(decision_id):
        raise InvalidInput("id", "a decision ID is a UUID, as 8-4-4-4-12 hexadecimal digits")
    decision_id = decision_id.lower()
    record = ox.NamedNode(vocab.DECISION_BASE + decision_id)
    query = runtime.queries["decision"].bind(decision=record)
    rows = runtime.store.select(query)
    if not rows:  # sealed out of the store, perhaps: the record alone answers the same query
        quads = sealed.sealed_quads(runtime.sealed, record)
        if not quads:
            return None
        rows = sealed.scratch(quads).select(query)
    head = rows[0]
    candidates: dict[str, Scored] = {}
    ranks: dict[str, int] = {}
    shown_with: dict[str, tuple[str | None, str]] = {}  # step -> (locale served, content version)
    if head["candidates"] is not None:
        for recorded in read_candidates(head["candidates"].value):
            candidates[recorded.step] = Scored(
                recorded.step, recorded.score, recorded.rule_score, recorded.model_score, list(recorded.reasons)
            )
            if recorded.rank is not None:
                ranks[recorded.step] = recorded.rank
            if recorded.content_version is not None:
                shown_with[recorded.step] = (recorded.locale, recorded.content_version)
    for row in rows:  # a record written before candidate sets: one row per candidate node and reason
        if row["candidate"] is None:
            continue
        step = bound(row, "step").value
        scored = candidates.setdefault(
            step,
            Scored(
                step,
                float(bound(row, "score").value),
                float(bound(row, "ruleScore").value),
                float(row["modelScore"].value) if row["modelScore"] else None,
            ),
        )
        if row["rank"] is not None:
            ranks[step] = int(row["rank"].value)
        if row["reason"] is not None and row["reason"].value not in scored.reasons:
            scored.reasons.append(row["reason"].value)
    ordered = sorted(candidates.values(), key=lambda s: (ranks.get(s.step, 10**9), -s.score, s.step))
    channel = next(
        code for code, iri in runtime.knowledge.codes.channels.items() if iri == bound(head, "channel").value
    )
    policy = runtime.knowledge.policies.get(bound(head, "policy").value)
    catalog = runtime.knowledge.catalog
    contents = {}
    for step, (tag, version) in shown_with.items():  # what the catalog shows now, where it is what was shown
        served = (
            catalog.content(step, runtime.knowledge.codes.channels[channel], tag) if step in catalog.entities else None
        )
        if served is not None and served.version == version:
            contents[step] = served
    return Recommendation(
        decision_id=decision_id,
        steps=[s for s in ordered if s.step in ranks],
        personalized=bound(head, "personalized").value == "true",
        policy_version=policy.label if policy else vocab.local_id(bound(head, "policy").value),
        model_version=vocab.local_id(head["model"].value) if head["model"] is not None else None,
        variant=head["variant"].value if head["variant"] is not None else None,
        candidates=ordered,
        at=parse_datetime(bound(head, "at").value),
        channel=channel,
        contents=contents,
        held_back=[Hold(h.reason, h.until, h.step) for h in read_held_back(head["heldBack"].value)]
        if head["heldBack"] is not None
        else [],
        delivery_id=vocab.local_id(head["delivery"].value) if head["delivery"] is not None else None,
    )
