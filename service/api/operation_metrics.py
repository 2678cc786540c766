"""Prometheus figures of GraphQL operations: time per root field, refused writes per shape or code."""

from __future__ import annotations

import time

from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from service.metrics import REFUSED_WRITES, REQUEST_SECONDS


def _root_fields(context, schema) -> str:
    document = getattr(context, "graphql_document", None)
    if document is None:
        return ""
    known: set[str] = set()
    for root in (schema._schema.query_type, schema._schema.mutation_type):
        if root is not None:
            known.update(root.fields)
    names: set[str] = set()
    for definition in document.definitions:
        for selection in getattr(getattr(definition, "selection_set", None), "selections", []) or []:
            name = getattr(getattr(selection, "name", None), "value", None)
            names.add(name if isinstance(name, str) and name in known else "invalid")
    return ",".join(sorted(names)) if len(names) <= 3 else "several"


def _operation_type(context):
    """The operation's type, or None when the document names no operation it can run."""
    try:
        return context.operation_type
    except RuntimeError:  # strawberry raises this, not AttributeError, when there is no usable operation
        return None


class OperationMetrics(SchemaExtension):
    """Times each operation and counts refused writes, for /metrics.

    List it before ``ErrorCodes``: extensions are left in reverse order, so it reads the
    result after the errors got their codes.
    """

    def on_operation(self):
        started = time.perf_counter()
        yield
        context = self.execution_context
        result = context.result
        # Root field names, never the client-chosen operation name: labels stay few.
        name = _root_fields(context, context.schema) or "invalid"
        REQUEST_SECONDS.labels(name).observe(time.perf_counter() - started)
        errors = result.errors if result is not None else None
        if context.graphql_document is not None and _operation_type(context) == OperationType.MUTATION and errors:
            for error in errors:
                extensions = error.extensions or {}
                details = extensions.get("details") or []
                shapes = [d["shape"] for d in details if isinstance(d, dict) and d.get("shape")]
                for label in shapes or [extensions.get("code", "UNKNOWN")]:
                    REFUSED_WRITES.labels(label.rsplit("#", 1)[-1]).inc()
