"""A complexity limit: field selections in one operation, fragments expanded."""

from __future__ import annotations

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
)


def field_budget(limit: int) -> type[ValidationRule]:
    """Return a validation rule that refuses operations selecting more than ``limit`` fields."""

    class FieldBudget(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_args) -> None:
            fragments = {f.name.value: f for f in self.context.document.definitions if hasattr(f, "type_condition")}
            count = _count(node.selection_set, fragments, set(), limit)
            if count > limit:
                self.report_error(GraphQLError(
                    f"the operation selects more than {limit} fields (fragments expanded); ask for less",
                    node, extensions={"code": "QUERY_TOO_COMPLEX"}))

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
