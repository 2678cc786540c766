"""Re-deriving a past decision from the audit trail alone, even after the catalog or policy changed.

A decision record names everything ranking read: the catalog and policy versions (snapshots in
the knowledge history), the policy version and model version, the profile facts and events, and
whether it was personalised. :func:`rederive` rebuilds the knowledge as those versions had it (in
a scratch store, with its OWL 2 RL entailments), the context from the facts and events the record
names, loads the recorded model version's artefact, ranks the recorded candidates again, draws
the slate again (an exploring policy draws from the decision's ID) and compares scores and order
with what the record says was returned.

Candidate generation is not replayed: the candidates are the record's own (it keeps every one,
with its scores), so what is checked is that ranking and explanation follow from what was used.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import pyoxigraph as ox

from service.audit.records import read_candidates, read_held_back
from service.decisions.decide import UUID_PATTERN, exploration_seed
from service.decisions.ranking import Context, Scored, Scorer, rank, slate
from service.errors import InvalidInput, NotFound
from service.knowledge import history, vocab
from service.knowledge.catalog import Catalog, read_catalog
from service.knowledge.embedded import Store
from service.knowledge.policies import PolicyVersion, read_policies
from service.knowledge.reasoning import entailments
from service.knowledge.store import GraphStore, plain
from service.runtime import Runtime

TOLERANCE = 1e-6  # scores are recorded rounded to 6 decimals
# Knowledge as sets of versions had it, built with its entailments (about a second each), kept for re-use:
# an auditor or an offline evaluation replays many decisions made under the same versions.
KNOWLEDGE_CACHE_SIZE = 8
_knowledge_cache: OrderedDict[tuple[tuple[str, str], ...], tuple[Catalog, dict[str, PolicyVersion]]] = OrderedDict()
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class Rederivation:
    """A decision ranked again from its record: what it returned then and what follows from its inputs now."""

    decision_id: str
    knowledge_versions: list[str]
    recorded: list[tuple[str, float]]  # every candidate with its recorded score, returned ones first by rank
    derived: list[tuple[str, float]]  # the same candidates ranked again, best first
    shown: list[str]  # the returned steps, by rank
    derived_shown: list[str]
    differences: list[str] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        return not self.differences


@dataclass(frozen=True)
class Recorded:
    """What a decision record says: its inputs, its candidates with scores, and what it showed."""

    decision_id: str
    pseudonym: str
    at: str
    channel: str
    personalized: bool
    limit: int
    policy: str
    model: str | None
    used: list[str]
    versions: tuple[str, ...]  # the catalog and policy versions it used
    candidates: list[tuple[str, float]]  # shown ones first, by rank
    shown: list[str]
    propensities: dict[str, float]  # shown step -> its position-wise propensity, when its policy explored
    held: frozenset[str] = frozenset()  # the candidates pacing held back
    paced_limit: int | None = None  # how many steps pacing let it show, where fewer than it was asked for
    conflicts: list[str] = field(default_factory=list)  # where a shown step's node and the candidate set disagree


def read_record(runtime: Runtime, decision_id: str, *, store: GraphStore | None = None) -> Recorded:
    """Read a decision record (from ``store``, a sealed segment's, or the runtime's); a decision made before records
    named their catalog version is refused."""
    if not UUID_PATTERN.fullmatch(decision_id):
        raise InvalidInput("id", "a decision ID is a UUID, as 8-4-4-4-12 hexadecimal digits")
    decision_id = decision_id.lower()
    record = ox.NamedNode(vocab.DECISION_BASE + decision_id)
    source = store if store is not None else runtime.store
    facts = list(source.quads(subject=record, graph=vocab.AUDIT_GRAPH))
    if not facts:
        raise NotFound(f"no decision {decision_id}")

    def one(predicate: ox.NamedNode) -> str | None:
        return next((q.object.value for q in facts if q.predicate == predicate and hasattr(q.object, "value")), None)

    used = [q.object.value for q in facts if q.predicate == vocab.PROV_USED and isinstance(q.object, ox.NamedNode)]
    versions = tuple(iri for iri in used if iri.startswith(vocab.KNOWLEDGE_VERSION_BASE))
    if not any(iri.startswith(vocab.KNOWLEDGE_VERSION_BASE + "catalog/") for iri in versions):
        raise InvalidInput("id", "the decision was recorded before decisions named their catalog version")
    candidates, shown, propensities, conflicts = _candidates(source, record)
    held_text = one(vocab.HELD_BACK)
    paced = one(vocab.PACED_LIMIT)
    return Recorded(
        decision_id=decision_id,
        pseudonym=one(vocab.SUBJECT_PSEUDONYM) or "",
        at=one(vocab.PROV_STARTED_AT) or "",
        channel=one(vocab.DECISION_CHANNEL) or "",
        personalized=one(vocab.PERSONALIZED) == "true",
        limit=int(one(vocab.REQUESTED_LIMIT) or len(shown)),
        policy=one(vocab.POLICY_VERSION_OF_DECISION) or "",
        model=one(vocab.MODEL_VERSION_OF_DECISION),
        used=used,
        versions=versions,
        candidates=candidates,
        shown=shown,
        propensities=propensities,
        held=frozenset(h.step for h in read_held_back(held_text) if h.step) if held_text else frozenset(),
        paced_limit=int(paced) if paced is not None else None,
        conflicts=conflicts,
    )


class Replay:
    """Ranks recorded decisions again, with the knowledge of the versions they used (built once per set)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def knowledge(self, recorded: Recorded) -> tuple[Catalog, dict[str, PolicyVersion]]:
        """The catalog and policy versions as the decision's knowledge versions had them."""
        versions = [history.version_of(self.runtime.store, iri) for iri in sorted(recorded.versions)]
        # A version never changes, but another store may hold other content under the same IRI: key by both.
        key = tuple((v.iri, v.content_hash) for v in versions)
        with _cache_lock:
            found = _knowledge_cache.get(key)
            if found is not None:
                _knowledge_cache.move_to_end(key)
                return found
        scratch = _knowledge_at(self.runtime, versions)
        catalog = read_catalog(scratch, self.runtime.queries, channels=self.runtime.knowledge.codes.channels)
        built = (catalog, read_policies(scratch, self.runtime.queries))
        with _cache_lock:
            _knowledge_cache[key] = built
            while len(_knowledge_cache) > KNOWLEDGE_CACHE_SIZE:
                _knowledge_cache.popitem(last=False)
        return built

    def rank(self, recorded: Recorded, policy: PolicyVersion | None = None) -> tuple[PolicyVersion, list[Scored]]:
        """The recorded candidates ranked again: by the decision's own policy version, or by ``policy``."""
        catalog, policies = self.knowledge(recorded)
        if policy is None:
            if recorded.policy not in policies:
                raise InvalidInput(
                    "id", f"the policy version {recorded.policy} is not in the knowledge versions the decision used"
                )
            policy = policies[recorded.policy]
        context = _context(
            self.runtime, recorded.used, catalog=catalog, channel=recorded.channel, personal=recorded.personalized
        )
        model = self._model(recorded.model) if recorded.model else None
        steps = [s for s, _ in recorded.candidates]
        return policy, rank(steps, policy=policy, context=context, catalog=catalog, model=model)

    def _model(self, model_iri: str) -> Scorer:
        from service.models.records import find
        from service.models.serving import version_scorer  # torch, imported only when a decision used a model

        return version_scorer(self.runtime, find(self.runtime, vocab.local_id(model_iri)))


def rederive(runtime: Runtime, decision_id: str) -> Rederivation:
    """Rank a recorded decision's candidates again from what its record says it used."""
    recorded = read_record(runtime, decision_id)
    policy, derived = Replay(runtime).rank(recorded)
    seed = exploration_seed(recorded.decision_id)
    # Pacing's holds are the record's own (what it had been shown and done before is not replayed): the slate is
    # drawn again from the candidates it did not hold back, as many as it let the decision show.
    eligible = [s for s in derived if s.step not in recorded.held]
    limit = recorded.paced_limit if recorded.paced_limit is not None else recorded.limit
    again = slate(eligible, limit=limit, exploration_rate=policy.exploration_rate, seed=seed)
    derived_shown = [s.step for s in again.steps]
    recorded_score = dict(recorded.candidates)
    differences = [
        f"{vocab.local_id(s.step)}: recorded score {recorded_score[s.step]}, derived {s.score}"
        for s in derived
        if abs(recorded_score[s.step] - s.score) > TOLERANCE
    ]
    differences += recorded.conflicts
    if derived_shown != recorded.shown:
        returned = [vocab.local_id(s) for s in recorded.shown]
        differences.append(f"returned {returned}, derived {[vocab.local_id(s) for s in derived_shown]}")
    for step, p in zip(derived_shown, again.propensities, strict=True):
        if step in recorded.propensities and abs(recorded.propensities[step] - p) > TOLERANCE:
            differences.append(
                f"{vocab.local_id(step)}: recorded propensity {recorded.propensities[step]}, derived {p}"
            )
    return Rederivation(
        decision_id=recorded.decision_id,
        knowledge_versions=list(recorded.versions),
        recorded=recorded.candidates,
        derived=[(s.step, s.score) for s in derived],
        shown=recorded.shown,
        derived_shown=derived_shown,
        differences=differences,
    )


def _knowledge_at(runtime: Runtime, versions: list[history.Version]) -> Store:
    """A scratch store with the ontology, the named catalog and policy versions and their entailments."""
    scratch = Store(":memory:")
    quads = list(runtime.store.graph(vocab.ONTOLOGY_GRAPH))
    for v in versions:
        graph = ox.NamedNode(v.graph)
        quads += [ox.Quad(t.subject, t.predicate, t.object, graph) for t in history.content(runtime.store, v)]
    scratch.commit(add=[*quads, *entailments(quads)])
    return scratch


def _context(runtime: Runtime, used: list[str], *, catalog, channel: str, personal: bool) -> Context:
    kinds = {iri: catalog.entities[iri].kind for iri in used if iri in catalog.entities}
    role = next((iri for iri, kind in kinds.items() if kind == "Role"), None)
    plan = next((iri for iri, kind in kinds.items() if kind == "Plan"), None)
    industry = next((iri for iri, kind in kinds.items() if kind == "Industry"), None)
    completed, features = [], []
    for iri in used:
        if not iri.startswith(vocab.EVENT_BASE):
            continue
        event = {
            q.predicate: q.object.value
            for q in runtime.store.quads(subject=ox.NamedNode(iri))
            if hasattr(q.object, "value")
        }
        if not event:
            raise InvalidInput("id", "an event the decision used is gone (erased or purged): it cannot be re-derived")
        if vocab.ABOUT_STEP in event and _is_a(runtime, iri, vocab.STEP_COMPLETED):
            completed.append(event[vocab.ABOUT_STEP])
        if vocab.ABOUT_FEATURE in event and _is_a(runtime, iri, vocab.FEATURE_USED):
            features.append(event[vocab.ABOUT_FEATURE])
    return Context(
        channel=channel,
        personalized=personal,
        role=role if personal else None,
        industry=industry if personal else None,
        plan=plan if personal else None,
        used_features=features if personal else [],
        completed=completed,
        eligible_roles=[role] if role else [],
        eligible_plans=catalog.plans_included(plan) if plan else [],
    )


def _is_a(runtime: Runtime, iri: str, cls: ox.NamedNode) -> bool:
    return any(True for _ in runtime.store.quads(subject=ox.NamedNode(iri), predicate=vocab.RDF_TYPE, object=cls))


def _candidates(
    store: GraphStore, record: ox.NamedNode
) -> tuple[list[tuple[str, float]], list[str], dict[str, float], list[str]]:
    """The record's candidates with their scores, the returned steps by rank, their propensities if recorded, and
    where a returned step's node disagrees with the candidate set.

    A record holds every candidate in its ``wf:candidates`` set and each returned one as a node too (step, score,
    rank); one written before candidate sets holds every candidate as a node. A node's score and rank stand (they
    are what lineage queries read), and a node that says otherwise than the set is reported."""
    in_set = {
        c.step: c
        for literal in store.quads(subject=record, predicate=vocab.CANDIDATES, graph=vocab.AUDIT_GRAPH)
        for c in read_candidates(plain(literal.object).value)
    }
    scores = {step: c.score for step, c in in_set.items()}
    ranks = {step: c.rank for step, c in in_set.items() if c.rank is not None}
    propensities = {step: c.propensity for step, c in in_set.items() if c.propensity is not None}
    conflicts: list[str] = []
    for link in store.quads(subject=record, predicate=vocab.HAS_CANDIDATE, graph=vocab.AUDIT_GRAPH):
        assert isinstance(link.object, ox.NamedNode)
        fields = {
            q.predicate: q.object.value
            for q in store.quads(subject=link.object, graph=vocab.AUDIT_GRAPH)
            if isinstance(q.object, ox.NamedNode | ox.Literal)
        }
        step = fields[vocab.CANDIDATE_STEP]
        scores[step] = float(fields[vocab.SCORE])
        if vocab.RANK in fields:
            ranks[step] = int(fields[vocab.RANK])
        if vocab.PROPENSITY in fields:
            propensities[step] = float(fields[vocab.PROPENSITY])
        kept = in_set.get(step)
        if in_set and (kept is None or (kept.score, kept.rank) != (scores[step], ranks.get(step))):
            conflicts.append(
                f"{vocab.local_id(step)}: its node says score {scores[step]}, rank {ranks.get(step)}; the candidate "
                f"set says score {kept and kept.score}, rank {kept and kept.rank}"
            )
    shown = sorted(ranks, key=ranks.__getitem__)
    ordered = shown + sorted((s for s in scores if s not in ranks), key=lambda s: (-scores[s], s))
    return [(s, scores[s]) for s in ordered], shown, propensities, conflicts
