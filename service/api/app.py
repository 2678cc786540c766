"""The ASGI app: GraphQL at /graphql, read-only SPARQL at /sparql, health at /healthz, Prometheus at /metrics."""

from __future__ import annotations

import contextlib
from urllib.parse import parse_qs
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from strawberry.asgi import GraphQL

from ..runtime import Runtime
from ..sparql import SparqlEndpoint
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

    endpoint = SparqlEndpoint(runtime.store, timeout_s=runtime.settings.sparql_timeout_s,
                              max_rows=runtime.settings.sparql_max_rows,
                              snapshot_max_age_s=runtime.settings.sparql_snapshot_max_age_s)

    async def sparql(request: Request) -> Response:
        query, problem = await sparql_query_of(request)
        if problem:
            return PlainTextResponse(problem[1], status_code=problem[0])
        answer = await endpoint.answer(query, accept=request.headers.get("accept"))
        return Response(answer.body, status_code=answer.status, media_type=answer.media_type, headers=answer.headers)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        endpoint.close()

    app = Starlette(lifespan=lifespan, routes=[
        Route("/healthz", healthz),
        Route("/metrics", metrics),
        Route("/sparql", sparql, methods=["GET", "POST"]),
        Route("/graphql", graphql, methods=["GET", "POST"]),
    ])
    app.state.runtime = runtime
    return app


async def sparql_query_of(request: Request) -> tuple[str, tuple[int, str] | None]:
    """Return the query of a SPARQL 1.1 Protocol request, or an HTTP status and reason."""
    if request.method == "GET":
        if "update" in request.query_params:
            return "", (403, "updates are refused: this endpoint is read-only")
        query = request.query_params.get("query")
    else:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/sparql-update":
            return "", (403, "updates are refused: this endpoint is read-only")
        if kind == "application/sparql-query":
            query = (await request.body()).decode("utf-8", errors="replace")
        elif kind == "application/x-www-form-urlencoded":
            form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
            if "update" in form:
                return "", (403, "updates are refused: this endpoint is read-only")
            query = form.get("query", [None])[0]
        else:
            return "", (415, "send the query as application/sparql-query or application/x-www-form-urlencoded")
    if not query or not isinstance(query, str):
        return "", (400, "missing the 'query' parameter")
    return query, None
