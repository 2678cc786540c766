"""The delivery worker: hands due outbox messages to the senders' webhooks, at least once.

One message at a time, the worker claims a due message (under the store's write lock:
its attempt is counted and its next attempt moved past a lease, in one commit), checks
that it may still go (its user exists and still consents to the sender's purpose), signs
and sends it (:mod:`service.delivery.webhooks`), and records what came of it: delivered,
retried after a backoff, or dead-lettered. A worker killed during a call leaves the
message pending with its lease running; when the lease ends, a worker sends it again with
the same idempotency key. So a message is never lost, and a sender may see it more than
once, never under two keys.

Outcomes come back as the user's events (``MESSAGE_DELIVERED``, ``MESSAGE_FAILED``),
under the same purpose. The worker runs in the service (every ``delivery_interval_s``)
or alone (``wayfinder deliver``); on a shared store, workers of several processes claim
under their own process's lock only, so two of them can both send a message whose
claims raced: the sender drops the repeat by its key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import httpx

from service.clock import now
from service.decisions.consent import current_consents
from service.decisions.subjects import UUID_PATTERN, user_by_pseudonym
from service.decisions.users import EventReport, record_events
from service.delivery import outbox, webhooks
from service.delivery.outbox import CANCELLED, DEAD_LETTERED, DELIVERED, PENDING, Message
from service.errors import InvalidInput, NotFound, WayfinderError
from service.knowledge import vocab
from service.metrics import DELIVERIES_CANCELLED, DELIVERY_ATTEMPTS
from service.runtime import Runtime

log = logging.getLogger("wayfinder.delivery")


@dataclass(frozen=True)
class Outcome:
    """What one look at one message came to."""

    delivery_id: str
    state: str
    attempts: int
    error: str | None = None


def lease_s(runtime: Runtime) -> float:
    """How long a claimed message waits before another worker may send it again: past any call's time limit."""
    return 3 * runtime.settings.delivery_timeout_s + 1.0


def client_for(runtime: Runtime) -> httpx.Client:
    return httpx.Client(timeout=runtime.settings.delivery_timeout_s, follow_redirects=False)


def deliver_due(runtime: Runtime, client: httpx.Client, *, limit: int | None = None) -> list[Outcome]:
    """Send due messages, one at a time, up to ``limit`` (the ``delivery_batch`` setting); return what came of each."""
    outcomes: list[Outcome] = []
    for _ in range(limit or runtime.settings.delivery_batch):
        message = claim(runtime)
        if message is None:
            break
        outcomes.append(send(runtime, message, client))
    return outcomes


def claim(runtime: Runtime) -> Message | None:
    """Take the longest-waiting due message: count its attempt and lease it, in one commit; None when none is due."""
    store = runtime.store
    with store.write_lock:
        at = now()
        ready = outbox.due(store, at=at, limit=1)
        if not ready:
            return None
        message = ready[0]
        attempts = message.attempts + 1
        add, remove = outbox.state_change(
            store,
            message,
            PENDING,
            attempts=attempts,
            next_attempt_at=at + timedelta(seconds=lease_s(runtime)),
            at=message.state_at,
            error=message.last_error,
        )
        store.commit(add=add, remove=remove)
    return replace(message, attempts=attempts)


def send(runtime: Runtime, message: Message, client: httpx.Client) -> Outcome:
    """Send one claimed message, unless it may no longer go, and record the outcome."""
    codes = runtime.knowledge.codes
    channel = next((code for code, iri in codes.channels.items() if iri == message.channel), message.channel)
    user_id = user_of(runtime, message.pseudonym)
    purpose = runtime.catalog.senders.get(message.channel)
    if user_id is None:
        return _cancel(runtime, message, channel, "the user was erased")
    if purpose is None:
        return _cancel(runtime, message, channel, f"the catalog names no sender for {channel} any more")
    purpose_code = codes.purpose_code(purpose)
    consent = current_consents(runtime, user_id).get(purpose_code)
    if consent is None or not consent.granted:
        return _cancel(runtime, message, channel, f"the user has no {purpose_code} consent now")
    settings = runtime.settings
    url = settings.senders.get(channel)
    if url is None or settings.sender_secret is None:
        attempt = webhooks.Attempt(False, False, f"no sender is configured for {channel} (WAYFINDER_SENDERS)")
    else:
        body = webhooks.body_of(
            {**message.payload, "deliveryId": message.id, "userId": user_id, "attempt": message.attempts}
        )
        attempt = webhooks.call(
            client,
            str(url),
            delivery_id=message.id,
            body=body,
            secret=settings.sender_secret.get_secret_value().encode(),
            timestamp=int(time.time()),
        )
    if attempt.delivered:
        state, next_at = DELIVERED, None
    elif attempt.permanent or message.attempts >= settings.delivery_max_attempts:
        state, next_at = DEAD_LETTERED, None
    else:
        wait = webhooks.backoff_s(
            message.attempts,
            base_s=settings.delivery_backoff_s,
            max_s=settings.delivery_backoff_max_s,
            retry_after_s=attempt.retry_after_s,
        )
        state, next_at = PENDING, now() + timedelta(seconds=wait)
    DELIVERY_ATTEMPTS.labels(channel, {PENDING: "retry"}.get(state, state.lower())).inc()
    moved = _move(runtime, message, state, next_at=next_at, error=attempt.error)
    if moved and state in (DELIVERED, DEAD_LETTERED):
        _outcome_event(
            runtime, message, user_id, channel, "MESSAGE_DELIVERED" if state == DELIVERED else "MESSAGE_FAILED"
        )
    log.info(
        "delivery attempt",
        extra={"delivery_id": message.id, "state": state, "attempt": message.attempts, "error": attempt.error},
    )
    return Outcome(message.id, state, message.attempts, attempt.error)


def user_of(runtime: Runtime, pseudonym: str) -> str | None:
    """Return the ID of the user a pseudonym names, or None where no such user is stored (erased)."""
    user = user_by_pseudonym(runtime, pseudonym)
    return vocab.local_id(user.value) if user is not None else None


def requeue(runtime: Runtime, delivery_id: str) -> Message:
    """Send a dead-lettered message again: pending, due now, its attempts counted from zero."""
    store = runtime.store
    with store.write_lock:
        message = _require(runtime, delivery_id)
        if message.state != DEAD_LETTERED:
            raise InvalidInput("id", f"only a dead-lettered message can be requeued; this one is {message.state}")
        at = now()
        add, remove = outbox.state_change(store, message, PENDING, attempts=0, next_attempt_at=at, at=at, error=None)
        store.commit(add=add, remove=remove)
    found = outbox.read_message(store, message.id)
    assert found is not None
    return found


def message(runtime: Runtime, delivery_id: str) -> Message | None:
    """Return the outbox message with this ID, or None."""
    return outbox.read_message(runtime.store, _checked_id(delivery_id))


async def deliver_periodically(runtime: Runtime, interval_s: float) -> None:
    """Send due messages every ``interval_s`` seconds, until cancelled."""
    with client_for(runtime) as client:
        while True:
            try:
                await asyncio.to_thread(deliver_due, runtime, client)
            except Exception:  # a failed look must not end the schedule; the next one tries again
                log.exception("delivery look failed")
            await asyncio.sleep(interval_s)


def _move(runtime: Runtime, message: Message, state: str, *, next_at: datetime | None, error: str | None) -> bool:
    """Record a message's new state, unless another worker has finished it meanwhile; return whether it moved."""
    store = runtime.store
    with store.write_lock:
        current = outbox.read_message(store, message.id)
        if current is None or current.state != PENDING:
            return False
        add, remove = outbox.state_change(
            store, current, state, attempts=message.attempts, next_attempt_at=next_at, at=now(), error=error
        )
        store.commit(add=add, remove=remove)
    return True


def _cancel(runtime: Runtime, message: Message, channel: str, reason: str) -> Outcome:
    if _move(runtime, message, CANCELLED, next_at=None, error=reason):
        DELIVERIES_CANCELLED.labels(channel).inc()
    log.info("delivery cancelled", extra={"delivery_id": message.id, "reason": reason})
    return Outcome(message.id, CANCELLED, message.attempts, reason)


def _outcome_event(runtime: Runtime, message: Message, user_id: str, channel: str, kind: str) -> None:
    try:
        record_events(
            runtime,
            [EventReport(user_id, kind, channel=channel, delivery_id=message.id)],
            field_name="delivery",
        )
    except WayfinderError as exc:  # e.g. consent withdrawn during the call: the message state stands
        log.warning("delivery outcome event not recorded", extra={"delivery_id": message.id, "reason": exc.code})


def _checked_id(delivery_id: str) -> str:
    if not UUID_PATTERN.fullmatch(delivery_id):
        raise InvalidInput("id", "a delivery ID is a UUID, as 8-4-4-4-12 hexadecimal digits")
    return delivery_id.lower()


def _require(runtime: Runtime, delivery_id: str) -> Message:
    found = message(runtime, delivery_id)
    if found is None:
        raise NotFound(f"id: no delivery {delivery_id!r}", details=[{"field": "id", "reason": "unknown delivery"}])
    return found
