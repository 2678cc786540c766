"""The outbox: messages for the e-mail and push senders, written with the decision they carry.

A decision made for delivery (``deliverNextSteps``) writes one message here in the
same transaction as its audit record, so a message exists exactly when its decision
does, and a crash after the commit loses none. The message holds what the sender
receives (the shown steps with their content, fixed at decision time) and names its
user by pseudonym only; the worker (:mod:`service.delivery.worker`) adds the user's
ID when it sends. Each message's state (pending, delivered, dead-lettered or
cancelled), attempt count and next attempt time are the operational part: they
change, so they are outside the audit chain, which holds the decision and the link
to its message (``wf:hasDelivery``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import pyoxigraph as ox

from service.clock import datetime_literal, parse_datetime
from service.errors import InvalidInput
from service.knowledge import vocab
from service.knowledge.content import ServedContent
from service.knowledge.store import GraphStore, plain

PENDING, DELIVERED, DEAD_LETTERED, CANCELLED = "PENDING", "DELIVERED", "DEAD_LETTERED", "CANCELLED"
STATES = {
    PENDING: vocab.DELIVERY_PENDING,
    DELIVERED: vocab.DELIVERY_DELIVERED,
    DEAD_LETTERED: vocab.DELIVERY_DEAD_LETTERED,
    CANCELLED: vocab.DELIVERY_CANCELLED,
}
_STATE_CODES = {iri.value: code for code, iri in STATES.items()}
# What changes as a message is sent; the rest of it is written once, with its decision.
_MUTABLE = (vocab.DELIVERY_STATE, vocab.DELIVERY_ATTEMPTS, vocab.NEXT_ATTEMPT_AT, vocab.LAST_DELIVERY_ERROR)


@dataclass(frozen=True)
class Message:
    """One message of the outbox, as stored."""

    id: str
    decision_id: str
    channel: str  # the channel's IRI
    pseudonym: str
    payload: dict
    state: str  # PENDING, DELIVERED, DEAD_LETTERED or CANCELLED
    attempts: int
    next_attempt_at: datetime | None
    state_at: datetime
    created_at: datetime
    last_error: str | None = None

    @property
    def iri(self) -> ox.NamedNode:
        return delivery_node(self.id)


def delivery_node(delivery_id: str) -> ox.NamedNode:
    return ox.NamedNode(vocab.DELIVERY_BASE + delivery_id)


def new_delivery_id() -> str:
    return str(uuid.uuid4())


def payload_of(
    decision_id: str,
    *,
    channel: str,
    locale: str | None,
    steps: Sequence[str],
    contents: Mapping[str, ServedContent],
    titles: Mapping[str, str],
) -> dict:
    """Return what the sender receives of a decision: each shown step, in rank order, with what it is shown with.

    ``channel`` is the API code; ``steps`` the shown steps' IRIs; a step without content is shown by its title.
    """
    shown = []
    for rank, step in enumerate(steps, start=1):
        content = contents.get(step)
        item: dict = {"rank": rank, "stepId": vocab.local_id(step)}
        if content is not None:
            item |= {
                "locale": content.locale,
                "headline": content.headline,
                "body": content.body,
                "ctaLabel": content.cta_label,
                "deepLink": content.link,
                "media": content.media,
                "contentVersion": content.version,
            }
        else:
            item |= {"headline": titles.get(step, vocab.local_id(step))}
        shown.append(item)
    return {"decisionId": decision_id, "channel": channel, "requestedLocale": locale, "steps": shown}


def message_quads(
    delivery_id: str, *, decision: ox.NamedNode, channel: str, pseudonym: str, payload: dict, at: datetime
) -> list[ox.Quad]:
    """Return a new pending message's quads in the outbox graph: due at once, no attempt made."""
    node, g = delivery_node(delivery_id), vocab.OUTBOX_GRAPH
    return [
        ox.Quad(node, vocab.RDF_TYPE, vocab.DELIVERY, g),
        ox.Quad(node, vocab.DELIVERY_OF, decision, g),
        ox.Quad(node, vocab.DELIVERY_CHANNEL, ox.NamedNode(channel), g),
        ox.Quad(node, vocab.SUBJECT_PSEUDONYM, ox.Literal(pseudonym), g),
        ox.Quad(node, vocab.DELIVERY_PAYLOAD, ox.Literal(json_text(payload), datatype=vocab.RDF_JSON), g),
        ox.Quad(node, vocab.PROV_GENERATED_AT, datetime_literal(at), g),
        *_state_quads(node, PENDING, attempts=0, next_attempt_at=at, at=at, error=None),
    ]


def read_message(store: GraphStore, delivery_id: str) -> Message | None:
    """Return the stored message with this ID, or None."""
    quads = list(store.quads(subject=delivery_node(delivery_id), graph=vocab.OUTBOX_GRAPH))
    if not quads:
        return None
    values = {q.predicate.value: plain(q.object) for q in quads}

    def text(term: ox.NamedNode) -> str | None:
        found = values.get(term.value)
        return found.value if found is not None else None

    nxt = text(vocab.NEXT_ATTEMPT_AT)
    return Message(
        id=delivery_id,
        decision_id=vocab.local_id(text(vocab.DELIVERY_OF) or ""),
        channel=text(vocab.DELIVERY_CHANNEL) or "",
        pseudonym=text(vocab.SUBJECT_PSEUDONYM) or "",
        payload=json.loads(text(vocab.DELIVERY_PAYLOAD) or "{}"),
        state=_STATE_CODES[text(vocab.DELIVERY_STATE) or ""],
        attempts=int(text(vocab.DELIVERY_ATTEMPTS) or 0),
        next_attempt_at=parse_datetime(nxt) if nxt else None,
        state_at=parse_datetime(text(vocab.DELIVERY_STATE_AT) or ""),
        created_at=parse_datetime(text(vocab.PROV_GENERATED_AT) or ""),
        last_error=text(vocab.LAST_DELIVERY_ERROR),
    )


def messages(store: GraphStore, *, state: str | None = None, first: int = 50) -> list[Message]:
    """Return up to ``first`` messages, newest first, in one state or in any."""
    if state is not None and state not in STATES:
        raise InvalidInput("state", f"unknown delivery state {state!r}")
    nodes = (
        [q.subject for q in store.quads(predicate=vocab.DELIVERY_STATE, object=STATES[state], graph=vocab.OUTBOX_GRAPH)]
        if state is not None
        else [q.subject for q in store.quads(predicate=vocab.RDF_TYPE, object=vocab.DELIVERY, graph=vocab.OUTBOX_GRAPH)]
    )
    found = [m for node in nodes if (m := read_message(store, vocab.local_id(plain(node).value))) is not None]
    return sorted(found, key=lambda m: (m.created_at, m.id), reverse=True)[:first]


def due(store: GraphStore, *, at: datetime, limit: int) -> list[Message]:
    """Return up to ``limit`` pending messages whose next attempt is due at ``at``, the longest waiting first."""
    pending = store.quads(predicate=vocab.DELIVERY_STATE, object=vocab.DELIVERY_PENDING, graph=vocab.OUTBOX_GRAPH)
    found = [m for q in pending if (m := read_message(store, vocab.local_id(plain(q.subject).value))) is not None]
    ready = [m for m in found if m.next_attempt_at is None or m.next_attempt_at <= at]
    return sorted(ready, key=lambda m: (m.next_attempt_at or m.created_at, m.id))[:limit]


def state_change(
    store: GraphStore,
    message: Message,
    state: str,
    *,
    attempts: int,
    next_attempt_at: datetime | None,
    at: datetime,
    error: str | None,
) -> tuple[list[ox.Quad], list[ox.Quad]]:
    """Return the quads to add and to remove that move a message to a state (with its counters)."""
    node = message.iri
    old = [
        q
        for predicate in (*_MUTABLE, vocab.DELIVERY_STATE_AT)
        for q in store.quads(subject=node, predicate=predicate, graph=vocab.OUTBOX_GRAPH)
    ]
    return _state_quads(node, state, attempts=attempts, next_attempt_at=next_attempt_at, at=at, error=error), old


def _state_quads(
    node: ox.NamedNode, state: str, *, attempts: int, next_attempt_at: datetime | None, at: datetime, error: str | None
) -> list[ox.Quad]:
    g = vocab.OUTBOX_GRAPH
    quads = [
        ox.Quad(node, vocab.DELIVERY_STATE, STATES[state], g),
        ox.Quad(node, vocab.DELIVERY_ATTEMPTS, ox.Literal(str(attempts), datatype=vocab.XSD_INTEGER), g),
        ox.Quad(node, vocab.DELIVERY_STATE_AT, datetime_literal(at), g),
    ]
    if next_attempt_at is not None:
        quads.append(ox.Quad(node, vocab.NEXT_ATTEMPT_AT, datetime_literal(next_attempt_at), g))
    if error is not None:
        quads.append(ox.Quad(node, vocab.LAST_DELIVERY_ERROR, ox.Literal(error), g))
    return quads


def json_text(value: object) -> str:
    """JSON as the outbox keeps it and senders receive it: keys sorted, no spaces, text as written."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
