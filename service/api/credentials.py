"""Who is calling: a server key, a per-user app token, or anyone on an open service; and its rate limit."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from service.identity.app_tokens import TokenRefused, looks_like_token, verify
from service.identity.keys import APP, OPEN, Key, KeyRing
from service.identity.rate_limits import RateLimiter


@dataclass(frozen=True)
class Caller:
    """The authenticated caller: role, principal (who provenance names), and the one user an app token acts for."""

    role: str
    principal: str
    subject: str | None = None


OPEN_CALLER = Caller(OPEN, OPEN)
ANONYMOUS = Caller("anonymous", "anonymous")  # on a keyed service's public paths: may do nothing that needs a role


def caller_of(scope: Any) -> Caller:
    """The caller ``KeyAuth`` put in a request's scope (an open service's caller where it put none)."""
    return scope.get("state", {}).get("caller", OPEN_CALLER)


class Unauthorized(Exception):
    """No credential the service accepts; the message is safe to show."""


class RateLimited(Exception):
    """The credential's rate limit is used up for now."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"rate limit reached: retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class Authenticator:
    """Turns an ``Authorization`` header into a :class:`Caller`, applying the key's rate limit."""

    def __init__(self, ring: KeyRing, *, app_token_max_ttl_s: float) -> None:
        self.ring = ring
        self.app_token_max_ttl_s = app_token_max_ttl_s
        self.limiter = RateLimiter()

    @property
    def enabled(self) -> bool:
        return self.ring.keys.enabled

    def authenticate(self, header: str) -> Caller:
        """Return the caller a header proves, or raise Unauthorized or RateLimited."""
        keys = self.ring.keys
        if not keys.enabled:
            return OPEN_CALLER
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Unauthorized(
                "missing API key: send Authorization: Bearer KEY"
                if not header
                else "send Authorization: Bearer KEY (or an app token)"
            )
        key = keys.identify(credential)
        if key is not None:
            if key.role == APP:
                raise Unauthorized("an app key signs user tokens and is never sent itself: send a token it signed")
            caller = Caller(key.role, key.principal)
        elif looks_like_token(credential):
            try:
                identity = verify(credential, keys, max_ttl_s=self.app_token_max_ttl_s)
            except TokenRefused as exc:
                raise Unauthorized(str(exc)) from None
            key = identity.key
            caller = Caller(APP, key.principal, identity.subject)
        else:
            raise Unauthorized("unknown API key: send Authorization: Bearer KEY")
        return self.admit(key, caller)

    def admit(self, key: Key, caller: Caller) -> Caller:
        """Return the caller a key proved (a header, or a console session it signed), applying its rate limit."""
        if key.rate is not None:
            # One bucket per key, and per user for app tokens; a key is named by a hash, never by its secret.
            bucket = hashlib.sha256(key.secret.encode()).hexdigest()[:24] + ":" + (caller.subject or "")
            wait = self.limiter.wait_s(bucket, key.rate)
            if wait:
                raise RateLimited(wait)
        return caller
