"""Synthetic users in the store's layout, built with the service's own quad builders.

Benches and the model evaluation need stores of thousands of users, faster than the API
can register them (it validates every write). Whoever generates the users decides who
they are; this module writes them as the service would have: the profile quads of
``users.register`` (:func:`~service.decisions.users.registration_quads`), the consent
records of ``consent.consent_record`` (:func:`~service.decisions.consent.consent_quads`)
and the events of ``users.record_events`` (:func:`~service.decisions.users.event_quads`).
Record and event IRIs are given, not drawn here, so a seeded generator gets the same
store every time. A consent record is stamped ``wf:recordedAt`` with the time it was
indicated: the service's clock, for a user who consented at that moment.

:func:`user_quads` returns the quads (for ``Store.extend``), :func:`nquads` and
:func:`write_nquads` write them as N-Quads (for ``Store.bulk_load``). The synthetic
onboarding world of ``embeddings.world`` goes through the same builders
(:func:`world_users`, :func:`user_nquads`, :func:`write_world`, :func:`load_world`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyoxigraph as ox

from embeddings.world import PURPOSES, World, catalog_turtle, logged_events
from service.decisions.consent import consent_quads
from service.decisions.users import event_quads, registration_quads
from service.knowledge import vocab


@dataclass(frozen=True)
class SyntheticConsent:
    """One consent record: its UUID, the purpose's IRI, given or withdrawn, and when."""

    record: str
    purpose: str
    granted: bool
    at: datetime


@dataclass(frozen=True)
class SyntheticEvent:
    """One event: its UUID, the event class's IRI, when, and the step or feature IRI it is about."""

    id: str
    type: str
    at: datetime
    step: str | None = None
    feature: str | None = None


@dataclass
class SyntheticUser:
    """A user as registered (role, industry, plan and sign-up channel as IRIs), their consent records and events."""

    id: str
    registered_at: datetime
    pseudonym: str
    role: str | None = None
    industry: str | None = None
    plan: str | None = None
    signup_channel: str | None = None
    consents: list[SyntheticConsent] = field(default_factory=list)
    events: list[SyntheticEvent] = field(default_factory=list)


def user_quads(user: SyntheticUser) -> list[ox.Quad]:
    """Return the user's quads as the service stores them: profile, consent records, events."""
    quads = registration_quads(
        user.id,
        registered_at=user.registered_at,
        pseudonym=user.pseudonym,
        role=user.role,
        industry=user.industry,
        plan=user.plan,
        signup_channel=user.signup_channel,
    )
    node = vocab.user_iri(user.id)
    for c in user.consents:
        record = ox.NamedNode(vocab.CONSENT_BASE + c.record)
        quads += consent_quads(record, node, ox.NamedNode(c.purpose), granted=c.granted, at=c.at, recorded_at=c.at)
    for e in user.events:
        event = ox.NamedNode(vocab.EVENT_BASE + e.id)
        quads += event_quads(event, user.id, ox.NamedNode(e.type), at=e.at, step=e.step, feature=e.feature)
    return quads


def nquads(users: Iterable[SyntheticUser]) -> bytes:
    """Return the users' quads as N-Quads."""
    data = ox.serialize((q for user in users for q in user_quads(user)), format=ox.RdfFormat.N_QUADS)
    assert data is not None  # serialize returns the bytes when it is given no output
    return data


def write_nquads(users: Iterable[SyntheticUser], path: Path) -> Path:
    """Write the users' quads to an N-Quads file; return its path."""
    path.write_bytes(nquads(users))
    return path


# -- the synthetic onboarding world (embeddings/world.py) ---------------------------------


def world_users(world: World) -> Iterator[SyntheticUser]:
    """Yield the world's users with their consent records and logged events, IRIs seeded by the world's seed."""
    rng = np.random.default_rng([world.seed, 1])
    for user in world.users:
        at = user.registered_at
        consents = [
            SyntheticConsent(_uuid(rng), PURPOSES[purpose].value, granted, at + timedelta(minutes=minutes))
            for purpose, granted, minutes in user.consents
        ]
        events = [
            SyntheticEvent(_uuid(rng), cls.value, at + timedelta(minutes=minute), step=step, feature=feature)
            for minute, (cls, step, feature) in enumerate(logged_events(world, user), start=1)
        ]
        yield SyntheticUser(
            id=user.id,
            registered_at=at,
            pseudonym=user.pseudonym,
            role=world.roles[user.role],
            industry=world.industries[user.industry],
            plan=world.plans[user.plan],
            signup_channel=vocab.WEB.value,
            consents=consents,
            events=events,
        )


def user_nquads(world: World) -> str:
    """Return every user of the world, their events and consent records as N-Quads in the store layout."""
    return nquads(world_users(world)).decode()


def write_world(world: World, folder: Path) -> tuple[Path, Path]:
    """Write ``catalog.ttl`` and ``users.nq`` into the folder; return both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    catalog, users = folder / "catalog.ttl", folder / "users.nq"
    catalog.write_text(catalog_turtle(world))
    write_nquads(world_users(world), users)
    return catalog, users


def load_world(store: ox.Store, world: World) -> None:
    """Load the world's catalog into its catalog graph and its users in bulk."""
    store.load(catalog_turtle(world).encode(), format=ox.RdfFormat.TURTLE, to_graph=world.catalog_graph)
    store.bulk_load(nquads(world_users(world)), format=ox.RdfFormat.N_QUADS)


def _uuid(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))
