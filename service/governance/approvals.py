"""Approvals bound to identities: who approved which content of a model version, policy version or experiment.

An approval is a chained audit record (``wf:Approval``, a PROV activity): the principal who
gave it, when (the service's clock), the entity it judged, the content hash it judged
(a model version's artifact hash, a policy version's ``wf:contentHash``, an experiment
plan's hash) and the verdict, approved or rejected. Only approvals of the entity's current
content count, so a change after an approval revokes it. The change's own author never
approves it, and one principal counts once.

How many approvals a change needs is the quorum: ``WAYFINDER_APPROVALS_REQUIRED`` (default
1) with API keys. A content that its impact assessment found to alter who sees a high-impact step
(:mod:`service.governance.impact`) needs more: approvals of two roles, one of them the role the
assessment names (the governance policy's ``wf:highImpactApproverRole``, auditor by default). Each
approval records the role of the key it was given with; without keys (open development mode) approvals are recorded but none is
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
# Where a change stands, the same for policy versions, model versions, experiment plans and flag changes.
DRAFT, IN_REVIEW, ACTIVE, RETIRED = "draft", "in-review", "active", "retired"
MAX_PRINCIPAL = 200


@dataclass(frozen=True)
class Approval:
    record: str
    entity: str
    by: str
    at: datetime
    content: str
    verdict: str
    role: str = ""  # the approver's role; empty on records older than roles


@dataclass(frozen=True)
class Standing:
    """Where an entity's current content stands: the approvals and rejections that count, and how many it needs."""

    entity: str
    content: str
    needed: int
    approvals: tuple[Approval, ...]  # of the current content, one per principal, the author's never
    rejections: tuple[Approval, ...]
    second_role: str | None = None  # a high-impact content: one approval must be of this role, one of another

    @property
    def approved(self) -> bool:
        return not self.rejections and len(self.approvals) >= self.needed and not self.roles_missing()

    def roles_missing(self) -> str | None:
        """What the approvals lack in roles for a high-impact content, in words; None when nothing."""
        if self.needed <= 0 or self.second_role is None:
            return None
        roles = {a.role for a in self.approvals}
        if self.second_role not in roles:
            return f"an approval by a principal of the {self.second_role} role (it changes who sees high-impact steps)"
        if not roles - {self.second_role}:
            return (
                f"an approval by a principal of a role other than {self.second_role} (it changes who sees "
                "high-impact steps: two roles approve it)"
            )
        return None

    @property
    def approvers(self) -> list[str]:
        return [a.by for a in self.approvals]

    def missing(self) -> int:
        return max(self.needed - len(self.approvals), 0)

    def lacking(self) -> str | None:
        """What keeps the content from being approved, in words; None when nothing does."""
        if self.rejections:
            return f"rejected by {', '.join(a.by for a in self.rejections)}"
        if self.missing():
            return f"{self.missing()} more approval(s) by principals other than its author"
        return self.roles_missing()

    def state(self, *, serving: bool, proposed: bool, retired: bool = False) -> str:
        """Where the change stands: rejected (a current rejection), active (it serves), retired (it served and no
        longer does), approved (approvals enough, not serving yet), in-review (proposed to serve, or with some
        approvals) or draft."""
        if self.rejections:
            return REJECTED
        if serving:
            return ACTIVE
        if retired:
            return RETIRED
        if self.approvals and self.approved:
            return APPROVED
        return IN_REVIEW if proposed or self.approvals else DRAFT


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
            content = version.content_hash or ""
            stand = standing(
                runtime, iri, content=content, author=None, needed=needed, second=second_role(runtime, iri, content)
            )
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
            role=row["role"].value if row["role"] is not None else "",
        )
        for row in rows
    ]


def second_role(runtime: Runtime, entity: str, content: str) -> str | None:
    """The role one approval of this content must come from: the one its latest impact assessment names, when that
    found the content high-impact; None otherwise, or when it was never assessed."""
    rows = runtime.store.select(
        runtime.queries["impact-assessments"].bind(entity=ox.NamedNode(entity), content=ox.Literal(content))
    )
    if not rows or bound(rows[0], "highImpact").value not in ("true", "1"):
        return None
    return bound(rows[0], "role").value


def standing(
    runtime: Runtime, entity: str, *, content: str, author: str | None, needed: int, second: str | None = None
) -> Standing:
    """The approvals of the entity's current ``content`` that count towards ``needed``, and its rejections;
    ``second``: the role a high-impact content needs among them (:func:`second_role`)."""
    counted: dict[str, Approval] = {}
    rejected: dict[str, Approval] = {}
    for approval in of(runtime, entity):
        if approval.content != content or approval.by == author:
            continue
        (counted if approval.verdict == APPROVED else rejected).setdefault(approval.by, approval)
    return Standing(entity, content, needed, tuple(counted.values()), tuple(rejected.values()), second)


def approve_policy(
    runtime: Runtime, label: str, *, by: str, role: str = "operator", verdict: str = APPROVED
) -> Approval:
    """Record ``by``'s verdict (acting in ``role``) on a policy version (by label, ``default@1.3.0``) as its content
    is now; an approval first has the content's impact on high-impact steps assessed (and stored)."""
    from service.governance import impact
    from service.governance.fairness_gate import require_fair
    from service.knowledge.policies import read_policies

    declared = {v.label: v for v in read_policies(runtime.store, runtime.queries).values()}
    if label not in declared:
        raise NotFound(f"no policy version {label!r}; the versions are {', '.join(sorted(declared))}")
    version = declared[label]
    if not version.content_hash:
        raise Conflict(f"policy version {label!r} has no content hash: load its file again")
    what = f"policy version {label}"
    check(runtime, version.iri, content=version.content_hash, author=None, by=by, verdict=verdict, what=what)
    if verdict == APPROVED:
        require_fair(runtime, label)  # disparity past a fairness limit: refused, with the report stored
        impact.assess_policy(runtime, version)  # whether it needs a second role: stored, read by its standing
    with runtime.trail.exclusive():
        judged = record(
            runtime,
            version.iri,
            content=version.content_hash,
            author=None,
            by=by,
            role=role,
            verdict=verdict,
            what=f"policy version {label}",
            extra=[knowledge.revision_quad()],  # every process re-reads the knowledge, and so the approval
            remove=knowledge.revision_quads(runtime.store),
        )
    runtime.knowledge_changed()
    return judged


def acting_role(runtime: Runtime, role: str) -> str:
    """The role an approval is recorded with: the caller's. Operators approve (and anyone on a service without
    keys, ``open``); so does the second role the governance policy names for high-impact changes (auditor by
    default); no other role does."""
    from service.governance.gates import gates

    if role in ("operator", "open"):
        return role
    second = gates(runtime).high_impact_role
    if role != second:
        raise Forbidden(
            f"a key of the {role} role approves nothing: operators approve, and the {second} role gives the second "
            "approval a high-impact change needs"
        )
    return role


def approver(*, keys_on: bool, principal: str | None, named: str | None) -> str:
    """Who approves: with keys the caller's ``principal`` (naming anyone else is refused); without keys, whoever
    the caller ``named``, which is then required."""
    if not keys_on:
        if not named:
            raise InvalidInput("approvedBy", "required without API keys: name who approves")
        return named
    if named and named != principal:
        raise Forbidden(
            f"approvedBy: with API keys an approval is recorded for the caller's principal, "
            f"{principal!r}; leave approvedBy out or name that principal"
        )
    return str(principal)


def check_principal(by: str, field: str = "approvedBy") -> str:
    principal = (by or "").strip()
    if not principal:
        raise InvalidInput(field, "name who approves")
    if len(principal) > MAX_PRINCIPAL:
        raise InvalidInput(field, f"at most {MAX_PRINCIPAL} characters")
    return principal


def check(runtime: Runtime, entity: str, *, content: str, author: str | None, by: str, verdict: str, what: str) -> str:
    """Refuse what :func:`record` refuses (the author's own approval, a principal's second verdict on one content,
    an unknown verdict) before any other work; return the principal."""
    principal = check_principal(by)
    if verdict not in VERDICTS:
        raise InvalidInput("verdict", f"{verdict!r} is neither {APPROVED} nor {REJECTED}")
    if author is not None and principal == author:
        raise Forbidden(f"{what} is {author!r}'s change: another principal approves it (nobody approves their own)")
    for earlier in of(runtime, entity):
        if earlier.by == principal and earlier.content == content:
            raise Conflict(f"{principal!r} has {earlier.verdict} {what} already, as it is now")
    return principal


def record(
    runtime: Runtime,
    entity: str,
    *,
    content: str,
    author: str | None,
    by: str,
    role: str = "operator",
    verdict: str = APPROVED,
    what: str,
    extra: Sequence[ox.Quad] = (),
    remove: Sequence[ox.Quad] = (),
) -> Approval:
    """Append ``by``'s verdict (acting in ``role``) on the entity's current ``content``, with ``extra`` and ``remove`` in the same commit.

    Refused, changing nothing: the author's own approval, and a second verdict of one principal on one content.
    ``what`` names the entity in messages ("model version 0123abcd"). Call it inside ``runtime.trail.exclusive()``
    when the caller read the entity first.
    """
    principal = check(runtime, entity, content=content, author=author, by=by, verdict=verdict, what=what)
    node = ox.NamedNode(vocab.APPROVAL_BASE + str(uuid.uuid4()))
    at = now()
    triples = approval_record(node, by=principal, role=role, at=at, entity=entity, content=content, verdict=verdict)
    with runtime.trail.exclusive():
        runtime.trail.append(node, triples, extra=list(extra), remove=list(remove))
    return Approval(node.value, entity, principal, at, content, verdict, role)
