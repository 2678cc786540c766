"""The ASGI app: GraphQL at /graphql, read-only SPARQL at /sparql, health at /healthz, Prometheus at /metrics."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from strawberry.asgi import GraphQL

from ..access import OPEN, Keys, parse_keys, require
from ..errors import Forbidden
from ..metrics import REQUEST_SECONDS, STORE_QUADS
from ..runtime import Runtime
from ..sparql import SparqlEndpoint
from .schema import build_schema

PUBLIC_PATHS = {"/healthz"}
GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"


def prefers_graphql_response_json(accept: str) -> bool:
    """True when the Accept header ranks application/graphql-response+json at least as high as application/json."""
    ranks: dict[str, float] = {}
    for item in accept.split(","):
        kind, *params = (part.strip() for part in item.split(";"))
        q = next((p[2:] for p in params if p.startswith("q=")), "1")
        try:
            ranks[kind.lower()] = max(ranks.get(kind.lower(), 0.0), float(q))
        except ValueError:
            continue
    wanted = ranks.get(GRAPHQL_RESPONSE_JSON, 0.0)
    return wanted > 0 and wanted >= ranks.get("application/json", 0.0)


class WayfinderGraphQL(GraphQL):
    """Strawberry's ASGI view with the runtime and the caller's role in the context."""

    def __init__(self, runtime: Runtime, **kwargs: Any) -> None:
        keys_on = kwargs.pop("keys_on")
        super().__init__(build_schema(runtime.settings, introspection=not keys_on and runtime.settings.dev_mode), **kwargs)
        self.runtime = runtime

    def decode_json(self, data: str | bytes) -> object:
        # json.loads raises UnicodeDecodeError, which strawberry does not catch (a 500), on a body
        # that is not UTF-8; as a JSONDecodeError it becomes strawberry's 400 "Unable to parse".
        try:
            return json.loads(data)
        except UnicodeDecodeError as exc:
            raise json.JSONDecodeError(f"the body is not UTF-8: {exc.reason}", "", exc.start) from None

    async def parse_http_body(self, request: Any) -> Any:
        # strawberry calls .get() on whatever JSON the body holds: a number, string, true or null is a 500.
        # A JSONDecodeError out of here is strawberry's 400 "Unable to parse request body as JSON".
        if request.method == "POST" and "application/json" in (request.content_type or ""):
            if not isinstance(self.decode_json(await request.get_body()), (dict, list)):
                raise json.JSONDecodeError("a GraphQL request body is a JSON object or a batch", "", 0)
        return await super().parse_http_body(request)

    async def get_sub_response(self, request: Any) -> Any:
        sub_response = await super().get_sub_response(request)
        sub_response.graphql_response_json = prefers_graphql_response_json(request.headers.get("accept", ""))
        request.state.graphql_sub_response = sub_response
        return sub_response

    async def process_result(self, request: Any, result: Any) -> Any:
        data = await super().process_result(request, result)
        sub_response = getattr(request.state, "graphql_sub_response", None)
        if getattr(sub_response, "graphql_response_json", False) and result.data is None and result.errors \
                and all(error.path is None for error in result.errors):
            # A request error (parse, validation, variable coercion): nothing ran. Under
            # application/graphql-response+json the spec asks for 400 and no data entry.
            data.pop("data", None)
            sub_response.status_code = 400
        return data

    def create_response(self, response_data: Any, sub_response: Any) -> Response:
        response = super().create_response(response_data, sub_response)
        if getattr(sub_response, "graphql_response_json", False):
            response.headers["content-type"] = f"{GRAPHQL_RESPONSE_JSON}; charset=utf-8"
        return response

    async def get_context(self, request: Any, response: Any) -> dict[str, Any]:
        role = request.scope.get("state", {}).get("role", OPEN)
        return {"runtime": self.runtime, "request": request, "response": response, "role": role,
                "principal": role}


class KeyAuth:
    """Checks ``Authorization: Bearer KEY`` and puts the key's role in the request state."""

    def __init__(self, app: ASGIApp, keys: Keys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})
        if not self.keys.enabled:
            scope["state"]["role"] = OPEN
        elif scope["path"] not in PUBLIC_PATHS:
            header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            scheme, _, key = header.partition(" ")
            role = self.keys.role_of(key.strip()) if scheme.lower() == "bearer" and key.strip() else None
            if role is None:
                reason = "missing API key" if not header else "unknown API key"
                response = JSONResponse({"error": f"{reason}: send Authorization: Bearer KEY"}, status_code=401,
                                        headers={"WWW-Authenticate": 'Bearer realm="wayfinder"'})
                await response(scope, receive, send)
                return
            scope["state"]["role"] = role
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["path"] != "/graphql":  # GraphQL operations are timed by operation
                REQUEST_SECONDS.labels(scope["path"]).observe(time.perf_counter() - started)


def _role(request: Request) -> str:
    return request.scope.get("state", {}).get("role", OPEN)


def create_app(runtime: Runtime | None = None) -> ASGIApp:
    """Return the service's ASGI app over a runtime (by default, from settings)."""
    runtime = runtime or Runtime()
    runtime.ensure_ontology()
    # Load the model registry (and torch) and the active version now, not in the first
    # request: /healthz says ready only once a decision can be made without that wait.
    runtime.active_model()
    settings = runtime.settings
    keys = parse_keys(settings.api_keys, settings.api_keys_file)
    ide = "graphiql" if settings.dev_mode and not keys.enabled else None
    graphql = WayfinderGraphQL(runtime, keys_on=keys.enabled, graphql_ide=ide, allow_queries_via_get=False)
    endpoint = SparqlEndpoint(runtime.store, timeout_s=settings.sparql_timeout_s, max_rows=settings.sparql_max_rows,
                              snapshot_max_age_s=settings.sparql_snapshot_max_age_s)
    quads_counted = [0.0]

    async def healthz(request: Request) -> Response:
        try:
            runtime.store.ask("ASK { ?s ?p ?o }")
            ready = bool(runtime.knowledge.catalog.by_id.get("Step"))
        except Exception as exc:  # any failure to read the store means not ready
            return JSONResponse({"status": "unavailable", "reason": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ok", "store": "open", "ready": ready}, status_code=200 if ready else 503)

    async def sparql(request: Request) -> Response:
        try:
            require(_role(request), ("auditor",), "/sparql")
        except Forbidden as exc:
            return PlainTextResponse(exc.message, status_code=403)
        query, problem = await sparql_query_of(request)
        if problem:
            return PlainTextResponse(problem[1], status_code=problem[0])
        answer = await endpoint.answer(query, accept=request.headers.get("accept"))
        return Response(answer.body, status_code=answer.status, media_type=answer.media_type, headers=answer.headers)

    async def metrics(request: Request) -> Response:
        try:
            require(_role(request), ("operator",), "/metrics")
        except Forbidden as exc:
            return PlainTextResponse(exc.message, status_code=403)
        if time.monotonic() - quads_counted[0] > 60:
            STORE_QUADS.set(len(runtime.store))
            quads_counted[0] = time.monotonic()
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
    return KeyAuth(app, keys)


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
