"""GraphQL types of the outbox: messages handed to the e-mail and push senders, and where each stands."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from service.api.types.catalog import Channel
from service.delivery import outbox
from service.delivery.outbox import Message
from service.runtime import Runtime


@strawberry.enum(description="Where an outbox message stands")
class DeliveryState(Enum):
    PENDING = "PENDING"  # not yet accepted by the sender; sent at nextAttemptAt
    DELIVERED = "DELIVERED"  # the sender accepted it (2xx)
    DEAD_LETTERED = "DEAD_LETTERED"  # every allowed attempt failed, or the sender refused it for good
    CANCELLED = "CANCELLED"  # never to be sent: the user was erased or withdrew the sender's purpose


@strawberry.type(description="One message of the outbox: a decision handed to its channel's sender")
class Delivery:
    id: strawberry.ID = strawberry.field(description="The delivery's ID: the Idempotency-Key of every attempt")
    decision_id: strawberry.ID
    channel: Channel
    state: DeliveryState
    attempts: int = strawberry.field(description="Attempts started so far (one cut short by a crash counts)")
    next_attempt_at: datetime | None = strawberry.field(description="When a pending message is next sent")
    last_error: str | None = strawberry.field(
        description="Why the latest attempt failed, or why it was cancelled: an HTTP status or a transport error"
    )
    created_at: datetime
    state_at: datetime = strawberry.field(description="When it reached its current state")


def delivery_of(runtime: Runtime, message: Message) -> Delivery:
    codes = runtime.knowledge.codes
    return Delivery(
        id=strawberry.ID(message.id),
        decision_id=strawberry.ID(message.decision_id),
        channel=Channel(next(code for code, iri in codes.channels.items() if iri == message.channel)),
        state=DeliveryState(message.state),
        attempts=message.attempts,
        next_attempt_at=message.next_attempt_at if message.state == "PENDING" else None,
        last_error=message.last_error,
        created_at=message.created_at,
        state_at=message.state_at,
    )


def delivery_by_id(runtime: Runtime, delivery_id: str | None) -> Delivery | None:
    """The delivery of a decision where it has one, as it stands now."""
    if delivery_id is None:
        return None
    found = outbox.read_message(runtime.store, delivery_id)
    return delivery_of(runtime, found) if found else None
