"""Maps service errors to GraphQL errors with ``extensions.code``, once, and masks the rest."""

from __future__ import annotations

import logging

from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from ..errors import WayfinderError

log = logging.getLogger("wayfinder.api")


def _is_internal(error: GraphQLError) -> bool:
    original = error.original_error
    return original is not None and not isinstance(original, (WayfinderError, GraphQLError))


class ErrorCodes(MaskErrors):
    """Project errors keep their message and gain a code; anything else is masked as INTERNAL."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=_is_internal, error_message="Internal error; the request changed nothing.")

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        processed = []
        for error in errors:
            original = error.original_error
            if isinstance(original, WayfinderError):
                extensions = {"code": original.code}
                if original.details:
                    extensions["details"] = original.details
                processed.append(GraphQLError(original.message, nodes=error.nodes, source=error.source,
                                              positions=error.positions, path=error.path, extensions=extensions))
            elif _is_internal(error):
                log.error("internal error in %s", error.path, exc_info=original)
                masked = self.anonymise_error(error)
                masked.extensions = {"code": "INTERNAL"}
                processed.append(masked)
            else:
                if not error.extensions or "code" not in error.extensions:
                    error.extensions = {**(error.extensions or {}), "code": "GRAPHQL_VALIDATION_FAILED"
                                        if error.path is None else "BAD_REQUEST"}
                processed.append(error)
        return processed
