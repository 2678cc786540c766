"""Validated, atomic writes of user data.

The delta is validated, not the store: the new quads plus the neighbourhood the
shapes reach (ontology, catalog and policies; the users' profiles and consent
records), with the new subjects as focus nodes. Then everything is committed in
one transaction, or nothing is.

The knowledge part of the neighbourhood is loaded once per version of the
knowledge (:class:`~service.knowledge.validation.DeltaValidator`), so a write costs what
it adds and what it reads about its users, not what the knowledge holds.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyoxigraph as ox

from service.errors import RefusedWrite
from service.knowledge import vocab
from service.knowledge.store import GraphStore
from service.knowledge.validation import DeltaValidator, Validator
from service.runtime import Knowledge, Runtime

# Per runtime: the knowledge and validator a DeltaValidator was built for, and that validator.
_delta_validators: weakref.WeakKeyDictionary[Runtime, tuple[Knowledge, Validator, DeltaValidator]] = (
    weakref.WeakKeyDictionary()
)


def neighbourhood(store: GraphStore, users: Iterable[ox.NamedNode]) -> list[ox.Quad]:
    """Return these users' profiles and consent records: what the shapes read about them.

    The users' earlier events are left out: no shape relates a new triple to them.
    Every read is a triple pattern with a bound subject or object.
    """
    quads: list[ox.Quad] = []
    for user in users:
        user_id = user.value.removeprefix(vocab.USER_BASE)
        quads.extend(store.quads(subject=user, graph=vocab.user_graph(user_id)))
        quads.extend(consent_records(store, user))
    return quads


def consent_records(store: GraphStore, user: ox.NamedNode) -> list[ox.Quad]:
    """Return the quads of every consent record about the user in the consent graph."""
    return [
        quad
        for record in store.quads(predicate=vocab.HAS_DATA_SUBJECT, object=user, graph=vocab.CONSENT_GRAPH)
        for quad in store.quads(subject=record.subject, graph=vocab.CONSENT_GRAPH)
    ]


def delta_validator(runtime: Runtime) -> DeltaValidator:
    """Return the runtime's validator of writes over its current knowledge, built again when that changes."""
    current, validator = runtime.knowledge, runtime.validator
    cached = _delta_validators.get(runtime)
    if cached is None or cached[0] is not current or cached[1] is not validator:
        cached = (current, validator, validator.for_knowledge(current.graph))
        _delta_validators[runtime] = cached
    return cached[2]


@dataclass(frozen=True)
class Checked:
    """A write that passed validation, with the neighbourhood it was validated in."""

    add: list[ox.Quad]
    users: list[ox.NamedNode]
    focus: set[ox.NamedNode]
    seen: list[ox.Quad]
    source: str | None
    seen_at: int | None = None  # the store's commit count before ``seen`` was read, where that count is the store's


def check(
    runtime: Runtime,
    add: list[ox.Quad],
    *,
    users: Iterable[ox.NamedNode],
    source: str | None = None,
    seen: list[ox.Quad] | None = None,
    seen_at: int | None = None,
) -> Checked:
    """Validate new quads in their neighbourhood, without holding the write lock; refuse with every violation.

    ``seen`` and ``seen_at`` are what :func:`read_neighbourhood` gave the caller for these users, in this order.
    """
    users = list(dict.fromkeys(users))
    focus = {q.subject for q in add if isinstance(q.subject, ox.NamedNode)}
    if seen is None:
        seen, seen_at = read_neighbourhood(runtime.store, users)
    violations = delta_validator(runtime).validate([*seen, *add], focus=focus)
    if violations:
        raise RefusedWrite(violations, source=source)
    return Checked(add, users, focus, seen, source, seen_at)


def read_neighbourhood(store: GraphStore, users: Iterable[ox.NamedNode]) -> tuple[list[ox.Quad], int | None]:
    """Return the users' neighbourhood and the commit count it was read at (see :func:`commit_count`)."""
    at = commit_count(store)
    return neighbourhood(store, users), at


def commit_count(store: GraphStore) -> int | None:
    """The store's count of commits, where every commit to it is counted here (one process holds the store); else None.

    A neighbourhood read after this count is still current while the count has not moved.
    """
    return store.commits if store.sole_writer else None


def commit_checked(
    runtime: Runtime, checked: Checked, *, extra: Sequence[ox.Quad] = (), remove: Sequence[ox.Quad] = ()
) -> None:
    """Commit a checked write, with unvalidated service quads (``extra``), under the write lock.

    Validation ran before the lock, so that a long write does not hold up decisions,
    which need the lock to record themselves. Under the lock the neighbourhood is
    read again (a few bounded reads), unless the store, which only this process
    writes, has had no commit since it was read; if a profile or consent record
    changed since, the write is validated again before it is committed.
    """
    with runtime.store.write_lock:
        if checked.seen_at is None or commit_count(runtime.store) != checked.seen_at:
            now_seen = neighbourhood(runtime.store, checked.users)
            if frozenset(now_seen) != frozenset(checked.seen):
                violations = delta_validator(runtime).validate([*now_seen, *checked.add], focus=checked.focus)
                if violations:
                    raise RefusedWrite(violations, source=checked.source)
        runtime.store.commit(add=[*checked.add, *extra], remove=list(remove))


def commit_validated(
    runtime: Runtime,
    add: list[ox.Quad],
    *,
    users: Iterable[ox.NamedNode],
    remove: list[ox.Quad] | None = None,
    source: str | None = None,
) -> None:
    """Validate the new quads in their neighbourhood and commit them; refuse with every violation."""
    commit_checked(runtime, check(runtime, add, users=users, source=source), remove=remove or [])
