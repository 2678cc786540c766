"""Canonical forms of triples and their hashes: what the audit chain and policy versions' content hashes are over."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import pyoxigraph as ox

from service.knowledge import vocab


def canonical_form(triples: Iterable[ox.Triple | ox.Quad]) -> str:
    """Return the canonical N-Triples text of a blank-node-free set of triples."""
    lines = {f"{t.subject} {t.predicate} {t.object} ." for t in triples}
    return "\n".join(sorted(lines)) + "\n"


def content_hash(triples: Iterable[ox.Triple | ox.Quad]) -> str:
    hashable = [t for t in triples if t.predicate != vocab.CONTENT_HASH]
    return hashlib.sha256(canonical_form(hashable).encode()).hexdigest()


def stored_form(triples: list[ox.Triple]) -> list[ox.Triple]:
    """Return the triples as Oxigraph stores them (typed literals in canonical form)."""
    scratch = ox.Store()
    scratch.extend(ox.Quad(t.subject, t.predicate, t.object) for t in triples)
    return [q.triple for q in scratch]
