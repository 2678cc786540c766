"""Realistic decision records, chained in bulk with the service's own record builder and hashing.

``RecordFactory`` makes ``(record IRI, triples)`` pairs the way ``decide._decide``
does: a ``decide.Recommendation`` of about 15 ranked candidates (distinct catalog
steps, rule scores, no model score: the shipped policy has ``model_weight`` 0),
the first 5 returned with their reasons (1 to 3 each, taken from what the real
ranking says for the demo users), passed to the real ``decide.decision_triples``
with a synthetic user's pseudonym and the IRIs the decision read (consent
records, role, plan, industry when personalised, step and feature events).

``ChainWriter`` reproduces ``audit.AuditTrail.append`` record by record (the chain,
sequence and previous-hash triples, ``audit.stored_form``, ``audit.content_hash``,
the content-hash triple, quads in the audit graph, an anchor line every
``checkpoint_every`` records) but buffers the quads and writes them in large
chunks with the store's ``bulk_load`` (N-Quads, no transaction: pyoxigraph's bulk loader).
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

import pyoxigraph as ox

from service.audit import chain as audit
from service.decisions import decide
from service.decisions.ranking import Scored
from service.knowledge import vocab
from service.knowledge.policies import active_version
from service.knowledge.store import GraphStore
from service.runtime import Runtime

DEMO_USERS = ["ana", "eli", "maya", "ada", "sam", "noor"]
CHANNELS = ["WEB", "MOBILE", "IN_APP", "EMAIL"]  # the API's Channel values (schema.graphql)
EPOCH = datetime(2026, 3, 1, tzinfo=UTC)


def capture_real_decisions(runtime: Runtime) -> tuple[list[dict], list[decide.Recommendation]]:
    """Run next_steps for every demo user and channel (these go through the real trail);
    return the keyword arguments each call passed to decision_triples, and the recommendations."""
    captured: list[dict] = []
    real = decide.decision_triples

    def spy(record, rec, **kwargs):
        captured.append({"record": record, "rec": rec, **kwargs})
        return real(record, rec, **kwargs)

    recs = []
    with mock.patch.object(decide, "decision_triples", spy):
        for user in DEMO_USERS:
            for channel in CHANNELS:
                recs.append(decide.next_steps(runtime, user, channel=channel))
    return captured, recs


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class RecordFactory:
    """Decision records of about ``candidates`` candidates, ``returned`` of them returned with reasons."""

    def __init__(
        self,
        runtime: Runtime,
        captured: list[dict],
        *,
        seed: int = 42,
        candidates: int = 15,
        returned: int = 5,
        population: int = 10_000,
    ) -> None:
        self.rng = random.Random(seed)
        catalog = runtime.catalog
        self.steps = [s.iri for s in catalog.steps]
        self.policy = active_version(runtime.knowledge.policies, "default")
        self.channels = runtime.knowledge.codes.channels
        self.candidates = min(candidates, len(self.steps))
        self.returned = returned
        reasons = sorted({r for c in captured for s in c["rec"].candidates for r in s.reasons})
        self.reasons = reasons or ["Introduces the product"]
        roles = sorted(e.iri for e in catalog.by_id["Role"].values())
        plans = sorted(e.iri for e in catalog.by_id["Plan"].values())
        industries = sorted(e.iri for e in catalog.by_id["Industry"].values())
        rng = self.rng
        # A synthetic population: pseudonym, profile, consent records and event IRIs per user.
        self.users = []
        for _ in range(population):
            personalized = rng.random() < 0.85
            used = [vocab.CONSENT_BASE + _uuid(rng) for _ in range(rng.choice((1, 2, 2, 3)))]
            used += [rng.choice(roles), rng.choice(plans)]
            if personalized:
                used.append(rng.choice(industries))
            used += [vocab.EVENT_BASE + _uuid(rng) for _ in range(rng.randint(0, 8))]
            self.users.append((f"{rng.getrandbits(128):032x}", personalized, used))

    def make(self, i: int) -> tuple[ox.NamedNode, list[ox.Triple]]:
        rng = self.rng
        pseudonym, personalized, used = self.users[rng.randrange(len(self.users))]
        steps = rng.sample(self.steps, self.candidates)
        scores = sorted((round(rng.uniform(0.2, 1.8), 6) for _ in steps), reverse=True)
        ranked = [Scored(step, score, score) for step, score in zip(steps, scores, strict=True)]
        for scored in ranked[: self.returned]:
            scored.reasons = rng.sample(self.reasons, rng.randint(1, 3))
        started = EPOCH + timedelta(milliseconds=50 * i, microseconds=rng.randrange(1_000_000))
        decision_id = _uuid(rng)
        rec = decide.Recommendation(
            decision_id=decision_id,
            steps=ranked[: self.returned],
            personalized=personalized,
            policy_version=self.policy.label,
            candidates=ranked,
            at=started,
            channel=rng.choice(CHANNELS),
            limit=self.returned,
        )
        record = ox.NamedNode(vocab.DECISION_BASE + decision_id)
        # decision_triples stamps prov:endedAt with clock.now(): a real time, as in the service.
        return record, decide.decision_triples(
            record,
            rec,
            policy=self.policy,
            channel_iri=self.channels[rec.channel],
            pseudonym=pseudonym,
            used=used,
            started=started,
            model_iri=None,
        )


class ChainWriter:
    """AuditTrail.append's chaining, record by record, with the quads written in bulk chunks."""

    def __init__(
        self,
        store: GraphStore,
        *,
        chain: str,
        head: audit.ChainHead,
        anchor_file: Path | None,
        checkpoint_every: int = 1000,
        chunk_quads: int = 2_000_000,
        bulk: bool = True,
    ) -> None:
        self.store = store
        self.chain = chain
        self.sequence = head.sequence
        self.previous = head.hash
        self.anchor_file = anchor_file
        self.checkpoint_every = checkpoint_every
        self.chunk_quads = chunk_quads
        self.bulk = bulk
        self.buffer: list[ox.Quad] = []
        self.anchors: list[dict] = []
        self.quads_written = 0

    def add(self, record: ox.NamedNode, triples: list[ox.Triple]) -> None:
        T, L = ox.Triple, ox.Literal
        chained = [
            *triples,
            T(record, vocab.CHAIN, L(self.chain)),
            T(record, vocab.SEQUENCE, L(str(self.sequence + 1), datatype=vocab.XSD_INTEGER)),
            T(record, vocab.PREVIOUS_HASH, L(self.previous)),
        ]
        chained = audit.stored_form(chained)
        digest = audit.content_hash(chained)
        chained.append(T(record, vocab.CONTENT_HASH, L(digest)))
        graph = vocab.AUDIT_GRAPH
        self.buffer.extend(ox.Quad(t.subject, t.predicate, t.object, graph) for t in chained)
        self.sequence += 1
        self.previous = digest
        if self.sequence % self.checkpoint_every == 0:
            self.anchors.append(
                {"chain": self.chain, "sequence": self.sequence, "hash": digest, "at": datetime.now(UTC).isoformat()}
            )
        if len(self.buffer) >= self.chunk_quads:
            self.write()

    def write(self) -> None:
        if self.buffer:
            if self.bulk:
                self.store.bulk_load(nquads(self.buffer), format=ox.RdfFormat.N_QUADS)
            else:
                self.store.commit(add=self.buffer)
            self.quads_written += len(self.buffer)
            self.buffer = []
        if self.anchors and self.anchor_file is not None:
            with self.anchor_file.open("a") as out:
                out.writelines(json.dumps(a) + "\n" for a in self.anchors)
            self.anchors = []

    @property
    def head(self) -> audit.ChainHead:
        return audit.ChainHead(self.sequence, self.previous)


def nquads(quads: list[ox.Quad]) -> bytes:
    """Return quads as N-Quads, for ``bulk_load``."""
    data = ox.serialize(quads, format=ox.RdfFormat.N_QUADS)
    assert data is not None
    return data
