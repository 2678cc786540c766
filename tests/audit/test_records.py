"""Audit records as built: decisions and erasures, PROV-O activities that name users by pseudonym only."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pyoxigraph as ox

from service.audit.records import decision_record, erasure_record
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
    assert objects(triples, first, vocab.RANK) == [ox.Literal("1", datatype=vocab.XSD_INTEGER)]
    assert objects(triples, first, vocab.REASON) == [ox.Literal("first")]
    assert objects(triples, second, vocab.RANK) == [] and objects(triples, second, vocab.REASON) == []
    assert objects(triples, second, vocab.MODEL_SCORE) == [ox.Literal("0.25", datatype=vocab.XSD_DOUBLE)]
    assert objects(triples, RECORD, vocab.MODEL_VERSION_OF_DECISION) == []
    assert objects(triples, RECORD, vocab.SUBJECT_PSEUDONYM) == [ox.Literal("p-1")]


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
