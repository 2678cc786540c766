"""Which roles may call which GraphQL fields, and for which users an app token may act."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from strawberry.permission import BasePermission
from strawberry.types import Info

from service.errors import Forbidden
from service.identity.keys import APP, require


def acting_for(arguments: dict[str, Any]) -> list[str]:
    """Return the user IDs a field's arguments act for: ``userId``, ``input.userId``, ``inputs[].userId``."""
    found: list[str] = []
    values: Iterable[Any] = [arguments.get("user_id"), arguments.get("input"), *(arguments.get("inputs") or [])]
    for value in values:
        user = value if isinstance(value, str) else getattr(value, "user_id", None)
        if user is not None:
            found.append(str(user))
    return found


def _check(info: Info, roles: tuple[str, ...], own_user: bool, arguments: dict[str, Any]) -> None:
    role = info.context["role"]
    if role != APP:
        require(role, roles, info.field_name)
        return
    if not own_user:
        raise Forbidden(
            f"{info.field_name} is not open to app tokens, which act for one user: call it with a server key"
        )
    users = acting_for(arguments)
    if not users or any(user != info.context.get("subject") for user in users):
        raise Forbidden(f"{info.field_name}: an app token acts only for the user it was signed for")


def allow(*roles: str, own_user: bool = False) -> type[BasePermission]:
    """Return a permission class for these roles (or an open service); ``own_user`` also lets an app token act for its user."""

    class Allowed(BasePermission):
        def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
            try:
                _check(info, roles, own_user, kwargs)
            except Exception:
                info.context["response"].status_code = 403
                raise
            return True

    Allowed.__name__ = "Allowed_" + "_".join(roles) + ("_own_user" if own_user else "")
    return Allowed


CLIENT = [allow("client")]
CLIENT_OR_APP_USER = [allow("client", own_user=True)]  # server keys for any user; app tokens for their own
CLIENT_OR_AUDITOR = [allow("client", "auditor")]
CLIENT_OR_OPERATOR = [allow("client", "operator")]
AUDITOR = [allow("auditor", "operator")]
OPERATOR = [allow("operator")]
# Approvals: operators, and the second role a high-impact change needs (the schema checks which one the governance
# policy names).
APPROVER = [allow("operator", "auditor", "engineer")]
ANYONE = [allow("client", "engineer", "operator", "auditor")]
