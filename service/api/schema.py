"""The GraphQL schema: its root Query and Mutation, whose resolvers translate types and call the flows.

The types live in ``service.api.types``, one module per area.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Annotated

import strawberry
from graphql import GraphQLError
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from strawberry.extensions import AddValidationRules, MaxTokensLimiter, ValidationCache
from strawberry.extensions.max_aliases import create_validator as aliases_rule
from strawberry.types import ExecutionContext, Info

from service.api.errors import ErrorCodes, log_errors
from service.api.limits import depth_limit, field_budget
from service.api.operation_metrics import OperationMetrics
from service.api.parser_cache import ReportingParserCache
from service.api.permissions import (
    ANYONE,
    APPROVER,
    AUDITOR,
    CLIENT,
    CLIENT_OR_APP_USER,
    CLIENT_OR_AUDITOR,
    CLIENT_OR_OPERATOR,
    OPERATOR,
)
from service.api.types.catalog import Channel, Step, runtime_of, step_of
from service.api.types.decisions import Decision, Recommendation, held_back_of, ranked_of, recommendation_of
from service.api.types.deliveries import Delivery, DeliveryState, delivery_by_id, delivery_of
from service.api.types.experiments import (
    Experiment,
    ExperimentInput,
    ExperimentResults,
    experiment_of,
    results_of,
    spec_of,
)
from service.api.types.fairness import FairnessReport, fairness_report_of
from service.api.types.feedback import StepFeedback, step_feedback_of
from service.api.types.flags import (
    Flag,
    FlagChangeRequest,
    FlagEvaluation,
    FlagInput,
    definition_of,
    evaluation_of,
    flag_of,
    request_of,
)
from service.api.types.models import ModelVersion, model_of
from service.api.types.policies import OfflineEvaluation, PolicyVersion, offline_evaluation_of, policy_of
from service.api.types.users import (
    Consent,
    ErasureReceipt,
    Event,
    EventInput,
    IdempotencyKeyArgument,
    Purpose,
    RegisterUserInput,
    User,
    UserExport,
    consent_of,
    event_of,
    idempotency_of,
    report_of,
    user_of,
)
from service.audit import erasure, portability
from service.clock import checked_utc, now
from service.decisions import consent, decide, users
from service.delivery import outbox, worker
from service.errors import InvalidInput, NotFound
from service.experiments import analysis, flags, monitor, ramps, registry
from service.governance import approvals, change_requests
from service.models import lifecycle, records
from service.settings import Settings


@strawberry.type
class Query:
    @strawberry.field(permission_classes=CLIENT_OR_APP_USER)
    def next_steps(
        self,
        info: Info,
        user_id: strawberry.ID,
        channel: Channel = Channel.WEB,
        limit: int = 5,
        locale: Annotated[
            str | None,
            strawberry.argument(
                description="The BCP 47 tag of the language wanted for the steps' content (RFC 4647 lookup; "
                "default: the catalog's default language)"
            ),
        ] = None,
    ) -> Recommendation:
        runtime = runtime_of(info)
        rec = decide.next_steps(runtime, str(user_id), channel=channel.value, limit=limit, locale=locale)
        return recommendation_of(runtime, rec)

    @strawberry.field(permission_classes=CLIENT_OR_AUDITOR)
    def user(self, info: Info, id: strawberry.ID) -> User | None:
        profile = users.profile(runtime_of(info), str(id))
        return user_of(profile) if profile else None

    @strawberry.field(permission_classes=ANYONE)
    def steps(self, info: Info) -> list[Step]:
        catalog = runtime_of(info).catalog
        return [step_of(catalog, s) for s in catalog.steps]

    @strawberry.field(permission_classes=AUDITOR)
    def decision(self, info: Info, id: strawberry.ID) -> Decision | None:
        runtime = runtime_of(info)
        rec = decide.read_decision(runtime, str(id))
        if rec is None:
            return None
        if rec.at is None:  # read_decision reads a decision's time with the rest: a decision has one
            raise ValueError(f"decision {rec.decision_id} was read without its time")
        return Decision(
            id=strawberry.ID(rec.decision_id),
            at=rec.at,
            channel=Channel(rec.channel),
            personalized=rec.personalized,
            policy_version=rec.policy_version,
            model_version=rec.model_version,
            variant=rec.variant,
            steps=ranked_of(runtime.catalog, rec.steps, rec.contents),
            candidates=ranked_of(runtime.catalog, rec.candidates, rec.contents),
            held_back=held_back_of(runtime.catalog, rec.held_back),
            delivery=delivery_by_id(runtime, rec.delivery_id),
        )

    @strawberry.field(
        permission_classes=AUDITOR,
        description="Outbox messages, newest first: in one state (DEAD_LETTERED for the dead-letter list) or in any",
    )
    def deliveries(self, info: Info, state: DeliveryState | None = None, first: int = 50) -> list[Delivery]:
        if not 1 <= first <= 500:
            raise InvalidInput("first", f"must be between 1 and 500, got {first}")
        runtime = runtime_of(info)
        found = outbox.messages(runtime.store, state=state.value if state else None, first=first)
        return [delivery_of(runtime, m) for m in found]

    @strawberry.field(
        permission_classes=AUDITOR,
        description="Sentiment, ratings and thumbs by step, over the feedback of users who consent to FEEDBACK now, "
        "recorded since a time (default: all)",
    )
    def feedback_by_step(self, info: Info, since: datetime | None = None) -> list[StepFeedback]:
        from service.analytics import sentiment

        runtime = runtime_of(info)
        at = checked_utc(since, "since", max_skew_s=runtime.settings.max_clock_skew_s) if since else None
        catalog = runtime.catalog
        return [
            step_feedback_of(catalog, s) for s in sentiment.by_step(runtime, since=at) if s.step in catalog.entities
        ]

    @strawberry.field(permission_classes=AUDITOR, description="One outbox message, by its ID")
    def delivery(self, info: Info, id: strawberry.ID) -> Delivery | None:
        runtime = runtime_of(info)
        found = worker.message(runtime, str(id))
        return delivery_of(runtime, found) if found else None

    @strawberry.field(
        permission_classes=CLIENT_OR_OPERATOR,
        description="Everything held about the user (profile, events, consent history, decisions) as JSON-LD",
    )
    def export_user(self, info: Info, user_id: strawberry.ID) -> UserExport:
        at = now()
        document = portability.export_user(runtime_of(info), str(user_id))
        return UserExport(
            user_id=user_id, exported_at=at, format=portability.MEDIA_TYPE, document=strawberry.scalars.JSON(document)
        )

    @strawberry.field(permission_classes=AUDITOR, description="Every registered model version, oldest first")
    def models(self, info: Info) -> list[ModelVersion]:
        return [model_of(v) for v in records.versions(runtime_of(info))]

    @strawberry.field(
        permission_classes=AUDITOR,
        description="The fairness report the gate would make now on a model version (by name) or a policy version "
        "(by label, default@1.3.0): exposure to each step and activation by protected group, over the users with a "
        "FAIRNESS consent, judged by the governance policy's limits; not stored (promoting or approving stores one)",
    )
    def fairness_report(
        self, info: Info, version: str, channel: Channel = Channel.WEB, limit: int = 5
    ) -> FairnessReport:
        from service.governance import fairness_gate

        judged = fairness_gate.judge(runtime_of(info), version, channel=channel.value, limit=limit)
        return fairness_report_of(judged)

    @strawberry.field(
        permission_classes=AUDITOR, description="Every policy version, as it serves and as its file declares it"
    )
    def policy_versions(self, info: Info) -> list[PolicyVersion]:
        return _policy_versions(runtime_of(info))

    @strawberry.field(
        permission_classes=AUDITOR,
        description="Estimate a candidate policy version's step uptake offline, from the decisions an exploring "
        "version logged (SNIPW and doubly robust), against control's: the logging versions, or a version named",
    )
    def offline_evaluation(
        self,
        info: Info,
        candidate: str,
        control: str | None = None,
        window_days: float = 7.0,
        max_decisions: int = 20_000,
    ) -> OfflineEvaluation:
        from service.governance import evaluation

        if not 0 < window_days <= 365:
            raise InvalidInput("windowDays", f"between 0 and 365 days, got {window_days}")
        found = evaluation.evaluate(
            runtime_of(info),
            candidate,
            control=control,
            window=timedelta(days=window_days),
            max_decisions=max_decisions,
        )
        return offline_evaluation_of(found)

    @strawberry.field(permission_classes=OPERATOR, description="Every experiment, by ID")
    def experiments(self, info: Info) -> list[Experiment]:
        return [experiment_of(e) for e in registry.experiments(runtime_of(info))]

    @strawberry.field(permission_classes=OPERATOR, description="Every feature flag, by ID")
    def flags(self, info: Info) -> list[Flag]:
        return [flag_of(f) for f in flags.flags(runtime_of(info))]

    @strawberry.field(
        permission_classes=OPERATOR,
        description="Evaluate a flag for a user now, as nextSteps would (OpenFeature-style details); records nothing",
    )
    def evaluate_flag(
        self, info: Info, id: strawberry.ID, user_id: strawberry.ID, channel: Channel = Channel.WEB
    ) -> FlagEvaluation:
        return evaluation_of(decide.flag_details(runtime_of(info), str(id), str(user_id), channel=channel.value))

    @strawberry.field(
        permission_classes=OPERATOR,
        description="Per-arm KPIs with intervals and lifts, SRM state, sequential decisions and guardrail states; "
        "null when there is no such experiment",
    )
    def experiment_results(self, info: Info, id: strawberry.ID) -> ExperimentResults | None:
        runtime = runtime_of(info)
        if registry.find(runtime, str(id)) is None:
            return None
        return results_of(analysis.analyse(runtime, str(id)))


@strawberry.type
class Mutation:
    @strawberry.mutation(permission_classes=CLIENT)
    def register_user(self, info: Info, input: RegisterUserInput) -> User:
        profile = users.register(
            runtime_of(info),
            users.Registration(
                id=str(input.id),
                role=str(input.role) if input.role is not None else None,
                industry=str(input.industry) if input.industry is not None else None,
                plan=str(input.plan) if input.plan is not None else None,
                signup_channel=input.signup_channel.value if input.signup_channel else None,
                consents=[p.value for p in input.consents],
                at=input.at,
                protected_group=str(input.protected_group) if input.protected_group is not None else None,
                time_zone=input.time_zone,
            ),
        )
        return user_of(profile)

    @strawberry.mutation(
        permission_classes=CLIENT,
        description="Decide the user's next steps on EMAIL or MOBILE (push) and hand them to that channel's sender: "
        "the decision and its outbox message are written in one transaction, and the delivery worker sends it "
        "(signed, retried, at least once). Refused unless the catalog names a sender for the channel, its webhook "
        "is configured and the user consents to the sender's purpose (ONBOARDING_MESSAGES in the demo). Pacing "
        "applies as to nextSteps; where it holds everything back, nothing is sent (delivery is null)",
    )
    def deliver_next_steps(
        self,
        info: Info,
        user_id: strawberry.ID,
        channel: Channel,
        limit: int = 1,
        locale: Annotated[
            str | None,
            strawberry.argument(description="The BCP 47 tag of the language wanted for the message's content"),
        ] = None,
        idempotency_key: IdempotencyKeyArgument = None,
    ) -> Recommendation:
        runtime = runtime_of(info)
        rec = decide.next_steps(
            runtime,
            str(user_id),
            channel=channel.value,
            limit=limit,
            locale=locale,
            deliver=True,
            idempotency=idempotency_of(info, idempotency_key),
        )
        return recommendation_of(runtime, rec)

    @strawberry.mutation(
        permission_classes=OPERATOR,
        description="Send a dead-lettered outbox message again: pending, due now, its attempts counted from zero",
    )
    def requeue_delivery(self, info: Info, id: strawberry.ID) -> Delivery:
        runtime = runtime_of(info)
        return delivery_of(runtime, worker.requeue(runtime, str(id)))

    @strawberry.mutation(permission_classes=CLIENT_OR_APP_USER)
    def record_event(self, info: Info, input: EventInput, idempotency_key: IdempotencyKeyArgument = None) -> Event:
        return event_of(
            users.record_events(
                runtime_of(info),
                [report_of(input)],
                field_name="input",
                idempotency=idempotency_of(info, idempotency_key),
            )[0]
        )

    @strawberry.mutation(permission_classes=CLIENT_OR_APP_USER)
    def record_events(
        self, info: Info, inputs: list[EventInput], idempotency_key: IdempotencyKeyArgument = None
    ) -> int:
        cap = runtime_of(info).settings.max_events_per_request
        if len(inputs) > cap:
            raise InvalidInput("inputs", f"at most {cap} events per request, got {len(inputs)}")
        return len(
            users.record_events(
                runtime_of(info), [report_of(i) for i in inputs], idempotency=idempotency_of(info, idempotency_key)
            )
        )

    @strawberry.mutation(permission_classes=CLIENT_OR_APP_USER)
    def grant_consent(self, info: Info, user_id: strawberry.ID, purpose: Purpose) -> Consent:
        return consent_of(
            consent.set_consent(runtime_of(info), str(user_id), purpose.value, granted=True), str(user_id)
        )

    @strawberry.mutation(permission_classes=CLIENT_OR_APP_USER)
    def withdraw_consent(self, info: Info, user_id: strawberry.ID, purpose: Purpose) -> Consent:
        return consent_of(
            consent.set_consent(runtime_of(info), str(user_id), purpose.value, granted=False), str(user_id)
        )

    @strawberry.mutation(
        permission_classes=CLIENT_OR_OPERATOR,
        description="Erase the user's profile, events and consent records; decision records stay, pseudonymous",
    )
    def erase_user(self, info: Info, user_id: strawberry.ID) -> ErasureReceipt:
        receipt = erasure.erase(runtime_of(info), str(user_id), requested_by=info.context.get("principal", "api"))
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
        from service.models import training  # torch: imported by the first training run, not with the API

        version = training.train(
            runtime_of(info), seed=seed, epochs=epochs, members=members, requested_by=info.context.get("principal")
        )
        return model_of(version)

    @strawberry.mutation(
        permission_classes=OPERATOR, description="Approve a version and serve it from the next request on"
    )
    def promote_model(self, info: Info, version: str, approved_by: str | None = None) -> ModelVersion:
        runtime = runtime_of(info)
        needed = approvals.required(runtime, keys_on=bool(info.context.get("keys_on")))
        promoted = lifecycle.promote(
            runtime,
            version,
            approved_by=approver(info.context, approved_by),
            required=needed,
            role=approver_role(info.context),
        )
        return model_of(promoted)

    @strawberry.mutation(
        permission_classes=APPROVER,
        description=(
            "Approve (or, with approve: false, reject) a policy version as its content is now, for the caller's "
            "principal; with API keys a version its file declares active serves once WAYFINDER_APPROVALS_REQUIRED "
            "principals approve it (of two roles when it changes who sees high-impact steps: see impactAssessment)"
        ),
    )
    def approve_policy_version(
        self, info: Info, version: str, approved_by: str | None = None, approve: bool = True
    ) -> PolicyVersion:
        runtime = runtime_of(info)
        verdict = approvals.APPROVED if approve else approvals.REJECTED
        approvals.approve_policy(
            runtime,
            version,
            by=approver(info.context, approved_by),
            role=approver_role(info.context, runtime),
            verdict=verdict,
        )
        return _policy_versions(runtime, [version])[0]

    @strawberry.mutation(
        permission_classes=APPROVER,
        description=(
            "Approve (or, with approve: false, reject) a model version as it is, for the caller's principal; with "
            "API keys it serves once WAYFINDER_APPROVALS_REQUIRED principals other than its author approve it (of "
            "two roles when it changes who sees high-impact steps: see impactAssessment)"
        ),
    )
    def approve_model_version(
        self, info: Info, version: str, approved_by: str | None = None, approve: bool = True
    ) -> ModelVersion:
        verdict = approvals.APPROVED if approve else approvals.REJECTED
        runtime = runtime_of(info)
        judged = lifecycle.approve(
            runtime,
            version,
            approved_by=approver(info.context, approved_by),
            role=approver_role(info.context, runtime),
            verdict=verdict,
        )
        return model_of(judged)

    @strawberry.mutation(permission_classes=OPERATOR, description="Return to the version the active one superseded")
    def rollback_model(self, info: Info) -> ModelVersion:
        return model_of(lifecycle.rollback(runtime_of(info)))

    @strawberry.mutation(
        permission_classes=OPERATOR, description="Record a draft experiment; the first arm is the control"
    )
    def create_experiment(self, info: Info, input: ExperimentInput) -> Experiment:
        return experiment_of(registry.create(runtime_of(info), spec_of(input), by=principal(info.context)))

    @strawberry.mutation(
        permission_classes=APPROVER,
        description="Approve a draft: with API keys, by a principal other than its creator (and by two roles when an "
        "arm's version changes who sees high-impact steps); without keys not needed",
    )
    def approve_experiment(self, info: Info, id: strawberry.ID) -> Experiment:
        four_eyes = bool(info.context.get("keys_on"))
        runtime = runtime_of(info)
        role = approver_role(info.context, runtime)
        return experiment_of(
            registry.approve(runtime, str(id), by=principal(info.context), four_eyes=four_eyes, role=role)
        )

    @strawberry.mutation(
        permission_classes=OPERATOR, description="Start assigning users (with API keys, once approved)"
    )
    def start_experiment(self, info: Info, id: strawberry.ID) -> Experiment:
        needs = bool(info.context.get("keys_on"))
        return experiment_of(
            registry.start(runtime_of(info), str(id), by=principal(info.context), needs_approval=needs)
        )

    @strawberry.mutation(
        permission_classes=OPERATOR,
        description="Change the share of users the experiment takes in; users already in stay in their arm. "
        "Widening a running experiment with guardrails needs evidence that could detect each guardrail's "
        "detectableDrop (80% power); lowering is always allowed",
    )
    def ramp_experiment(self, info: Info, id: strawberry.ID, coverage: float) -> Experiment:
        return experiment_of(ramps.ramp(runtime_of(info), str(id), coverage, by=principal(info.context)))

    @strawberry.mutation(
        permission_classes=OPERATOR,
        description="Change the arms' weights, one per arm in order (normalised); users already assigned keep their arm",
    )
    def reweight_experiment(self, info: Info, id: strawberry.ID, weights: list[float]) -> Experiment:
        return experiment_of(registry.reweight(runtime_of(info), str(id), weights, by=principal(info.context)))

    @strawberry.mutation(
        permission_classes=OPERATOR, description="Stop assigning; the policy's active version serves all"
    )
    def stop_experiment(self, info: Info, id: strawberry.ID) -> Experiment:
        return experiment_of(registry.stop(runtime_of(info), str(id), by=principal(info.context)))

    @strawberry.mutation(
        permission_classes=OPERATOR,
        description="Run the guardrail monitor once, now: evaluate every running experiment (rolling back harmed "
        "arms) and return every running, stopped or rolled-back one",
    )
    def check_guardrails(self, info: Info) -> list[Experiment]:
        return [experiment_of(e) for e in monitor.check(runtime_of(info))]

    @strawberry.mutation(
        permission_classes=OPERATOR,
        description="Create a flag (version 1) pinning a policy's version. With approvals required it is proposed "
        "instead (it may widen exposure): the answer is the proposal as version 0, its pendingChange in review",
    )
    def create_flag(self, info: Info, input: FlagInput) -> Flag:
        return _flag_change(info, definition_of(input), kind="create")

    @strawberry.mutation(
        permission_classes=OPERATOR,
        description="Replace a flag's definition: its next version. With approvals required, a change that may widen "
        "exposure is proposed instead: the flag comes back as it is, its pendingChange in review",
    )
    def update_flag(self, info: Info, input: FlagInput) -> Flag:
        return _flag_change(info, definition_of(input), kind="update")

    @strawberry.mutation(
        permission_classes=OPERATOR,
        description="Turn a flag on, or off (the kill switch: everyone gets its default, at once). Turning it on "
        "may widen exposure: with approvals required it is proposed instead",
    )
    def set_flag_enabled(self, info: Info, id: strawberry.ID, enabled: bool) -> Flag:
        current = flags.find(runtime_of(info), str(id))
        if current is None:
            raise NotFound(f"no flag {str(id)!r}")
        return _flag_change(
            info, dataclasses.replace(current, enabled=enabled), kind="enable" if enabled else "disable"
        )

    @strawberry.mutation(
        permission_classes=APPROVER,
        description="Approve (or, approve: false, reject) a flag's change in review, as its content is now; it applies "
        "once the quorum of principals other than its author approved it (of two roles when a variant's version "
        "changes who sees high-impact steps)",
    )
    def approve_flag_change(self, info: Info, id: strawberry.ID, approve: bool = True) -> FlagChangeRequest:
        runtime = runtime_of(info)
        verdict = approvals.APPROVED if approve else approvals.REJECTED
        needed = approvals.required(runtime, keys_on=bool(info.context.get("keys_on")))
        done = change_requests.approve(
            runtime,
            str(id),
            by=principal(info.context),
            verdict=verdict,
            needed=needed,
            role=approver_role(info.context, runtime),
        )
        return request_of(runtime, done)


def _flag_change(info: Info, flag: flags.Flag, *, kind: str) -> Flag:
    """Apply a flag change, or propose it when approvals are required and it may widen exposure."""
    runtime = runtime_of(info)
    needed = approvals.required(runtime, keys_on=bool(info.context.get("keys_on")))
    done = change_requests.save(runtime, flag, by=principal(info.context), kind=kind, needed=needed)
    if isinstance(done, change_requests.ChangeRequest):
        current = flags.find(runtime, flag.id)
        return flag_of(current if current is not None else dataclasses.replace(done.proposed, version=0))
    return flag_of(done)


def _policy_versions(runtime, labels: list[str] | None = None) -> list[PolicyVersion]:
    """The versions (all, or these labels) as they serve and as declared, with one read of the declared ones."""
    from service.knowledge.policies import read_policies

    declared = read_policies(runtime.store, runtime.queries)
    serving = sorted(runtime.knowledge.policies.values(), key=lambda v: v.label)
    return [policy_of(v, declared[v.iri]) for v in serving if labels is None or v.label in labels]


def principal(context: dict) -> str:
    """Who provenance names for a change: the authenticated principal ("open" on a service without keys)."""
    return str(context.get("principal") or "open")


def approver_role(context: dict, runtime=None) -> str:
    """The role an approval is recorded with: the caller's, as :func:`approvals.acting_role` admits it (with a
    ``runtime``; without one, as it is)."""
    role = str(context.get("role") or "open")
    return role if runtime is None else approvals.acting_role(runtime, role)


def approver(context: dict, named: str | None) -> str:
    """Return who approves: with keys the caller's principal (an argument naming anyone else is refused)."""
    return approvals.approver(keys_on=bool(context.get("keys_on")), principal=context.get("principal"), named=named)


class _Schema(strawberry.Schema):
    """The schema, with what a request's errors say logged by :func:`service.api.errors.log_errors`."""

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        log_errors(errors, execution_context)


def build_schema(settings: Settings | None = None, *, introspection: bool = True) -> strawberry.Schema:
    """Return the schema with its limits: depth, aliases, tokens, fields; introspection optional.

    The depth and alias rules of strawberry's limiters are built once here, not per request:
    the validation cache keys on the rule classes, so rules made afresh would never hit it.
    """
    settings = settings or Settings()
    rules: list[type[ASTValidationRule]] = [
        depth_limit(settings.max_query_depth),
        aliases_rule(settings.max_aliases),
        field_budget(settings.max_fields),
    ]
    if not introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    schema = _Schema(
        query=Query,
        mutation=Mutation,
        extensions=[
            OperationMetrics,
            ErrorCodes,
            lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
            lambda: ReportingParserCache(maxsize=256),
            lambda: AddValidationRules(rules),
            lambda: ValidationCache(maxsize=256),
        ],
    )
    return schema
