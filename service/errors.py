"""Errors the service raises, each mapped once to an API error code.

WayfinderError
├── InvalidInput        a field of a request is malformed (names the field and why)
├── NotFound            a referenced user, step, feature or decision does not exist
├── Conflict            the write would duplicate something that must be unique
├── RefusedWrite        the data breaks SHACL shapes; carries every violation
├── SyntaxProblem       an RDF or SPARQL text does not parse (file, line, column)
├── ConsentRequired     the write needs a consent the user has not given
├── NotEnoughData       the store holds too little for the operation (consented users to train on)
├── Forbidden           the caller's role may not do this
├── StoreUnavailable    the store cannot be reached or opened
├── OutdatedStore       the store's layout is not this release's: migrate it (or run a newer release)
└── BrokenAnchors       the audit anchor file does not parse, or lacks anchors a chain calls for
"""

from __future__ import annotations

from dataclasses import dataclass


class WayfinderError(Exception):
    """Base of every error the service reports to its callers."""

    code = "INTERNAL"

    def __init__(self, message: str, *, details: list[dict] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class InvalidInput(WayfinderError):
    """A request field is malformed."""

    code = "BAD_USER_INPUT"

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}", details=[{"field": field_name, "reason": reason}])
        self.field = field_name
        self.reason = reason


class NotFound(WayfinderError):
    """A referenced entity does not exist."""

    code = "NOT_FOUND"


class Conflict(WayfinderError):
    """The write would duplicate something unique."""

    code = "CONFLICT"


@dataclass(frozen=True)
class Violation:
    """One SHACL validation result, in the words a knowledge engineer reads."""

    focus: str
    message: str
    shape: str | None = None
    path: str | None = None
    value: str | None = None
    severity: str = "Violation"

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def __str__(self) -> str:
        where = f"{self.focus}" + (f" {self.path}" if self.path else "")
        return f"{where}: {self.message}"


class NotEnoughData(WayfinderError):
    """The store holds too little of what an operation needs (for instance, consented users to train on)."""

    code = "NOT_ENOUGH_DATA"


class RefusedWrite(WayfinderError):
    """The data breaks the shapes; nothing of it was stored."""

    code = "CONSTRAINT_VIOLATION"

    def __init__(self, violations: list[Violation], *, source: str | None = None) -> None:
        count = len(violations)
        head = f"{source}: " if source else ""
        lines = "; ".join(str(v) for v in violations[:20])
        more = f" (and {count - 20} more)" if count > 20 else ""
        super().__init__(
            f"{head}refused, {count} violation{'s' if count != 1 else ''}: {lines}{more}",
            details=[v.as_dict() for v in violations],
        )
        self.violations = violations


class SyntaxProblem(WayfinderError):
    """An RDF or SPARQL text does not parse."""

    code = "SYNTAX_ERROR"

    def __init__(self, source: str, message: str, *, line: int | None = None, column: int | None = None) -> None:
        where = source + (f":{line}" if line else "") + (f":{column}" if column else "")
        super().__init__(f"{where}: {message}", details=[{"source": source, "line": line, "column": column}])
        self.source, self.line, self.column = source, line, column


class ConsentRequired(WayfinderError):
    """The write needs a consent the user has not given."""

    code = "CONSENT_REQUIRED"


class Forbidden(WayfinderError):
    """The caller's role may not do this."""

    code = "FORBIDDEN"


class StoreUnavailable(WayfinderError):
    """The store cannot be opened or reached."""

    code = "STORE_UNAVAILABLE"


class BrokenAnchors(WayfinderError):
    """The audit anchor file does not parse, or lacks anchors a chain calls for."""

    code = "BROKEN_ANCHORS"

    def __init__(self, file: str, message: str, *, line: int | None = None) -> None:
        where = file + (f":{line}" if line else "")
        super().__init__(f"{where}: {message}", details=[{"file": file, "line": line}])
        self.file, self.line = file, line


class OutdatedStore(WayfinderError):
    """The store's layout is older or newer than this release's."""

    code = "STORE_OUTDATED"
