"""Candidate steps: which steps a user may be shown next on a channel.

One multi-hop SPARQL query (``queries/service/candidates.rq``) decides it; this
module runs it for one user and keeps only steps the catalog view knows.
"""

from __future__ import annotations

import pyoxigraph as ox

from .runtime import Runtime


def candidate_steps(runtime: Runtime, user: ox.NamedNode, channel_iri: str) -> list[str]:
    """Return the IRIs of the steps the user may be shown next on the channel."""
    rows = runtime.store.select(runtime.queries["candidates"], user=user, channel=ox.NamedNode(channel_iri))
    entities = runtime.catalog.entities
    return [row["step"].value for row in rows if row["step"].value in entities]
