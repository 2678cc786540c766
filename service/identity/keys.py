"""API keys: the role and principal each grants, its rate limit, and re-reading the keys file.

Entries are ``KEY:ROLE``, ``KEY:ROLE:PRINCIPAL`` or ``KEY:ROLE:PRINCIPAL:RATE`` (RATE
as ``N/s``, ``N/min`` or ``N/h``), separated by commas or new lines, in
``WAYFINDER_API_KEYS`` and/or the file named by ``WAYFINDER_API_KEYS_FILE``. A key
without a principal acts as its role. A key of the role ``app`` is never sent: it
is the secret with which a product's backend signs per-user app tokens
(:mod:`service.identity.app_tokens`), and its principal names the app (the tokens' ``kid``).

Without keys the service runs open, for development, and refuses to listen on
anything but loopback.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from service.errors import Forbidden, InvalidInput

ROLES = ("client", "engineer", "operator", "auditor", "app")
APP = "app"  # signs per-user tokens; a token acts for one user only
OPEN = "open"  # the role of every caller when no keys are configured
RATE_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0}

log = logging.getLogger("wayfinder.access")


@dataclass(frozen=True)
class Rate:
    """At most ``count`` requests per ``seconds``."""

    count: int
    seconds: float


@dataclass(frozen=True)
class Key:
    """One configured key: its secret, role, principal and optional rate limit."""

    secret: str
    role: str
    principal: str
    rate: Rate | None = None


@dataclass(frozen=True)
class Keys:
    """The configured API keys; none means open (development)."""

    entries: tuple[Key, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.entries)

    def identify(self, secret: str) -> Key | None:
        """Return the key with this secret, comparing every entry in constant time."""
        found = None
        for key in self.entries:
            if hmac.compare_digest(key.secret.encode(), secret.encode()):
                found = key
        return found

    def role_of(self, secret: str) -> str | None:
        """Return the role a key grants."""
        key = self.identify(secret)
        return key.role if key else None

    def signing_keys(self, app: str) -> list[Key]:
        """Return the app keys whose principal is ``app``: the secrets that may have signed its tokens."""
        return [key for key in self.entries if key.role == APP and key.principal == app]


def parse_rate(text: str) -> Rate:
    """Return the rate of ``N/s``, ``N/min`` or ``N/h``."""
    count, sep, unit = text.strip().partition("/")
    if not sep or not count.isdigit() or int(count) < 1 or unit not in RATE_UNITS:
        raise InvalidInput("api_keys", f"a rate is N/s, N/min or N/h with N at least 1, got {text!r}")
    return Rate(int(count), RATE_UNITS[unit])


def parse_entry(entry: str) -> Key:
    """Return the key of one ``KEY:ROLE[:PRINCIPAL[:RATE]]`` entry."""
    fields = entry.strip().split(":")
    at = next((i for i, name in enumerate(fields) if i > 0 and name in ROLES), None)
    if at is None:
        raise InvalidInput("api_keys", f"each entry is KEY:ROLE[:PRINCIPAL[:RATE]] with ROLE one of {', '.join(ROLES)}")
    secret, role, rest = ":".join(fields[:at]), fields[at], fields[at + 1 :]
    if len(secret) < 16:
        raise InvalidInput("api_keys", "keys must be at least 16 characters long")
    if role == APP and len(secret) < 32:  # an HMAC-SHA256 key as long as the hash (RFC 7518, 3.2)
        raise InvalidInput("api_keys", "app keys sign tokens with HS256 and must be at least 32 characters long")
    if len(rest) > 2:
        raise InvalidInput("api_keys", "each entry is KEY:ROLE[:PRINCIPAL[:RATE]]; a principal holds no ':'")
    principal = rest[0].strip() if rest and rest[0].strip() else role
    rate = parse_rate(rest[1]) if len(rest) == 2 and rest[1].strip() else None
    return Key(secret, role, principal, rate)


def parse_keys(text: str, file: Path | None = None) -> Keys:
    """Return keys from entries separated by commas or new lines, and from a file of one entry a line."""
    entries = [e for e in text.replace("\n", ",").split(",") if e.strip()]
    if file is not None:
        entries += [
            line for line in file.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")
        ]
    return Keys(tuple(parse_entry(entry) for entry in entries))


class KeyRing:
    """The keys in force: those of the settings, with the keys file re-read when it changes.

    The file is looked at no more than every ``reload_s`` seconds. An edit that does
    not parse, or that would leave a keyed service without keys (and so open),
    keeps the keys in force and is logged: a broken edit never locks callers out
    or lets everyone in.
    """

    def __init__(self, text: str, file: Path | None, *, reload_s: float = 1.0) -> None:
        self.text, self.file, self.reload_s = text, file, reload_s
        self._lock = threading.Lock()
        self._checked = time.monotonic()
        self._seen = self._stamp()
        self._keys = parse_keys(text, file)

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.file.stat() if self.file is not None else None
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size) if stat else None

    @property
    def keys(self) -> Keys:
        """Return the keys in force, re-reading the file first when it changed."""
        if self.file is None or time.monotonic() - self._checked < self.reload_s:
            return self._keys
        with self._lock:
            self._checked = time.monotonic()
            stamp = self._stamp()
            if stamp != self._seen:
                self._seen = stamp
                self._reload()
        return self._keys

    def _reload(self) -> None:
        try:
            keys = parse_keys(self.text, self.file)
        except (OSError, InvalidInput) as exc:
            log.error("the keys file was not reloaded, the keys in force stay: %s", getattr(exc, "message", exc))
            return
        if self._keys.enabled and not keys.enabled:
            log.error("the keys file now holds no key; the keys in force stay (the service never opens by itself)")
            return
        self._keys = keys
        log.info("keys reloaded", extra={"keys": len(keys.entries)})


def require(role: str, allowed: tuple[str, ...], what: str) -> None:
    """Raise Forbidden unless the role may do ``what``."""
    if role != OPEN and role not in allowed:
        raise Forbidden(f"{what} needs the role {' or '.join(allowed)}; this key has the role {role}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
