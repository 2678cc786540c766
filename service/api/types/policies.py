"""GraphQL types of policy versions and their approvals."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from service.api.types.models import Approval, ImpactAssessment, Review, approvals_of, impact_of, review_of
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
        return approvals_of(info.context["runtime"], self.iri, content=self.content_hash)

    @strawberry.field(
        description="The latest assessment of whether this version changes who sees high-impact steps (made when "
        "it, an experiment plan or a flag change serving it is approved); null before any"
    )
    def impact_assessment(self, info: Info) -> ImpactAssessment | None:
        return impact_of(info.context["runtime"], self.iri, self.content_hash)

    @strawberry.field(
        description="Where it stands: draft (a candidate its file does not propose), in-review (declared active, "
        "waiting for approvals), approved, active, rejected or retired"
    )
    def review(self, info: Info) -> Review:
        runtime = info.context["runtime"]
        needed, content = runtime.approvals_needed, self.content_hash or ""
        stand = approvals.standing(
            runtime,
            self.iri,
            content=content,
            author=None,
            needed=needed,
            second=approvals.second_role(runtime, self.iri, content) if needed else None,
        )
        state = stand.state(
            serving=self.status == "active",
            proposed=self.declared_status == "active",
            retired=self.declared_status == "retired",
        )
        return review_of(stand, state)


def policy_of(serving, declared) -> PolicyVersion:
    """The GraphQL view of a version: ``serving`` as the runtime serves it, ``declared`` as its file says."""
    return PolicyVersion(
        version=serving.label,
        status=serving.status,
        declared_status=declared.status,
        content_hash=serving.content_hash,
        iri=serving.iri,
    )


@strawberry.type(description="A policy value estimated off-policy, with its normal interval (cluster-robust)")
class PolicyEstimate:
    estimator: str = strawberry.field(description="snipw, dr, on-policy, or a difference of two")
    value: float
    low: float
    high: float
    level: float = strawberry.field(description="The interval's confidence level, e.g. 0.95")
    effective_sample_size: float = strawberry.field(description="(sum of weights)^2 / sum of squared weights")


@strawberry.type(
    description="A candidate policy version's step uptake (the share of shown steps completed within the window), "
    "estimated from the decisions an exploring version logged, against control's on the same decisions"
)
class OfflineEvaluation:
    candidate: str
    control: str = strawberry.field(description='A version label, or "logged" for the versions that made the log')
    decisions: int
    rows: int = strawberry.field(description="Shown steps in those decisions")
    window_days: float
    snipw: PolicyEstimate = strawberry.field(description="The candidate's uptake, self-normalised IPW")
    doubly_robust: PolicyEstimate = strawberry.field(description="The candidate's uptake, doubly robust")
    control_value: PolicyEstimate
    difference: PolicyEstimate = strawberry.field(
        description="Candidate (doubly robust) minus control, paired by decision: what an experiment's offline gate reads"
    )
    difference_snipw: PolicyEstimate = strawberry.field(description="Candidate (SNIPW) minus control")


def estimate_of(found) -> PolicyEstimate:
    return PolicyEstimate(
        estimator=found.estimator,
        value=found.value,
        low=found.low,
        high=found.high,
        level=found.level,
        effective_sample_size=found.effective_sample_size,
    )


def offline_evaluation_of(found) -> OfflineEvaluation:
    return OfflineEvaluation(
        candidate=found.candidate,
        control=found.control,
        decisions=found.decisions,
        rows=found.rows,
        window_days=found.window_days,
        snipw=estimate_of(found.candidate_snipw),
        doubly_robust=estimate_of(found.candidate_dr),
        control_value=estimate_of(found.control_value),
        difference=estimate_of(found.difference),
        difference_snipw=estimate_of(found.difference_snipw),
    )
