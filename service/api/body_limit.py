"""An ASGI middleware that caps request bodies before anything reads or parses them."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    """The request body went past the cap while it was being received."""


def too_large_response(max_bytes: int) -> tuple[dict, bytes]:
    """Return the 413 response start message and its JSON body, in the shape of a GraphQL error."""
    body = json.dumps(
        {
            "errors": [
                {
                    "message": f"the request body is larger than {max_bytes} bytes; send less per request",
                    "extensions": {"code": "PAYLOAD_TOO_LARGE"},
                }
            ]
        }
    ).encode()
    start = {
        "type": "http.response.start",
        "status": 413,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    }
    return start, body


def declared_length(scope: Scope) -> int | None:
    """Return the request's Content-Length, or None when it sends none (or one that does not parse)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimit:
    """Refuses, with 413, a body over ``max_bytes``: at once by its Content-Length, or while it streams.

    Bytes are counted as they pass to the app, so nothing here holds more than one chunk;
    the app itself keeps what it reads, which stops at the cap.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = declared_length(scope)
        if length is not None and length > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        over = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:  # the app's own answer to the exception (a 500) is replaced by the 413
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not over:
                raise
            # BodyTooLarge, or what a layer of the app made of it (an exception group, say).
        if over and not started:
            # The app caught the exception itself and answered nothing we let through.
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        start, body = too_large_response(self.max_bytes)
        await send(start)
        await send({"type": "http.response.body", "body": body})
