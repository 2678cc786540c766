"""The life cycle of a model version: candidate, then active once approved, then retired or rolled back.

A new version is a candidate (``service.models.training`` registers it). ``approve``
records a principal's approval of it (:mod:`service.governance.approvals`); ``promote``
records the promoter's approval with the promotion and makes it active once enough
principals other than whoever trained it approve it; the previously active one becomes retired
and is remembered by ``wf:supersedes``. ``rollback`` marks the active one rolled back
and makes the one it superseded active again. Only the active version serves
(``service.models.serving``). Each change is one commit, under the store's write lock.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import pyoxigraph as ox

from service.clock import datetime_literal, now
from service.errors import Conflict, Forbidden, InvalidInput
from service.governance import approvals, fairness_gate, impact
from service.knowledge import vocab
from service.models import monitoring
from service.models.records import ModelVersion, Status, active, find, status_quad
from service.runtime import Runtime

MAX_APPROVER = 200
log = logging.getLogger("wayfinder.models")


def approve(
    runtime: Runtime, version: str, *, approved_by: str, role: str = "operator", verdict: str = approvals.APPROVED
) -> ModelVersion:
    """Record ``approved_by``'s approval (or rejection), acting in ``role``, of a version as it is; it serves only
    once promoted. An approval first has the version's impact on high-impact steps assessed (and stored)."""
    target = find(runtime, version)
    what = f"model version {version}"
    approvals.check(
        runtime,
        target.iri,
        content=target.artifact_hash,
        author=target.requested_by,
        by=approved_by,
        verdict=verdict,
        what=what,
    )
    if verdict == approvals.APPROVED and target.status is not Status.ACTIVE:
        impact.assess_model(runtime, target)
    with runtime.trail.exclusive():
        target = find(runtime, version)
        approvals.record(
            runtime,
            target.iri,
            content=target.artifact_hash,
            author=target.requested_by,
            by=approved_by,
            role=role,
            verdict=verdict,
            what=f"model version {version}",
        )
    return find(runtime, version)


def _check_promotable(
    runtime: Runtime, version: str, approver: str, required: int, *, role: str = "operator", assessed: bool = False
) -> tuple[ModelVersion, approvals.Standing]:
    """Refuse a promotion the version's status or approvals do not allow; return the version and its standing.

    With ``assessed`` (the impact assessment is stored), the approvals with the promoter's must also be of the two
    roles a high-impact version needs."""
    target = find(runtime, version)
    if target.status is Status.ACTIVE:
        raise Conflict(f"model version {version} is already active")
    what = f"model version {version}"
    if target.requested_by is not None and approver == target.requested_by:
        raise Forbidden(f"{what} was trained at {approver!r}'s request: another principal approves it")
    second = approvals.second_role(runtime, target.iri, target.artifact_hash) if assessed and required else None
    stand = approvals.standing(
        runtime, target.iri, content=target.artifact_hash, author=target.requested_by, needed=required, second=second
    )
    if stand.rejections:
        raise Forbidden(f"{what} was rejected by {', '.join(a.by for a in stand.rejections)}")
    have = len(set(stand.approvers) | {approver})
    if have < required:
        raise Forbidden(
            f"{what} needs {required} approvals from principals other than its author and has {have} with "
            f"{approver!r}'s: approveModelVersion by another principal first"
        )
    with_promoter = stand
    if approver not in stand.approvers:
        promoter = approvals.Approval("", target.iri, approver, now(), target.artifact_hash, approvals.APPROVED, role)
        with_promoter = replace(stand, approvals=(*stand.approvals, promoter))
    missing = with_promoter.roles_missing()
    if missing:
        found = impact.latest(runtime, target.iri, target.artifact_hash)
        said = f" ({found.summary()}; impact assessment {found.record})" if found is not None else ""
        raise Forbidden(f"{what} needs {missing}{said}: approveModelVersion by such a principal first")
    return target, stand


def promote(
    runtime: Runtime, version: str, *, approved_by: str, required: int = 0, role: str = "operator"
) -> ModelVersion:
    """Approve a version and make it the one that serves; the previously active one is retired.

    ``approved_by``'s approval is recorded with the promotion, in one commit. The version serves only when,
    with it, ``required`` principals other than its author approve its artifact as it is and none rejects it;
    otherwise nothing is written but the gates' reports. A version whose impact assessment finds that it changes
    who sees a high-impact step needs those approvals from two roles (:mod:`service.governance.impact`).
    """
    approver = approvals.check_principal(approved_by)
    if len(approver) > MAX_APPROVER:
        raise InvalidInput("approvedBy", f"at most {MAX_APPROVER} characters")
    target, _ = _check_promotable(runtime, version, approver, required)  # the cheap checks first, then the gates
    monitoring.check_promotion(runtime, version, by=approver)  # drift past the governance limit: refused, reported
    fairness_gate.require_fair(runtime, version)  # disparity past a fairness limit: refused, reported
    if required:
        impact.assess_model(runtime, target)  # who sees high-impact steps: stored, then two roles may be needed
    with runtime.trail.exclusive():
        # again, with the roles: another may have acted meanwhile
        target, stand = _check_promotable(runtime, version, approver, required, role=role, assessed=True)
        current = active(runtime)
        g = vocab.MODELS_GRAPH
        node = ox.NamedNode(target.iri)
        remove = [status_quad(node, target.status)]
        remove += [
            q
            for p in (vocab.APPROVED_BY, vocab.APPROVED_AT, vocab.SUPERSEDES)
            for q in runtime.store.quads(subject=node, predicate=p, graph=g)
        ]
        add = [
            status_quad(node, Status.ACTIVE),
            ox.Quad(node, vocab.APPROVED_BY, ox.Literal(approver), g),
            ox.Quad(node, vocab.APPROVED_AT, datetime_literal(now()), g),
        ]
        if current is not None:
            old = ox.NamedNode(current.iri)
            remove.append(status_quad(old, Status.ACTIVE))
            add += [status_quad(old, Status.RETIRED), ox.Quad(node, vocab.SUPERSEDES, old, g)]
        if approver in stand.approvers:
            runtime.store.commit(add=add, remove=remove)
        else:
            approvals.record(
                runtime,
                target.iri,
                content=target.artifact_hash,
                author=target.requested_by,
                by=approver,
                role=role,
                what=f"model version {version}",
                extra=add,
                remove=remove,
            )
    log.info("model promoted", extra={"model_version": version, "approved_by": approver})
    return find(runtime, version)


def rollback(runtime: Runtime) -> ModelVersion:
    """Retire the active version as rolled back and make the one it superseded active again."""
    with runtime.store.write_lock:
        current = active(runtime)
        if current is None:
            raise Conflict("no model version is active: there is nothing to roll back")
        if current.supersedes is None:
            raise Conflict(f"model version {current.version} superseded no version: there is none to roll back to")
        previous = find(runtime, current.supersedes)
        now_node, back = ox.NamedNode(current.iri), ox.NamedNode(previous.iri)
        runtime.store.commit(
            remove=[status_quad(now_node, Status.ACTIVE), status_quad(back, previous.status)],
            add=[status_quad(now_node, Status.ROLLED_BACK), status_quad(back, Status.ACTIVE)],
        )
    log.info("model rolled back", extra={"model_version": previous.version, "rolled_back": current.version})
    return find(runtime, previous.version)
