"""Synthetic users are written in the service's layout: the service reads them back, and they conform to the shapes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyoxigraph as ox
import pytest

from embeddings.world import generate_world
from service.decisions import consent, subjects, users
from service.knowledge import vocab
from service.knowledge.embedded import Store
from service.knowledge.files import check_store
from service.runtime import Runtime
from service.settings import Settings
from service.synthetic import (
    SyntheticConsent,
    SyntheticEvent,
    SyntheticUser,
    nquads,
    user_nquads,
    user_quads,
    world_users,
    write_world,
)

AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def stored_quads(runtime, user_id: str) -> set[ox.Quad]:
    """Return the user's graph and their consent records, as stored."""
    quads = set(runtime.store.quads(graph=vocab.user_graph(user_id)))
    for link in runtime.store.quads(predicate=vocab.HAS_DATA_SUBJECT, object=vocab.user_iri(user_id)):
        quads |= set(runtime.store.quads(subject=link.subject, graph=vocab.CONSENT_GRAPH))
    return quads


def ada(runtime) -> SyntheticUser:
    """A user of the demo catalog who gave ANALYTICS and PERSONALIZATION, then withdrew PERSONALIZATION."""
    catalog, codes = runtime.catalog, runtime.knowledge.codes
    first, second = catalog.steps[0], catalog.steps[1]
    feature = first.introduces[0]
    return SyntheticUser(
        id="ada",
        registered_at=AT,
        pseudonym="0123456789abcdef0123456789abcdef",
        role=catalog.resolve("Role", "analyst", field_name="role"),
        industry=catalog.resolve("Industry", "retail", field_name="industry"),
        plan=catalog.resolve("Plan", "team", field_name="plan"),
        signup_channel=vocab.MOBILE.value,
        consents=[
            SyntheticConsent("00000000-0000-4000-8000-000000000001", codes.purposes["ANALYTICS"], True, AT),
            SyntheticConsent("00000000-0000-4000-8000-000000000002", codes.purposes["PERSONALIZATION"], True, AT),
            SyntheticConsent(
                "00000000-0000-4000-8000-000000000003",
                codes.purposes["PERSONALIZATION"],
                False,
                AT + timedelta(days=3),
            ),
        ],
        events=[
            SyntheticEvent(
                "00000000-0000-4000-8000-0000000000e1",
                codes.events["STEP_COMPLETED"],
                AT + timedelta(minutes=5),
                step=first.iri,
            ),
            SyntheticEvent(
                "00000000-0000-4000-8000-0000000000e2",
                codes.events["FEATURE_USED"],
                AT + timedelta(minutes=9),
                feature=feature,
            ),
            SyntheticEvent(
                "00000000-0000-4000-8000-0000000000e3",
                codes.events["STEP_DISMISSED"],
                AT + timedelta(minutes=12),
                step=second.iri,
            ),
        ],
    )


def test_written_users_read_back_as_the_api_reads_them(disk_runtime):
    runtime = disk_runtime
    user = ada(runtime)
    runtime.store.bulk_load(nquads([user]), format=ox.RdfFormat.N_QUADS)

    assert subjects.exists(runtime, "ada")
    profile = users.profile(runtime, "ada")
    assert profile is not None
    assert (profile.role, profile.industry, profile.plan) == (user.role, user.industry, user.plan)
    assert profile.signup_channel == "MOBILE"
    assert profile.pseudonym == user.pseudonym
    assert profile.registered_at == AT

    history = consent.consents(runtime, "ada")
    assert [(c.purpose, c.granted, c.at, c.recorded_at) for c in history] == [
        ("ANALYTICS", True, AT, AT),
        ("PERSONALIZATION", True, AT, AT),
        ("PERSONALIZATION", False, AT + timedelta(days=3), AT + timedelta(days=3)),
    ]
    assert history[0].record == vocab.CONSENT_BASE + user.consents[0].record

    events = users.events(runtime, "ada")
    assert [(e.type, e.step, e.feature, e.at) for e in events] == [
        ("STEP_COMPLETED", user.events[0].step, None, AT + timedelta(minutes=5)),
        ("FEATURE_USED", None, user.events[1].feature, AT + timedelta(minutes=9)),
        ("STEP_DISMISSED", user.events[2].step, None, AT + timedelta(minutes=12)),
    ]
    assert events[0].iri == vocab.EVENT_BASE + user.events[0].id


def test_written_users_are_the_quads_register_and_record_events_store(disk_runtime):
    runtime = disk_runtime
    first = runtime.catalog.steps[0]
    profile = users.register(
        runtime,
        users.Registration(
            id="via-api",
            role="analyst",
            industry="retail",
            plan="team",
            signup_channel="WEB",
            consents=["PERSONALIZATION", "ANALYTICS"],
        ),
    )
    recorded = users.record_events(
        runtime, [users.EventReport(user_id="via-api", type="STEP_COMPLETED", step_id=first.id)]
    )
    assert profile.registered_at is not None
    codes = runtime.knowledge.codes
    same = SyntheticUser(
        id="via-api",
        registered_at=profile.registered_at,
        pseudonym=profile.pseudonym,
        role=profile.role,
        industry=profile.industry,
        plan=profile.plan,
        signup_channel=vocab.WEB.value,
        consents=[
            SyntheticConsent(c.record.removeprefix(vocab.CONSENT_BASE), codes.purposes[c.purpose], c.granted, c.at)
            for c in consent.consents(runtime, "via-api")
        ],
        events=[
            SyntheticEvent(e.iri.removeprefix(vocab.EVENT_BASE), codes.events[e.type], e.at, step=e.step)
            for e in recorded
        ],
    )
    # As a store keeps them: it writes an xsd:dateTime in canonical form (no trailing zeros in the fraction of a
    # second), as it would the writer's N-Quads once loaded.
    written = Store(":memory:")
    written.commit(add=user_quads(same))
    assert set(written.quads()) == stored_quads(runtime, "via-api")


def test_written_users_conform_to_the_shapes(disk_runtime):
    runtime = disk_runtime
    runtime.store.bulk_load(nquads([ada(runtime)]), format=ox.RdfFormat.N_QUADS)
    assert check_store(runtime.store, runtime.validator) == []


def test_an_event_without_its_consent_breaks_the_shapes(disk_runtime):
    runtime = disk_runtime
    user = ada(runtime)
    user.consents = [c for c in user.consents if c.purpose != runtime.knowledge.codes.purposes["ANALYTICS"]]
    runtime.store.bulk_load(nquads([user]), format=ox.RdfFormat.N_QUADS)
    violations = check_store(runtime.store, runtime.validator)
    assert violations and all(user.events[1].id in str(v) for v in violations), violations


@pytest.fixture(scope="module")
def world():
    return generate_world(seed=3, n_users=40, n_steps=12, n_features=16, n_areas=3, n_roles=3, n_industries=3)


def test_the_world_is_written_with_the_service_builders(world):
    written = ox.Store()
    written.bulk_load(user_nquads(world).encode(), format=ox.RdfFormat.N_QUADS)
    built = {q for user in world_users(world) for q in user_quads(user)}
    assert set(written) == built
    records = {q.subject for q in built if q.predicate == vocab.RDF_TYPE and q.object == vocab.CONSENT_RECORD}
    stamped = {q.subject for q in built if q.predicate == vocab.RECORDED_AT}
    people = {q.subject for q in built if q.predicate == vocab.RDF_TYPE and q.object == vocab.USER}
    events = {q.subject for q in built if q.predicate == vocab.BY_USER}
    # Consent records carry the service's record time since layout 2; users and events too, since experiments.
    assert records and people and events and stamped == records | people | events


def test_the_world_conforms_to_the_shapes(world, tmp_path):
    store = Store(tmp_path / "store")
    runtime = Runtime(settings=Settings(store=str(tmp_path / "store"), models_dir=tmp_path / "models"), store=store)
    runtime.ensure_ontology()
    catalog, people = write_world(world, tmp_path / "world")
    runtime.load([catalog])  # validated, as `wayfinder world` loads it
    store.bulk_load(people, format=ox.RdfFormat.N_QUADS)
    assert users.profile(runtime, world.users[0].id) is not None
    assert check_store(runtime.store, runtime.validator) == []
