"""Experiments as data in the graph: created, approved, started, ramped, stopped, and arms rolled back.

An experiment's current state lives in the experiments graph (its arms, each served by a
policy version, their weights normalised, its guardrails, coverage and hash version).
Every change to it is a chained audit record, a ``wf:ExperimentChange`` that names who
made it (the authenticated principal), when (the service's clock, never a client's) and
the whole state after it, as canonical JSON: the records are the experiment's version
history. State and record land in one commit. A revision token in the graph changes
with every change, so that serving (:mod:`service.experiments.assignment`) re-reads the
experiments only when one changed, in this process or another.

On a shared store two processes may change one experiment at once, and the second commit
then rewrites the state from what it read before the first landed. A rollback cannot be
lost that way: an arm is rolled back when a ``wf:Rollback`` record of the audit trail names
it (records are never rewritten), whatever status a later commit wrote. Two guardrail
monitors that judge one arm at the same moment may each record its rollback, each with the
snapshot it saw; the arm is rolled back either way.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path

import pyoxigraph as ox

from service.audit.records import change_record, offline_record
from service.clock import datetime_literal, now, parse_datetime
from service.errors import Conflict, Forbidden, InvalidInput, NotFound
from service.experiments.bucketing import HASH_VERSION
from service.governance import approvals
from service.governance.gates import gates
from service.knowledge import vocab
from service.knowledge.policies import PolicyVersion
from service.knowledge.store import bound, plain, value
from service.runtime import Runtime

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_ARMS = 10
MAX_HOLDOUT = 0.2
HOLDOUT = "holdout"  # the group name of held-out users, in decisions (wf:variant) and results
DRAFT, RUNNING, STOPPED = "draft", "running", "stopped"
ACTIVE_ARM, ROLLED_BACK_ARM = "active", "rolled-back"
SERVABLE = ("active", "candidate")  # policy statuses an arm may serve (a candidate earns promotion so)

_STATUS_TERMS = {
    DRAFT: vocab.DRAFT_EXPERIMENT,
    RUNNING: vocab.RUNNING_EXPERIMENT,
    STOPPED: vocab.STOPPED_EXPERIMENT,
}
_ARM_TERMS = {ACTIVE_ARM: vocab.ACTIVE_ARM, ROLLED_BACK_ARM: vocab.ROLLED_BACK_ARM}


@dataclass(frozen=True)
class Arm:
    name: str
    policy_version: str  # the label, as Recommendation.policyVersion: "default@1.2.0"
    policy_iri: str
    weight: float  # normalised over the experiment's arms
    status: str = ACTIVE_ARM

    @property
    def rolled_back(self) -> bool:
        return self.status == ROLLED_BACK_ARM


@dataclass(frozen=True)
class Guardrail:
    kpi: str
    max_relative_drop: float
    detectable_drop: float = 0.2  # the relative harm the evidence must be able to detect before a ramp widens exposure


@dataclass(frozen=True)
class Experiment:
    id: str
    status: str
    arms: tuple[Arm, ...]
    guardrails: tuple[Guardrail, ...] = ()
    coverage: float = 1.0
    holdout: float = 0.0  # the share of users kept out of every arm and served the policy's active version
    hash_version: int = HASH_VERSION
    created_by: str = ""
    created_at: datetime | None = None
    approved_by: str | None = None
    approved_at: datetime | None = None
    # When set, the plan requires offline evidence before it starts: each arm's version, estimated on the logged
    # decisions of an exploring version, must be no worse than control's by more than this (service.governance).
    offline_margin: float | None = None

    @property
    def iri(self) -> str:
        return vocab.EXPERIMENT_BASE + self.id

    @property
    def policy(self) -> str:
        """The policy ID every arm's version belongs to: the experiment serves that policy's requests."""
        return self.arms[0].policy_version.split("@", 1)[0]

    @property
    def control(self) -> Arm:
        return self.arms[0]

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise NotFound(f"experiment {self.id!r} has no arm {name!r}")

    def arm_iri(self, arm: Arm) -> str:
        return f"{self.iri}/arm/{arm.name}"

    def plan_hash(self) -> str:
        """The hash of what an approval of the experiment judges: its arms (name, policy version, weight), guardrails,
        coverage, holdout and hash version. A change to any of them needs a new approval."""
        plan = {
            "arms": [[a.name, a.policy_iri, a.weight] for a in self.arms],
            "guardrails": [[g.kpi, g.max_relative_drop, g.detectable_drop] for g in self.guardrails],
            "coverage": self.coverage,
            "holdout": self.holdout,
            "hash_version": self.hash_version,
        }
        if self.offline_margin is not None:  # only when stated: plans made before it keep their hash
            plan["offline_margin"] = self.offline_margin
        return hashlib.sha256(json.dumps(plan, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def state(self) -> dict:
        """The whole state as plain data, as each change record keeps it."""
        data = asdict(self)
        for key in ("created_at", "approved_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


@dataclass
class ArmSpec:
    name: str
    policy_version: str
    weight: float


@dataclass
class ExperimentSpec:
    id: str
    arms: list[ArmSpec]
    guardrails: list[Guardrail] = field(default_factory=list)
    coverage: float = 1.0
    holdout: float = 0.0
    offline_margin: float | None = None


def kpi_names(runtime: Runtime) -> set[str]:
    """The KPIs a guardrail may watch: the files of ``queries/kpi/``."""
    directory: Path = runtime.settings.queries_dir / "kpi"
    return {p.stem for p in directory.glob("*.sql")}


def checked_spec(runtime: Runtime, spec: ExperimentSpec) -> Experiment:
    """Return the draft experiment a spec describes; raise InvalidInput naming the first bad field."""
    if not ID_PATTERN.fullmatch(spec.id or ""):
        raise InvalidInput("input.id", "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if not 2 <= len(spec.arms) <= MAX_ARMS:
        raise InvalidInput("input.arms", f"an experiment has 2 to {MAX_ARMS} arms (the first is the control)")
    by_label = {v.label: v for v in runtime.knowledge.policies.values()}
    seen: set[str] = set()
    versions: list[PolicyVersion] = []
    for i, arm in enumerate(spec.arms):
        where = f"input.arms[{i}]"
        if arm.name == HOLDOUT:
            raise InvalidInput(f"{where}.name", f"{HOLDOUT!r} names the held-out users; choose another name")
        if not ID_PATTERN.fullmatch(arm.name or "") or len(arm.name) > 40:
            raise InvalidInput(
                f"{where}.name", "1 to 40 letters, digits, '.', '_' or '-', starting with one of the first"
            )
        if arm.name in seen:
            raise InvalidInput(f"{where}.name", f"two arms are named {arm.name!r}")
        seen.add(arm.name)
        if not math.isfinite(arm.weight) or arm.weight <= 0:
            raise InvalidInput(f"{where}.weight", f"a positive number, got {arm.weight}")
        version = by_label.get(arm.policy_version)
        if version is None:
            known = ", ".join(sorted(by_label))
            raise InvalidInput(f"{where}.policyVersion", f"no policy version {arm.policy_version!r}; known: {known}")
        if version.status not in SERVABLE:
            raise InvalidInput(
                f"{where}.policyVersion",
                f"{arm.policy_version} is {version.status}: an arm serves an active or candidate version",
            )
        if versions and version.policy != versions[0].policy:
            raise InvalidInput(
                f"{where}.policyVersion",
                f"every arm serves a version of one policy, {versions[0].label.split('@')[0]!r}",
            )
        versions.append(version)
    if not 0 < spec.coverage <= 1 or not math.isfinite(spec.coverage):
        raise InvalidInput("input.coverage", f"a share in (0, 1], got {spec.coverage}")
    if not 0 <= spec.holdout <= MAX_HOLDOUT or not math.isfinite(spec.holdout):
        raise InvalidInput("input.holdout", f"a share from 0 to {MAX_HOLDOUT}, got {spec.holdout}")
    known_kpis = kpi_names(runtime)
    guarded: set[str] = set()
    for i, guardrail in enumerate(spec.guardrails):
        if guardrail.kpi not in known_kpis:
            raise InvalidInput(
                f"input.guardrails[{i}].kpi", f"unknown KPI {guardrail.kpi!r}; known: {', '.join(sorted(known_kpis))}"
            )
        if guardrail.kpi in guarded:
            raise InvalidInput(f"input.guardrails[{i}].kpi", f"{guardrail.kpi} is guarded twice")
        guarded.add(guardrail.kpi)
        if not 0 <= guardrail.max_relative_drop < 1:
            raise InvalidInput(
                f"input.guardrails[{i}].maxRelativeDrop", f"a share in [0, 1), got {guardrail.max_relative_drop}"
            )
        if not guardrail.max_relative_drop < guardrail.detectable_drop < 1:
            raise InvalidInput(
                f"input.guardrails[{i}].detectableDrop",
                f"a share above maxRelativeDrop ({guardrail.max_relative_drop}) and below 1, got {guardrail.detectable_drop}",
            )
    if spec.offline_margin is not None:
        cap = gates(runtime).offline_margin
        if not 0 <= spec.offline_margin <= 1 or not math.isfinite(spec.offline_margin):
            raise InvalidInput("input.offlineMargin", f"a share from 0 to 1, got {spec.offline_margin}")
        if cap is not None and spec.offline_margin > cap:
            raise InvalidInput(
                "input.offlineMargin", f"the governance policy allows at most {cap}, got {spec.offline_margin}"
            )
    total = sum(a.weight for a in spec.arms)
    arms = tuple(Arm(a.name, v.label, v.iri, a.weight / total) for a, v in zip(spec.arms, versions, strict=True))
    return Experiment(
        spec.id,
        DRAFT,
        arms,
        tuple(spec.guardrails),
        coverage=spec.coverage,
        holdout=spec.holdout,
        offline_margin=spec.offline_margin,
    )


def experiments(runtime: Runtime) -> list[Experiment]:
    """Every experiment in the store, by ID."""
    found: dict[str, dict] = {}
    for row in runtime.store.select(runtime.queries["experiments"]):
        exp_id = bound(row, "id").value
        entry = found.setdefault(
            exp_id,
            {
                "status": vocab.local_id(bound(row, "status").value),
                "coverage": float(bound(row, "coverage").value),
                "holdout": float(value(row, "holdout") or 0.0),
                "hash_version": int(bound(row, "hashVersion").value),
                "created_by": bound(row, "createdBy").value,
                "created_at": parse_datetime(bound(row, "createdAt").value),
                "approved_by": value(row, "approvedBy"),
                "approved_at": parse_datetime(a) if (a := value(row, "approvedAt")) else None,
                "offline_margin": float(m) if (m := value(row, "offlineMargin")) is not None else None,
                "arms": {},
                "guardrails": {},
            },
        )
        if row["arm"] is not None:
            entry["arms"][int(bound(row, "position").value)] = Arm(
                bound(row, "armName").value,
                "",
                bound(row, "servedBy").value,
                float(bound(row, "allocation").value),
                ROLLED_BACK_ARM if _true(row, "rolledBack") else _ARM_NAMES[bound(row, "armStatus").value],
            )
        if row["kpi"] is not None:
            entry["guardrails"][bound(row, "kpi").value] = Guardrail(
                bound(row, "kpi").value,
                float(bound(row, "maxRelativeDrop").value),
                float(bound(row, "detectableDrop").value),
            )
    policies = runtime.knowledge.policies
    result = []
    for exp_id, entry in sorted(found.items()):
        arms = tuple(
            replace(
                arm,
                policy_version=policies[arm.policy_iri].label
                if arm.policy_iri in policies
                else vocab.local_id(arm.policy_iri),
            )
            for _, arm in sorted(entry.pop("arms").items())
        )
        guardrails = tuple(g for _, g in sorted(entry.pop("guardrails").items()))
        result.append(Experiment(exp_id, _STATUS_NAMES[entry.pop("status")], arms, guardrails, **entry))
    return result


def _true(row, name: str) -> bool:
    return value(row, name) in ("true", "1")


_STATUS_NAMES = {vocab.local_id(t.value): name for name, t in _STATUS_TERMS.items()}
_ARM_NAMES = {t.value: name for name, t in _ARM_TERMS.items()}


def find(runtime: Runtime, experiment_id: str) -> Experiment | None:
    return next((e for e in experiments(runtime) if e.id == experiment_id), None)


def require(runtime: Runtime, experiment_id: str) -> Experiment:
    found = find(runtime, experiment_id)
    if found is None:
        raise NotFound(f"no experiment {experiment_id!r}")
    return found


def revision(runtime: Runtime) -> str | None:
    """The token that changes with every change to any experiment (None before the first)."""
    for quad in runtime.store.quads(
        subject=vocab.EXPERIMENTS_NODE, predicate=vocab.REVISION, graph=vocab.EXPERIMENTS_GRAPH
    ):
        return plain(quad.object).value
    return None


def create(runtime: Runtime, spec: ExperimentSpec, *, by: str) -> Experiment:
    """Record a new draft experiment, created by ``by``."""
    draft = checked_spec(runtime, spec)
    with runtime.trail.exclusive():
        if find(runtime, draft.id) is not None:
            raise Conflict(
                f"input.id: an experiment {draft.id!r} exists",
                details=[{"field": "input.id", "reason": "duplicate experiment"}],
            )
        created = replace(draft, created_by=by, created_at=now())
        _change(runtime, None, created, kind="create", by=by)
    return created


def approve(runtime: Runtime, experiment_id: str, *, by: str, four_eyes: bool, role: str = "operator") -> Experiment:
    """Approve a draft, acting in ``role``; with ``four_eyes`` (API keys on) the approver must not be its creator.

    The arms' candidate versions have their impact on high-impact steps assessed first (and stored): a plan whose
    arm changes who sees one starts only once principals of two roles approved it."""
    current = require(runtime, experiment_id)
    _assess_arms(runtime, current)
    with runtime.trail.exclusive():
        current = require(runtime, experiment_id)
        if current.status != DRAFT:
            raise Conflict(f"experiment {experiment_id!r} is {current.status}: only a draft is approved")
        if four_eyes and by == current.created_by:
            raise Forbidden(
                f"experiment {experiment_id!r} was created by {by!r}: another principal approves it (four eyes)"
            )
        for earlier in approvals.of(runtime, current.iri):
            if earlier.by == by and earlier.content == current.plan_hash():
                raise Conflict(f"{by!r} has approved experiment {experiment_id!r} already, as it is now")
        approved = replace(current, approved_by=by, approved_at=now())
        _change(runtime, current, approved, kind="approve", by=by, approves=current.plan_hash(), role=role)
    return approved


def _arm_versions(runtime: Runtime, experiment: Experiment) -> list[PolicyVersion]:
    """The policy versions the arms serve, control's aside (an approved plan approves them)."""
    by_label = {v.label: v for v in runtime.knowledge.policies.values()}
    control = experiment.control.policy_version
    labels = dict.fromkeys(a.policy_version for a in experiment.arms[1:] if a.policy_version != control)
    return [by_label[label] for label in labels if label in by_label]


def _assess_arms(runtime: Runtime, experiment: Experiment) -> None:
    from service.governance import impact  # the replay: only when a plan is approved

    for version in _arm_versions(runtime, experiment):
        impact.assess_policy(runtime, version)


def plan_standing(runtime: Runtime, experiment: Experiment, *, needed: int) -> approvals.Standing:
    """Where the plan as it is now stands: its approvals (never its creator's) against ``needed``, with the second
    role an arm's high-impact version asks for."""
    return approvals.standing(
        runtime,
        experiment.iri,
        content=experiment.plan_hash(),
        author=experiment.created_by,
        needed=needed,
        second=second_role(runtime, experiment) if needed else None,
    )


def second_role(runtime: Runtime, experiment: Experiment) -> str | None:
    """The second role the plan's approvals need: when an arm's version changes who sees a high-impact step."""
    for version in _arm_versions(runtime, experiment):
        role = approvals.second_role(runtime, version.iri, version.content_hash or "")
        if role is not None:
            return role
    return None


def start(runtime: Runtime, experiment_id: str, *, by: str, needs_approval: bool) -> Experiment:
    """Start assigning; with ``needs_approval`` (API keys on) only an approved draft starts."""
    with runtime.trail.exclusive():
        current = require(runtime, experiment_id)
        if current.status != DRAFT:
            raise Conflict(f"experiment {experiment_id!r} is {current.status}: only a draft starts")
        if needs_approval:
            needed = runtime.settings.approvals_required
            stand = plan_standing(runtime, current, needed=needed)
            missing = stand.roles_missing()
            if missing and not stand.rejections and len(stand.approvals) >= needed:
                raise Forbidden(
                    f"experiment {experiment_id!r} is not approved: an arm's policy version changes who sees "
                    f"high-impact steps, so its plan needs {missing}; approveExperiment by such a principal first"
                )
            if not stand.approved:
                raise Forbidden(
                    f"experiment {experiment_id!r} is not approved: its plan as it is now needs {needed} approvals "
                    f"from principals other than its creator and has {len(stand.approvals)}; approveExperiment by "
                    "another principal first (a change to a draft's plan revokes earlier approvals)"
                )
        for other in experiments(runtime):
            if other.status == RUNNING and other.policy == current.policy:
                raise Conflict(
                    f"experiment {other.id!r} is running on policy {current.policy!r}: stop it first "
                    "(a user is served by one policy version at a time)"
                )
        evidence = offline_evidence(runtime, current) if current.offline_margin is not None else None
        started = replace(current, status=RUNNING)
        _change(runtime, current, started, kind="start", by=by, evidence=evidence)
    return started


def offline_evidence(runtime: Runtime, experiment: Experiment) -> str:
    """Estimate every arm's version against control's on the logged decisions; record the estimates as an entity
    and return its IRI, or refuse (writing nothing) when an arm is worse by more than the plan's margin."""
    from service.governance import evaluation  # numpy and the replay: only for a plan that asks for evidence

    assert experiment.offline_margin is not None
    control = experiment.control.policy_version
    found = [
        evaluation.evaluate(runtime, arm.policy_version, control=control)
        for arm in experiment.arms[1:]
        if arm.policy_version != control
    ]
    worse = [e for e in found if not e.not_worse(experiment.offline_margin)]
    if worse:
        said = "; ".join(
            f"{e.candidate} minus {e.control}: {e.difference.value:+.4f} "
            f"({e.difference.level:.0%} interval {e.difference.low:+.4f} to {e.difference.high:+.4f})"
            for e in worse
        )
        raise Conflict(
            f"experiment {experiment.id!r} does not start: offline, an arm's uptake may be worse than control's by "
            f"more than the plan's margin {experiment.offline_margin} ({said}, over {worse[0].decisions} logged "
            "decisions)"
        )
    record = ox.NamedNode(vocab.OFFLINE_EVALUATION_BASE + str(uuid.uuid4()))
    runtime.trail.append(
        record, offline_record(record, experiment=experiment.iri, figures=[e.figures() for e in found])
    )
    return record.value


def stop(runtime: Runtime, experiment_id: str, *, by: str) -> Experiment:
    """Stop assigning: every user is served by the policy's active version again."""
    with runtime.trail.exclusive():
        current = require(runtime, experiment_id)
        if current.status == STOPPED:
            raise Conflict(f"experiment {experiment_id!r} is stopped already")
        stopped = replace(current, status=STOPPED)
        _change(runtime, current, stopped, kind="stop", by=by)
    return stopped


def ramp(runtime: Runtime, experiment_id: str, coverage: float, *, by: str, evidence: str | None = None) -> Experiment:
    """Change the share of users the experiment takes in (users already in stay in).

    This records the change only: whether the evidence allows widening exposure is decided by
    :func:`service.experiments.ramps.ramp`, which passes the snapshot it decided on as ``evidence``.
    """
    if not math.isfinite(coverage) or not 0 < coverage <= 1:
        raise InvalidInput("coverage", f"a share in (0, 1], got {coverage}")
    with runtime.trail.exclusive():
        current = require(runtime, experiment_id)
        if current.status == STOPPED:
            raise Conflict(f"experiment {experiment_id!r} is stopped")
        ramped = _change(runtime, current, replace(current, coverage=coverage), kind="ramp", by=by, evidence=evidence)
    return ramped


def reweight(runtime: Runtime, experiment_id: str, weights: list[float], *, by: str) -> Experiment:
    """Change the arms' weights (normalised); users assigned already keep their arm."""
    with runtime.trail.exclusive():
        current = require(runtime, experiment_id)
        if len(weights) != len(current.arms):
            raise InvalidInput("weights", f"one weight per arm, in arm order: {len(current.arms)}, got {len(weights)}")
        for i, w in enumerate(weights):
            if not math.isfinite(w) or w <= 0:
                raise InvalidInput(f"weights[{i}]", f"a positive number, got {w}")
        if current.status == STOPPED:
            raise Conflict(f"experiment {experiment_id!r} is stopped")
        total = sum(weights)
        arms = tuple(replace(a, weight=w / total) for a, w in zip(current.arms, weights, strict=True))
        after = _change(runtime, current, replace(current, arms=arms), kind="reweight", by=by)
    return after


def roll_back(
    runtime: Runtime,
    experiment_id: str,
    arm_name: str,
    *,
    by: str,
    evidence: str | None = None,
    agent: str | None = None,
    on_behalf_of: Sequence[str] = (),
) -> Experiment:
    """Turn an arm off: its users are served by the control's version from the next request on.

    The rollback record uses ``evidence`` (the IRI of the analysis snapshot that showed harm) and names the
    ``agent`` (an IRI: the guardrail monitor) that acted on behalf of ``by`` and of each of ``on_behalf_of``
    (every ``wf:requestedBy``). A rollback only takes exposure away. Rolling back an arm that is rolled back
    already changes nothing.
    """
    with runtime.trail.exclusive():
        current = require(runtime, experiment_id)
        arm = current.arm(arm_name)
        if arm == current.control:
            raise InvalidInput("arm", "the control arm is what others roll back to")
        if current.status != RUNNING:
            raise Conflict(f"experiment {experiment_id!r} is {current.status}: only a running experiment rolls back")
        if arm.rolled_back:
            return current
        arms = tuple(replace(a, status=ROLLED_BACK_ARM) if a.name == arm_name else a for a in current.arms)
        after = replace(current, arms=arms)
        _change(
            runtime,
            current,
            after,
            kind="rollback",
            by=by,
            rolled_back=current.arm_iri(arm),
            evidence=evidence,
            agent=agent,
            also_by=on_behalf_of,
        )
    return after


def _change(
    runtime: Runtime,
    before: Experiment | None,
    after: Experiment,
    *,
    kind: str,
    by: str,
    rolled_back: str | None = None,
    evidence: str | None = None,
    agent: str | None = None,
    approves: str | None = None,
    role: str = "operator",
    also_by: Sequence[str] = (),
) -> Experiment:
    """Replace the experiment's state and append the change record, in one commit; return the state stored.

    ``approves`` (a plan hash) makes the record an approval of that plan too (``wf:Approval``, by ``by`` acting
    in ``role``). A change to a
    draft's plan leaves it unapproved: the approvals of the plan before no longer count.
    """
    if before is not None and after.status == DRAFT and approves is None and after.plan_hash() != before.plan_hash():
        after = replace(after, approved_by=None, approved_at=None)
    record = ox.NamedNode(vocab.EXPERIMENT_CHANGE_BASE + str(uuid.uuid4()))
    T, L = ox.Triple, ox.Literal
    classes = [vocab.EXPERIMENT_CHANGE, vocab.ROLLBACK] if rolled_back else [vocab.EXPERIMENT_CHANGE]
    if approves is not None:
        classes.append(vocab.APPROVAL)
    triples = change_record(record, kind=kind, by=by, at=now(), entity=after.iri, state=after.state(), classes=classes)
    if approves is not None:
        triples += [
            T(record, vocab.APPROVED_BY, L(by)),
            T(record, vocab.APPROVED_CONTENT, L(approves)),
            T(record, vocab.VERDICT, L(approvals.APPROVED)),
            T(record, vocab.APPROVER_ROLE, L(role)),
        ]
    if rolled_back:
        triples.append(T(record, vocab.ROLLED_BACK_ARM_OF, ox.NamedNode(rolled_back)))
    if evidence:
        triples.append(T(record, vocab.PROV_USED, ox.NamedNode(evidence)))
    if agent:
        triples.append(T(record, vocab.PROV_WAS_ASSOCIATED_WITH, ox.NamedNode(agent)))
    triples += [T(record, vocab.REQUESTED_BY, L(other)) for other in also_by if other != by]
    g = vocab.EXPERIMENTS_GRAPH
    remove = [q for q in runtime.store.quads(subject=vocab.EXPERIMENTS_NODE, predicate=vocab.REVISION, graph=g)]
    if before is not None:
        remove += stored_quads(runtime, before)
    runtime.trail.append(
        record,
        triples,
        extra=[*state_quads(after), ox.Quad(vocab.EXPERIMENTS_NODE, vocab.REVISION, L(uuid.uuid4().hex), g)],
        remove=remove,
    )
    return after


def stored_quads(runtime: Runtime, experiment: Experiment) -> list[ox.Quad]:
    """The experiment's state as stored (terms as the store normalised them), to be replaced."""
    node = ox.NamedNode(experiment.iri)
    g = vocab.EXPERIMENTS_GRAPH
    quads = list(runtime.store.quads(subject=node, graph=g))
    parts = [
        q.object
        for q in quads
        if q.predicate in (vocab.HAS_VARIANT, vocab.HAS_GUARDRAIL) and isinstance(q.object, ox.NamedNode)
    ]
    for part in parts:
        quads += runtime.store.quads(subject=part, graph=g)
    return quads


def state_quads(experiment: Experiment) -> list[ox.Quad]:
    """The experiment's current state, as the experiments graph holds it."""
    g, L = vocab.EXPERIMENTS_GRAPH, ox.Literal
    node = ox.NamedNode(experiment.iri)
    quads = [
        ox.Quad(node, vocab.RDF_TYPE, vocab.EXPERIMENT, g),
        ox.Quad(node, vocab.EXPERIMENT_ID, L(experiment.id), g),
        ox.Quad(node, vocab.EXPERIMENT_STATUS, _STATUS_TERMS[experiment.status], g),
        ox.Quad(node, vocab.COVERAGE, _double(experiment.coverage), g),
        ox.Quad(node, vocab.HOLDOUT, _double(experiment.holdout), g),
        ox.Quad(node, vocab.HASH_VERSION, L(str(experiment.hash_version), datatype=vocab.XSD_INTEGER), g),
        ox.Quad(node, vocab.CREATED_BY, L(experiment.created_by), g),
        ox.Quad(node, vocab.PROV_GENERATED_AT, datetime_literal(experiment.created_at or now()), g),
    ]
    if experiment.approved_by is not None:
        quads.append(ox.Quad(node, vocab.APPROVED_BY, L(experiment.approved_by), g))
    if experiment.approved_at is not None:
        quads.append(ox.Quad(node, vocab.APPROVED_AT, datetime_literal(experiment.approved_at), g))
    if experiment.offline_margin is not None:
        quads.append(ox.Quad(node, vocab.OFFLINE_MARGIN, _double(experiment.offline_margin), g))
    for position, arm in enumerate(experiment.arms):
        arm_node = ox.NamedNode(experiment.arm_iri(arm))
        quads += [
            ox.Quad(node, vocab.HAS_VARIANT, arm_node, g),
            ox.Quad(arm_node, vocab.RDF_TYPE, vocab.VARIANT_CLASS, g),
            ox.Quad(arm_node, vocab.ARM_NAME, L(arm.name), g),
            ox.Quad(arm_node, vocab.ARM_POSITION, L(str(position), datatype=vocab.XSD_INTEGER), g),
            ox.Quad(arm_node, vocab.SERVED_BY, ox.NamedNode(arm.policy_iri), g),
            ox.Quad(arm_node, vocab.ALLOCATION, _double(arm.weight), g),
            ox.Quad(arm_node, vocab.ARM_STATUS, _ARM_TERMS[arm.status], g),
        ]
    for guardrail in experiment.guardrails:
        guard = ox.NamedNode(f"{experiment.iri}/guardrail/{guardrail.kpi}")
        quads += [
            ox.Quad(node, vocab.HAS_GUARDRAIL, guard, g),
            ox.Quad(guard, vocab.RDF_TYPE, vocab.GUARDRAIL, g),
            ox.Quad(guard, vocab.GUARDRAIL_KPI, L(guardrail.kpi), g),
            ox.Quad(guard, vocab.MAX_RELATIVE_DROP, _double(guardrail.max_relative_drop), g),
            ox.Quad(guard, vocab.DETECTABLE_DROP, _double(guardrail.detectable_drop), g),
        ]
    return quads


def _double(number: float) -> ox.Literal:
    return ox.Literal(repr(float(number)), datatype=vocab.XSD_DOUBLE)
