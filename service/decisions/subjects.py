"""Data subjects: user IDs as clients send them, the IRIs they stand for, and whether such a user exists."""

from __future__ import annotations

import re

import pyoxigraph as ox

from service.errors import InvalidInput, NotFound
from service.knowledge import vocab
from service.runtime import Runtime

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$")
# The IDs the service mints (decisions, deliveries): UUIDs.
UUID_PATTERN = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def check_id(value: str, field_name: str) -> str:
    """Return the ID when it is well formed: 1 to 128 letters, digits, '.', '_', '~' or '-'."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise InvalidInput(
            field_name,
            "must be 1 to 128 characters of letters, digits, '.', '_', '~' or '-', starting with a letter or digit",
        )
    return value


def user_node(user_id: str, field_name: str = "userId") -> ox.NamedNode:
    return vocab.user_iri(check_id(user_id, field_name))


def exists(runtime: Runtime, user_id: str) -> bool:
    return runtime.store.has_graph(vocab.user_graph(user_id)) and any(
        runtime.store.quads(subject=vocab.user_iri(user_id), predicate=vocab.RDF_TYPE, graph=vocab.user_graph(user_id))
    )


def require_user(runtime: Runtime, user_id: str, field_name: str = "userId") -> ox.NamedNode:
    node = user_node(user_id, field_name)
    if not exists(runtime, user_id):
        raise NotFound(
            f"{field_name}: no user with ID {user_id!r}", details=[{"field": field_name, "reason": "unknown user"}]
        )
    return node


def user_by_pseudonym(runtime: Runtime, pseudonym: str) -> ox.NamedNode | None:
    """Return the stored user a pseudonym names, or None where there is none (never was, or erased)."""
    for quad in runtime.store.quads(predicate=vocab.PSEUDONYM, object=ox.Literal(pseudonym)):
        if isinstance(quad.subject, ox.NamedNode):
            return quad.subject
    return None
