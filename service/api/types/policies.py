"""GraphQL types of policy versions and their approvals."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from service.api.types.models import Approval
from service.governance import approvals


@strawberry.type(description="A policy version as it serves, with the approvals of its content")
class PolicyVersion:
    version: str = strawberry.field(description="The label, as Recommendation.policyVersion: default@1.2.0")
    status: str = strawberry.field(
        description="As it serves: with API keys, a version its file declares active is a candidate until approved"
    )
    declared_status: str = strawberry.field(description="As its file declares it")
    content_hash: str | None = strawberry.field(description="wf:contentHash over the version and its rules")
    iri: strawberry.Private[str]

    @strawberry.field(description="Every approval and rejection recorded for this version, oldest first")
    def approvals(self, info: Info) -> list[Approval]:
        return [
            Approval(by=a.by, at=a.at, verdict=a.verdict, content=a.content, current=a.content == self.content_hash)
            for a in approvals.of(info.context["runtime"], self.iri)
        ]


def policy_of(serving, declared) -> PolicyVersion:
    """The GraphQL view of a version: ``serving`` as the runtime serves it, ``declared`` as its file says."""
    return PolicyVersion(
        version=serving.label,
        status=serving.status,
        declared_status=declared.status,
        content_hash=serving.content_hash,
        iri=serving.iri,
    )
