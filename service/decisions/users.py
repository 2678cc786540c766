"""Users: registration, profile reads, and the events client apps report about them."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime

import pyoxigraph as ox

from service.analytics import feed
from service.clock import checked_utc, datetime_literal, now, parse_datetime, time_zone
from service.decisions.consent import consent_record, current_among
from service.decisions.idempotency import IdempotencyKey, check_replay, receipt_changes, request_hash, stored_receipt
from service.decisions.subjects import UUID_PATTERN, check_id, exists, require_user, user_node
from service.decisions.writes import check, commit_checked, commit_validated, read_neighbourhood
from service.delivery.outbox import delivery_node
from service.errors import Conflict, ConsentRequired, InvalidInput, NotFound
from service.knowledge import vocab
from service.knowledge.content import parse_locale
from service.knowledge.store import Term, bound, plain
from service.knowledge.store import value as value_of
from service.models.sentiment import Sentiment, score
from service.runtime import Runtime


@dataclass
class Registration:
    id: str
    role: str | None = None
    industry: str | None = None
    plan: str | None = None
    signup_channel: str | None = None
    consents: list[str] = field(default_factory=list)
    at: datetime | None = None
    # The protected group the user declares (an ID, e.g. age-18-34): stored only with a FAIRNESS consent among
    # ``consents``, read only by fairness reports (service/governance/fairness_gate.py), never by ranking.
    protected_group: str | None = None
    time_zone: str | None = None  # an IANA time zone name (Europe/Lisbon), read only for quiet hours


@dataclass
class EventReport:
    user_id: str
    type: str  # an API code, or CUSTOM with the product's own code in custom_type
    step_id: str | None = None
    feature_id: str | None = None
    at: datetime | None = None
    custom_type: str | None = None
    channel: str | None = None  # the API code of the channel it happened on, as the client reported it
    delivery_id: str | None = None  # the outbox message a message event is about
    # FEEDBACK_GIVEN only: a thumb (True: up), a 0 to 10 rating, free text and the BCP 47 locale it is written in
    thumbs_up: bool | None = None
    rating: int | None = None
    text: str | None = None
    locale: str | None = None


CUSTOM = "CUSTOM"
# Each is about one step of the catalog.
STEP_EVENTS = ("STEP_COMPLETED", "STEP_DISMISSED", "STEP_SNOOZED", "FEEDBACK_GIVEN")
FEEDBACK = "FEEDBACK_GIVEN"
MAX_FEEDBACK_TEXT = 2000  # characters of one feedback's text
MESSAGE_EVENTS = ("MESSAGE_DELIVERED", "MESSAGE_FAILED")  # each is about one outbox message (service/delivery)


@dataclass
class Profile:
    id: str
    iri: str
    role: str | None
    industry: str | None
    plan: str | None
    signup_channel: str | None
    pseudonym: str
    registered_at: datetime | None
    time_zone: str | None = None  # the IANA zone the user gave, for quiet hours
    recorded_at: datetime | None = None  # when the service stored the registration, by its own clock


@dataclass
class Event:
    iri: str
    user_id: str
    type: str
    step: str | None
    feature: str | None
    at: datetime


@dataclass(frozen=True)
class Prepared:
    """A registration checked and turned into what the store would hold, before anything is written."""

    profile: Profile
    quads: list[ox.Quad]  # the user's graph and their consent records


def prepare(runtime: Runtime, registration: Registration) -> Prepared:
    """Check a registration and return its profile and quads; raise naming the first bad field. Writes nothing:
    :func:`register` stores what this returns, and the console's preview of a made-up profile reads it."""
    node = user_node(registration.id, "input.id")
    catalog = runtime.catalog
    codes = runtime.knowledge.codes
    recorded_at = now()
    skew = runtime.settings.max_clock_skew_s
    at = checked_utc(registration.at, "input.at", max_skew_s=skew) if registration.at else recorded_at
    pseudonym = secrets.token_hex(16)
    resolved: dict[str, str | None] = {}
    for kind, value, field_name in (
        ("Role", registration.role, "input.role"),
        ("Industry", registration.industry, "input.industry"),
        ("Plan", registration.plan, "input.plan"),
    ):
        if value is not None:
            resolved[kind] = catalog.resolve(kind, check_id(value, field_name), field_name=field_name)
    channel = None
    if registration.signup_channel is not None:
        if registration.signup_channel not in codes.channels:
            raise InvalidInput("input.signupChannel", f"unknown channel {registration.signup_channel!r}")
        channel = codes.channels[registration.signup_channel]
    group = _protected_group(runtime, registration)
    zone = None
    if registration.time_zone is not None:
        try:
            zone = time_zone(registration.time_zone).key
        except ValueError as exc:
            raise InvalidInput("input.timeZone", str(exc)) from None
    quads = registration_quads(
        registration.id,
        registered_at=at,
        recorded_at=recorded_at,
        pseudonym=pseudonym,
        role=resolved.get("Role"),
        industry=resolved.get("Industry"),
        plan=resolved.get("Plan"),
        signup_channel=channel,
        protected_group=group,
        time_zone=zone,
    )
    for i, code in enumerate(dict.fromkeys(registration.consents)):
        if code not in codes.purposes:
            raise InvalidInput(f"input.consents[{i}]", f"unknown purpose {code!r}")
        _, record = consent_record(
            node, ox.NamedNode(codes.purposes[code]), granted=True, at=at, recorded_at=recorded_at
        )
        quads.extend(record)
    stored = Profile(
        registration.id,
        node.value,
        resolved.get("Role"),
        resolved.get("Industry"),
        resolved.get("Plan"),
        registration.signup_channel,
        pseudonym,
        at,
        zone,
        recorded_at,
    )
    return Prepared(stored, quads)


def register(runtime: Runtime, registration: Registration) -> Profile:
    """Register a user with their declared profile and initial consents."""
    prepared = prepare(runtime, registration)
    stored, quads, node = prepared.profile, prepared.quads, ox.NamedNode(prepared.profile.iri)
    with runtime.store.write_lock:
        if exists(runtime, registration.id):
            raise Conflict(
                f"input.id: a user with ID {registration.id!r} already exists",
                details=[{"field": "input.id", "reason": "duplicate user"}],
            )
        commit_validated(runtime, quads, users=[node], source=f"registerUser {registration.id}")
    feed.registered(
        runtime,
        stored.pseudonym,
        stored.recorded_at or now(),
        role=stored.role,
        industry=stored.industry,
        plan=stored.plan,
        channel=stored.signup_channel,
        consents=quads,
    )
    return stored


def _protected_group(runtime: Runtime, registration: Registration) -> str | None:
    """The IRI of the protected group a registration declares; refused without a FAIRNESS consent in it."""
    if registration.protected_group is None:
        return None
    field_name = "input.protectedGroup"
    group_id = check_id(registration.protected_group, field_name)
    groups = runtime.catalog.by_id["ProtectedGroup"]
    if group_id not in groups:
        known = ", ".join(sorted(groups)) or "none: the catalog declares no wf:ProtectedGroup"
        raise NotFound(
            f"{field_name}: no protected group with ID {group_id!r} in the catalog (known: {known})",
            details=[{"field": field_name, "reason": "unknown protected group"}],
        )
    codes = runtime.knowledge.codes
    fairness = next((c for c, iri in codes.purposes.items() if iri == vocab.FAIRNESS_MONITORING.value), None)
    if fairness is None or fairness not in registration.consents:
        raise ConsentRequired(
            f"{field_name}: a protected group is stored only with consent for fairness monitoring, which this "
            f"registration does not give: add {fairness or 'FAIRNESS'} to input.consents, or leave the group out",
            details=[{"field": field_name, "reason": "consent required", "purposes": [fairness or "FAIRNESS"]}],
        )
    return groups[group_id].iri


def profile(runtime: Runtime, user_id: str) -> Profile | None:
    """Return the user's stored profile, or None when there is no such user."""
    node = user_node(user_id, "id")
    rows = runtime.store.select(runtime.queries["profile"].bind(user=node, userGraph=vocab.user_graph(user_id)))
    if not rows:
        return None
    row = rows[0]
    value = lambda name: value_of(row, name)  # noqa: E731
    channel = value("signupChannel")
    registered_at = value("registeredAt")
    return Profile(
        id=user_id,
        iri=node.value,
        role=value("role"),
        industry=value("industry"),
        plan=value("plan"),
        signup_channel=next((c for c, i in runtime.knowledge.codes.channels.items() if i == channel), None),
        pseudonym=value("pseudonym") or "",
        registered_at=parse_datetime(registered_at) if registered_at else None,
        time_zone=value("timeZone"),
        recorded_at=parse_datetime(recorded) if (recorded := value("recordedAt")) else None,
    )


def events(runtime: Runtime, user_id: str) -> list[Event]:
    """Return the user's events, oldest first."""
    node = user_node(user_id, "id")
    codes = {iri: code for code, iri in runtime.knowledge.codes.events.items()}
    query = runtime.queries["user-events"].bind(user=node, userGraph=vocab.user_graph(user_id))
    return [
        Event(
            iri=bound(row, "event").value,
            user_id=user_id,
            type=codes[bound(row, "type").value],
            step=row["step"].value if row["step"] is not None else None,
            feature=row["feature"].value if row["feature"] is not None else None,
            at=parse_datetime(bound(row, "at").value),
        )
        for row in runtime.store.select(query)
        if bound(row, "type").value in codes
    ]


def record_events(
    runtime: Runtime,
    reports: list[EventReport],
    *,
    field_name: str = "inputs",
    idempotency: IdempotencyKey | None = None,
) -> list[Event]:
    """Store events, all or nothing; each must name a known user, step or feature, under consent.

    With an idempotency key, a retry of a write that was stored returns the stored events and stores nothing.
    """
    if not reports:
        return []
    digest = request_hash([_hashed(report) for report in reports]) if idempotency else ""
    if idempotency and (replayed := _replay(runtime, idempotency, digest)) is not None:
        return replayed
    catalog = runtime.catalog
    codes = runtime.knowledge.codes
    quads: list[ox.Quad] = []
    stored: list[Event] = []
    users: dict[str, ox.NamedNode] = {}
    received_at: list[datetime] = []
    # The users' profiles and consent records, read once: for the consent check below, by the
    # consent rule over these records alone, and for the shapes. A malformed or unknown user
    # is refused in its turn in the loop, which reports the first bad field.
    named = {r.user_id: node for r in reports if (node := _user_or_none(r.user_id)) is not None}
    seen, seen_at = read_neighbourhood(runtime.store, named.values())
    granted = current_among(seen, runtime.queries["consent-current"], codes.purposes)
    active = {
        user_id: {code for code, s in granted.get(node, {}).items() if s.granted} for user_id, node in named.items()
    }
    for i, report in enumerate(reports):
        where = f"{field_name}[{i}]" if len(reports) > 1 or field_name == "inputs" else field_name
        if report.user_id not in users:
            users[report.user_id] = require_user(runtime, report.user_id, f"{where}.userId")
        if report.type == CUSTOM:
            report = replace(
                report, type=_custom_code(runtime, report.custom_type, f"{where}.customType"), custom_type=None
            )
        elif report.custom_type is not None:
            raise InvalidInput(f"{where}.customType", "only with type CUSTOM")
        if report.type not in codes.events:
            raise InvalidInput(f"{where}.type", f"unknown event type {report.type!r}")
        needed = codes.collected_for.get(report.type, [])
        if needed and not active[report.user_id] & set(needed):
            raise ConsentRequired(
                f"{where}: {report.type} events are collected only with consent for {' or '.join(needed)}, "
                f"which user {report.user_id!r} has not given",
                details=[{"field": f"{where}.type", "reason": "consent required", "purposes": needed}],
            )
        step = feature = None
        if report.type in STEP_EVENTS:
            if not report.step_id:
                raise InvalidInput(f"{where}.stepId", f"required for {report.type}")
            step = catalog.resolve("Step", check_id(report.step_id, f"{where}.stepId"), field_name=f"{where}.stepId")
        elif report.step_id:
            raise InvalidInput(f"{where}.stepId", f"not allowed for {report.type}")
        if report.type == "FEATURE_USED":
            if not report.feature_id:
                raise InvalidInput(f"{where}.featureId", "required for FEATURE_USED")
            feature = catalog.resolve(
                "Feature", check_id(report.feature_id, f"{where}.featureId"), field_name=f"{where}.featureId"
            )
        elif report.feature_id:
            raise InvalidInput(f"{where}.featureId", f"not allowed for {report.type}")
        feedback = _feedback_of(runtime, report, where)
        delivery = None
        if report.type in MESSAGE_EVENTS:
            delivery = _delivery_of(runtime, report, users[report.user_id], f"{where}.deliveryId")
        elif report.delivery_id is not None:
            raise InvalidInput(f"{where}.deliveryId", f"not allowed for {report.type}")
        channel = None
        if report.channel is not None:
            if report.channel not in codes.channels:
                raise InvalidInput(f"{where}.channel", f"unknown channel {report.channel!r}")
            channel = codes.channels[report.channel]
        received = now()  # read per event, so that a batch's events keep their order
        at = (
            checked_utc(report.at, f"{where}.at", max_skew_s=runtime.settings.max_clock_skew_s)
            if report.at
            else received
        )
        event = ox.NamedNode(vocab.EVENT_BASE + str(uuid.uuid4()))
        event_class = ox.NamedNode(codes.events[report.type])
        quads += event_quads(
            event,
            report.user_id,
            event_class,
            at=at,
            recorded_at=received,
            step=step,
            feature=feature,
            channel=channel,
            delivery=delivery,
            feedback=feedback,
        )
        stored.append(Event(event.value, report.user_id, report.type, step, feature, at))
        received_at.append(received)
    # The long part, outside the lock; every user of the batch was found, so ``seen`` is theirs.
    checked = check(runtime, quads, users=named.values(), source="events", seen=seen, seen_at=seen_at)
    with runtime.store.write_lock:
        receipt: list[ox.Quad] = []
        stale: list[ox.Quad] = []
        if idempotency:
            if (replayed := _replay(runtime, idempotency, digest)) is not None:  # a retry that raced this one
                return replayed
            receipt, stale = receipt_changes(runtime.store, idempotency, digest, [e.iri for e in stored])
        commit_checked(runtime, checked, extra=receipt, remove=stale)
    pseudonyms = {user_id: _pseudonym(runtime, node) for user_id, node in users.items()}
    feed.recorded(
        runtime,
        (
            feed.event(
                e.iri, pseudonyms[e.user_id], e.type, at=e.at, recorded_at=recorded_at, step=e.step, feature=e.feature
            )
            for e, recorded_at in zip(stored, received_at, strict=True)
            if feed.keeps(runtime, e.type, active[e.user_id])
        ),
    )
    return stored


@dataclass(frozen=True)
class Feedback:
    """What a FEEDBACK_GIVEN event says, checked, with the sentiment of its text where the scorer reads it."""

    thumbs_up: bool | None
    rating: int | None
    text: str | None
    language: str | None
    sentiment: Sentiment | None


def _feedback_of(runtime: Runtime, report: EventReport, where: str) -> Feedback | None:
    """Check a feedback's fields (only FEEDBACK_GIVEN has them, and it has at least one) and score its text."""
    given = {"thumbsUp": report.thumbs_up, "rating": report.rating, "text": report.text, "locale": report.locale}
    if report.type != FEEDBACK:
        for name, value in given.items():
            if value is not None:
                raise InvalidInput(f"{where}.{name}", f"only with FEEDBACK_GIVEN, not {report.type}")
        return None
    if report.thumbs_up is None and report.rating is None and report.text is None:
        raise InvalidInput(f"{where}.thumbsUp", "FEEDBACK_GIVEN needs a thumb, a rating or a text (or several)")
    if report.rating is not None and (isinstance(report.rating, bool) or not 0 <= report.rating <= 10):
        raise InvalidInput(f"{where}.rating", f"must be an integer from 0 to 10, got {report.rating!r}")
    text, language, sentiment = None, None, None
    if report.text is not None:
        text = report.text.strip()
        if not text:
            raise InvalidInput(f"{where}.text", "is empty: leave it out, or say something")
        if len(text) > MAX_FEEDBACK_TEXT:
            raise InvalidInput(f"{where}.text", f"is {len(text)} characters long; at most {MAX_FEEDBACK_TEXT}")
        language = parse_locale(report.locale, field_name=f"{where}.locale") or runtime.catalog.default_language or "en"
        sentiment = score(text, language)
    elif report.locale is not None:
        raise InvalidInput(f"{where}.locale", "the language of a feedback's text: only with text")
    return Feedback(report.thumbs_up, report.rating, text, language, sentiment)


def _delivery_of(runtime: Runtime, report: EventReport, user: ox.NamedNode, field_name: str) -> str:
    """Return the IRI of the outbox message a message event is about; it must be one made for the event's user."""
    if not report.delivery_id:
        raise InvalidInput(field_name, f"required for {report.type}")
    if not UUID_PATTERN.fullmatch(report.delivery_id):
        raise InvalidInput(field_name, "a delivery ID is a UUID, as 8-4-4-4-12 hexadecimal digits")
    node = delivery_node(report.delivery_id.lower())
    made_for = [
        plain(q.object).value
        for q in runtime.store.quads(subject=node, predicate=vocab.SUBJECT_PSEUDONYM, graph=vocab.OUTBOX_GRAPH)
    ]
    if made_for != [_pseudonym(runtime, user)]:
        raise NotFound(
            f"{field_name}: no delivery {report.delivery_id!r} for user {report.user_id!r}",
            details=[{"field": field_name, "reason": "unknown delivery"}],
        )
    return node.value


def _user_or_none(user_id: str) -> ox.NamedNode | None:
    try:
        return user_node(user_id, "userId")
    except InvalidInput:
        return None


def _pseudonym(runtime: Runtime, user: ox.NamedNode) -> str:
    graph = ox.NamedNode(vocab.USER_GRAPH_BASE + user.value.removeprefix(vocab.USER_BASE))
    return next(
        plain(q.object).value for q in runtime.store.quads(subject=user, predicate=vocab.PSEUDONYM, graph=graph)
    )


def _hashed(report: EventReport) -> dict:
    """What a keyed write's request hash covers: the report, without custom_type or channel when unset (as before
    they existed, so that a retry across an upgrade still matches)."""
    fields = asdict(report)
    for name in ("custom_type", "channel", "delivery_id", "thumbs_up", "rating", "text", "locale"):
        if fields[name] is None:
            del fields[name]
    return fields


def _custom_code(runtime: Runtime, code: str | None, field_name: str) -> str:
    """The code of an event type the product declared (not one of the ontology's own); InvalidInput otherwise."""
    if not code:
        raise InvalidInput(field_name, "required with type CUSTOM: the event type the product declares in its catalog")
    term = runtime.knowledge.codes.events.get(code)
    if term is None:
        raise InvalidInput(
            field_name,
            f"unknown event type {code!r}: declare it in a catalog file as a subclass of wf:Event with wf:eventType",
        )
    if term.startswith(vocab.WF_NS):
        raise InvalidInput(field_name, f"{code} is one of the service's own types: send type {code}")
    return code


def _replay(runtime: Runtime, key: IdempotencyKey, digest: str) -> list[Event] | None:
    """Return the events a keyed write stored, when this is its retry; None when the key is unused."""
    receipt = stored_receipt(runtime.store, key, ttl_s=runtime.settings.idempotency_ttl_s)
    if receipt is None:
        return None
    check_replay(receipt, key, digest)
    codes = {term: code for code, term in runtime.knowledge.codes.events.items()}
    return [event for iri in receipt.events if (event := _stored_event(runtime, iri, codes)) is not None]


def _stored_event(runtime: Runtime, iri: str, codes: dict[str, str]) -> Event | None:
    """Return one stored event by IRI (None once its user was erased); ``codes`` maps event classes to API codes."""
    values: dict[ox.NamedNode, Term] = {}
    event_type = None
    for quad in runtime.store.quads(subject=ox.NamedNode(iri)):
        term = plain(quad.object)
        if quad.predicate == vocab.RDF_TYPE and term.value in codes:
            event_type = codes[term.value]
        else:
            values[quad.predicate] = term
    if event_type is None or vocab.BY_USER not in values:
        return None
    step, feature = values.get(vocab.ABOUT_STEP), values.get(vocab.ABOUT_FEATURE)
    return Event(
        iri,
        values[vocab.BY_USER].value.removeprefix(vocab.USER_BASE),
        event_type,
        step.value if step is not None else None,
        feature.value if feature is not None else None,
        parse_datetime(values[vocab.OCCURRED_AT].value),
    )


def registration_quads(
    user_id: str,
    *,
    registered_at: datetime,
    recorded_at: datetime | None = None,
    pseudonym: str,
    role: str | None = None,
    industry: str | None = None,
    plan: str | None = None,
    signup_channel: str | None = None,
    protected_group: str | None = None,
    time_zone: str | None = None,
) -> list[ox.Quad]:
    """Return a new user's profile quads in their graph (role, industry, plan, channel, protected group: IRIs, each
    optional; the shapes refuse a protected group without a FAIRNESS consent).

    ``registered_at`` is when the user signed up (a client may state it); ``recorded_at`` when the service
    stored them, by its own clock (``registered_at`` when not given, as for synthetic users).
    """
    node, graph = vocab.user_iri(user_id), vocab.user_graph(user_id)
    quads = [
        ox.Quad(node, vocab.RDF_TYPE, vocab.USER, graph),
        ox.Quad(node, vocab.REGISTERED_AT, datetime_literal(registered_at), graph),
        ox.Quad(node, vocab.RECORDED_AT, datetime_literal(recorded_at or registered_at), graph),
        ox.Quad(node, vocab.PSEUDONYM, ox.Literal(pseudonym), graph),
    ]
    for prop, iri in ((vocab.HAS_ROLE, role), (vocab.HAS_INDUSTRY, industry), (vocab.HAS_PLAN, plan)):
        if iri is not None:
            quads.append(ox.Quad(node, prop, ox.NamedNode(iri), graph))
    if signup_channel is not None:
        quads.append(ox.Quad(node, vocab.SIGNUP_CHANNEL, ox.NamedNode(signup_channel), graph))
    if protected_group is not None:
        quads.append(ox.Quad(node, vocab.HAS_PROTECTED_GROUP, ox.NamedNode(protected_group), graph))
    if time_zone is not None:
        quads.append(ox.Quad(node, vocab.TIME_ZONE, ox.Literal(time_zone), graph))
    return quads


def event_quads(
    event: ox.NamedNode,
    user_id: str,
    event_class: ox.NamedNode,
    *,
    at: datetime,
    recorded_at: datetime | None = None,
    step: str | None = None,
    feature: str | None = None,
    channel: str | None = None,
    delivery: str | None = None,
    feedback: Feedback | None = None,
) -> list[ox.Quad]:
    """Return one event's quads in its user's graph: its class, user, times, the step, feature or outbox message
    (IRIs) it is about and the channel (IRI) it happened on.

    ``at`` is when it happened (a client may state it); ``recorded_at`` when the service stored it, by its
    own clock (``at`` when not given, as for synthetic histories).
    """
    graph = vocab.user_graph(user_id)
    quads = [
        ox.Quad(event, vocab.RDF_TYPE, event_class, graph),
        ox.Quad(event, vocab.BY_USER, vocab.user_iri(user_id), graph),
        ox.Quad(event, vocab.OCCURRED_AT, datetime_literal(at), graph),
        ox.Quad(event, vocab.RECORDED_AT, datetime_literal(recorded_at or at), graph),
    ]
    if step:
        quads.append(ox.Quad(event, vocab.ABOUT_STEP, ox.NamedNode(step), graph))
    if feature:
        quads.append(ox.Quad(event, vocab.ABOUT_FEATURE, ox.NamedNode(feature), graph))
    if channel:
        quads.append(ox.Quad(event, vocab.VIA_CHANNEL, ox.NamedNode(channel), graph))
    if delivery:
        quads.append(ox.Quad(event, vocab.ABOUT_DELIVERY, ox.NamedNode(delivery), graph))
    if feedback is not None:
        quads += _feedback_quads(event, feedback, graph)
    return quads


def _feedback_quads(event: ox.NamedNode, feedback: Feedback, graph: ox.NamedNode) -> list[ox.Quad]:
    quads = []
    if feedback.thumbs_up is not None:
        thumb = ox.Literal("true" if feedback.thumbs_up else "false", datatype=vocab.XSD_BOOLEAN)
        quads.append(ox.Quad(event, vocab.THUMBS_UP, thumb, graph))
    if feedback.rating is not None:
        quads.append(ox.Quad(event, vocab.RATING, ox.Literal(str(feedback.rating), datatype=vocab.XSD_INTEGER), graph))
    if feedback.text is not None:
        quads.append(ox.Quad(event, vocab.FEEDBACK_TEXT, ox.Literal(feedback.text, language=feedback.language), graph))
    if feedback.sentiment is not None:
        quads += [
            ox.Quad(
                event, vocab.SENTIMENT, ox.Literal(repr(feedback.sentiment.score), datatype=vocab.XSD_DOUBLE), graph
            ),
            ox.Quad(event, vocab.SENTIMENT_SCORER, ox.Literal(feedback.sentiment.scorer), graph),
        ]
    return quads
