"""The ontology, with the demo catalog, is consistent for HermiT and has no unsatisfiable class."""

from __future__ import annotations

import shutil

import pytest
import rdflib

from tests.paths import ROOT

owlready2 = pytest.importorskip("owlready2")


@pytest.mark.skipif(shutil.which("java") is None, reason="HermiT needs a Java runtime")
def test_ontology_and_demo_catalog_are_consistent_for_hermit(tmp_path):
    graph = rdflib.Graph()
    graph.parse(ROOT / "ontology" / "wayfinder.ttl")
    for path in sorted((ROOT / "ontology" / "catalog").glob("*.ttl")) + sorted(
        (ROOT / "ontology" / "policies").glob("*.ttl")
    ):
        graph.parse(path)
    target = tmp_path / "wayfinder.owl"
    graph.serialize(target, format="xml")
    world = owlready2.World()
    onto = world.get_ontology(target.as_uri()).load()
    with onto:
        # Raises OwlReadyInconsistentOntologyError when the ontology is inconsistent.
        owlready2.sync_reasoner_hermit(world, infer_property_values=False, debug=0)
    assert list(world.inconsistent_classes()) == []
