"""Re-deriving a past decision from the audit trail alone, even after the catalog or policy changed.

A decision record names everything ranking read: the catalog and policy versions (snapshots in
the knowledge history), the policy version and model version, the profile facts and events, and
whether it was personalised. :func:`rederive` rebuilds the knowledge as those versions had it (in
a scratch store, with its OWL 2 RL entailments), the context from the facts and events the record
names, loads the recorded model version's artefact, ranks the recorded candidates again and
compares scores and order with what the record says was returned.

Candidate generation is not replayed: the candidates are the record's own (it keeps every one,
with its scores), so what is checked is that ranking and explanation follow from what was used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyoxigraph as ox

from service.decisions.decide import UUID_PATTERN
from service.decisions.ranking import Context, rank
from service.errors import InvalidInput, NotFound
from service.knowledge import history, vocab
from service.knowledge.catalog import read_catalog
from service.knowledge.embedded import Store
from service.knowledge.policies import read_policies
from service.knowledge.reasoning import entailments
from service.runtime import Runtime

TOLERANCE = 1e-6  # scores are recorded rounded to 6 decimals


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


def rederive(runtime: Runtime, decision_id: str) -> Rederivation:
    """Rank a recorded decision's candidates again from what its record says it used."""
    if not UUID_PATTERN.fullmatch(decision_id):
        raise InvalidInput("id", "a decision ID is a UUID, as 8-4-4-4-12 hexadecimal digits")
    record = ox.NamedNode(vocab.DECISION_BASE + decision_id.lower())
    facts = list(runtime.store.quads(subject=record, graph=vocab.AUDIT_GRAPH))
    if not facts:
        raise NotFound(f"no decision {decision_id}")

    def one(predicate: ox.NamedNode) -> str | None:
        return next((q.object.value for q in facts if q.predicate == predicate and hasattr(q.object, "value")), None)

    used = [q.object.value for q in facts if q.predicate == vocab.PROV_USED and isinstance(q.object, ox.NamedNode)]
    recorded_versions = [history.version_of(runtime.store, iri) for iri in used if _is_version(runtime, iri)]
    if not any(v.graph.startswith(vocab.CATALOG_GRAPH_BASE) for v in recorded_versions):
        raise InvalidInput("id", "the decision was recorded before decisions named their catalog version")

    knowledge = _knowledge_at(runtime, recorded_versions)
    catalog = read_catalog(knowledge, runtime.queries, channels=runtime.knowledge.codes.channels)
    policies = read_policies(knowledge, runtime.queries)
    policy_iri = one(vocab.POLICY_VERSION_OF_DECISION)
    if policy_iri not in policies:
        raise InvalidInput("id", f"the policy version {policy_iri} is not in the knowledge versions the decision used")
    personalized = one(vocab.PERSONALIZED) == "true"
    context = _context(runtime, used, catalog=catalog, channel=one(vocab.DECISION_CHANNEL) or "", personal=personalized)
    model = _model(runtime, one(vocab.MODEL_VERSION_OF_DECISION))

    recorded, shown = _candidates(runtime, record)
    derived = rank([s for s, _ in recorded], policy=policies[policy_iri], context=context, catalog=catalog, model=model)
    derived_shown = [s.step for s in derived[: len(shown)]]
    recorded_score = dict(recorded)
    differences = [
        f"{vocab.local_id(s.step)}: recorded score {recorded_score[s.step]}, derived {s.score}"
        for s in derived
        if abs(recorded_score[s.step] - s.score) > TOLERANCE
    ]
    if derived_shown != shown:
        differences.append(
            f"returned {[vocab.local_id(s) for s in shown]}, derived {[vocab.local_id(s) for s in derived_shown]}"
        )
    return Rederivation(
        decision_id=decision_id.lower(),
        knowledge_versions=[v.iri for v in recorded_versions],
        recorded=recorded,
        derived=[(s.step, s.score) for s in derived],
        shown=shown,
        derived_shown=derived_shown,
        differences=differences,
    )


def _is_version(runtime: Runtime, iri: str) -> bool:
    return iri.startswith(vocab.KNOWLEDGE_VERSION_BASE)


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


def _model(runtime: Runtime, model_iri: str | None):
    if model_iri is None:
        return None
    from embeddings.scoring import Scorer  # torch, imported only when the decision used a model
    from service.models.records import artefact, find

    version = find(runtime, vocab.local_id(model_iri))
    return Scorer.from_bytes(artefact(runtime, version), sha256=version.artifact_hash, version=version.version)


def _candidates(runtime: Runtime, record: ox.NamedNode) -> tuple[list[tuple[str, float]], list[str]]:
    """The record's candidates with their scores, and the returned steps by rank."""
    scores: dict[str, float] = {}
    ranks: dict[str, int] = {}
    for link in runtime.store.quads(subject=record, predicate=vocab.HAS_CANDIDATE, graph=vocab.AUDIT_GRAPH):
        assert isinstance(link.object, ox.NamedNode)
        fields = {
            q.predicate: q.object.value
            for q in runtime.store.quads(subject=link.object, graph=vocab.AUDIT_GRAPH)
            if isinstance(q.object, ox.NamedNode | ox.Literal)
        }
        step = fields[vocab.CANDIDATE_STEP]
        scores[step] = float(fields[vocab.SCORE])
        if vocab.RANK in fields:
            ranks[step] = int(fields[vocab.RANK])
    shown = sorted(ranks, key=ranks.__getitem__)
    ordered = shown + sorted((s for s in scores if s not in ranks), key=lambda s: (-scores[s], s))
    return [(s, scores[s]) for s in ordered], shown
