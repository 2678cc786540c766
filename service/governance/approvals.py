"""Approvals bound to identities: who approved which content of a model version, policy version or experiment.

An approval is a chained audit record (``wf:Approval``, a PROV activity): the principal who
gave it, when (the service's clock), the entity it judged, the content hash it judged
(a model version's artifact hash, a policy version's ``wf:contentHash``, an experiment
plan's hash) and the verdict, approved or rejected. Only approvals of the entity's current
content count, so a change after an approval revokes it. The change's own author never
approves it, and one principal counts once.

How many approvals a change needs is the quorum: ``WAYFINDER_APPROVALS_REQUIRED`` (default
1) with API keys; without keys (open development mode) approvals are recorded but none is
required, so the demo and local scripts keep working (:func:`required`). Two keys without
principals share their role's principal, so a quorum needs keys with named principals.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

import pyoxigraph as ox

from service.audit.records import approval_record
from service.clock import now, parse_datetime
from service.errors import Conflict, Forbidden, InvalidInput, NotFound
from service.knowledge import files as knowledge
from service.knowledge import vocab
from service.knowledge.store import bound

if TYPE_CHECKING:  # the runtime reads approvals with the knowledge: no import at run time
    from service.runtime import Runtime

APPROVED, REJECTED = "approved", "rejected"
VERDICTS = (APPROVED, REJECTED)
MAX_PRINCIPAL = 200


@dataclass(frozen=True)
class Approval:
    record: str
    entity: str
    by: str
    at: datetime
    content: str
    verdict: str


@dataclass(frozen=True)
class Standing:
    """Where an entity's current content stands: the approvals and rejections that count, and how many it needs."""

    entity: str
    content: str
    needed: int
    approvals: tuple[Approval, ...]  # of the current content, one per principal, the author's never
    rejections: tuple[Approval, ...]

    @property
    def approved(self) -> bool:
        return not self.rejections and len(self.approvals) >= self.needed

    @property
    def approvers(self) -> list[str]:
        return [a.by for a in self.approvals]

    def missing(self) -> int:
        return max(self.needed - len(self.approvals), 0)


def required(runtime: Runtime, *, keys_on: bool) -> int:
    """Approvals a change needs: the configured quorum with API keys, none without (recorded all the same)."""
    return runtime.settings.approvals_required if keys_on else 0


def serving_policies(runtime: Runtime, versions: dict, *, needed: int) -> dict:
    """The policy versions as they serve: one its file declares active serves only once ``needed`` principals
    approve its content (``wf:contentHash``) and none rejects it; until then it is a candidate."""
    if needed <= 0:
        return versions
    serving = {}
    for iri, version in versions.items():
        if version.status == "active":
            stand = standing(runtime, iri, content=version.content_hash or "", author=None, needed=needed)
            if not stand.approved:
                version = replace(version, status="candidate")
        serving[iri] = version
    return serving


def of(runtime: Runtime, entity: str) -> list[Approval]:
    """Every approval and rejection recorded for the entity, oldest first."""
    rows = runtime.store.select(runtime.queries["approvals"].bind(entity=ox.NamedNode(entity)))
    return [
        Approval(
            record=bound(row, "approval").value,
            entity=entity,
            by=bound(row, "by").value,
            at=parse_datetime(bound(row, "at").value),
            content=bound(row, "content").value,
            verdict=bound(row, "verdict").value,
        )
        for row in rows
    ]


def standing(runtime: Runtime, entity: str, *, content: str, author: str | None, needed: int) -> Standing:
    """The approvals of the entity's current ``content`` that count towards ``needed``, and its rejections."""
    counted: dict[str, Approval] = {}
    rejected: dict[str, Approval] = {}
    for approval in of(runtime, entity):
        if approval.content != content or approval.by == author:
            continue
        (counted if approval.verdict == APPROVED else rejected).setdefault(approval.by, approval)
    return Standing(entity, content, needed, tuple(counted.values()), tuple(rejected.values()))


def approve_policy(runtime: Runtime, label: str, *, by: str, verdict: str = APPROVED) -> Approval:
    """Record ``by``'s verdict on a policy version (by label, ``default@1.3.0``) as its content is now."""
    from service.governance.fairness_gate import require_fair
    from service.knowledge.policies import read_policies

    declared = {v.label: v for v in read_policies(runtime.store, runtime.queries).values()}
    if label not in declared:
        raise NotFound(f"no policy version {label!r}; the versions are {', '.join(sorted(declared))}")
    version = declared[label]
    if not version.content_hash:
        raise Conflict(f"policy version {label!r} has no content hash: load its file again")
    if verdict == APPROVED:
        require_fair(runtime, label)  # disparity past a fairness limit: refused, with the report stored
    with runtime.trail.exclusive():
        judged = record(
            runtime,
            version.iri,
            content=version.content_hash,
            author=None,
            by=by,
            verdict=verdict,
            what=f"policy version {label}",
            extra=[knowledge.revision_quad()],  # every process re-reads the knowledge, and so the approval
            remove=knowledge.revision_quads(runtime.store),
        )
    runtime.knowledge_changed()
    return judged


def check_principal(by: str, field: str = "approvedBy") -> str:
    principal = (by or "").strip()
    if not principal:
        raise InvalidInput(field, "name who approves")
    if len(principal) > MAX_PRINCIPAL:
        raise InvalidInput(field, f"at most {MAX_PRINCIPAL} characters")
    return principal


def record(
    runtime: Runtime,
    entity: str,
    *,
    content: str,
    author: str | None,
    by: str,
    verdict: str = APPROVED,
    what: str,
    extra: Sequence[ox.Quad] = (),
    remove: Sequence[ox.Quad] = (),
) -> Approval:
    """Append ``by``'s verdict on the entity's current ``content``, with ``extra`` and ``remove`` in the same commit.

    Refused, changing nothing: the author's own approval, and a second verdict of one principal on one content.
    ``what`` names the entity in messages ("model version 0123abcd"). Call it inside ``runtime.trail.exclusive()``
    when the caller read the entity first.
    """
    principal = check_principal(by)
    if verdict not in VERDICTS:
        raise InvalidInput("verdict", f"{verdict!r} is neither {APPROVED} nor {REJECTED}")
    if author is not None and principal == author:
        raise Forbidden(f"{what} is {author!r}'s change: another principal approves it (nobody approves their own)")
    for earlier in of(runtime, entity):
        if earlier.by == principal and earlier.content == content:
            raise Conflict(f"{principal!r} has {earlier.verdict} {what} already, as it is now")
    node = ox.NamedNode(vocab.APPROVAL_BASE + str(uuid.uuid4()))
    at = now()
    triples = approval_record(node, by=principal, at=at, entity=entity, content=content, verdict=verdict)
    with runtime.trail.exclusive():
        runtime.trail.append(node, triples, extra=list(extra), remove=list(remove))
    return Approval(node.value, entity, principal, at, content, verdict)
