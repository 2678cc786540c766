"""Maps service errors to GraphQL errors with ``extensions.code``, once, and masks the rest."""

from __future__ import annotations

import logging
import re

from graphql import GraphQLError
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import MaskErrors

from service.errors import WayfinderError
from service.knowledge.vocab import local_id

log = logging.getLogger("wayfinder.api")

# graphql-core appends its suggestions as one last sentence: " Did you mean 'a', 'b', or 'c'?"
# (graphql/pyutils/did_you_mean.py); GraphQL names hold no "?", so the sentence ends at the first.
SUGGESTION = re.compile(r" Did you mean [^?]*\?")


def _is_internal(error: GraphQLError) -> bool:
    original = error.original_error
    return original is not None and not isinstance(original, (WayfinderError, GraphQLError))


class ErrorCodes(MaskErrors):
    """Project errors keep their message and gain a code; anything else is masked as INTERNAL."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=_is_internal, error_message="Internal error; the request changed nothing.")

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        processed = []
        hide_schema = NoSchemaIntrospectionCustomRule in (self.execution_context.validation_rules or ())
        for error in errors:
            original = error.original_error
            if isinstance(original, WayfinderError):
                processed.append(graphql_error(original, like=error))
            elif _is_internal(error):
                log.error("internal error in %s", error.path, exc_info=original)
                masked = self.anonymise_error(error)
                masked.extensions = {"code": "INTERNAL"}
                processed.append(masked)
            else:
                if not error.extensions or "code" not in error.extensions:
                    error.extensions = {
                        **(error.extensions or {}),
                        "code": "GRAPHQL_VALIDATION_FAILED" if error.path is None else "BAD_REQUEST",
                    }
                if hide_schema and SUGGESTION.search(error.message):
                    # With introspection off, "Did you mean 'nextSteps'?" would hand out the schema name by name.
                    error = GraphQLError(
                        SUGGESTION.sub("", error.message),
                        nodes=error.nodes,
                        source=error.source,
                        positions=error.positions,
                        path=error.path,
                        extensions=error.extensions,
                    )
                processed.append(error)
        return processed


def graphql_error(error: WayfinderError, *, like: GraphQLError | None = None) -> GraphQLError:
    """Return the GraphQL error for a service error: its message, ``extensions.code`` and details."""
    extensions: dict = {"code": error.code}
    if error.details:
        extensions["details"] = error.details
    if like is None:
        return GraphQLError(error.message, original_error=error, extensions=extensions)
    return GraphQLError(
        error.message,
        nodes=like.nodes,
        source=like.source,
        positions=like.positions,
        path=like.path,
        extensions=extensions,
    )


def log_errors(errors: list[GraphQLError], execution_context=None) -> None:
    """Log what a request's errors say about the service, in place of strawberry's per-error traceback.

    Refusals and invalid documents are the client's business: one INFO line each, no
    traceback. Internal errors are logged with their traceback by ErrorCodes. A message
    may quote the request (a user ID, a variable's value), so the line holds only the
    code, the fields and the constraints the error names. (A store outage's cause, with the
    store's address, is logged where it happens: service/knowledge/shared.py.)
    """
    for error in errors:
        if _is_internal(error):
            continue
        original = error.original_error
        if not isinstance(original, WayfinderError):
            log.info("refused: INVALID (the document or its variables)", extra={"code": "INVALID"})
            continue
        fields = sorted(
            {d["field"] for d in original.details if isinstance(d, dict) and isinstance(d.get("field"), str)}
        )
        shapes = sorted(
            {local_id(d["shape"]) for d in original.details if isinstance(d, dict) and isinstance(d.get("shape"), str)}
        )
        said = "".join(
            f" {name} {', '.join(values)}" for name, values in (("fields", fields), ("shapes", shapes)) if values
        )
        log.info(
            "refused: %s%s", original.code, said, extra={"code": original.code, "fields": fields, "shapes": shapes}
        )
