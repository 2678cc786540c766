"""Per-user app tokens: what a browser or mobile app sends to act for its one signed-in user.

A product's backend, which knows who is signed in, mints for that user a JSON Web
Token (RFC 7519) signed with HMAC-SHA256 (``HS256``) under the secret of one of
the service's ``app`` keys:

- header ``{"alg": "HS256", "typ": "JWT", "kid": PRINCIPAL}``, the app key's principal;
- claims ``sub`` (the user's ID, as in ``nextSteps(userId:)``), ``exp`` (expiry, Unix
  seconds) and optionally ``iat`` (issued at).

Any JWT library does it, e.g. ``jwt.encode({"sub": "maya", "exp": now + 900}, SECRET,
algorithm="HS256", headers={"kid": "web-app"})``; ``wayfinder app-token`` prints one.
The service accepts only HS256 (never ``none``, never an algorithm the token
names for itself), checks the expiry with a small leeway, and refuses a token
meant to live longer than ``app_token_max_ttl_s``: a token in the wild dies soon,
and revoking the app key (removing it from the keys file) kills them all at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from service.identity.keys import Key, Keys

ALGORITHM = "HS256"
LEEWAY_S = 30


class TokenRefused(Exception):
    """The token is not one the service accepts; the reason is safe to show."""


@dataclass(frozen=True)
class AppIdentity:
    """Who an accepted token speaks for: the signing app key and the one user."""

    key: Key
    subject: str


def looks_like_token(credential: str) -> bool:
    """True when the credential has a JWT's three dot-separated parts."""
    return credential.count(".") == 2


def verify(token: str, keys: Keys, *, max_ttl_s: float) -> AppIdentity:
    """Return the app key and user a token was signed for; raise TokenRefused otherwise."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenRefused("malformed app token") from None
    if header.get("alg") != ALGORITHM:
        raise TokenRefused(f"app tokens are signed with {ALGORITHM}")
    app = header.get("kid")
    candidates = keys.signing_keys(app) if isinstance(app, str) else []
    if not candidates:
        raise TokenRefused("app token: 'kid' names no app key of this service")
    for key in candidates:  # several while a key is rotated
        try:
            claims = jwt.decode(
                token, key.secret, algorithms=[ALGORITHM], leeway=LEEWAY_S, options={"require": ["exp", "sub"]}
            )
        except jwt.ExpiredSignatureError:
            raise TokenRefused("app token expired") from None
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"app token refused: {exc}") from None
        lifetime = claims["exp"] - claims.get("iat", time.time())
        if lifetime > max_ttl_s + LEEWAY_S:
            raise TokenRefused(f"app token lives too long: at most {max_ttl_s:g} s from issue to expiry")
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise TokenRefused("app token: 'sub' must name a user")
        return AppIdentity(key, subject)
    raise TokenRefused("app token signature does not match")


def mint(subject: str, secret: str, *, app: str, ttl_s: float) -> str:
    """Return an app token for one user, as a product's backend makes it."""
    issued = int(time.time())
    return jwt.encode(
        {"sub": subject, "iat": issued, "exp": issued + int(ttl_s)}, secret, algorithm=ALGORITHM, headers={"kid": app}
    )
