"""Candidate steps: which steps a user may be shown next on a channel.

One multi-hop SPARQL query (``queries/service/candidates.rq``) decides it; this
module runs it for one user and keeps only steps the catalog view knows. The
user's IRI, graph and the channel are written into the query text as terms, so
that the plan starts from the user's own graph (see ``sparql_terms``).
"""

from __future__ import annotations

import pyoxigraph as ox

from service.knowledge import vocab
from service.knowledge.files import knowledge_graphs
from service.knowledge.store import bound, rows
from service.runtime import Runtime


def candidate_steps(runtime: Runtime, user: ox.NamedNode, channel_iri: str) -> list[str]:
    """Return the IRIs of the steps the user may be shown next on the channel."""
    query = runtime.queries["candidates"].bind(user=user, userGraph=graph_of(user), channel=ox.NamedNode(channel_iri))
    entities = runtime.catalog.entities
    return [bound(row, "step").value for row in runtime.store.select(query) if bound(row, "step").value in entities]


def draft_candidates(runtime: Runtime, user: ox.NamedNode, quads: list[ox.Quad], channel_iri: str) -> list[str]:
    """The same as :func:`candidate_steps` for a user the store does not hold (the console's made-up profile):
    the same query, over the knowledge graphs and entailments copied into memory with the user's own ``quads``."""
    scratch = ox.Store()
    for graph in [*knowledge_graphs(runtime.store), vocab.ENTAILMENTS_GRAPH]:
        scratch.extend(runtime.store.quads(graph=graph))
    scratch.extend(quads)
    query = runtime.queries["candidates"].bind(user=user, userGraph=graph_of(user), channel=ox.NamedNode(channel_iri))
    solutions = scratch.query(query, use_default_graph_as_union=True)
    assert isinstance(solutions, ox.QuerySolutions)  # a SELECT
    entities = runtime.catalog.entities
    return [bound(row, "step").value for row in rows(solutions) if bound(row, "step").value in entities]


def graph_of(user: ox.NamedNode) -> ox.NamedNode:
    """Return the named graph that holds the user's profile and events."""
    if not user.value.startswith(vocab.USER_BASE):
        raise ValueError(f"not a Wayfinder user IRI: {user.value}")
    return vocab.user_graph(user.value[len(vocab.USER_BASE) :])
