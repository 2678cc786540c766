"""The life cycle of a model version: candidate, then active once approved, then retired or rolled back.

A new version is a candidate (``service.models.training`` registers it). ``promote``
records who approved it and makes it active; the previously active one becomes retired
and is remembered by ``wf:supersedes``. ``rollback`` marks the active one rolled back
and makes the one it superseded active again. Only the active version serves
(``service.models.serving``). Each change is one commit, under the store's write lock.
"""

from __future__ import annotations

import logging

import pyoxigraph as ox

from service.clock import datetime_literal, now
from service.errors import Conflict, InvalidInput
from service.knowledge import vocab
from service.models.records import ModelVersion, Status, active, find, status_quad
from service.runtime import Runtime

MAX_APPROVER = 200
log = logging.getLogger("wayfinder.models")


def promote(runtime: Runtime, version: str, *, approved_by: str) -> ModelVersion:
    """Approve a version and make it the one that serves; the previously active one is retired."""
    approver = (approved_by or "").strip()
    if not approver:
        raise InvalidInput("approvedBy", "name who approved the version")
    if len(approver) > MAX_APPROVER:
        raise InvalidInput("approvedBy", f"at most {MAX_APPROVER} characters")
    with runtime.store.write_lock:
        target = find(runtime, version)
        if target.status is Status.ACTIVE:
            raise Conflict(f"model version {version} is already active")
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
        runtime.store.commit(add=add, remove=remove)
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
