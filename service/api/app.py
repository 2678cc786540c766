"""The ASGI app: GraphQL at /graphql, read-only SPARQL at /sparql, health at /healthz, Prometheus at /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from cross_web import HTTPException
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from service.analytics import feed
from service.api.body_limit import BodyLimit
from service.api.credentials import (
    ANONYMOUS,
    OPEN_CALLER,
    Authenticator,
    Caller,
    RateLimited,
    Unauthorized,
    caller_of,
)
from service.api.limits import refuse_overlong_lists
from service.api.schema import build_schema
from service.api.single_flight import SingleFlight
from service.api.sparql import sparql_response
from service.audit.retention import purge_periodically
from service.audit.sealed import seal_periodically
from service.audit.sparql import SparqlEndpoint
from service.console import routes as console
from service.console import session
from service.delivery.worker import deliver_periodically
from service.errors import Forbidden
from service.experiments.monitor import monitor_periodically
from service.identity.keys import KeyRing, require
from service.metrics import REQUEST_SECONDS, STORE_QUADS
from service.runtime import Runtime

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


class WayfinderGraphQL(GraphQL[dict[str, Any], None]):
    """Strawberry's ASGI view with the runtime and the caller's role in the context."""

    def __init__(self, runtime: Runtime, **kwargs: Any) -> None:
        keys_on = kwargs.pop("keys_on")
        super().__init__(
            build_schema(runtime.settings, introspection=not keys_on and runtime.settings.dev_mode), **kwargs
        )
        self.runtime = runtime
        self.keys_on = keys_on

    async def render_graphql_ide(self, request: Any) -> Response:
        # GraphiQL with its scripts and styles served by this service (the console's vendored copy), not a CDN's
        vendored = (self.runtime.settings.vendor_dir / "graphiql").is_dir()
        return HTMLResponse(console.graphiql_page(None, vendor_ready=vendored, console=False))

    def decode_json(self, data: str | bytes) -> object:
        # json.loads raises UnicodeDecodeError, which strawberry does not catch (a 500), on a body
        # that is not UTF-8; as a JSONDecodeError it becomes strawberry's 400 "Unable to parse".
        try:
            return json.loads(data)
        except UnicodeDecodeError as exc:
            raise json.JSONDecodeError(f"the body is not UTF-8: {exc.reason}", "", exc.start) from None
        except RecursionError:  # nesting deeper than the parser's stack (e.g. 100,000 '['): a 500 otherwise
            raise json.JSONDecodeError("the body nests too deeply", "", 0) from None

    async def parse_http_body(self, request: Any) -> Any:
        # strawberry calls .get() on whatever JSON the body holds: a number, string, true or null is a 500.
        # A JSONDecodeError out of here is strawberry's 400 "Unable to parse request body as JSON".
        if request.method == "POST" and "application/json" in (request.content_type or ""):
            if not isinstance(self.decode_json(await request.get_body()), (dict, list)):
                raise json.JSONDecodeError("a GraphQL request body is a JSON object or a batch", "", 0)
        return await super().parse_http_body(request)

    async def execute_single(
        self, request: Any, request_adapter: Any, sub_response: Any, context: Any, root_value: Any, request_data: Any
    ) -> Any:
        # Resolvers block (store, SHACL, torch) and are all plain functions: each operation runs in a
        # worker thread, so that one long write or training run never holds up the event loop.
        allowed = OperationType.from_http(request_adapter.method)
        if not self.allow_queries_via_get and request_adapter.method == "GET":
            allowed = allowed - {OperationType.QUERY}

        def execute() -> ExecutionResult:
            refusal = refuse_overlong_lists(request_data.variables, self.runtime.settings.max_events_per_request)
            return refusal or self.schema.execute_sync(
                request_data.query,
                variable_values=request_data.variables,
                context_value=context,
                root_value=root_value,
                operation_name=request_data.operation_name,
                allowed_operation_types=allowed,
                operation_extensions=request_data.extensions,
            )

        try:
            return await run_in_threadpool(execute)
        except CannotGetOperationTypeError as exc:
            raise HTTPException(400, exc.as_http_error_reason()) from exc
        except InvalidOperationTypeError as exc:
            raise HTTPException(400, exc.as_http_error_reason(request_adapter.method)) from exc
        except MissingQueryError as exc:
            raise HTTPException(400, "No GraphQL query found in the request") from exc

    async def get_sub_response(self, request: Any) -> Any:
        sub_response: Any = await super().get_sub_response(request)  # a Response that also carries our flag
        sub_response.graphql_response_json = prefers_graphql_response_json(request.headers.get("accept", ""))
        request.state.graphql_sub_response = sub_response
        return sub_response

    async def process_result(self, request: Any, result: Any) -> Any:
        data = await super().process_result(request, result)
        sub_response = getattr(request.state, "graphql_sub_response", None)
        if (
            sub_response is not None
            and getattr(sub_response, "graphql_response_json", False)
            and result.data is None
            and result.errors
            and all(error.path is None for error in result.errors)
        ):
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
        caller = caller_of(request.scope)
        return {
            "runtime": self.runtime,
            "request": request,
            "response": response,
            "role": caller.role,
            "principal": caller.principal,
            "subject": caller.subject,
            "keys_on": self.keys_on,
        }


class KeyAuth:
    """Checks ``Authorization: Bearer KEY`` (or an app token) and puts the caller in the request state."""

    def __init__(self, app: ASGIApp, auth: Authenticator) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})
        caller = OPEN_CALLER if not self.auth.enabled else ANONYMOUS
        path = scope["path"]
        if path not in PUBLIC_PATHS and not console.is_public(path):
            headers = dict(scope["headers"])
            header = headers.get(b"authorization", b"").decode("latin-1")
            try:
                signed_in = self._console_session(path, headers) if not header and self.auth.enabled else None
                if signed_in is not None:
                    caller = signed_in
                elif console.is_console(path) and self.auth.enabled:
                    await console.sign_in_first(scope, receive, send)
                    return
                else:
                    caller = self.auth.authenticate(header)
            except Unauthorized as exc:
                response = JSONResponse(
                    {"error": str(exc)}, status_code=401, headers={"WWW-Authenticate": 'Bearer realm="wayfinder"'}
                )
                await response(scope, receive, send)
                return
            except RateLimited as exc:
                response = JSONResponse(
                    {"error": str(exc)}, status_code=429, headers={"Retry-After": str(exc.retry_after_s)}
                )
                await response(scope, receive, send)
                return
        scope["state"]["caller"] = caller
        scope["state"]["role"] = caller.role
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["path"] != "/graphql":  # GraphQL operations are timed by operation
                REQUEST_SECONDS.labels(getattr(scope.get("route"), "path", "other")).observe(
                    time.perf_counter() - started
                )

    def _console_session(self, path: str, headers: dict[bytes, bytes]) -> Caller | None:
        """The caller a console session cookie proves: on console pages, and on GraphQL calls the console's own
        pages make (they send the console header, which no form of another site can set)."""
        if not (console.is_console(path) or (path == "/graphql" and session.CONSOLE_HEADER.encode() in headers)):
            return None
        cookie = session.cookie_from(headers.get(b"cookie", b"").decode("latin-1"))
        key = session.key_of(cookie, self.auth.ring.keys, now=time.time()) if cookie else None
        return self.auth.admit(key, Caller(key.role, key.principal)) if key is not None else None


def create_app(runtime: Runtime | None = None) -> ASGIApp:
    """Return the service's ASGI app over a runtime (by default, from settings)."""
    runtime = runtime or Runtime()
    runtime.ensure_ontology()
    # Load the model registry (and torch) and the active version now, not in the first
    # request: /healthz says ready only once a decision can be made without that wait.
    from service.models.serving import active_scorer  # torch, imported when an app is made

    active_scorer(runtime)
    feed.log(runtime)  # caught up from the store now, if it has to be, not in the first request that writes
    settings = runtime.settings
    ring = KeyRing(settings.api_keys, settings.api_keys_file, reload_s=settings.api_keys_reload_s)
    keys = ring.keys
    auth = Authenticator(ring, app_token_max_ttl_s=settings.app_token_max_ttl_s)
    ide = "graphiql" if settings.dev_mode and not keys.enabled else None
    graphql = WayfinderGraphQL(runtime, keys_on=keys.enabled, graphql_ide=ide, allow_queries_via_get=False)
    endpoint = SparqlEndpoint.from_settings(runtime.store, settings)
    quads_counted = [0.0]

    def check() -> bool:
        runtime.store.ask("ASK { ?s ?p ?o }")
        return bool(runtime.knowledge.catalog.by_id.get("Step"))

    # Off the loop, one check at a time: a store that hangs gets a 503 within the limit and
    # holds one thread however many probes ask; the next probe after it ends checks afresh.
    probe = SingleFlight(check, name="wayfinder-store-probe")

    async def healthz(request: Request) -> Response:
        try:
            ready = await probe(timeout_s=settings.health_timeout_s)
        except TimeoutError:
            return JSONResponse(
                {"status": "unavailable", "reason": "the store did not answer in time"}, status_code=503
            )
        except Exception as exc:  # any failure to read the store means not ready
            return JSONResponse({"status": "unavailable", "reason": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ok", "store": "open", "ready": ready}, status_code=200 if ready else 503)

    async def sparql(request: Request) -> Response:
        try:
            require(caller_of(request.scope).role, ("auditor",), "/sparql")
        except Forbidden as exc:
            return PlainTextResponse(exc.message, status_code=403)
        return await sparql_response(endpoint, request)

    async def metrics(request: Request) -> Response:
        try:
            require(caller_of(request.scope).role, ("operator",), "/metrics")
        except Forbidden as exc:
            return PlainTextResponse(exc.message, status_code=403)
        if time.monotonic() - quads_counted[0] > 60:
            STORE_QUADS.set(len(runtime.store))
            quads_counted[0] = time.monotonic()
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        interval = runtime.settings.retention_interval_s
        tasks = []
        if interval > 0:
            tasks.append(asyncio.create_task(purge_periodically(runtime, interval)))
        if runtime.settings.audit_seal_interval_s > 0:
            tasks.append(asyncio.create_task(seal_periodically(runtime, runtime.settings.audit_seal_interval_s)))
        if runtime.settings.guardrail_interval_s > 0:
            tasks.append(asyncio.create_task(monitor_periodically(runtime, runtime.settings.guardrail_interval_s)))
        if runtime.settings.senders and runtime.settings.delivery_interval_s > 0:
            tasks.append(asyncio.create_task(deliver_periodically(runtime, runtime.settings.delivery_interval_s)))
        yield
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        endpoint.close()

    app = Starlette(
        lifespan=lifespan,
        routes=[
            Route("/healthz", healthz),
            Route("/metrics", metrics),
            Route("/sparql", sparql, methods=["GET", "POST"]),
            Route("/graphql", graphql, methods=["GET", "POST"]),
            console.console_routes(runtime, auth),
        ],
    )
    app.state.runtime = runtime
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)  # before anything reads a body, on every path
    return KeyAuth(app, auth)
