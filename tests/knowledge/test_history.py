"""Catalog and policy history: every load keeps the version it replaces, a rollback restores one through
validation, and a decision made under an old catalog is re-derived from the trail after the change."""

from __future__ import annotations

import gc

import pyoxigraph as ox
import pytest
from typer.testing import CliRunner

from service.cli import app
from service.decisions import decide, users
from service.decisions.rederive import rederive
from service.errors import InvalidInput, NotFound, RefusedWrite
from service.knowledge import files, history, vocab
from tests.paths import ROOT

DEMO = ROOT / "ontology" / "catalog" / "demo.ttl"
CATALOG = vocab.catalog_graph("demo")
TOUR = "https://w3id.org/wayfinder/demo/take-product-tour"


def edited_catalog(tmp_path, old: str, new: str):
    """A copy of the demo catalog (same file name, so the same graph) with one edit."""
    text = DEMO.read_text()
    assert old in text
    folder = tmp_path / "edited"
    folder.mkdir(exist_ok=True)
    path = folder / "demo.ttl"
    path.write_text(text.replace(old, new, 1))
    return path


# The product tour moves from first to last in the default journey: the journey term of its score changes.
TOUR_FIRST = "wf:introduces demo:analytics-workspace ;\n    wf:availableOn wf:Web, wf:Mobile, wf:InApp ;\n    wf:defaultOrder 10 ;"
TOUR_LAST = TOUR_FIRST.replace("wf:defaultOrder 10 ;", "wf:defaultOrder 315 ;")


def test_every_load_records_a_version_with_who_when_and_its_hash(runtime, tmp_path):
    first = history.versions(runtime.store, CATALOG)
    assert [v.number for v in first] == [1] and first[0].loaded_by == files.LOCAL_OPERATOR
    runtime.load([edited_catalog(tmp_path, TOUR_FIRST, TOUR_LAST)], by="kim")
    second = history.versions(runtime.store, CATALOG)
    assert [v.number for v in second] == [1, 2]
    assert second[1].loaded_by == "kim" and second[1].loaded_at is not None
    assert second[1].revises == second[0].iri and second[1].content_hash != second[0].content_hash
    assert history.current(runtime.store)[CATALOG.value] == second[1].iri
    # The snapshot is the content as the store keeps it, and is no knowledge: reads see one order of the tour.
    assert {q.triple for q in runtime.store.graph(CATALOG)} == set(history.content(runtime.store, second[1]))
    assert runtime.catalog.step(TOUR).order == 315

    runtime.load([edited_catalog(tmp_path, TOUR_FIRST, TOUR_LAST)], by="kim")  # the same content again
    assert len(history.versions(runtime.store, CATALOG)) == 2


def test_a_rollback_restores_the_previous_version_through_validation(runtime, tmp_path):
    runtime.load([edited_catalog(tmp_path, TOUR_FIRST, TOUR_LAST)], by="kim")
    restored = files.rollback("catalog/demo", store=runtime.store, validator=runtime.validator, by="lee")
    runtime.knowledge_changed()
    assert restored.number == 1 and runtime.catalog.step(TOUR).order == 10
    latest = history.versions(runtime.store, CATALOG)[-1]
    assert (latest.number, latest.restores, latest.loaded_by) == (3, restored.iri, "lee")
    assert latest.content_hash == restored.content_hash


def test_a_rollback_that_no_longer_validates_stores_nothing(runtime, tmp_path):
    # Version 2 of the demo catalog adds a step; another catalog graph then requires it. Rolling the demo
    # catalog back to version 1 would leave that prerequisite dangling: the shapes refuse it.
    tour = "demo:take-product-tour a wf:Step ;"
    step = 'demo:extra-step a wf:Step ; rdfs:label "Extra"@en ; wf:introduces demo:visual-explorer ; wf:availableOn wf:Web ; wf:defaultOrder 400 .\n\n'
    runtime.load([edited_catalog(tmp_path, tour, step + tour)], by="kim")
    extras = tmp_path / "extras.ttl"
    extras.write_text(
        "@prefix wf: <https://w3id.org/wayfinder/ontology#> .\n"
        "@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .\n"
        "@prefix demo: <https://w3id.org/wayfinder/demo/> .\n"
        'demo:after-extra a wf:Step ; rdfs:label "After the extra step"@en ; wf:introduces demo:visual-explorer ; wf:availableOn wf:Web ;\n'
        "    wf:defaultOrder 410 ; wf:requires demo:extra-step .\n"
    )
    runtime.load([extras], by="kim")
    before = sorted(map(str, runtime.store.quads()))
    with pytest.raises(RefusedWrite) as refused:
        files.rollback("catalog/demo", 1, store=runtime.store, validator=runtime.validator, by="lee")
    assert "extra-step" in str(refused.value.violations)
    assert sorted(map(str, runtime.store.quads())) == before
    with pytest.raises(NotFound):
        files.rollback("catalog/demo", 9, store=runtime.store, validator=runtime.validator)
    with pytest.raises(InvalidInput) as wrong:
        files.rollback("ontology", store=runtime.store, validator=runtime.validator)
    assert wrong.value.field == "name"


def test_a_restore_refused_by_the_shapes_changes_nothing(runtime, tmp_path):
    # Version 2 of the catalog lacks the label the shapes require of a step; the catalog is then fixed (3).
    broken = edited_catalog(
        tmp_path,
        'rdfs:label "Take the two-minute product tour"@en, "Faça o tour de dois minutos pelo produto"@pt-BR ;',
        "",
    )
    with pytest.raises(RefusedWrite):
        runtime.load([broken], by="kim")  # a refused load records no version either
    assert len(history.versions(runtime.store, CATALOG)) == 1


def test_a_decision_under_the_old_catalog_is_rederived_after_the_change(runtime, tmp_path):
    users.register(
        runtime,
        users.Registration(id="ana", role="analyst", industry="retail", plan="team", consents=["PERSONALIZATION"]),
    )
    users.record_events(runtime, [users.EventReport("ana", "FEATURE_USED", feature_id="visual-explorer")])
    before = decide.next_steps(runtime, "ana", limit=3)
    assert TOUR in [s.step for s in before.steps]

    runtime.load([edited_catalog(tmp_path, TOUR_FIRST, TOUR_LAST)], by="kim")
    after = decide.next_steps(runtime, "ana", limit=3)
    assert TOUR not in [s.step for s in after.steps]  # the change matters

    again = rederive(runtime, before.decision_id)
    assert again.matches, again.differences
    assert again.shown == [s.step for s in before.steps] == again.derived_shown
    assert history.versions(runtime.store, CATALOG)[0].iri in again.knowledge_versions
    assert rederive(runtime, after.decision_id).matches


def test_a_tampered_record_does_not_rederive(runtime):
    users.register(runtime, users.Registration(id="bo", role="engineer", plan="free"))
    made = decide.next_steps(runtime, "bo", limit=2)
    record = ox.NamedNode(vocab.DECISION_BASE + made.decision_id)
    first = next(runtime.store.quads(subject=ox.NamedNode(record.value + "/candidate/1"), predicate=vocab.SCORE))
    runtime.store.commit(
        remove=[first],
        add=[ox.Quad(first.subject, first.predicate, ox.Literal("99.0", datatype=vocab.XSD_DOUBLE), first.graph_name)],
    )
    again = rederive(runtime, made.decision_id)
    assert not again.matches and "recorded score 99.0" in again.differences[0]


def test_versions_and_rollback_on_the_command_line(disk_runtime, tmp_path):
    disk_runtime.load([edited_catalog(tmp_path, TOUR_FIRST, TOUR_LAST)], by="kim")
    users.register(disk_runtime, users.Registration(id="cli", role="analyst", plan="team"))
    made = decide.next_steps(disk_runtime, "cli", limit=3)
    store = disk_runtime.settings.store
    disk_runtime.store.close()
    gc.collect()
    listed = CliRunner().invoke(app, ["versions", "catalog/demo", "--store", store])
    assert listed.exit_code == 0, listed.output
    assert "kim" in listed.output and files.LOCAL_OPERATOR in listed.output
    gc.collect()
    rolled = CliRunner().invoke(app, ["rollback", "catalog", "demo", "1", "--by", "lee", "--store", store])
    assert rolled.exit_code == 0, rolled.output
    assert "restored version 1 as version 3" in rolled.output
    gc.collect()
    missing = CliRunner().invoke(app, ["rollback", "policy", "default", "--store", store])
    assert missing.exit_code != 0 and "only one version" in missing.output
    gc.collect()  # the decision made under version 2 of the catalog re-derives after the rollback to 1
    again = CliRunner().invoke(app, ["audit", "rederive", made.decision_id, "--store", store])
    assert again.exit_code == 0, again.output
    assert "catalog/demo/2" in again.output and "re-derived" in again.output
