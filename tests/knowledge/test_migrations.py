"""Store layouts: a new store records this release's; an older one is refused until `wayfinder migrate` upgrades it."""

from __future__ import annotations

from datetime import UTC, datetime

import pyoxigraph as ox
import pytest
from typer.testing import CliRunner

from service.audit.chain import verify
from service.cli import app as cli
from service.decisions import consent, users
from service.decisions.consent import active_purposes
from service.decisions.decide import next_steps
from service.errors import OutdatedStore
from service.knowledge import migrations, vocab
from service.knowledge.embedded import Store
from service.knowledge.terms import to_rdflib_graph
from service.models import lifecycle, records
from service.models.records import Status
from service.runtime import Runtime
from service.settings import Settings

FUTURE = ox.Literal("2126-01-01T00:00:00Z", datatype=vocab.XSD_DATETIME)


def as_an_earlier_release_left_it(store: Store) -> None:
    """Drop what layout 2 added: the layout version and the consent records' record times; date one grant ahead."""
    meta = list(store.quads(graph=vocab.META_GRAPH))
    times = list(store.quads(predicate=vocab.RECORDED_AT, graph=vocab.CONSENT_GRAPH))
    indicated = list(store.quads(predicate=vocab.IS_INDICATED_AT_TIME, graph=vocab.CONSENT_GRAPH))
    store.commit(
        remove=meta + times + indicated, add=[ox.Quad(q.subject, q.predicate, FUTURE, q.graph_name) for q in indicated]
    )


@pytest.fixture
def old_store(disk_runtime):
    """A store written by the release before layout versions: a user whose grant a client dated in 2126, a decision."""
    users.register(disk_runtime, users.Registration(id="legacy", consents=["PERSONALIZATION"], at=datetime.now(UTC)))
    next_steps(disk_runtime, "legacy")
    as_an_earlier_release_left_it(disk_runtime.store)
    location = disk_runtime.store.location
    disk_runtime.store.close()
    return location


def test_a_new_store_records_this_releases_layout(tmp_path):
    runtime = Runtime(settings=Settings(store=str(tmp_path / "new"), models_dir=tmp_path / "models"))
    runtime.ensure_ontology()
    assert migrations.layout_version(runtime.store) == migrations.LAYOUT


def test_an_older_store_is_refused_with_what_to_do(old_store, tmp_path):
    runtime = Runtime(settings=Settings(store=str(old_store), models_dir=tmp_path / "models"))
    with pytest.raises(OutdatedStore, match="wayfinder migrate"):
        runtime.ensure_ontology()
    runtime.store.close()
    result = CliRunner().invoke(cli, ["serve", "--store", str(old_store)])
    assert result.exit_code == 2 and "wayfinder migrate" in result.output


def test_migrate_upgrades_in_place_and_the_audit_trail_still_verifies(old_store, tmp_path):
    result = CliRunner().invoke(cli, ["migrate", "--store", str(old_store)])
    assert result.exit_code == 0, result.output
    assert "layout 1 -> 2" in result.output and "1 consent records given a record time" in result.output
    runtime = Runtime(settings=Settings(store=str(old_store), models_dir=tmp_path / "models"))
    runtime.ensure_ontology()  # opens now
    assert migrations.layout_version(runtime.store) == migrations.LAYOUT
    assert verify(runtime.store, runtime.queries["audit-index"]).ok  # the decision recorded before still verifies
    # The grant dated in 2126 was stamped no later than the migration: a withdrawal now outranks it.
    consent.set_consent(runtime, "legacy", "PERSONALIZATION", granted=False)
    assert "PERSONALIZATION" not in active_purposes(runtime, "legacy")
    runtime.store.close()
    again = CliRunner().invoke(cli, ["migrate", "--store", str(old_store)])
    assert again.exit_code == 0 and "already" in again.output


def test_a_store_of_a_newer_layout_is_refused(tmp_path):
    store = Store(tmp_path / "newer")
    store.commit(add=migrations.version_quads(migrations.LAYOUT + 1))
    runtime = Runtime(settings=Settings(store=str(tmp_path / "newer"), models_dir=tmp_path / "models"), store=store)
    with pytest.raises(OutdatedStore, match="newer release"):
        runtime.ensure_ontology()
    with pytest.raises(OutdatedStore, match="newer release"):
        migrations.migrate(store, migrations.Context(runtime.ontology_file, runtime.validator))


def test_migrate_on_a_new_store_records_the_layout(tmp_path):
    result = CliRunner().invoke(cli, ["migrate", "--store", str(tmp_path / "fresh")])
    assert result.exit_code == 0 and f"a new store: layout {migrations.LAYOUT} recorded" in result.output
    again = CliRunner().invoke(cli, ["migrate", "--store", str(tmp_path / "fresh")])
    assert again.exit_code == 0 and "nothing to do" in again.output


def as_layout_2_left_model_statuses(store: Store) -> None:
    """Write each model version's status as layout 2 did, the string ``wf:status "active"``; record layout 2."""
    terms = list(store.quads(predicate=vocab.MODEL_STATUS, graph=vocab.MODELS_GRAPH))
    strings = [ox.Quad(q.subject, vocab.STATUS, ox.Literal(str(Status.of(q.object))), q.graph_name) for q in terms]
    meta = list(store.quads(graph=vocab.META_GRAPH))
    store.commit(remove=terms + meta, add=strings + migrations.version_quads(2))


def register_version(runtime: Runtime, artefact: bytes, minute: int) -> str:
    at = datetime(2026, 11, 26, 10, minute, tzinfo=UTC)
    quads = records.version_quads(
        artefact,
        snapshot="b" * 64,
        hyper_parameters={"seed": minute},
        metrics={},
        started=at,
        ended=at,
        training_users=0,
        used=[],
    )
    runtime.store.commit(add=quads)
    return records.version_name(artefact)


@pytest.fixture
def layout_2_store(disk_runtime):
    """A store of layout 2: a decision in the audit chain, a retired and an active model version named by strings."""
    users.register(disk_runtime, users.Registration(id="anon", at=datetime.now(UTC)))
    next_steps(disk_runtime, "anon")
    retired, active = register_version(disk_runtime, b"first", 1), register_version(disk_runtime, b"second", 2)
    lifecycle.promote(disk_runtime, retired, approved_by="Ada")
    lifecycle.promote(disk_runtime, active, approved_by="Grace")
    as_layout_2_left_model_statuses(disk_runtime.store)
    location = disk_runtime.store.location
    disk_runtime.store.close()
    return location, {retired: Status.RETIRED, active: Status.ACTIVE}


def test_migrate_writes_model_statuses_as_terms_and_the_audit_trail_still_verifies(layout_2_store, tmp_path):
    location, statuses = layout_2_store
    runtime = Runtime(settings=Settings(store=str(location), models_dir=tmp_path / "models"))
    with pytest.raises(OutdatedStore, match="layout 2"):
        runtime.ensure_ontology()
    runtime.store.close()
    result = CliRunner().invoke(cli, ["migrate", "--store", str(location)])
    assert result.exit_code == 0, result.output
    assert "layout 2 -> 3" in result.output and "2 model version statuses written as terms" in result.output
    runtime = Runtime(settings=Settings(store=str(location), models_dir=tmp_path / "models"))
    runtime.ensure_ontology()  # opens now
    assert migrations.layout_version(runtime.store) == migrations.LAYOUT == 6
    assert "layout 3 -> 4: ontology reloaded" in result.output and "layout 4 -> 5: ontology reloaded" in result.output
    # the versions read as before, the API's strings unchanged, and the active one is the one that serves
    assert {v.version: v.status for v in records.versions(runtime)} == statuses
    assert {v.version: str(v.status) for v in records.versions(runtime)} == {
        version: status.value for version, status in statuses.items()
    }
    [served] = runtime.store.select(runtime.queries["model-active"])
    assert statuses[served["version"].value] is Status.ACTIVE
    assert not list(runtime.store.quads(predicate=vocab.STATUS, graph=vocab.MODELS_GRAPH))
    # the records pass the model shapes, whose terms the reloaded ontology declares
    data = to_rdflib_graph(runtime.store.graph(vocab.MODELS_GRAPH))
    data += runtime.knowledge.graph
    assert [v for v in runtime.validator.validate(data) if "/model/" in v.focus] == []
    # the decision recorded before the migration still verifies: the chain was not touched
    assert verify(runtime.store, runtime.queries["audit-index"]).ok
    runtime.store.close()
    again = CliRunner().invoke(cli, ["migrate", "--store", str(location)])
    assert again.exit_code == 0 and "already" in again.output


def test_migrating_a_layout_4_store_reloads_the_ontology_that_paces_its_policy_versions(disk_runtime, tmp_path):
    """A store made before pacing: its ontology graph has no pacing terms; after `wayfinder migrate` it decides."""
    users.register(disk_runtime, users.Registration(id="anon", at=datetime.now(UTC)))
    store = disk_runtime.store
    pacing_terms = {"DefaultPacing", "PacingPolicy", "holdBackTemplate", "snoozedReason", "quietHoursReason"}
    old = [
        q
        for q in store.quads(graph=vocab.ONTOLOGY_GRAPH)
        if isinstance(q.subject, ox.NamedNode) and vocab.local_id(q.subject.value) in pacing_terms
    ]
    assert old
    store.commit(remove=old + list(store.quads(predicate=vocab.LAYOUT_VERSION)), add=migrations.version_quads(4))
    location = store.location
    store.close()
    result = CliRunner().invoke(cli, ["migrate", "--store", str(location)])
    assert result.exit_code == 0, result.output
    assert "layout 4 -> 5: ontology reloaded" in result.output
    runtime = Runtime(settings=Settings(store=str(location), models_dir=tmp_path / "models"))
    runtime.ensure_ontology()
    paced = ("1.7.0", "1.8.0")  # the demo's versions that name a pacing of their own
    assert {v.pacing.iri for v in runtime.knowledge.policies.values() if not v.label.endswith(paced)} == {
        vocab.WF_NS + "DefaultPacing"
    }
    assert next_steps(runtime, "anon").steps


def test_migrating_a_layout_5_store_reloads_the_ontology_that_declares_delivery(disk_runtime, tmp_path):
    """A store made before the outbox: no ONBOARDING_MESSAGES purpose; after `wayfinder migrate` users can grant it."""
    users.register(disk_runtime, users.Registration(id="anon", at=datetime.now(UTC)))
    store = disk_runtime.store
    delivery_terms = {"OnboardingMessages", "Delivery", "Sender", "MessageDelivered", "aboutDelivery"}
    old = [
        q
        for q in store.quads(graph=vocab.ONTOLOGY_GRAPH)
        if isinstance(q.subject, ox.NamedNode) and vocab.local_id(q.subject.value) in delivery_terms
    ]
    assert old
    store.commit(remove=old + list(store.quads(predicate=vocab.LAYOUT_VERSION)), add=migrations.version_quads(5))
    location = store.location
    store.close()
    result = CliRunner().invoke(cli, ["migrate", "--store", str(location)])
    assert result.exit_code == 0, result.output
    assert "layout 5 -> 6: ontology reloaded" in result.output
    runtime = Runtime(settings=Settings(store=str(location), models_dir=tmp_path / "models"))
    runtime.ensure_ontology()
    assert "ONBOARDING_MESSAGES" in runtime.knowledge.codes.purposes
    assert consent.set_consent(runtime, "anon", "ONBOARDING_MESSAGES", granted=True).granted
