"""Limits on what one request may ask: field selections in one operation (fragments expanded), list lengths in its variables."""

from __future__ import annotations

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
)
from graphql.language import DocumentNode, Visitor, visit
from graphql.validation import ValidationContext
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.types import ExecutionResult

from service.api.errors import graphql_error, log_errors
from service.errors import InvalidInput


def depth_limit(max_depth: int) -> type[ValidationRule]:
    """Return strawberry's depth rule for ``max_depth``, kept off documents that spread a fragment they do not
    define: it raises KeyError on them (an error without a code). graphql-core's KnownFragmentNames refuses such
    a document, naming the fragment, so no depth needs computing."""
    limited = depth_rule(max_depth, None, None)

    class DepthLimit(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            if _spread_names(context.document) <= {
                d.name.value for d in context.document.definitions if isinstance(d, FragmentDefinitionNode)
            }:
                limited(context)  # reports what is too deep to the context as it is made

    return DepthLimit


class _Spreads(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def enter_fragment_spread(self, node: FragmentSpreadNode, *_args: object) -> None:
        self.names.add(node.name.value)


def _spread_names(document: DocumentNode) -> set[str]:
    spreads = _Spreads()
    visit(document, spreads)
    return spreads.names


def field_budget(limit: int) -> type[ValidationRule]:
    """Return a validation rule that refuses operations selecting more than ``limit`` fields."""

    class FieldBudget(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_args) -> None:
            fragments = {
                f.name.value: f for f in self.context.document.definitions if isinstance(f, FragmentDefinitionNode)
            }
            count = _count(node.selection_set, fragments, set(), limit)
            if count > limit:
                self.report_error(
                    GraphQLError(
                        f"the operation selects more than {limit} fields (fragments expanded); ask for less",
                        node,
                        extensions={"code": "QUERY_TOO_COMPLEX"},
                    )
                )

    return FieldBudget


def _count(selection_set: SelectionSetNode | None, fragments: dict, visiting: set, limit: int) -> int:
    if selection_set is None:
        return 0
    total = 0
    for selection in selection_set.selections:
        if total > limit:
            break
        if isinstance(selection, FieldNode):
            total += 1 + _count(selection.selection_set, fragments, visiting, limit)
        elif isinstance(selection, InlineFragmentNode):
            total += _count(selection.selection_set, fragments, visiting, limit)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in visiting or name not in fragments:
                continue  # cycles and unknown fragments are other rules' errors
            total += _count(fragments[name].selection_set, fragments, visiting | {name}, limit)
    return total


def overlong_list(variables: object, cap: int) -> InvalidInput | None:
    """Return the refusal of the first list in decoded JSON variables longer than ``cap``, or None.

    A walk over the decoded JSON, before graphql-core coerces anything, with a stack
    of its own: the body cap bounds the work, and nesting cannot exhaust recursion.
    Paths are kept as links to the parent and spelt out only for a refusal.
    """
    pending: list[tuple[object, tuple | None, str | int]] = [(variables, None, "variables")]
    while pending:
        value, parent, key = pending.pop()
        if isinstance(value, dict):
            here = (parent, key)
            pending.extend((item, here, name) for name, item in value.items() if isinstance(item, (dict, list)))
        elif isinstance(value, list):
            if len(value) > cap:
                return InvalidInput(_path(parent, key), f"at most {cap} items in one list, got {len(value)}")
            here = (parent, key)
            pending.extend((item, here, i) for i, item in enumerate(value) if isinstance(item, (dict, list)))
    return None


def _path(parent: tuple | None, key: str | int) -> str:
    parts: list[str | int] = [key]
    while parent is not None:
        parent, name = parent
        parts.append(name)
    return "".join(
        f"[{p}]" if isinstance(p, int) else (p if i == 0 else f".{p}") for i, p in enumerate(reversed(parts))
    )


def refuse_overlong_lists(variables: object, cap: int) -> ExecutionResult | None:
    """Return the request-error result refusing a variables list longer than ``cap``, or None when none is."""
    refusal = overlong_list(variables, cap)
    if refusal is None:
        return None
    error = graphql_error(refusal)
    log_errors([error])
    return ExecutionResult(data=None, errors=[error])
