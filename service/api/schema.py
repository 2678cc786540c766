"""GraphQL types of the public contract; resolvers translate types and call ``service``."""

from __future__ import annotations

import json
from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import AddValidationRules, MaxTokensLimiter, ValidationCache
from strawberry.extensions.max_aliases import create_validator as aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.types import Info

from service.api.errors import ErrorCodes, ReportingParserCache, log_errors
from service.api.limits import field_budget
from service.api.permissions import (
    ANYONE,
    AUDITOR,
    CLIENT,
    CLIENT_OR_APP_USER,
    CLIENT_OR_AUDITOR,
    CLIENT_OR_OPERATOR,
    OPERATOR,
)
from service.audit import erasure, portability
from service.clock import now
from service.decisions import decide, users
from service.decisions.consent import ConsentState
from service.decisions.idempotency import IdempotencyKey, scoped_key
from service.decisions.policies import Scored
from service.errors import Forbidden, InvalidInput
from service.knowledge.catalog import CHANNEL_OF_IRI, Catalog, StepInfo
from service.knowledge.vocab import local_id
from service.models import operations as models
from service.runtime import Runtime
from service.settings import Settings


@strawberry.enum
class Channel(Enum):
    WEB = "WEB"
    MOBILE = "MOBILE"
    IN_APP = "IN_APP"
    EMAIL = "EMAIL"


@strawberry.enum
class Purpose(Enum):
    PERSONALIZATION = "PERSONALIZATION"
    ANALYTICS = "ANALYTICS"
    MARKETING = "MARKETING"


@strawberry.enum
class EventType(Enum):
    STEP_COMPLETED = "STEP_COMPLETED"
    STEP_DISMISSED = "STEP_DISMISSED"
    FEATURE_USED = "FEATURE_USED"
    ACTIVATED = "ACTIVATED"
    CONVERTED = "CONVERTED"


def _runtime(info: Info) -> Runtime:
    return info.context["runtime"]


@strawberry.type
class Feature:
    id: strawberry.ID
    title: str


@strawberry.type
class Step:
    id: strawberry.ID
    title: str
    channels: list[Channel]
    iri: strawberry.Private[str]

    @strawberry.field
    def introduces(self, info: Info) -> list[Feature]:
        catalog = _runtime(info).catalog
        return [_feature(catalog, iri) for iri in catalog.step(self.iri).introduces if iri in catalog.entities]

    @strawberry.field
    def requires(self, info: Info) -> list[Step]:
        catalog = _runtime(info).catalog
        return [_step(catalog.step(iri)) for iri in catalog.step(self.iri).requires if iri in catalog.entities]


def _step(step: StepInfo) -> Step:
    return Step(
        id=strawberry.ID(step.id),
        title=step.title,
        channels=[Channel(CHANNEL_OF_IRI[c]) for c in step.channels],
        iri=step.iri,
    )


def _feature(catalog: Catalog, iri: str) -> Feature:
    entity = catalog.entities[iri]
    return Feature(id=strawberry.ID(entity.id), title=entity.title)


@strawberry.type
class RankedStep:
    step: Step
    rank: int
    score: float
    reasons: list[str]


@strawberry.type
class Recommendation:
    decision_id: strawberry.ID
    steps: list[RankedStep]
    personalized: bool
    policy_version: str
    model_version: str | None
    variant: str | None


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
            strawberry.ID(d) for d in users.affected_by_consent(_runtime(info), self.user_id, self.purpose.value)[0]
        ]

    @strawberry.field(description="Model versions trained on data collected under this user's consent for this purpose")
    def affected_model_versions(self, info: Info) -> list[str]:
        return users.affected_by_consent(_runtime(info), self.user_id, self.purpose.value)[1]


def _consent(state: ConsentState, user_id: str) -> Consent:
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
        return [_consent(c, str(self.id)) for c in users.consents(_runtime(info), str(self.id))]

    @strawberry.field
    def completed_steps(self, info: Info) -> list[Step]:
        runtime = _runtime(info)
        catalog = runtime.catalog
        done = [e.step for e in users.events(runtime, str(self.id)) if e.type == "STEP_COMPLETED" and e.step]
        return [_step(catalog.step(iri)) for iri in dict.fromkeys(done) if iri in catalog.entities]

    @strawberry.field
    def event_count(self, info: Info) -> int:
        return len(users.events(_runtime(info), str(self.id)))


def _user(profile: users.Profile) -> User:
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
    step_id: strawberry.ID | None
    feature_id: strawberry.ID | None
    at: datetime


@strawberry.type
class Decision:
    id: strawberry.ID
    at: datetime
    channel: Channel
    personalized: bool
    policy_version: str
    model_version: str | None
    variant: str | None
    steps: list[RankedStep]
    candidates: list[RankedStep]


@strawberry.type(description="A trained ranking model version in the registry")
class ModelVersion:
    version: str
    status: str = strawberry.field(description="candidate, active, retired or rolled-back")
    artifact_hash: str = strawberry.field(description="SHA-256 of the model artefact")
    data_snapshot: str = strawberry.field(description="SHA-256 of the training data the export produced")
    hyper_parameters: str = strawberry.field(description="Hyper-parameters and seed, as JSON")
    metrics: str = strawberry.field(description="Metrics on held-out users, as JSON")
    trained_at: datetime
    training_users: int = strawberry.field(description="Users with an ANALYTICS consent whose data it read")
    approved_by: str | None
    approved_at: datetime | None
    supersedes: str | None = strawberry.field(description="The version that was active when this one was promoted")


def _model(version) -> ModelVersion:
    return ModelVersion(
        version=version.version,
        status=version.status,
        artifact_hash=version.artifact_hash,
        data_snapshot=version.data_snapshot,
        hyper_parameters=json.dumps(version.hyper_parameters, sort_keys=True),
        metrics=json.dumps(version.metrics, sort_keys=True),
        trained_at=version.trained_at,
        training_users=version.training_users,
        approved_by=version.approved_by,
        approved_at=version.approved_at,
        supersedes=version.supersedes,
    )


@strawberry.input
class RegisterUserInput:
    id: strawberry.ID
    role: strawberry.ID | None = None
    industry: strawberry.ID | None = None
    plan: strawberry.ID | None = None
    signup_channel: Channel | None = None
    consents: list[Purpose] = strawberry.field(default_factory=list)
    at: datetime | None = None


@strawberry.input
class EventInput:
    user_id: strawberry.ID
    type: EventType
    step_id: strawberry.ID | None = None
    feature_id: strawberry.ID | None = None
    at: datetime | None = None


def _ranked(catalog: Catalog, scored: list[Scored]) -> list[RankedStep]:
    return [
        RankedStep(step=_step(catalog.step(s.step)), rank=i, score=s.score, reasons=s.reasons)
        for i, s in enumerate(scored, start=1)
        if s.step in catalog.entities
    ]


def _event(event: users.Event) -> Event:
    return Event(
        id=strawberry.ID(local_id(event.iri)),
        user_id=strawberry.ID(event.user_id),
        type=EventType(event.type),
        step_id=strawberry.ID(local_id(event.step)) if event.step else None,
        feature_id=strawberry.ID(local_id(event.feature)) if event.feature else None,
        at=event.at,
    )


def _report(item: EventInput) -> users.EventReport:
    return users.EventReport(
        user_id=str(item.user_id),
        type=item.type.value,
        step_id=str(item.step_id) if item.step_id is not None else None,
        feature_id=str(item.feature_id) if item.feature_id is not None else None,
        at=item.at,
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


def _idempotency(info: Info, key: str | None) -> IdempotencyKey | None:
    if key is None:
        return None
    return scoped_key(key, scope=[info.context.get("principal", ""), info.context.get("subject") or ""])


@strawberry.type
class Query:
    @strawberry.field(permission_classes=CLIENT_OR_APP_USER)
    def next_steps(
        self, info: Info, user_id: strawberry.ID, channel: Channel = Channel.WEB, limit: int = 5
    ) -> Recommendation:
        runtime = _runtime(info)
        rec = decide.next_steps(runtime, str(user_id), channel=channel.value, limit=limit)
        return Recommendation(
            decision_id=strawberry.ID(rec.decision_id),
            steps=_ranked(runtime.catalog, rec.steps),
            personalized=rec.personalized,
            policy_version=rec.policy_version,
            model_version=rec.model_version,
            variant=rec.variant,
        )

    @strawberry.field(permission_classes=CLIENT_OR_AUDITOR)
    def user(self, info: Info, id: strawberry.ID) -> User | None:
        profile = users.profile(_runtime(info), str(id))
        return _user(profile) if profile else None

    @strawberry.field(permission_classes=ANYONE)
    def steps(self, info: Info) -> list[Step]:
        return [_step(s) for s in _runtime(info).catalog.steps]

    @strawberry.field(permission_classes=AUDITOR)
    def decision(self, info: Info, id: strawberry.ID) -> Decision | None:
        runtime = _runtime(info)
        rec = decide.read_decision(runtime, str(id))
        if rec is None:
            return None
        return Decision(
            id=strawberry.ID(rec.decision_id),
            at=rec.at,
            channel=Channel(rec.channel),
            personalized=rec.personalized,
            policy_version=rec.policy_version,
            model_version=rec.model_version,
            variant=rec.variant,
            steps=_ranked(runtime.catalog, rec.steps),
            candidates=_ranked(runtime.catalog, rec.candidates),
        )

    @strawberry.field(
        permission_classes=CLIENT_OR_OPERATOR,
        description="Everything held about the user (profile, events, consent history, decisions) as JSON-LD",
    )
    def export_user(self, info: Info, user_id: strawberry.ID) -> UserExport:
        at = now()
        document = portability.export_user(_runtime(info), str(user_id))
        return UserExport(user_id=user_id, exported_at=at, format=portability.MEDIA_TYPE, document=document)

    @strawberry.field(permission_classes=AUDITOR, description="Every registered model version, oldest first")
    def models(self, info: Info) -> list[ModelVersion]:
        return [_model(v) for v in models.versions(_runtime(info))]


@strawberry.type
class Mutation:
    @strawberry.mutation(permission_classes=CLIENT)
    def register_user(self, info: Info, input: RegisterUserInput) -> User:
        profile = users.register(
            _runtime(info),
            users.Registration(
                id=str(input.id),
                role=str(input.role) if input.role is not None else None,
                industry=str(input.industry) if input.industry is not None else None,
                plan=str(input.plan) if input.plan is not None else None,
                signup_channel=input.signup_channel.value if input.signup_channel else None,
                consents=[p.value for p in input.consents],
                at=input.at,
            ),
        )
        return _user(profile)

    @strawberry.mutation(permission_classes=CLIENT_OR_APP_USER)
    def record_event(self, info: Info, input: EventInput, idempotency_key: IdempotencyKeyArgument = None) -> Event:
        return _event(
            users.record_events(
                _runtime(info), [_report(input)], field_name="input", idempotency=_idempotency(info, idempotency_key)
            )[0]
        )

    @strawberry.mutation(permission_classes=CLIENT_OR_APP_USER)
    def record_events(
        self, info: Info, inputs: list[EventInput], idempotency_key: IdempotencyKeyArgument = None
    ) -> int:
        cap = _runtime(info).settings.max_events_per_request
        if len(inputs) > cap:
            raise InvalidInput("inputs", f"at most {cap} events per request, got {len(inputs)}")
        return len(
            users.record_events(
                _runtime(info), [_report(i) for i in inputs], idempotency=_idempotency(info, idempotency_key)
            )
        )

    @strawberry.mutation(permission_classes=CLIENT_OR_APP_USER)
    def grant_consent(self, info: Info, user_id: strawberry.ID, purpose: Purpose) -> Consent:
        return _consent(users.set_consent(_runtime(info), str(user_id), purpose.value, granted=True), str(user_id))

    @strawberry.mutation(permission_classes=CLIENT_OR_APP_USER)
    def withdraw_consent(self, info: Info, user_id: strawberry.ID, purpose: Purpose) -> Consent:
        return _consent(users.set_consent(_runtime(info), str(user_id), purpose.value, granted=False), str(user_id))

    @strawberry.mutation(
        permission_classes=CLIENT_OR_OPERATOR,
        description="Erase the user's profile, events and consent records; decision records stay, pseudonymous",
    )
    def erase_user(self, info: Info, user_id: strawberry.ID) -> ErasureReceipt:
        receipt = erasure.erase(_runtime(info), str(user_id), requested_by=info.context.get("principal", "api"))
        return ErasureReceipt(
            user_id=strawberry.ID(receipt.user_id),
            erasure_id=strawberry.ID(receipt.erasure_id),
            erased_at=receipt.erased_at,
            triples_removed=receipt.triples_removed,
            decisions_kept=receipt.decisions_kept,
        )

    @strawberry.mutation(
        permission_classes=OPERATOR,
        description="Train on the store's consented data, evaluate on held-out users and register a "
        "candidate version; runs beside nextSteps without blocking it",
    )
    def train_model(
        self, info: Info, seed: int = 0, epochs: int | None = None, members: int | None = None
    ) -> ModelVersion:
        # Like every operation, this runs in a worker thread (service/api/app.py), not on the event loop.
        version = models.train(
            _runtime(info), seed=seed, epochs=epochs, members=members, requested_by=info.context.get("principal")
        )
        return _model(version)

    @strawberry.mutation(
        permission_classes=OPERATOR, description="Approve a version and serve it from the next request on"
    )
    def promote_model(self, info: Info, version: str, approved_by: str | None = None) -> ModelVersion:
        return _model(models.promote(_runtime(info), version, approved_by=approver(info.context, approved_by)))

    @strawberry.mutation(permission_classes=OPERATOR, description="Return to the version the active one superseded")
    def rollback_model(self, info: Info) -> ModelVersion:
        return _model(models.rollback(_runtime(info)))


def approver(context: dict, named: str | None) -> str:
    """Return who approves: with keys the caller's principal (an argument naming anyone else is refused)."""
    if not context.get("keys_on"):
        if not named:
            raise InvalidInput("approvedBy", "required without API keys: name who approves")
        return named
    principal = context["principal"]
    if named and named != principal:
        raise Forbidden(
            f"approvedBy: with API keys an approval is recorded for the caller's principal, "
            f"{principal!r}; leave approvedBy out or name that principal"
        )
    return principal


def build_schema(settings: Settings | None = None, *, introspection: bool = True) -> strawberry.Schema:
    """Return the schema with its limits: depth, aliases, tokens, fields; introspection optional.

    The depth and alias rules of strawberry's limiters are built once here, not per request:
    the validation cache keys on the rule classes, so rules made afresh would never hit it.
    """
    settings = settings or Settings()
    rules = [
        depth_rule(settings.max_query_depth, None, None),
        aliases_rule(settings.max_aliases),
        field_budget(settings.max_fields),
    ]
    if not introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    schema = strawberry.Schema(
        query=Query,
        mutation=Mutation,
        extensions=[
            ErrorCodes,
            lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
            lambda: ReportingParserCache(maxsize=256),
            lambda: AddValidationRules(rules),
            lambda: ValidationCache(maxsize=256),
        ],
    )
    schema.process_errors = log_errors
    return schema
