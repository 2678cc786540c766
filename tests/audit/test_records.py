"""Audit records as built: decisions and erasures, PROV-O activities that name users by pseudonym only."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pyoxigraph as ox

from service.audit.records import RecordedCandidate, decision_record, erasure_record, read_candidates
from service.knowledge import vocab
from service.knowledge.validation import Validator
from tests.audit.test_chain import setup_users

RECORD = ox.NamedNode(vocab.DECISION_BASE + "00000000-0000-4000-8000-000000000000")
AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DEMO = "https://w3id.org/wayfinder/demo/"


def test_every_decision_record_passes_the_decision_shape(runtime):
    setup_users(runtime)
    graph = runtime.knowledge.graph
    from service.knowledge.terms import to_rdflib_graph

    data = to_rdflib_graph(runtime.store.graph(vocab.AUDIT_GRAPH))
    data += graph
    violations = Validator(runtime.settings.shapes_dir).validate(data)
    assert [v for v in violations if "decision" in v.focus] == []


def candidate(step, score, *, model=None, reasons=()):
    return SimpleNamespace(step=DEMO + step, score=score, rule_score=score, model_score=model, reasons=list(reasons))


def record(**fields):
    """A decision record of a non-personalised decision with nothing in it, but for ``fields``."""
    given = dict(
        started=AT,
        ended=AT,
        pseudonym="p-1",
        channel=vocab.WF_NS + "Web",
        personalized=False,
        limit=1,
        policy="https://w3id.org/wayfinder/policy/default-1.1.0",
        model=None,
        variant=None,
        used=[],
        candidates=[],
        shown={},
    )
    return decision_record(RECORD, **{**given, **fields})


def objects(triples, subject, predicate):
    return [t.object for t in triples if t.subject == subject and t.predicate == predicate]


def test_a_decision_record_ranks_and_explains_only_what_was_shown():
    triples = record(
        used=[DEMO + "a", DEMO + "a", DEMO + "b"],
        candidates=[candidate("s1", 0.9, reasons=["first"]), candidate("s2", 0.5, model=0.25, reasons=["second"])],
        shown={DEMO + "s1": 1},
    )
    first, second = (ox.NamedNode(f"{RECORD.value}/candidate/{i}") for i in (1, 2))
    assert objects(triples, RECORD, vocab.PROV_USED) == [ox.NamedNode(DEMO + "a"), ox.NamedNode(DEMO + "b")]
    # the shown step is a node with step, score and rank, for lineage queries; the cut one is not
    assert objects(triples, RECORD, vocab.HAS_CANDIDATE) == [first]
    assert objects(triples, first, vocab.CANDIDATE_STEP) == [ox.NamedNode(DEMO + "s1")]
    assert objects(triples, first, vocab.SCORE) == [ox.Literal("0.9", datatype=vocab.XSD_DOUBLE)]
    assert objects(triples, first, vocab.RANK) == [ox.Literal("1", datatype=vocab.XSD_INTEGER)]
    assert not [t for t in triples if t.subject == second]
    # every candidate is in the candidate set, with what the nodes leave out; reasons only for the shown one
    (kept,) = objects(triples, RECORD, vocab.CANDIDATES)
    assert kept.datatype == vocab.RDF_JSON
    assert read_candidates(kept.value) == [
        RecordedCandidate(DEMO + "s1", 0.9, 0.9, None, rank=1, reasons=["first"]),
        RecordedCandidate(DEMO + "s2", 0.5, 0.5, 0.25),
    ]
    assert objects(triples, RECORD, vocab.MODEL_VERSION_OF_DECISION) == []
    assert objects(triples, RECORD, vocab.SUBJECT_PSEUDONYM) == [ox.Literal("p-1")]


def test_the_candidate_set_keeps_reasons_in_order_and_propensities_and_is_the_same_for_the_same_candidates():
    fields = dict(
        candidates=[candidate("s1", 0.9, reasons=["b", "a"]), candidate("s2", 0.5), candidate("s3", 0.1)],
        shown={DEMO + "s2": 1, DEMO + "s1": 2},
        propensities={DEMO + "s2": 0.95, DEMO + "s1": 0.05},
        explored=False,
    )
    (kept,) = objects(record(**fields), RECORD, vocab.CANDIDATES)
    assert kept == objects(record(**fields), RECORD, vocab.CANDIDATES)[0]
    first, second, third = read_candidates(kept.value)
    assert (first.rank, first.reasons, first.propensity) == (2, ["b", "a"], 0.05)
    assert (second.rank, second.propensity) == (1, 0.95)
    assert (third.rank, third.propensity, third.reasons) == (None, None, [])
    assert objects(record(**fields), RECORD, vocab.EXPLORED) == [ox.Literal("false", datatype=vocab.XSD_BOOLEAN)]


def test_a_decision_record_names_its_model_and_variant_when_there_are_some():
    model = "https://w3id.org/wayfinder/model/v1"
    triples = record(personalized=True, limit=3, model=model, variant="treatment")
    assert objects(triples, RECORD, vocab.MODEL_VERSION_OF_DECISION) == [ox.NamedNode(model)]
    assert ox.NamedNode(model) in objects(triples, RECORD, vocab.PROV_WAS_ASSOCIATED_WITH)
    assert objects(triples, RECORD, vocab.VARIANT) == [ox.Literal("treatment")]
    assert objects(triples, RECORD, vocab.PERSONALIZED) == [ox.Literal("true", datatype=vocab.XSD_BOOLEAN)]


def test_an_erasure_record_says_when_and_at_whose_request_never_whom():
    record = ox.NamedNode(vocab.ERASURE_BASE + "e1")
    triples = erasure_record(record, at=AT, requested_by="privacy-officer", removed=12)
    assert objects(triples, record, vocab.REQUESTED_BY) == [ox.Literal("privacy-officer")]
    assert objects(triples, record, vocab.TRIPLES_REMOVED) == [ox.Literal("12", datatype=vocab.XSD_INTEGER)]
    assert {t.subject for t in triples} == {record}
    assert not any(isinstance(t.object, ox.NamedNode) and t.object.value.startswith(vocab.USER_BASE) for t in triples)


def as_layout_3(record: ox.NamedNode, triples: list[ox.Triple], new: ox.NamedNode) -> list[ox.Triple]:
    """The record as layout 3 wrote it, under another IRI: no candidate set, every candidate a node with its rule
    and model score, and the shown ones with rank, propensity and reasons."""
    (kept,) = objects(triples, record, vocab.CANDIDATES)
    own = [
        ox.Triple(new, t.predicate, t.object)
        for t in triples
        if t.subject == record and t.predicate not in (vocab.CANDIDATES, vocab.HAS_CANDIDATE)
    ]
    T, D = ox.Triple, lambda x: ox.Literal(repr(float(x)), datatype=vocab.XSD_DOUBLE)
    for i, c in enumerate(read_candidates(kept.value), start=1):
        node = ox.NamedNode(f"{new.value}/candidate/{i}")
        own += [
            T(new, vocab.HAS_CANDIDATE, node),
            T(node, vocab.RDF_TYPE, vocab.RANKED_CANDIDATE),
            T(node, vocab.CANDIDATE_STEP, ox.NamedNode(c.step)),
            T(node, vocab.SCORE, D(c.score)),
            T(node, vocab.RULE_SCORE, D(c.rule_score)),
        ]
        if c.model_score is not None:
            own.append(T(node, vocab.MODEL_SCORE, D(c.model_score)))
        if c.rank is not None:
            own.append(T(node, vocab.RANK, ox.Literal(str(c.rank), datatype=vocab.XSD_INTEGER)))
            own += [T(node, vocab.REASON, ox.Literal(r)) for r in c.reasons]
    return own


def test_a_record_written_before_candidate_sets_reads_rederives_and_verifies_as_before(runtime):
    from service.audit.chain import record_triples
    from service.decisions import decide
    from service.decisions.rederive import rederive
    from tests.audit.test_chain import check

    setup_users(runtime)
    made = decide.next_steps(runtime, "ana", limit=2)
    record = ox.NamedNode(vocab.DECISION_BASE + made.decision_id)
    chain_fields = (vocab.CHAIN, vocab.SEQUENCE, vocab.PREVIOUS_HASH, vocab.CONTENT_HASH)
    written = [q.triple for q in record_triples(runtime.store, record) if q.predicate not in chain_fields]
    older_id = "00000000-0000-4000-8000-00000000000a"
    older = ox.NamedNode(vocab.DECISION_BASE + older_id)
    runtime.trail.append(older, as_layout_3(record, written, older))
    assert not list(runtime.store.quads(subject=older, predicate=vocab.CANDIDATES))
    # read back as it was returned, with every candidate, its scores and the shown ones' reasons
    now, before = decide.read_decision(runtime, made.decision_id), decide.read_decision(runtime, older_id)
    assert now is not None and before is not None
    assert [(s.step, s.score, s.rule_score, s.model_score) for s in before.candidates] == [
        (s.step, s.score, s.rule_score, s.model_score) for s in now.candidates
    ]
    assert [(s.step, sorted(s.reasons)) for s in before.steps] == [(s.step, sorted(s.reasons)) for s in now.steps]
    assert len(now.candidates) > len(now.steps)  # some candidate was cut: the set holds it, no node does
    # ranked again to the same result, read by model health the same way, and chained like any record
    assert rederive(runtime, older_id).matches and rederive(runtime, made.decision_id).matches
    from service.models import traffic

    scored = {d.iri: d.candidates for d in traffic.latest(runtime, window=100)}
    assert scored[older.value] == scored[record.value] and len(scored[record.value]) == len(now.candidates)
    assert check(runtime).ok
