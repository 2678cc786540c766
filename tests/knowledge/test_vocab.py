"""Every ontology term the Python code names is declared in the ontology."""

from __future__ import annotations

import pyoxigraph as ox
import pytest
import rdflib

from service.knowledge import vocab
from tests.paths import ROOT

ONTOLOGY = ROOT / "ontology" / "wayfinder.ttl"


def named_terms() -> list[str]:
    return sorted(
        {
            value.value
            for value in vars(vocab).values()
            if isinstance(value, ox.NamedNode) and value.value.startswith((vocab.WF_NS, vocab.DPV_NS, vocab.PROV_NS))
        }
    )


@pytest.fixture(scope="module")
def ontology() -> rdflib.Graph:
    return rdflib.Graph().parse(ONTOLOGY)


@pytest.mark.parametrize("iri", named_terms())
def test_term_is_declared_in_the_ontology(ontology, iri):
    assert (rdflib.URIRef(iri), rdflib.RDF.type, None) in ontology, f"{iri} is not declared in {ONTOLOGY.name}"


def test_every_class_and_property_has_a_label_and_a_comment(ontology):
    kinds = [rdflib.OWL.Class, rdflib.OWL.ObjectProperty, rdflib.OWL.DatatypeProperty, rdflib.OWL.AnnotationProperty]
    missing = [
        str(term)
        for kind in kinds
        for term in ontology.subjects(rdflib.RDF.type, kind)
        if str(term).startswith(vocab.WF_NS)
        and (ontology.value(term, rdflib.RDFS.label) is None or ontology.value(term, rdflib.RDFS.comment) is None)
    ]
    assert missing == []


def test_part_of_and_includes_plan_are_transitive_and_the_ontology_is_versioned(ontology):
    for prop in ("partOf", "includesPlan"):
        assert (rdflib.URIRef(vocab.WF_NS + prop), rdflib.RDF.type, rdflib.OWL.TransitiveProperty) in ontology
    assert ontology.value(rdflib.URIRef("https://w3id.org/wayfinder/ontology"), rdflib.OWL.versionInfo) is not None


def test_consent_and_decisions_align_with_dpv_and_prov(ontology):
    sub = rdflib.RDFS.subClassOf
    assert (rdflib.URIRef(vocab.WF_NS + "User"), sub, rdflib.URIRef(vocab.DPV_NS + "DataSubject")) in ontology
    assert (rdflib.URIRef(vocab.WF_NS + "ConsentPurpose"), sub, rdflib.URIRef(vocab.DPV_NS + "Purpose")) in ontology
    assert (rdflib.URIRef(vocab.WF_NS + "Decision"), sub, rdflib.PROV.Activity) in ontology
    assert (rdflib.URIRef(vocab.WF_NS + "ModelVersion"), sub, rdflib.PROV.Entity) in ontology


def test_local_id_is_the_last_segment_of_an_iri():
    assert vocab.local_id("https://w3id.org/wayfinder/demo/connect-warehouse") == "connect-warehouse"
    assert vocab.local_id("https://example.org/crm/onboarding#Pipelines") == "Pipelines"
