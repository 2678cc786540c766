"""Validated, atomic writes of user data.

The delta is validated, not the store: the new quads plus the neighbourhood the
shapes reach (ontology, catalog and policies; the users' graphs and consent
records), with the new subjects as focus nodes. Then everything is committed in
one transaction, or nothing is.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyoxigraph as ox
import rdflib

from . import vocab
from .errors import RefusedWrite
from .runtime import Runtime
from .terms import to_rdflib_graph


def neighbourhood(runtime: Runtime, users: Iterable[ox.NamedNode]) -> rdflib.Graph:
    """Return the knowledge plus these users' profiles and consent records, as one rdflib graph.

    The users' earlier events are left out: no shape relates a new triple to them.
    """
    graph = rdflib.Graph()
    graph += runtime.knowledge.graph
    store = runtime.store
    for user in users:
        user_id = user.value.removeprefix(vocab.USER_BASE)
        to_rdflib_graph(store.quads(subject=user, graph=vocab.user_graph(user_id)), graph)
        for record in store.quads(predicate=vocab.HAS_DATA_SUBJECT, object=user, graph=vocab.CONSENT_GRAPH):
            to_rdflib_graph(store.quads(subject=record.subject, graph=vocab.CONSENT_GRAPH), graph)
    return graph


def commit_validated(
    runtime: Runtime,
    add: list[ox.Quad],
    *,
    users: Iterable[ox.NamedNode],
    remove: list[ox.Quad] | None = None,
    source: str | None = None,
) -> None:
    """Validate the new quads in their neighbourhood and commit them; refuse with every violation."""
    users = list(dict.fromkeys(users))
    graph = neighbourhood(runtime, users)
    to_rdflib_graph(add, graph)
    focus = sorted({rdflib.URIRef(q.subject.value) for q in add if isinstance(q.subject, ox.NamedNode)})
    violations = runtime.validator.validate(graph, focus=focus)
    if violations:
        raise RefusedWrite(violations, source=source)
    runtime.store.commit(add=add, remove=remove or [])
