"""GraphQL types of the model registry."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.types import Info

from service.api.permissions import OPERATOR
from service.api.types.health import ModelHealth, health_of
from service.governance import approvals
from service.models import monitoring


@strawberry.type(
    description="A principal's approval or rejection of one content of a version, as the audit trail records it"
)
class Approval:
    by: str = strawberry.field(description="The principal: the caller's, with API keys")
    at: datetime
    verdict: str = strawberry.field(description="approved or rejected")
    content: str = strawberry.field(description="The content hash it judged (a model version's artifact hash)")
    current: bool = strawberry.field(description="Whether it judged the content as it is now (only those count)")
    role: str = strawberry.field(
        description="The role of the key it was given with (operator, auditor, engineer; open without keys; empty "
        "on records older than roles)"
    )


@strawberry.type(
    description="Where a change stands, the same for policy versions, model versions, experiment plans and flag "
    "changes: draft, in-review (proposed to serve, or with some approvals), approved, active (it serves), rejected "
    "(a current rejection) or retired (it served and no longer does). Only approvals of the current content count"
)
class Review:
    state: str
    approvals: int = strawberry.field(description="Approvals of the current content that count (never the author's)")
    needed: int = strawberry.field(description="The quorum: WAYFINDER_APPROVALS_REQUIRED with API keys, 0 without")
    required_role: str | None = strawberry.field(
        description="The second role its approvals must include, when it changes who sees high-impact steps"
    )
    lacking: str | None = strawberry.field(description="What keeps it from being approved, in words")


def review_of(stand: approvals.Standing, state: str) -> Review:
    return Review(
        state=state,
        approvals=len(stand.approvals),
        needed=stand.needed,
        required_role=stand.second_role,
        lacking=None if state == "active" else stand.lacking(),
    )


@strawberry.type(
    description="For how many (user, channel) pairs ranked now what serves and the assessed version show a step"
)
class StepImpact:
    step: str = strawberry.field(description="The high-impact step's ID")
    before: int
    after: int
    gained: int = strawberry.field(description="Pairs that would newly be shown it")
    lost: int = strawberry.field(description="Pairs that would no longer be shown it")
    moved: int = strawberry.field(description="Pairs that would be shown it at another rank")


@strawberry.type(
    description="Whether a version, as its content is, changes who sees the catalog's high-impact steps: the "
    "most recently registered users ranked now under what serves and under it. A high-impact change needs approvals "
    "of two roles, one of them requiredRole"
)
class ImpactAssessment:
    id: strawberry.ID = strawberry.field(description="The wf:ImpactAssessment record's IRI")
    at: datetime
    content: str = strawberry.field(description="The content hash it judged")
    baseline: str = strawberry.field(description='The version serving when it ran, or "none"')
    high_impact: bool
    required_role: str = strawberry.field(description="The second role a high-impact change needs")
    ranked: int = strawberry.field(
        description="(user, channel) pairs ranked: recent users, on each channel where a high-impact step is available"
    )
    changed: int = strawberry.field(
        description="Of them, those that would be shown other high-impact steps, or one at another rank"
    )
    summary: str
    steps: list[StepImpact]


def impact_of(runtime, entity: str, content: str | None) -> ImpactAssessment | None:
    """The latest impact assessment of an entity's current content, or None when none was made."""
    from service.governance import impact
    from service.knowledge import vocab

    found = impact.latest(runtime, entity, content or "")
    if found is None:
        return None
    return ImpactAssessment(
        id=strawberry.ID(found.record or ""),
        at=found.at,
        content=found.content,
        baseline=found.baseline,
        high_impact=found.high_impact,
        required_role=found.role,
        ranked=found.ranked,
        changed=found.changed,
        summary=found.summary(),
        steps=[
            StepImpact(
                step=vocab.local_id(s.step), before=s.before, after=s.after, gained=s.gained, lost=s.lost, moved=s.moved
            )
            for s in found.steps
        ],
    )


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
    iri: strawberry.Private[str]
    requested_by: strawberry.Private[str | None] = None

    @strawberry.field(
        description="Where its promotion stands: in-review (a candidate), approved, active, rejected or retired"
    )
    def review(self, info: Info) -> Review:
        runtime = info.context["runtime"]
        needed = approvals.required(runtime, keys_on=bool(info.context.get("keys_on")))
        content = self.artifact_hash
        stand = approvals.standing(
            runtime,
            self.iri,
            content=content,
            author=self.requested_by,
            needed=needed,
            second=approvals.second_role(runtime, self.iri, content) if needed else None,
        )
        retired = self.status in ("retired", "rolled-back")
        return review_of(stand, stand.state(serving=self.status == "active", proposed=True, retired=retired))

    @strawberry.field(description="Every approval and rejection recorded for this version, oldest first")
    def approvals(self, info: Info) -> list[Approval]:
        return approvals_of(info.context["runtime"], self.iri, content=self.artifact_hash)

    @strawberry.field(
        description="The latest assessment of whether this version changes who sees high-impact steps (made when "
        "it is approved or promoted); null before any"
    )
    def impact_assessment(self, info: Info) -> ImpactAssessment | None:
        return impact_of(info.context["runtime"], self.iri, self.artifact_hash)

    @strawberry.field(
        permission_classes=OPERATOR,
        description=(
            "Operators: drift of its inputs and scores since training and calibration by decile, against the "
            "governance limits (computed now, not recorded; `wayfinder model health` records a report)"
        ),
    )
    def health(
        self,
        info: Info,
        offline: Annotated[
            bool,
            strawberry.argument(description="Score the latest decisions with it instead of reading those it served"),
        ] = False,
    ) -> ModelHealth:
        return health_of(monitoring.model_health(info.context["runtime"], self.version, offline=offline or None))


def approvals_of(runtime, entity: str, *, content: str | None) -> list[Approval]:
    """Every approval and rejection of an entity, oldest first, each marked current when it judged ``content``."""
    return [
        Approval(by=a.by, at=a.at, verdict=a.verdict, content=a.content, current=a.content == content, role=a.role)
        for a in approvals.of(runtime, entity)
    ]


def model_of(version) -> ModelVersion:
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
        iri=version.iri,
        requested_by=version.requested_by,
    )
