"""Console sign-in: a session cookie signed with the key that signed in, so that no secret of its own is kept.

A person signs in with an API key; the console answers with a cookie that names the key's principal and role
and when the session ends, signed (HMAC-SHA256) with that key's secret. Each request checks the signature
against the keys in force, so a session ends when its key is removed from the keys file, when it expires,
or when the person signs out (the cookie is cleared). Any process of the service can check a cookie any
other process issued, and nothing is stored.

The cookie is ``HttpOnly`` and ``SameSite=Strict`` (and ``Secure`` behind HTTPS): a page of another site can
neither read it nor send it. GraphQL accepts it only beside the ``X-Wayfinder-Console`` header, which a
form of another site cannot set.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets

from service.identity.keys import APP, Key, Keys

COOKIE = "wayfinder_console"
CONSOLE_HEADER = "x-wayfinder-console"  # beside the cookie on GraphQL calls from the console's own pages
CONSOLE_ROLES = ("operator", "auditor", "engineer")  # client keys and app keys have no page here
_CONTEXT = b"wayfinder console session v1."


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: Key, payload: str) -> str:
    return _b64(hmac.new(key.secret.encode(), _CONTEXT + payload.encode(), hashlib.sha256).digest())


def issue(key: Key, *, now: float, ttl_s: float) -> str:
    """Return a session cookie value for a key that signed in now."""
    claims = {"p": key.principal, "r": key.role, "e": int(now + ttl_s), "n": secrets.token_hex(8)}
    payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_signature(key, payload)}"


def key_of(cookie: str, keys: Keys, *, now: float) -> Key | None:
    """Return the key in force that signed this unexpired session cookie, or None."""
    payload, dot, signature = cookie.partition(".")
    if not dot or len(cookie) > 1024:
        return None
    try:
        claims = json.loads(_unb64(payload))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(claims, dict) or not isinstance(claims.get("e"), int) or claims["e"] <= now:
        return None
    found = None
    for key in keys.entries:  # every candidate key is compared, in constant time
        if key.role == claims.get("r") and key.principal == claims.get("p") and key.role != APP:
            if hmac.compare_digest(_signature(key, payload), signature):
                found = key
    return found


def cookie_header(value: str, *, max_age_s: int, secure: bool) -> str:
    """The Set-Cookie value for a session (``max_age_s`` 0 clears it)."""
    flags = "; Secure" if secure else ""
    return f"{COOKIE}={value}; Max-Age={max_age_s}; Path=/; HttpOnly; SameSite=Strict{flags}"


def cookie_from(header: str) -> str | None:
    """The console cookie's value in a Cookie header, or None."""
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return value
    return None
