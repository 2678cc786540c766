"""Maps service errors to GraphQL errors with ``extensions.code``, once, and masks the rest."""

from __future__ import annotations

import logging
import time

from graphql import GraphQLError
from strawberry.extensions import MaskErrors, ParserCache
from strawberry.types.graphql import OperationType

from ..errors import WayfinderError
from ..metrics import REFUSED_WRITES, REQUEST_SECONDS


def _root_fields(context, schema) -> str:
    document = getattr(context, "graphql_document", None)
    if document is None:
        return ""
    known = set()
    for root in (schema._schema.query_type, schema._schema.mutation_type):
        if root is not None:
            known.update(root.fields)
    names = set()
    for definition in document.definitions:
        for selection in getattr(getattr(definition, "selection_set", None), "selections", []) or []:
            name = getattr(getattr(selection, "name", None), "value", None)
            names.add(name if name in known else "invalid")
    return ",".join(sorted(names)) if len(names) <= 3 else "several"

log = logging.getLogger("wayfinder.api")


def _operation_type(context):
    """The operation's type, or None when the document names no operation it can run."""
    try:
        return context.operation_type
    except RuntimeError:  # strawberry raises this, not AttributeError, when there is no usable operation
        return None


class ReportingParserCache(ParserCache):
    """strawberry's ParserCache, but a document that does not parse is left to strawberry to parse again.

    ParserCache parses in ``on_parse``, outside strawberry's error handling: a syntax error (or the
    token limit) escapes the operation hooks, so ErrorCodes never sees it and the error goes out
    without ``extensions.code``. Leaving ``graphql_document`` unset makes strawberry parse inside its
    own try, and the error becomes a result that ErrorCodes processes like any other.
    """

    def on_parse(self):
        context = self.execution_context
        try:
            context.graphql_document = self.cached_parse_document(context.query, **context.parse_options)
        except GraphQLError:
            context.graphql_document = None
        yield


def _is_internal(error: GraphQLError) -> bool:
    original = error.original_error
    return original is not None and not isinstance(original, (WayfinderError, GraphQLError))


class ErrorCodes(MaskErrors):
    """Project errors keep their message and gain a code; anything else is masked as INTERNAL.

    Also times each operation and counts refused writes, for /metrics.
    """

    def __init__(self) -> None:
        super().__init__(should_mask_error=_is_internal, error_message="Internal error; the request changed nothing.")

    def on_operation(self):
        started = time.perf_counter()
        yield from super().on_operation()
        context = self.execution_context
        result = context.result
        # Root field names, never the client-chosen operation name: labels stay few.
        name = _root_fields(context, context.schema) or "invalid"
        REQUEST_SECONDS.labels(name).observe(time.perf_counter() - started)
        if context.graphql_document is not None and _operation_type(context) == OperationType.MUTATION \
                and getattr(result, "errors", None):
            for error in result.errors:
                extensions = error.extensions or {}
                details = extensions.get("details") or []
                shapes = [d.get("shape") for d in details if isinstance(d, dict) and d.get("shape")]
                for label in shapes or [extensions.get("code", "UNKNOWN")]:
                    REFUSED_WRITES.labels(label.rsplit("#", 1)[-1]).inc()

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


def log_errors(errors: list[GraphQLError], execution_context=None) -> None:
    """Log what a request's errors say about the service, in place of strawberry's per-error traceback.

    Refusals and invalid documents are the client's business: one INFO line each, no
    traceback. Internal errors are logged with their traceback by ErrorCodes.
    """
    for error in errors:
        if not _is_internal(error):
            code = error.original_error.code if isinstance(error.original_error, WayfinderError) else "INVALID"
            log.info("refused: %s", error.message, extra={"code": code})

