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

    @strawberry.field(description="Every approval and rejection recorded for this version, oldest first")
    def approvals(self, info: Info) -> list[Approval]:
        return approvals_of(info.context["runtime"], self.iri, content=self.artifact_hash)

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
        Approval(by=a.by, at=a.at, verdict=a.verdict, content=a.content, current=a.content == content)
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
    )
