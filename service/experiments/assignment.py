"""Assignment inside a next-steps decision: which arm of the running experiment the user is in, and who serves them.

Every user who asks for next steps under a policy with a running experiment is
assigned (consent decides what a policy may read, not who is assigned), unless the
experiment's coverage leaves their bucket out; a bucket in the experiment's holdout puts them
in the group ``holdout`` (HOLDOUT: served the policy's active version, recorded like an arm
and compared with the control). The first decision that exposes a user
writes their assignment (``wf:Assignment``, named by experiment and pseudonym); later
decisions keep it (STICKY), so changing weights never moves a user already assigned.
The decision record carries experiment, arm, bucket, hash version and reason, so any
assignment can be re-derived from the audit trail alone. A rolled-back arm keeps its
users (intention to treat) but serves them the control arm's policy version.

The running experiments are cached per runtime and re-read only when the experiments
graph's revision token changed (one quad lookup per request).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from weakref import WeakKeyDictionary

import pyoxigraph as ox

from service.experiments.bucketing import arm_of, bucket, held_out
from service.experiments.flags import Evaluation, Flag, Segment, evaluate, flags, serving
from service.experiments.registry import HOLDOUT, RUNNING, Arm, Experiment, experiments, revision
from service.knowledge import vocab
from service.knowledge.policies import PolicyVersion, active_version
from service.knowledge.store import plain
from service.runtime import Runtime

SPLIT, STICKY, HELD_OUT = "SPLIT", "STICKY", "HOLDOUT"


@dataclass(frozen=True)
class Assignment:
    experiment: Experiment
    arm: Arm
    bucket: int
    reason: str  # SPLIT (first exposure), STICKY (kept from an earlier one) or HOLDOUT (held out of every arm)
    serving: PolicyVersion  # the arm's version, the control's once the arm is rolled back, or the active one
    new: bool  # the user's first exposure: the decision writes the assignment

    def record_triples(self, decision: ox.NamedNode) -> list[ox.Triple]:
        """What the decision record says of the assignment."""
        T, L = ox.Triple, ox.Literal
        return [
            T(decision, vocab.IN_EXPERIMENT, ox.NamedNode(self.experiment.iri)),
            T(decision, vocab.ASSIGNED_ARM, ox.NamedNode(self.experiment.arm_iri(self.arm))),
            T(decision, vocab.BUCKET, L(str(self.bucket), datatype=vocab.XSD_INTEGER)),
            T(decision, vocab.HASH_VERSION, L(str(self.experiment.hash_version), datatype=vocab.XSD_INTEGER)),
            T(decision, vocab.ASSIGNMENT_REASON, L(self.reason)),
        ]

    def assignment_quads(self, pseudonym: str) -> list[ox.Quad]:
        """The assignment entity a first exposure writes; its content is the same however often it is written."""
        g, L = vocab.EXPERIMENTS_GRAPH, ox.Literal
        node = assignment_node(self.experiment.id, pseudonym)
        return [
            ox.Quad(node, vocab.RDF_TYPE, vocab.ASSIGNMENT, g),
            ox.Quad(node, vocab.IN_EXPERIMENT, ox.NamedNode(self.experiment.iri), g),
            ox.Quad(node, vocab.ASSIGNED_ARM, ox.NamedNode(self.experiment.arm_iri(self.arm)), g),
            ox.Quad(node, vocab.BUCKET, L(str(self.bucket), datatype=vocab.XSD_INTEGER), g),
            ox.Quad(node, vocab.HASH_VERSION, L(str(self.experiment.hash_version), datatype=vocab.XSD_INTEGER), g),
            ox.Quad(node, vocab.SUBJECT_PSEUDONYM, L(pseudonym), g),
        ]


def assignment_node(experiment_id: str, pseudonym: str) -> ox.NamedNode:
    return ox.NamedNode(f"{vocab.ASSIGNMENT_BASE}{experiment_id}/{pseudonym}")


class Serving:
    """The running experiments and the flags of one runtime, re-read when the revision token changes."""

    def __init__(self) -> None:
        self.token: str | None = None
        self.by_policy: dict[str, Experiment] = {}
        self.flags: dict[str, Flag] = {}
        self.lock = threading.Lock()


_running: WeakKeyDictionary[Runtime, Serving] = WeakKeyDictionary()
_running_lock = threading.Lock()


def current(runtime: Runtime) -> Serving:
    """The running experiments and flags as of now (one lookup of the revision token; a re-read when it changed)."""
    with _running_lock:
        cache = _running.setdefault(runtime, Serving())
    token = revision(runtime)
    if token != cache.token:
        with cache.lock:
            if token != cache.token:
                cache.by_policy = {e.policy: e for e in experiments(runtime) if e.status == RUNNING}
                cache.flags = {f.id: f for f in flags(runtime)}
                cache.token = token
    return cache


def running(runtime: Runtime, policy_id: str) -> Experiment | None:
    """The experiment running on the policy, if any (start refuses a second one)."""
    return current(runtime).by_policy.get(policy_id)


def flag_choice(
    runtime: Runtime, policy_id: str, segment: Segment, *, state: Serving | None = None
) -> tuple[Flag, Evaluation] | None:
    """The policy's flag and its evaluation for the user, when the flag chose a variant that may serve."""
    cache = state or current(runtime)
    flag = next((f for f in cache.flags.values() if f.policy == policy_id), None)
    if flag is None:
        return None
    evaluation = evaluate(flag, segment, cache.flags.get)
    return (flag, evaluation) if serving(runtime, evaluation) is not None else None


def assign(runtime: Runtime, policy_id: str, pseudonym: str, *, state: Serving | None = None) -> Assignment | None:
    """Return the user's assignment under the policy's running experiment, or None when they are not in one."""
    experiment = (state or current(runtime)).by_policy.get(policy_id)
    if experiment is None:
        return None
    stored = {
        q.predicate: plain(q.object).value
        for q in runtime.store.quads(subject=assignment_node(experiment.id, pseudonym), graph=vocab.EXPERIMENTS_GRAPH)
    }
    policies = runtime.knowledge.policies
    holdout = Arm(HOLDOUT, "", "", experiment.holdout)
    if vocab.ASSIGNED_ARM in stored:
        arm_iri = stored[vocab.ASSIGNED_ARM]
        at, new = int(stored[vocab.BUCKET]), False
        if arm_iri == experiment.arm_iri(holdout):
            return _held_out(experiment, holdout, at, policies, policy_id, new=False)
        arm = next((a for a in experiment.arms if experiment.arm_iri(a) == arm_iri), None)
        if arm is None:  # an arm the experiment no longer has: nothing removes arms, so this is a damaged store
            raise ValueError(f"assignment of experiment {experiment.id!r} names an unknown arm {arm_iri}")
        chosen, reason = arm, STICKY
    else:
        at, new = bucket(experiment.id, pseudonym, version=experiment.hash_version), True
        if held_out(at, experiment.holdout):
            return _held_out(experiment, holdout, at, policies, policy_id, new=True)
        index = arm_of(at, [a.weight for a in experiment.arms], experiment.coverage, experiment.holdout)
        if index is None:
            return None
        chosen, reason = experiment.arms[index], SPLIT
    serving = policies[(experiment.control if chosen.rolled_back else chosen).policy_iri]
    return Assignment(experiment, chosen, at, reason, serving, new)


def _held_out(
    experiment: Experiment, holdout: Arm, at: int, policies: dict[str, PolicyVersion], policy_id: str, *, new: bool
) -> Assignment:
    """A held-out user: served the policy's active version, recorded in the group ``holdout``."""
    active = active_version(policies, policy_id)
    arm = replace(holdout, policy_version=active.label, policy_iri=active.iri)
    return Assignment(experiment, arm, at, HELD_OUT, active, new)
