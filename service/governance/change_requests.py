"""Flag change requests: with approvals required, a flag change that may widen exposure waits for approval.

Creating a flag, or changing one in any way but turning it off (the kill switch) or dropping rules
from the end of its list (their users fall through to the default), may serve a non-default
version to users who were not served it before. With approvals required (API keys on, a quorum
above 0), such a change is not applied: it is proposed as a change request
(``wf:FlagChangeRequest``), whose state is data: ``in-review``, then ``applied`` once the quorum
of principals other than its author approved its content (``wf:Approval`` records of the
request's content hash), or ``rejected`` at the first rejection. A new proposal for a flag
replaces its pending one; approvals of the old content do not count for the new. A change that
only takes exposure away applies at once: the kill switch must never wait.

The applied change is the flag's next version (``service.experiments.flags.save``), recorded by
the request's author with the approvers named on the request.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, replace
from datetime import datetime

import pyoxigraph as ox

from service.audit.records import change_record
from service.clock import datetime_literal, now, parse_datetime
from service.errors import Conflict, InvalidInput, NotFound
from service.experiments import flags
from service.experiments.registry import ID_PATTERN
from service.governance import approvals, impact
from service.knowledge import vocab
from service.knowledge.policies import PolicyVersion
from service.knowledge.store import bound
from service.runtime import Runtime

IN_REVIEW, APPLIED, REJECTED = "in-review", "applied", "rejected"


@dataclass(frozen=True)
class ChangeRequest:
    flag: str
    kind: str  # create, update, enable
    proposed: flags.Flag
    status: str
    created_by: str
    created_at: datetime
    content: str

    @property
    def iri(self) -> str:
        return vocab.FLAG_REQUEST_BASE + self.flag


def widens(before: flags.Flag | None, after: flags.Flag) -> bool:
    """Whether a change may serve a non-default version to someone not served it before (conservatively)."""
    if before is None:
        return True
    if not after.enabled:
        return False  # off: everyone gets the default
    if not before.enabled:
        return True
    if _definition(after) != _definition(before):
        return True
    return not (len(after.rules) <= len(before.rules) and after.rules == before.rules[: len(after.rules)])


def _definition(flag: flags.Flag) -> tuple:
    """What a flag serves, but for its rules: its policy, variants, default and prerequisites."""
    return (flag.policy, tuple(sorted(flag.variants)), flag.default_variant, flag.prerequisites)


def save(runtime: Runtime, flag: flags.Flag, *, by: str, kind: str, needed: int) -> flags.Flag | ChangeRequest:
    """Apply the change, or, when it may widen exposure and ``needed`` approvals are required, propose it."""
    current = flags.find(runtime, flag.id)
    if needed <= 0 or not widens(current, flag):
        return flags.save(runtime, flag, by=by, kind=kind)
    proposed = flag if current is None else replace(flag, created_by=current.created_by, created_at=current.created_at)
    flags.checked(runtime, replace(proposed, version=(current.version + 1) if current else 1))
    if kind == "create" and current is not None:
        raise Conflict(f"input.id: a flag {flag.id!r} exists", details=[{"field": "input.id", "reason": "duplicate"}])
    request = ChangeRequest(flag.id, kind, proposed, IN_REVIEW, by, now(), _content(kind, proposed))
    _store(runtime, request, change="propose", by=by)
    return request


def pending(runtime: Runtime, flag_id: str) -> ChangeRequest | None:
    """The flag's latest change request, whatever its state (None when it never had one)."""
    if not ID_PATTERN.fullmatch(flag_id):
        raise InvalidInput("id", "a flag ID: 1 to 64 letters, digits, '.', '_' or '-', starting with one of the first")
    rows = runtime.store.select(runtime.queries["flag-requests"].bind(request=ox.NamedNode(_iri(flag_id))))
    if not rows:
        return None
    row = rows[0]
    state = json.loads(bound(row, "proposed").value)
    return ChangeRequest(
        flag=flag_id,
        kind=bound(row, "kind").value,
        proposed=flags.from_state(state),
        status=bound(row, "status").value,
        created_by=bound(row, "createdBy").value,
        created_at=parse_datetime(bound(row, "createdAt").value),
        content=bound(row, "content").value,
    )


def approve(
    runtime: Runtime, flag_id: str, *, by: str, verdict: str, needed: int, role: str = "operator"
) -> ChangeRequest:
    """Record a principal's verdict (acting in ``role``) on the flag's pending change; apply it once the quorum
    approved. A change whose variants serve a version that changes who sees high-impact steps needs approvals of
    two roles (the versions are assessed, and the assessments stored, before the verdict is recorded)."""
    request = pending(runtime, flag_id)
    if request is not None and request.status == IN_REVIEW and verdict == approvals.APPROVED:
        for version in _variant_versions(runtime, request.proposed):
            impact.assess_policy(runtime, version)
    with runtime.trail.exclusive():
        request = pending(runtime, flag_id)
        if request is None or request.status != IN_REVIEW:
            raise NotFound(f"flag {flag_id!r} has no change in review")
        what = f"the change to flag {flag_id!r}"
        approvals.record(
            runtime,
            request.iri,
            content=request.content,
            author=request.created_by,
            by=by,
            role=role,
            verdict=verdict,
            what=what,
        )
        stand = standing_of(runtime, request, needed=needed)
        if stand.rejections:
            done = replace(request, status=REJECTED)
            _store(runtime, done, change="reject", by=by)
            return done
        if not stand.approved:
            return request
        flags.save(runtime, request.proposed, by=request.created_by, kind=request.kind)
        done = replace(request, status=APPLIED)
        _store(runtime, done, change="apply", by=by, approvers=stand.approvers)
        return done


def standing_of(runtime: Runtime, request: ChangeRequest, *, needed: int) -> approvals.Standing:
    """Where the proposed change stands: its approvals (never its author's) against ``needed``, with the second role
    a variant's high-impact version asks for."""
    return approvals.standing(
        runtime,
        request.iri,
        content=request.content,
        author=request.created_by,
        needed=needed,
        second=second_role(runtime, request) if needed else None,
    )


def second_role(runtime: Runtime, request: ChangeRequest) -> str | None:
    """The second role the change's approvals need: when a variant's version changes who sees a high-impact step."""
    for version in _variant_versions(runtime, request.proposed):
        role = approvals.second_role(runtime, version.iri, version.content_hash or "")
        if role is not None:
            return role
    return None


def _variant_versions(runtime: Runtime, flag: flags.Flag) -> list[PolicyVersion]:
    """The policy versions the flag's variants would serve, as the knowledge has them now."""
    by_label = {v.label: v for v in runtime.knowledge.policies.values()}
    labels = dict.fromkeys(label for _, label in flag.variants)
    return [by_label[label] for label in labels if label in by_label]


def _iri(flag_id: str) -> str:
    return vocab.FLAG_REQUEST_BASE + flag_id


def _content(kind: str, flag: flags.Flag) -> str:
    """The hash of what an approval judges: the kind of change and the definition it would apply."""
    data = flag.state()
    for key in ("version", "created_by", "created_at"):
        data.pop(key)
    text = json.dumps({"kind": kind, "flag": data}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _store(
    runtime: Runtime, request: ChangeRequest, *, change: str, by: str, approvers: list[str] | None = None
) -> None:
    """Replace the request's state and chain the change record, in one commit."""
    node, g, L = ox.NamedNode(request.iri), vocab.EXPERIMENTS_GRAPH, ox.Literal
    state = {
        "flag": request.flag,
        "kind": request.kind,
        "status": request.status,
        "content": request.content,
        "proposed": request.proposed.state(),
        "approvers": approvers or [],
    }
    record = ox.NamedNode(vocab.FLAG_CHANGE_BASE + str(uuid.uuid4()))
    classes = [vocab.FLAG_CHANGE]
    triples = change_record(record, kind=change, by=by, at=now(), entity=request.iri, state=state, classes=classes)
    quads = [
        ox.Quad(node, vocab.RDF_TYPE, vocab.FLAG_CHANGE_REQUEST, g),
        ox.Quad(node, vocab.PROV_USED, ox.NamedNode(vocab.FLAG_BASE + request.flag), g),
        ox.Quad(node, vocab.CHANGE_KIND, L(request.kind), g),
        ox.Quad(node, vocab.REQUEST_STATUS, L(request.status), g),
        ox.Quad(node, vocab.CREATED_BY, L(request.created_by), g),
        ox.Quad(node, vocab.PROV_GENERATED_AT, datetime_literal(request.created_at), g),
        ox.Quad(node, vocab.CONTENT_HASH, L(request.content), g),
        ox.Quad(node, vocab.PROPOSED_STATE, L(json.dumps(request.proposed.state(), sort_keys=True)), g),
    ]
    quads += [ox.Quad(node, vocab.APPROVED_BY, L(a), g) for a in approvers or []]
    runtime.trail.append(record, triples, extra=quads, remove=list(runtime.store.quads(subject=node, graph=g)))
