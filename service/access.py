"""API keys and the roles they grant.

``WAYFINDER_API_KEYS="key1:client,key2:auditor"`` (and/or a file of ``key:role``
lines). Without keys the service runs open, for development, and refuses to
listen on anything but loopback.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from .errors import Forbidden, InvalidInput

ROLES = ("client", "engineer", "operator", "auditor")
OPEN = "open"  # the role of every caller when no keys are configured


@dataclass(frozen=True)
class Keys:
    """The configured API keys; empty means open (development)."""

    by_key: dict[str, str]

    @property
    def enabled(self) -> bool:
        return bool(self.by_key)

    def role_of(self, key: str) -> str | None:
        """Return the role a key grants, comparing in constant time."""
        for known, role in self.by_key.items():
            if hmac.compare_digest(known.encode(), key.encode()):
                return role
        return None


def parse_keys(text: str, file: Path | None = None) -> Keys:
    """Return keys from ``KEY:ROLE`` entries separated by commas or new lines."""
    entries = [e for e in text.replace("\n", ",").split(",") if e.strip()]
    if file is not None:
        entries += [line for line in file.read_text().splitlines() if line.strip() and not line.startswith("#")]
    keys: dict[str, str] = {}
    for entry in entries:
        key, sep, role = entry.strip().rpartition(":")
        if not sep or not key or role not in ROLES:
            raise InvalidInput("api_keys", f"each entry is KEY:ROLE with ROLE one of {', '.join(ROLES)}")
        if len(key) < 16:
            raise InvalidInput("api_keys", "keys must be at least 16 characters long")
        keys[key] = role
    return Keys(keys)


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
