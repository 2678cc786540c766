"""The ASGI app: GraphQL at /graphql, health at /healthz, Prometheus at /metrics."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from strawberry.asgi import GraphQL

from ..runtime import Runtime
from .schema import build_schema


class WayfinderGraphQL(GraphQL):
    """Strawberry's ASGI view with the runtime in the context."""

    def __init__(self, runtime: Runtime, **kwargs: Any) -> None:
        super().__init__(build_schema(), **kwargs)
        self.runtime = runtime

    async def get_context(self, request: Any, response: Any) -> dict[str, Any]:
        return {"runtime": self.runtime, "request": request, "response": response}


def create_app(runtime: Runtime | None = None) -> Starlette:
    """Return the service's ASGI app over a runtime (by default, from settings)."""
    runtime = runtime or Runtime()
    runtime.ensure_ontology()
    dev = runtime.settings.dev_mode
    graphql = WayfinderGraphQL(runtime, graphql_ide="graphiql" if dev else None, allow_queries_via_get=False)

    async def healthz(request: Request) -> Response:
        try:
            runtime.store.ask("ASK { ?s ?p ?o }")
            ready = runtime.knowledge.catalog.by_id.get("Step") is not None
        except Exception as exc:  # any failure to read the store means not ready
            return JSONResponse({"status": "unavailable", "reason": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ok", "store": "open", "ready": ready})

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app = Starlette(routes=[
        Route("/healthz", healthz),
        Route("/metrics", metrics),
        Route("/graphql", graphql, methods=["GET", "POST"]),
    ])
    app.state.runtime = runtime
    return app
