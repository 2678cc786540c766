"""Erasure: a user's profile, events and consent records go; decision records stay.

Decision records name the user only by a random pseudonym kept in the user's
profile, so dropping the profile leaves the records whole (the chain still
verifies) and unlinkable to the person. The erasure itself is a chained audit
record that says when and at whose request, never whom.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import pyoxigraph as ox

from service.analytics import feed
from service.audit import sealed
from service.audit.records import erasure_record
from service.clock import now
from service.decisions.subjects import require_user
from service.knowledge import vocab
from service.knowledge.store import plain
from service.runtime import Runtime


@dataclass
class ErasureReceipt:
    user_id: str
    erasure_id: str
    erased_at: datetime
    triples_removed: int
    decisions_kept: int


def erase(runtime: Runtime, user_id: str, *, requested_by: str) -> ErasureReceipt:
    """Erase everything that names the user, and record the erasure."""
    user = require_user(runtime, user_id)
    store = runtime.store
    with runtime.trail.exclusive():  # the trail's lock first, as every append takes it: no deadlock with decisions
        graph = vocab.user_graph(user_id)
        in_graph = store.graph(graph)
        pseudonym = next(
            (plain(q.object).value for q in in_graph if q.subject == user and q.predicate == vocab.PSEUDONYM), None
        )
        records = {
            q.subject for q in store.quads(predicate=vocab.HAS_DATA_SUBJECT, object=user, graph=vocab.CONSENT_GRAPH)
        }
        consent_quads = [q for r in records for q in store.quads(subject=r, graph=vocab.CONSENT_GRAPH)]
        # Anything else that points at the user (nothing should; the shapes refuse it).
        elsewhere = [q for q in store.quads(object=user) if q.graph_name != graph and q not in consent_quads]
        kept: set[str] = set()
        if pseudonym:
            kept = {
                plain(q.subject).value
                for q in store.quads(
                    predicate=vocab.SUBJECT_PSEUDONYM, object=ox.Literal(pseudonym), graph=vocab.AUDIT_GRAPH
                )
            }
        at = now()
        erasure_id = str(uuid.uuid4())
        record = ox.NamedNode(vocab.ERASURE_BASE + erasure_id)
        removed = len(in_graph) + len(consent_quads) + len(elsewhere)
        triples = erasure_record(record, at=at, requested_by=requested_by, removed=removed)
        runtime.trail.append(record, triples, remove=[*consent_quads, *elsewhere], drop=[graph])
        if pseudonym:
            feed.erased(runtime, pseudonym)
    if pseudonym:  # and the decisions sealed out of the store, counted once the trail is free again
        found = sealed.records_naming(runtime.sealed, vocab.SUBJECT_PSEUDONYM, ox.Literal(pseudonym))
        kept |= {record.value for record, _ in found}
    return ErasureReceipt(user_id, erasure_id, at, removed, len(kept))
