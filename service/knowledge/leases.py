"""Leases: mutual exclusion between the processes of a shared store, by claims written to the store.

A process that wants the lease on a name writes a claim (a random token and an expiry) and
reads the claims back. It holds the lease when its claim is the only live one; otherwise it
withdraws its claim and tries again after a short random wait. Each claim and each read is
one request to the SPARQL server, which applies them in order, so two processes can never
both see only their own claim: the one whose claim landed second sees the first one. Both
may withdraw and retry, which the random waits resolve. A claim expires after ``ttl_s``, so a
process that dies holding a lease blocks the name for that long at most; expired claims are
removed by whoever finds them.

The embedded store needs none of this: one process opens it, and a lock in memory does.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import time
import uuid
from collections.abc import Iterator

import pyoxigraph as ox

from service.errors import StoreUnavailable
from service.knowledge import vocab
from service.knowledge.store import GraphStore, plain


@contextlib.contextmanager
def lease(store: GraphStore, name: str, *, ttl_s: float = 10.0, wait_s: float = 5.0) -> Iterator[None]:
    """Hold the lease on ``name`` for the block; StoreUnavailable when it stays taken for ``wait_s``."""
    node = ox.NamedNode(vocab.LEASE_BASE + hashlib.sha256(name.encode()).hexdigest()[:32])
    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait_s
    while True:
        now_s = time.time()
        mine = ox.Quad(node, vocab.LEASE_HOLDER, ox.Literal(f"{token} {now_s + ttl_s:.3f}"), vocab.LOCKS_GRAPH)
        store.commit(add=[mine])
        claims = list(store.quads(subject=node, predicate=vocab.LEASE_HOLDER, graph=vocab.LOCKS_GRAPH))
        expired = [c for c in claims if _expiry(c) <= now_s]
        live = [c for c in claims if _expiry(c) > now_s]
        if expired:
            store.commit(remove=expired)
        if live == [mine]:
            break
        store.commit(remove=[mine])
        if time.monotonic() > deadline:
            raise StoreUnavailable(f"another process holds the lease on this user's decisions for over {wait_s} s")
        time.sleep(random.uniform(0.002, 0.02))
    try:
        yield
    finally:
        store.commit(remove=[mine])


def _expiry(claim: ox.Quad) -> float:
    try:
        return float(plain(claim.object).value.rsplit(" ", 1)[1])
    except (IndexError, ValueError):
        return 0.0  # a malformed claim counts as expired
