"""GraphQL types of users: profiles, consent, events, erasure receipts and exports, and the write inputs."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry
from strawberry.types import Info

from service.api.types.catalog import Channel, Step, runtime_of, step_of
from service.decisions import consent, users
from service.decisions.consent import ConsentState
from service.decisions.idempotency import IdempotencyKey, scoped_key
from service.knowledge.vocab import local_id


@strawberry.enum
class Purpose(Enum):
    PERSONALIZATION = "PERSONALIZATION"
    ANALYTICS = "ANALYTICS"
    MARKETING = "MARKETING"
    FAIRNESS = "FAIRNESS"  # fairness monitoring: the protected group, only for fairness reports
    ONBOARDING_MESSAGES = "ONBOARDING_MESSAGES"  # onboarding steps sent as e-mail and push (deliverNextSteps)
    FEEDBACK = "FEEDBACK"  # feedback on steps (thumbs, ratings, text), its sentiment, and fewer prompts after bad


@strawberry.enum
class EventType(Enum):
    STEP_COMPLETED = "STEP_COMPLETED"
    STEP_DISMISSED = "STEP_DISMISSED"
    STEP_SNOOZED = "STEP_SNOOZED"  # see it later: held back on every channel for the pacing's snooze duration
    FEATURE_USED = "FEATURE_USED"
    ACTIVATED = "ACTIVATED"
    CONVERTED = "CONVERTED"
    SESSION_STARTED = "SESSION_STARTED"
    SUPPORT_CONTACTED = "SUPPORT_CONTACTED"
    FEEDBACK_GIVEN = "FEEDBACK_GIVEN"  # feedback on a step: thumbsUp, rating and/or text (FEEDBACK consent)
    MESSAGE_DELIVERED = "MESSAGE_DELIVERED"  # a sender accepted an outbox message (deliveryId); the worker records it
    MESSAGE_FAILED = "MESSAGE_FAILED"  # an outbox message was dead-lettered, or its sender reports a bounce
    CUSTOM = "CUSTOM"  # an event type the product declares in its catalog, named by customType


BUILT_IN = {t.value for t in EventType} - {EventType.CUSTOM.value}


@strawberry.type
class Consent:
    purpose: Purpose
    granted: bool
    at: datetime = strawberry.field(description="When the consent was indicated, as the client stated it")
    recorded_at: datetime | None = strawberry.field(
        description=(
            "When the service recorded it, by its own clock: what orders a user's consents (null for records from "
            "before the service kept it)"
        )
    )
    user_id: strawberry.Private[str]

    @strawberry.field(
        description="Decisions that read this user's consent for this purpose (act on them after a withdrawal)"
    )
    def affected_decisions(self, info: Info) -> list[strawberry.ID]:
        return [
            strawberry.ID(d) for d in consent.affected_by_consent(runtime_of(info), self.user_id, self.purpose.value)[0]
        ]

    @strawberry.field(description="Model versions trained on data collected under this user's consent for this purpose")
    def affected_model_versions(self, info: Info) -> list[str]:
        return consent.affected_by_consent(runtime_of(info), self.user_id, self.purpose.value)[1]


def consent_of(state: ConsentState, user_id: str) -> Consent:
    return Consent(
        purpose=Purpose(state.purpose),
        granted=state.granted,
        at=state.at,
        recorded_at=state.recorded_at,
        user_id=user_id,
    )


@strawberry.type
class ErasureReceipt:
    user_id: strawberry.ID
    erasure_id: strawberry.ID
    erased_at: datetime
    triples_removed: int
    decisions_kept: int


@strawberry.type(description="Everything held about one user, for access and portability (GDPR Art. 15 and 20)")
class UserExport:
    user_id: strawberry.ID
    exported_at: datetime
    format: str = strawberry.field(description="The media type of the document: application/ld+json")
    document: strawberry.scalars.JSON = strawberry.field(
        description=(
            "One JSON-LD document: the user's graph (profile and events), every consent record and every decision "
            "made for them, one named graph each"
        )
    )


@strawberry.type
class User:
    id: strawberry.ID
    role: strawberry.ID | None
    industry: strawberry.ID | None
    plan: strawberry.ID | None

    @strawberry.field
    def consents(self, info: Info) -> list[Consent]:
        return [consent_of(c, str(self.id)) for c in consent.consents(runtime_of(info), str(self.id))]

    @strawberry.field
    def completed_steps(self, info: Info) -> list[Step]:
        runtime = runtime_of(info)
        catalog = runtime.catalog
        done = [e.step for e in users.events(runtime, str(self.id)) if e.type == "STEP_COMPLETED" and e.step]
        return [step_of(catalog, catalog.step(iri)) for iri in dict.fromkeys(done) if iri in catalog.entities]

    @strawberry.field
    def event_count(self, info: Info) -> int:
        return len(users.events(runtime_of(info), str(self.id)))


def user_of(profile: users.Profile) -> User:
    short = lambda iri: strawberry.ID(local_id(iri)) if iri else None  # noqa: E731
    return User(
        id=strawberry.ID(profile.id),
        role=short(profile.role),
        industry=short(profile.industry),
        plan=short(profile.plan),
    )


@strawberry.type
class Event:
    id: strawberry.ID
    user_id: strawberry.ID
    type: EventType
    custom_type: str | None = strawberry.field(description="With type CUSTOM: the product's own event type")
    step_id: strawberry.ID | None
    feature_id: strawberry.ID | None
    at: datetime


@strawberry.input
class RegisterUserInput:
    id: strawberry.ID
    role: strawberry.ID | None = None
    industry: strawberry.ID | None = None
    plan: strawberry.ID | None = None
    signup_channel: Channel | None = None
    consents: list[Purpose] = strawberry.field(default_factory=list)
    at: datetime | None = None
    protected_group: strawberry.ID | None = strawberry.field(
        default=None,
        description=(
            "A protected group the user declares (a wf:ProtectedGroup of the catalog, e.g. an age band), for "
            "fairness reports only: refused unless consents include FAIRNESS; ranking never reads it, and "
            "withdrawing FAIRNESS deletes it"
        ),
    )
    time_zone: str | None = strawberry.field(
        default=None,
        description="The user's IANA time zone (e.g. Europe/Lisbon), optional: e-mail and push keep out of the "
        "quiet hours of the serving policy's pacing in this zone (without one, in the pacing's default zone)",
    )


@strawberry.input
class EventInput:
    user_id: strawberry.ID
    type: EventType
    custom_type: str | None = strawberry.field(
        default=None,
        description="With type CUSTOM: an event type the product declares in its catalog (a direct rdfs:subClassOf "
        "wf:Event with a wf:eventType), e.g. REPORT_EXPORTED; its KPIs go in queries/kpi/",
    )
    step_id: strawberry.ID | None = None
    feature_id: strawberry.ID | None = None
    at: datetime | None = None
    channel: Channel | None = strawberry.field(
        default=None,
        description="The channel the event happened on (where a step was dismissed or snoozed), optional: "
        "hold-back reasons name it",
    )
    delivery_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="With MESSAGE_DELIVERED or MESSAGE_FAILED: the outbox message (Delivery.id) made for this user",
    )
    thumbs_up: bool | None = strawberry.field(default=None, description="With FEEDBACK_GIVEN: true up, false down")
    rating: int | None = strawberry.field(default=None, description="With FEEDBACK_GIVEN: from 0 (worst) to 10 (best)")
    text: str | None = strawberry.field(
        default=None,
        description="With FEEDBACK_GIVEN: free text, up to 2000 characters, scored for sentiment on the service's "
        "machine (English only) and never sent anywhere",
    )
    locale: str | None = strawberry.field(
        default=None, description="With text: the BCP 47 tag of its language (default: the catalog's default language)"
    )


def event_of(event: users.Event) -> Event:
    return Event(
        id=strawberry.ID(local_id(event.iri)),
        user_id=strawberry.ID(event.user_id),
        type=EventType(event.type) if event.type in BUILT_IN else EventType.CUSTOM,
        custom_type=None if event.type in BUILT_IN else event.type,
        step_id=strawberry.ID(local_id(event.step)) if event.step else None,
        feature_id=strawberry.ID(local_id(event.feature)) if event.feature else None,
        at=event.at,
    )


def report_of(item: EventInput) -> users.EventReport:
    return users.EventReport(
        user_id=str(item.user_id),
        type=item.type.value,
        custom_type=item.custom_type,
        step_id=str(item.step_id) if item.step_id is not None else None,
        feature_id=str(item.feature_id) if item.feature_id is not None else None,
        at=item.at,
        channel=item.channel.value if item.channel is not None else None,
        delivery_id=str(item.delivery_id) if item.delivery_id is not None else None,
        thumbs_up=item.thumbs_up,
        rating=item.rating,
        text=item.text,
        locale=item.locale,
    )


IdempotencyKeyArgument = Annotated[
    str | None,
    strawberry.argument(
        description=(
            "A key of the client's choosing: a retry with the same key (after a lost reply) stores nothing twice "
            "and gets the first answer; honoured for a day (WAYFINDER_IDEMPOTENCY_TTL_S)"
        )
    ),
]


def idempotency_of(info: Info, key: str | None) -> IdempotencyKey | None:
    if key is None:
        return None
    return scoped_key(key, scope=[info.context.get("principal", ""), info.context.get("subject") or ""])
