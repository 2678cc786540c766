"""Which roles may call which GraphQL fields."""

from __future__ import annotations

from typing import Any

from strawberry.permission import BasePermission
from strawberry.types import Info

from ..access import require


def allow(*roles: str) -> type[BasePermission]:
    """Return a permission class that lets only these roles (or an open service) through."""

    class Allowed(BasePermission):
        def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
            try:
                require(info.context["role"], roles, f"{info.field_name}")
            except Exception:
                info.context["response"].status_code = 403
                raise
            return True

    Allowed.__name__ = "Allowed_" + "_".join(roles)
    return Allowed


CLIENT = [allow("client")]
CLIENT_OR_AUDITOR = [allow("client", "auditor")]
CLIENT_OR_OPERATOR = [allow("client", "operator")]
AUDITOR = [allow("auditor", "operator")]
OPERATOR = [allow("operator")]
ANYONE = [allow("client", "engineer", "operator", "auditor")]
