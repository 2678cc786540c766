"""The web console at /console: server-rendered pages (Jinja2) over the same reads as the API, behind the same keys.

A person signs in with an API key (:mod:`service.console.session`); each page checks the key's role as the
GraphQL field it mirrors does (decisions: auditor or operator; experiments: operator). On a service without
keys (development) the console is open, as GraphQL is. Its styles, and the GraphiQL it serves at
/console/graphiql, come from the service itself: nothing is loaded from another site.
"""

from __future__ import annotations

import time
import urllib.parse
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from service.api.credentials import Authenticator, Caller, RateLimited, caller_of
from service.clock import parse_datetime
from service.console import session, views
from service.console.drawing import Station, bars_svg, journey_svg, lineage_svg, series_svg
from service.errors import ConsentRequired, Forbidden, InvalidInput, NotFound, WayfinderError
from service.experiments import registry
from service.governance import approvals
from service.identity.keys import OPEN, require
from service.models import lifecycle
from service.runtime import Runtime

HERE = Path(__file__).parent
PREFIX = "/console"
PUBLIC = (PREFIX + "/login", PREFIX + "/static/", PREFIX + "/vendor/")
READ_DECISIONS = ("auditor", "operator")  # as GraphQL's decision(id)
READ_EXPERIMENTS = ("operator",)  # as GraphQL's experiments and experimentResults
READ_MODELS = ("auditor", "operator")  # as GraphQL's models
CHANGE_MODELS = ("operator",)  # as promoteModel and rollbackModel
# As approveModelVersion: operators, and the second role the governance policy names (approvals.acting_role).
APPROVE_MODELS = READ_MODELS
READ_CONSENT = ("auditor",)  # consent histories and erasures are the auditors'
PREVIEW = ("auditor", "operator")
READ_JOURNEYS = ("operator", "engineer", "auditor")  # the catalog, and rates that name nobody
# What the templates show each role (``may_decisions``, ...): the pages it may open and what it may change.
MAY = {
    "decisions": READ_DECISIONS,
    "experiments": READ_EXPERIMENTS,
    "models": READ_MODELS,
    "change_models": CHANGE_MODELS,
    "approve_models": APPROVE_MODELS,
    "consent": READ_CONSENT,
    "preview": PREVIEW,
    "journeys": READ_JOURNEYS,
}
MAX_FORM_BYTES = 4096

templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))


def is_console(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def is_public(path: str) -> bool:
    """The sign-in page and the console's own assets: open to anyone."""
    return path == PUBLIC[0] or path.startswith(PUBLIC[1:])


async def sign_in_first(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer a console request without a session: to the sign-in page (a page), or 401 (anything else)."""
    if scope.get("method") == "GET":
        target = scope["path"] + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
        response: Response = RedirectResponse(
            f"{PREFIX}/login?next={urllib.parse.quote(target, safe='')}", status_code=303
        )
    else:
        response = HTMLResponse(_page("login.html", None, error="sign in first"), status_code=401)
    await response(scope, receive, send)


def _role(request: Request) -> str:
    return caller_of(request.scope).role


def _principal(request: Request) -> str:
    return caller_of(request.scope).principal


def _page(name: str, request: Request | None, **values: Any) -> str:
    role = _role(request) if request is not None else None
    return templates.get_template(name).render(
        role=role,
        principal=_principal(request) if request is not None else None,
        **{f"may_{page}": role is not None and (role == OPEN or role in roles) for page, roles in MAY.items()},
        **values,
    )


def _same_origin(request: Request) -> bool:
    """A form post from the console's own page: its Origin (when the browser sends one) is this service."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urllib.parse.urlsplit(origin).netloc == request.headers.get("host", "")


def _next(target: str | None) -> str:
    """Where to go after signing in: a console path, never another site."""
    if target and is_console(target.split("?", 1)[0]) and not target.startswith("//"):
        return target
    return PREFIX + "/"


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise InvalidInput("form", f"a sign-in form is at most {MAX_FORM_BYTES} bytes")
    fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
    return {name: values[0] for name, values in fields.items()}


def console_routes(runtime: Runtime, auth: Authenticator) -> Mount:
    """The console's routes, to mount in the service's app."""
    settings = runtime.settings

    def forbidden(request: Request, exc: Forbidden) -> HTMLResponse:
        return HTMLResponse(_page("error.html", request, title="Not for this key", message=exc.message), 403)

    def refusal(request: Request, roles: tuple[str, ...], what: str) -> HTMLResponse | None:
        """The 403 page when the caller's role may not see ``what``, else None."""
        try:
            require(_role(request), roles, what)
        except Forbidden as exc:
            return forbidden(request, exc)
        return None

    async def login(request: Request) -> Response:
        if request.method == "GET":
            if not auth.enabled:
                return RedirectResponse(_next(request.query_params.get("next")), status_code=303)
            return HTMLResponse(_page("login.html", None, next=request.query_params.get("next", "")))
        if not _same_origin(request):
            return HTMLResponse(_page("login.html", None, error="sign in from this service's own page"), 403)
        try:
            form = await _form(request)
        except InvalidInput as exc:
            return HTMLResponse(_page("login.html", None, error=exc.message), 400)
        secret = form.get("key", "").strip()
        key = auth.ring.keys.identify(secret) if secret else None
        if key is None or key.role not in session.CONSOLE_ROLES:
            error = (
                "key: unknown key"
                if key is None
                else f"key: the console is for {', '.join(session.CONSOLE_ROLES)} keys; this key has the role {key.role}"
            )
            return HTMLResponse(_page("login.html", None, error=error, next=form.get("next", "")), 401)
        try:
            auth.admit(key, Caller(key.role, key.principal))  # a sign-in counts against the key's rate limit
        except RateLimited as exc:
            return HTMLResponse(_page("login.html", None, error=str(exc)), 429)
        cookie = session.issue(key, now=time.time(), ttl_s=settings.console_session_s)
        response = RedirectResponse(_next(form.get("next")), status_code=303)
        secure = request.url.scheme == "https"
        response.headers["set-cookie"] = session.cookie_header(
            cookie, max_age_s=int(settings.console_session_s), secure=secure
        )
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse(PREFIX + "/login", status_code=303)
        response.headers["set-cookie"] = session.cookie_header("", max_age_s=0, secure=request.url.scheme == "https")
        return response

    async def home(request: Request) -> Response:
        role = _role(request)
        target = "/experiments" if role in READ_EXPERIMENTS and role not in READ_DECISIONS else "/decisions"
        return RedirectResponse(PREFIX + target, status_code=303)

    async def decisions(request: Request) -> Response:
        if refused := refusal(request, READ_DECISIONS, "the decisions page"):
            return refused
        wanted = views.DecisionFilter.of(request.query_params)
        searched = any(getattr(wanted, name) for name in views.DecisionFilter.__dataclass_fields__)

        def read() -> dict[str, Any]:
            return {
                "rows": views.search(runtime, wanted),
                "policies": sorted(views.policy_labels(runtime)),
                "models": views.model_names(runtime),
            }

        try:
            found = await run_in_threadpool(read)
        except InvalidInput as exc:
            page = _page(
                "decisions.html",
                request,
                wanted=wanted,
                rows=[],
                error=exc.message,
                policies=sorted(views.policy_labels(runtime)),
                models=[],
                searched=searched,
            )
            return HTMLResponse(page, 400)
        return HTMLResponse(_page("decisions.html", request, wanted=wanted, searched=searched, error=None, **found))

    async def decision(request: Request) -> Response:
        if refused := refusal(request, READ_DECISIONS, "a decision's page"):
            return refused
        decision_id = request.path_params["id"]
        try:
            view = await run_in_threadpool(views.decision, runtime, decision_id)
        except InvalidInput as exc:
            return HTMLResponse(_page("error.html", request, title="Not a decision ID", message=exc.message), 400)
        if view is None:
            message = f"no decision {decision_id}"
            return HTMLResponse(_page("error.html", request, title="No such decision", message=message), 404)
        return HTMLResponse(_page("decision.html", request, view=view, drawing=lineage_svg(view.lineage)))

    async def experiments(request: Request) -> Response:
        if refused := refusal(request, READ_EXPERIMENTS, "the experiments page"):
            return refused
        found = await run_in_threadpool(registry.experiments, runtime)
        return HTMLResponse(_page("experiments.html", request, experiments=found))

    async def experiment(request: Request) -> Response:
        if refused := refusal(request, READ_EXPERIMENTS, "an experiment's page"):
            return refused
        experiment_id = request.path_params["id"]
        view = await run_in_threadpool(views.experiment, runtime, experiment_id)
        if view is None:
            message = f"no experiment {experiment_id!r}"
            return HTMLResponse(_page("error.html", request, title="No such experiment", message=message), 404)
        marks = [(parse_datetime(r["at"]), f"{r['arm']} rolled back") for r in view.rollbacks]
        charts = {kpi: series_svg(f"{kpi} per arm", series, marks=marks) for kpi, series in sorted(view.charts.items())}
        funnel = bars_svg(
            "share of exposed users",
            view.funnel,
            [(arm, [c / n[0] if n[0] else 0.0 for c in n]) for arm, n in view.funnel_counts.items()],
            percent=True,
        )
        labels = [label for _, label in views.DURATION_BINS]
        durations = {
            kpi: bars_svg(f"{kpi}: users by hours", labels, [(arm, c) for arm, c in bins.items()], percent=False)
            for kpi, bins in view.durations.items()
        }
        page = _page("experiment.html", request, view=view, charts=charts, funnel=funnel, durations=durations)
        return HTMLResponse(page)

    async def preview(request: Request) -> Response:
        if refused := refusal(request, PREVIEW, "the preview page"):
            return refused
        params = request.query_params
        user = params.get("user", "").strip()[:200]
        locale = params.get("locale", "").strip()[:35] or None
        made_up = views.MadeUp.of(params, params.getlist("consents")) if params.get("madeUp") else None
        shown = {
            "user": user,
            "locale": locale,
            "made_up": made_up,
            "options": views.profile_options(runtime),
            "channel_codes": sorted(runtime.knowledge.codes.channels),
            "purposes": sorted(runtime.knowledge.codes.purposes),
            "title": runtime.catalog.title,
        }
        if not user and made_up is None:
            return HTMLResponse(_page("preview.html", request, channels=None, error=None, **shown))
        try:
            if made_up is not None:
                channels = await run_in_threadpool(lambda: views.preview_made_up(runtime, made_up, locale=locale))
            else:
                channels = await run_in_threadpool(lambda: views.preview(runtime, user, locale=locale))
        except (InvalidInput, NotFound, ConsentRequired) as exc:  # a bad field of either form, named
            page = _page("preview.html", request, channels=None, error=exc.message, **shown)
            return HTMLResponse(page, 400)
        return HTMLResponse(_page("preview.html", request, channels=channels, error=None, **shown))

    async def models(request: Request) -> Response:
        if refused := refusal(request, READ_MODELS, "the models page"):
            return refused
        rows = await run_in_threadpool(views.models, runtime)
        return HTMLResponse(_page("models.html", request, rows=rows, keys_on=auth.enabled, error=None))

    async def change_model(request: Request) -> Response:
        action = request.path_params["action"]
        try:
            if action not in ("promote", "rollback", "approve", "reject"):
                raise NotFound(f"no model action {action!r}: promote, rollback, approve or reject")
            judging = action in ("approve", "reject")
            require(_role(request), APPROVE_MODELS if judging else CHANGE_MODELS, f"{action} a model")
            if not _same_origin(request):
                raise Forbidden("change models from this service's own console page")
            form = await _form(request)
            version, named = form.get("version", ""), form.get("approvedBy", "").strip() or None
            if action != "rollback":  # who approves, and in which role, as approveModelVersion records them
                principal = approvals.approver(keys_on=auth.enabled, principal=_principal(request), named=named)
                role = approvals.acting_role(runtime, _role(request))

            def change() -> None:
                if action == "promote":
                    needed = approvals.required(runtime, keys_on=auth.enabled)
                    lifecycle.promote(runtime, version, approved_by=principal, required=needed, role=role)
                elif judging:
                    verdict = approvals.APPROVED if action == "approve" else approvals.REJECTED
                    lifecycle.approve(runtime, version, approved_by=principal, role=role, verdict=verdict)
                else:
                    lifecycle.rollback(runtime)

            await run_in_threadpool(change)
        except Forbidden as exc:
            return forbidden(request, exc)
        except WayfinderError as exc:
            rows = await run_in_threadpool(views.models, runtime)
            page = _page("models.html", request, rows=rows, keys_on=auth.enabled, error=exc.message)
            return HTMLResponse(page, 404 if isinstance(exc, NotFound) else 400)
        return RedirectResponse(PREFIX + "/models", status_code=303)

    async def consent(request: Request) -> Response:
        if refused := refusal(request, READ_CONSENT, "the consent page"):
            return refused
        user = request.query_params.get("user", "").strip()[:200]
        try:
            view = await run_in_threadpool(views.consent, runtime, user)
        except InvalidInput as exc:
            view = await run_in_threadpool(views.consent, runtime, "")
            return HTMLResponse(_consent_page(request, view, user, exc.message), 400)
        return HTMLResponse(_consent_page(request, view, user, None))

    async def journeys(request: Request) -> Response:
        if refused := refusal(request, READ_JOURNEYS, "the journeys page"):
            return refused
        try:
            view = await run_in_threadpool(views.journeys, runtime, request.query_params)
        except InvalidInput as exc:
            view = await run_in_threadpool(views.journeys, runtime, {})
            return HTMLResponse(_journeys_page(request, view, exc.message, runtime.catalog.title), 400)
        return HTMLResponse(_journeys_page(request, view, None, runtime.catalog.title))

    async def graphiql(request: Request) -> Response:
        return HTMLResponse(graphiql_page(request, vendor_ready=(settings.vendor_dir / "graphiql").is_dir()))

    routes = [
        Route("/", home),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/decisions", decisions),
        Route("/decisions/{id}", decision),
        Route("/experiments", experiments),
        Route("/experiments/{id}", experiment),
        Route("/preview", preview),
        Route("/journeys", journeys),
        Route("/models", models),
        Route("/models/{action:str}", change_model, methods=["POST"]),
        Route("/consent", consent),
        Route("/graphiql", graphiql),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        Mount("/vendor", StaticFiles(directory=settings.vendor_dir, check_dir=False), name="vendor"),
    ]
    return Mount(PREFIX, routes=routes)


def _journeys_page(request: Request, view: views.JourneyView, error: str | None, title: Any) -> str:
    stations = [
        Station(s.iri, s.title, s.depth, tuple(s.requires), s.rate(view.users), s.activation) for s in view.steps
    ]
    return _page("journeys.html", request, view=view, drawing=journey_svg(stations), error=error, title=title)


def _consent_page(request: Request, view: views.ConsentView, user: str, error: str | None) -> str:
    charts = {p: series_svg(f"{p}: consent records a day", series) for p, series in view.charts.items()}
    return _page("consent.html", request, view=view, charts=charts, user=user, error=error)


def graphiql_page(request: Request | None, *, vendor_ready: bool, console: bool = True) -> str:
    """GraphiQL over /graphql with scripts and styles served by this service (console: calls carry the session)."""
    return _page("graphiql.html", request, vendor_ready=vendor_ready, console=console)
