"""Loading knowledge files: validated as a whole, reasoned over, committed all or nothing."""

from __future__ import annotations

from pathlib import Path

import pyoxigraph as ox
import pytest

from service.errors import RefusedWrite, SyntaxProblem
from service.knowledge import files as knowledge
from service.knowledge import vocab
from service.runtime import Runtime
from service.settings import Settings
from tests.paths import FIXTURES, ROOT


@pytest.fixture
def empty() -> Runtime:
    runtime = Runtime(settings=Settings(store=":memory:"))
    runtime.ensure_ontology()
    return runtime


SCALE_INCLUDES_STARTER = (
    "ASK { GRAPH <https://w3id.org/wayfinder/graph/entailments> { <https://example.org/crm/onboarding#Scale> "
    "<https://w3id.org/wayfinder/ontology#includesPlan> <https://example.org/crm/onboarding#Starter> } }"
)


def snapshot(runtime: Runtime) -> set[str]:
    return {str(q) for q in runtime.store.quads() if not isinstance(q.subject, ox.BlankNode)}


def test_a_catalog_written_by_someone_else_loads_and_is_reasoned_over(empty):
    report = empty.load([FIXTURES / "other-catalog.ttl"])
    assert report.graphs == {vocab.catalog_graph("other-catalog").value: report.triples}
    # wf:includesPlan is transitive: Scale includes Starter through Growth.
    assert empty.store.ask(SCALE_INCLUDES_STARTER)
    # Only what follows is added: a step is no PROV entity.
    assert not empty.store.ask(
        "ASK { <https://example.org/crm/onboarding#import-contacts> a <http://www.w3.org/ns/prov#Entity> }"
    )
    steps = {s.id for s in empty.catalog.steps}
    assert steps == {"import-contacts", "first-pipeline"}


@pytest.mark.parametrize(
    "fixture, focus, fragment",
    [
        ("cycle.ttl", "https://example.org/cycle/a", "cycle"),
        ("dangling.ttl", "https://example.org/dangling/a", "missing-step"),
        ("no-channel.ttl", "https://example.org/nochannel/orphan-step", "channel"),
    ],
)
def test_a_broken_catalog_is_refused_whole(empty, fixture, focus, fragment):
    before = snapshot(empty)
    with pytest.raises(RefusedWrite) as refused:
        empty.load([FIXTURES / fixture])
    assert any(v.focus == focus for v in refused.value.violations)
    assert fragment.lower() in refused.value.message.lower()
    assert snapshot(empty) == before


def test_every_step_of_a_cycle_is_reported(empty):
    with pytest.raises(RefusedWrite) as refused:
        empty.load([FIXTURES / "cycle.ttl"])
    focus = {v.focus for v in refused.value.violations}
    assert {"https://example.org/cycle/a", "https://example.org/cycle/b", "https://example.org/cycle/c"} <= focus


def test_a_privacy_violation_in_a_file_is_refused_with_each_violation(empty):
    with pytest.raises(RefusedWrite) as refused:
        empty.load([FIXTURES / "privacy-violation.ttl"])
    paths = {v.path for v in refused.value.violations}
    assert "https://schema.org/email" in paths
    assert "https://schema.org/gender" in paths
    assert not empty.store.has_graph(vocab.catalog_graph("privacy-violation"))


def test_a_syntax_error_names_file_line_and_column(empty):
    with pytest.raises(SyntaxProblem) as problem:
        empty.load([FIXTURES / "syntax-error.ttl"])
    assert problem.value.line == 6
    assert problem.value.column is not None
    assert "syntax-error.ttl:6:" in problem.value.message


def test_an_unknown_prefix_is_a_syntax_error(empty):
    with pytest.raises(SyntaxProblem) as problem:
        empty.load([FIXTURES / "unknown-prefix.ttl"])
    assert problem.value.line == 4
    assert "ex:" in problem.value.message


def test_one_bad_file_among_several_loads_nothing(empty):
    before = snapshot(empty)
    with pytest.raises(RefusedWrite):
        empty.load([FIXTURES / "other-catalog.ttl", FIXTURES / "dangling.ttl"])
    assert snapshot(empty) == before


def test_reloading_a_changed_catalog_replaces_it(empty, tmp_path):
    empty.load([FIXTURES / "other-catalog.ttl"])
    changed = tmp_path / "other-catalog.ttl"
    text = (FIXTURES / "other-catalog.ttl").read_text()
    changed.write_text(text.replace('"Build your first sales pipeline"', '"Create a pipeline"'))
    empty.load([changed])
    labels = {
        row["l"].value
        for row in empty.store.select(
            "SELECT ?l WHERE { <https://example.org/crm/onboarding#first-pipeline> "
            "<http://www.w3.org/2000/01/rdf-schema#label> ?l }"
        )
    }
    assert labels == {"Create a pipeline"}
    assert empty.catalog.step("https://example.org/crm/onboarding#first-pipeline").title == "Create a pipeline"


def test_entailments_are_recomputed_when_the_catalog_changes(empty, tmp_path):
    empty.load([FIXTURES / "other-catalog.ttl"])
    assert empty.store.ask(SCALE_INCLUDES_STARTER)
    smaller = tmp_path / "other-catalog.ttl"
    smaller.write_text(
        (FIXTURES / "other-catalog.ttl")
        .read_text()
        .replace(
            'crm:Growth a wf:Plan ; rdfs:label "Growth" ; wf:includesPlan crm:Starter .',
            'crm:Growth a wf:Plan ; rdfs:label "Growth" .',
        )
    )
    empty.load([smaller])
    assert not empty.store.ask(SCALE_INCLUDES_STARTER)


def test_policy_files_go_to_a_policy_graph():
    triples = knowledge.read_rdf(ROOT / "ontology" / "policies" / "default.ttl")
    graph = knowledge.graph_for(Path("default.ttl"), triples)
    assert graph.value == vocab.POLICY_GRAPH_BASE + "default"


def test_a_graph_name_outside_the_knowledge_graphs_is_refused():
    with pytest.raises(SyntaxProblem):
        knowledge.graph_named("audit")


def test_backup_command_copies_the_store_and_the_copy_serves(tmp_path):
    from typer.testing import CliRunner

    from service.cli import app
    from service.knowledge.embedded import Store

    source = tmp_path / "store"
    runner = CliRunner()
    assert runner.invoke(app, ["load", str(FIXTURES / "other-catalog.ttl"), "--store", str(source)]).exit_code == 0
    result = runner.invoke(app, ["backup", str(tmp_path / "copy"), "--store", str(source)])
    assert result.exit_code == 0, result.output
    original, copy = Store(source), Store(tmp_path / "copy")
    assert {str(q) for q in original.quads() if not isinstance(q.subject, ox.BlankNode)} == {
        str(q) for q in copy.quads() if not isinstance(q.subject, ox.BlankNode)
    }
    assert runner.invoke(app, ["backup", str(tmp_path / "copy"), "--store", str(tmp_path / "other")]).exit_code == 2


def test_the_knowledge_graphs_are_listed_from_the_index_each_load_writes(empty, monkeypatch):
    from service import demo

    empty.load(demo.knowledge_files(empty))
    walked = {g for g in empty.store.named_graphs() if vocab.is_knowledge_graph(g)}
    indexed = set(knowledge.knowledge_graphs(empty.store))
    assert indexed == walked and vocab.ONTOLOGY_GRAPH in indexed and len(indexed) >= 3
    # Users' graphs are many; the index spares the walk over them.
    monkeypatch.setattr(empty.store, "named_graphs", lambda: pytest.fail("walked every named graph"))
    assert set(knowledge.knowledge_graphs(empty.store)) == walked
    monkeypatch.undo()
    # A store loaded before the index existed is walked as before.
    empty.store.commit(drop=[vocab.KNOWLEDGE_INDEX_GRAPH])
    assert set(knowledge.knowledge_graphs(empty.store)) == walked
    # The next load writes the index again, with every knowledge graph, not only those it replaced.
    empty.load([ROOT / "ontology" / "policies" / "retention.ttl"])
    assert set(knowledge.knowledge_graphs(empty.store)) == walked
    assert knowledge.check_store(empty.store, empty.validator) == []
