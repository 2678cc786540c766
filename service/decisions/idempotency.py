"""Idempotency keys: a write retried with the same key is answered from its receipt, stored once.

A client that lost the reply to ``recordEvents`` cannot tell whether its events
were stored; sent again with the same ``idempotencyKey``, the write is not
repeated. The receipt is committed in the same transaction as the write, so a
key is used exactly when its write was stored. Keys are scoped to the caller's
principal (an app token's key also to its user) and honoured for
``idempotency_ttl_s``; the receipt names neither: it is found by a hash of both.
The same key with a different request is a conflict, not a replay.

On a shared store the check and the commit are serialised per process only:
two processes receiving the same retry at the same instant may both store it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyoxigraph as ox

from service.clock import datetime_literal, now, parse_datetime
from service.errors import Conflict, InvalidInput
from service.knowledge import vocab
from service.knowledge.store import GraphStore, plain

KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable ASCII without spaces


@dataclass(frozen=True)
class IdempotencyKey:
    """A checked client key, scoped to who sent it."""

    node: ox.NamedNode
    field: str


@dataclass(frozen=True)
class Receipt:
    """What a keyed write stored: the request's hash, when, and the events it stored."""

    request_hash: str
    accepted_at: datetime
    events: list[str]
    decision: str | None = None  # the decision a keyed delivery recorded


def scoped_key(key: str, *, scope: Sequence[str], field: str = "idempotencyKey") -> IdempotencyKey:
    """Return the receipt node for a client's key within a scope (principal, and user for app tokens)."""
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise InvalidInput(field, "must be 1 to 200 printable ASCII characters without spaces")
    digest = hashlib.sha256("\x00".join([*scope, key]).encode()).hexdigest()
    return IdempotencyKey(ox.NamedNode(vocab.RECEIPT_BASE + digest), field)


def request_hash(items: Sequence[dict]) -> str:
    """Return a SHA-256 of a request's items, as canonical JSON."""
    return hashlib.sha256(json.dumps(list(items), sort_keys=True, default=str).encode()).hexdigest()


def stored_receipt(store: GraphStore, key: IdempotencyKey, *, ttl_s: float) -> Receipt | None:
    """Return the key's receipt while it is honoured, or None."""
    quads = list(store.quads(subject=key.node, graph=vocab.IDEMPOTENCY_GRAPH))
    values = {q.predicate: plain(q.object) for q in quads}
    if vocab.REQUEST_HASH not in values or vocab.ACCEPTED_AT not in values:
        return None
    accepted = parse_datetime(values[vocab.ACCEPTED_AT].value)
    if now() - accepted > timedelta(seconds=ttl_s):
        return None
    events = [plain(q.object).value for q in quads if q.predicate == vocab.STORED_EVENT]
    decision = values.get(vocab.STORED_DECISION)
    return Receipt(values[vocab.REQUEST_HASH].value, accepted, events, decision.value if decision else None)


def check_replay(receipt: Receipt, key: IdempotencyKey, digest: str) -> Receipt:
    """Return the receipt of a true retry; a different request under the same key is a Conflict."""
    if receipt.request_hash != digest:
        raise Conflict(
            f"{key.field}: this key was used for a different request within its lifetime; use a new key",
            details=[{"field": key.field, "reason": "key reused for a different request"}],
        )
    return receipt


def receipt_changes(
    store: GraphStore, key: IdempotencyKey, digest: str, events: Sequence[str], *, decision: str | None = None
) -> tuple[list[ox.Quad], list[ox.Quad]]:
    """Return the quads that record the key's receipt (of the events, or the decision, the write stored), and
    the quads of an expired receipt they replace."""
    g = vocab.IDEMPOTENCY_GRAPH
    stale = list(store.quads(subject=key.node, graph=g))
    quads = [
        ox.Quad(key.node, vocab.RDF_TYPE, vocab.WRITE_RECEIPT, g),
        ox.Quad(key.node, vocab.REQUEST_HASH, ox.Literal(digest), g),
        ox.Quad(key.node, vocab.EVENT_COUNT, ox.Literal(str(len(events)), datatype=vocab.XSD_INTEGER), g),
        ox.Quad(key.node, vocab.ACCEPTED_AT, datetime_literal(now()), g),
    ]
    quads += [ox.Quad(key.node, vocab.STORED_EVENT, ox.NamedNode(event), g) for event in events]
    if decision is not None:
        quads.append(ox.Quad(key.node, vocab.STORED_DECISION, ox.NamedNode(decision), g))
    return quads, stale


def expired_receipts(store: GraphStore, *, before: datetime) -> list[ox.Quad]:
    """Return the quads of every receipt accepted before a time: keys no longer honoured."""
    g = vocab.IDEMPOTENCY_GRAPH
    old = [
        q.subject
        for q in store.quads(predicate=vocab.ACCEPTED_AT, graph=g)
        if isinstance(q.object, ox.Literal) and parse_datetime(q.object.value) < before
    ]
    return [quad for receipt in old for quad in store.quads(subject=receipt, graph=g)]
