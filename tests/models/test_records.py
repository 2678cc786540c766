"""Model version records: what the registry writes to the graph, reads back, and the shapes accept."""

from __future__ import annotations

import hashlib
import json

import pyoxigraph as ox
import pytest

from service.knowledge import vocab
from service.knowledge.queries import inline
from service.knowledge.terms import to_rdflib_graph
from service.knowledge.validation import Validator
from service.models import records
from service.models.records import Status
from tests.models.conftest import PROMOTE, QUICK, ROLLBACK, TRAIN, register_untrained
from tests.paths import ROOT

CONSENT = "https://w3id.org/wayfinder/consent/"


def test_registry_records_pass_the_model_shapes(api, world_runtime):
    first = api.data(TRAIN, {"seed": 0, **QUICK})["trainModel"]["version"]
    second = api.data(TRAIN, {"seed": 1, **QUICK})["trainModel"]["version"]
    api.data(PROMOTE, {"v": first, "by": "Ada"})
    api.data(PROMOTE, {"v": second, "by": "Grace"})
    api.data(ROLLBACK)
    data = to_rdflib_graph(world_runtime.store.graph(vocab.MODELS_GRAPH))
    assert len(data) > 20
    data += world_runtime.knowledge.graph
    violations = Validator(world_runtime.settings.shapes_dir).validate(data)
    assert [v for v in violations if "/model/" in v.focus] == []


def test_a_version_reads_back_as_it_was_recorded(runtime):
    artefact = b"the artefact's bytes"
    version = register_untrained(runtime, artefact, minute=5, used=(CONSENT + "c1", CONSENT + "c2"), requested_by="ops")
    sha = hashlib.sha256(artefact).hexdigest()
    assert version == sha[:12]
    [read] = records.versions(runtime)
    assert (read.version, read.iri, read.status) == (version, vocab.MODEL_BASE + version, Status.CANDIDATE)
    assert (read.artifact_hash, read.data_snapshot, read.training_users) == (sha, "b" * 64, 2)
    assert read.hyper_parameters == {"epochs": 1, "seed": 5}
    assert read.metrics == {"test_auc": 0.5}  # NaN has no JSON form: what could not be computed is left out
    assert read.trained_at.isoformat() == "2026-11-26T10:05:00+00:00"
    assert (read.requested_by, read.approved_by, read.approved_at, read.supersedes) == ("ops", None, None, None)
    assert records.artefact(runtime, read) == artefact
    assert records.find(runtime, version) == read
    assert records.active(runtime) is None
    # the lineage: the training run used the consent records, in the models graph
    used = runtime.store.select(
        inline(
            "PREFIX prov: <http://www.w3.org/ns/prov#> SELECT ?r WHERE { "
            "GRAPH <https://w3id.org/wayfinder/graph/models> { ?model prov:wasGeneratedBy ?run . ?run prov:used ?r } }",
            model=ox.NamedNode(read.iri),
        )
    )
    assert sorted(r["r"].value for r in used) == [CONSENT + "c1", CONSENT + "c2"]
    # the models-using-consent lineage query finds the version by one of them
    rows = runtime.store.select(
        runtime.queries["lineage/models-using-consent"].bind(consent=ox.NamedNode(CONSENT + "c2"))
    )
    assert [(r["version"].value, r["status"]) for r in rows] == [(version, vocab.CANDIDATE_VERSION)]


def test_a_version_record_passes_the_model_shapes_as_written(runtime):
    version = register_untrained(runtime, b"artefact", minute=1)
    data = to_rdflib_graph(runtime.store.graph(vocab.MODELS_GRAPH))
    data += runtime.knowledge.graph
    violations = Validator(runtime.settings.shapes_dir).validate(data)
    assert [v for v in violations if "/model/" in v.focus] == []
    [status] = runtime.store.quads(subject=ox.NamedNode(vocab.MODEL_BASE + version), predicate=vocab.MODEL_STATUS)
    assert status.object == vocab.CANDIDATE_VERSION


def test_every_status_is_a_term_the_ontology_declares_with_the_name_the_api_shows():
    ontology = ox.Store()
    ontology.load(path=str(ROOT / "ontology" / "wayfinder.ttl"), format=ox.RdfFormat.TURTLE)
    declared = {q.subject for q in ontology.quads_for_pattern(None, vocab.RDF_TYPE, vocab.MODEL_STATUS_CLASS)}
    assert {status.term for status in Status} == declared
    assert [str(status) for status in Status] == ["candidate", "active", "retired", "rolled-back"]  # schema.graphql
    for status in Status:
        assert Status.of(status.term) is status
        assert json.dumps(status) == f'"{status.value}"'
    with pytest.raises(ValueError, match="not a model status"):
        Status.of(ox.Literal("active"))
