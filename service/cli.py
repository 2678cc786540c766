"""The ``wayfinder`` command line.

Exit codes: 0 success; 1 the data breaks a constraint (a readable report
follows); 2 the input cannot be read (syntax, missing file, bad option).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import pyoxigraph as ox
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from embeddings.world import generate_world
from service.errors import Forbidden, InvalidInput, NotFound, RefusedWrite, SyntaxProblem, WayfinderError
from service.identity.keys import is_loopback, parse_keys
from service.knowledge import files as knowledge
from service.knowledge import history
from service.knowledge.queries import Parameter, Query
from service.knowledge.store import GraphStore
from service.knowledge.vocab import KNOWLEDGE_VERSION_BASE, local_id
from service.runtime import Runtime
from service.settings import Settings
from service.telemetry import configure_logging, configure_tracing

if TYPE_CHECKING:
    from service.analytics.log import AnalyticsReader
    from service.experiments.analysis import KpiResult
    from service.experiments.flags import Flag
    from service.experiments.registry import Experiment, ExperimentSpec
    from service.models.monitoring import ModelHealth

app = typer.Typer(
    help="Wayfinder: decides which onboarding steps each new user sees next, and why.", no_args_is_help=True
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

StoreOption = Annotated[
    str | None, typer.Option("--store", help="Store folder, ':memory:' or SPARQL server URL [env WAYFINDER_STORE]")
]


def _runtime(store: str | None) -> Runtime:
    return _runtime_from(Settings(store=store) if store else Settings())


def _runtime_from(settings: Settings) -> Runtime:
    """Open the runtime of one command; its store is closed when the command ends, however it ends."""
    try:
        runtime = Runtime(settings=settings)
    except WayfinderError as exc:
        _fail(exc)
        raise  # unreachable: _fail exits
    _opened.append(runtime)
    return runtime


_opened: list[Runtime] = []  # the runtimes the running command opened


@app.callback()
def _each_command(context: typer.Context) -> None:
    """Close the stores a command opened when it ends, however it ends (a store folder opens in one place at a time)."""
    context.call_on_close(_close_opened)


def _close_opened() -> None:
    while _opened:
        _opened.pop().close()


def _fail(exc: WayfinderError) -> None:
    if isinstance(exc, RefusedWrite):
        err.print(f"[bold red]refused[/]: {len(exc.violations)} violation(s)")
        for v in exc.violations:
            err.print(f"  - [bold]{v.focus}[/]" + (f" ({v.path})" if v.path else ""))
            err.print(f"    {v.message}")
            if v.shape:
                err.print(f"    shape: {v.shape}", style="dim")
        raise typer.Exit(1)
    err.print(f"[bold red]error[/]: {exc.message}", markup=True, highlight=False)
    raise typer.Exit(2)


def _expand(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(p for p in sorted(path.rglob("*")) if p.suffix.lower() in knowledge.FORMATS)
        else:
            files.append(path)
    return files


@app.command()
def serve(
    store: StoreOption = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind [env WAYFINDER_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env WAYFINDER_PORT]")] = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Load the demo catalog, policies and users into the store")
    ] = False,
    workers: Annotated[
        int, typer.Option(help="Service processes; more than one needs a shared store (--store http://...)")
    ] = 1,
) -> None:
    """Run the service (GraphQL at /graphql)."""
    import uvicorn

    from service.api.app import create_app
    from service.demo import load_demo

    overrides: dict[str, Any] = {k: v for k, v in {"store": store, "host": host, "port": port}.items() if v is not None}
    settings = Settings(**overrides)
    try:
        keys = parse_keys(settings.api_keys, settings.api_keys_file)
        if not keys.enabled and not is_loopback(settings.host):
            raise Forbidden(
                f"no API keys are configured, so the service listens on loopback only, not {settings.host}: "
                "set WAYFINDER_API_KEYS (see README, Running in production)"
            )
    except WayfinderError as exc:
        _fail(exc)
    configure_logging(settings.log_format)
    configure_tracing(settings.otel_exporter)
    runtime = _runtime_from(settings)
    if workers < 1:
        _fail(InvalidInput("--workers", "must be at least 1"))
    try:
        runtime.ensure_ontology()
        if demo:
            added = load_demo(runtime)
            out.print(f"demo loaded: {added['users']} users, {added['events']} events added")
    except WayfinderError as exc:
        _fail(exc)
    out.print(f"Wayfinder on http://{settings.host}:{settings.port}/graphql (GraphiQL there in a browser)")
    if workers == 1:
        uvicorn.run(
            create_app(runtime),
            host=settings.host,
            port=settings.port,
            log_level="info",
            access_log=settings.access_log,
        )
        return
    if not settings.store.startswith(("http://", "https://")):
        _fail(
            InvalidInput(
                "--workers",
                "several processes need a shared store: --store http://HOST:PORT "
                "(an `oxigraph serve` process); an embedded store opens in one process only",
            )
        )
    runtime.close()
    os.environ.update(
        {"WAYFINDER_STORE": settings.store, "WAYFINDER_HOST": settings.host, "WAYFINDER_PORT": str(settings.port)}
    )
    uvicorn.run(
        "service.api.asgi:create",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_level="info",
        access_log=settings.access_log,
    )


@app.command()
def load(
    files: Annotated[
        list[Path], typer.Argument(help="Turtle, N-Triples, JSON-LD or RDF/XML files, or folders of them")
    ],
    store: StoreOption = None,
    graph: Annotated[str | None, typer.Option(help="Target graph: ontology, catalog/NAME or policies/NAME")] = None,
    by: Annotated[str, typer.Option("--by", help="Who loads (recorded with each catalog and policy version)")] = (
        knowledge.LOCAL_OPERATOR
    ),
) -> None:
    """Validate (SHACL) and load files into the store; an invalid load stores nothing.

    Each catalog or policy graph whose content changes gets a new version; the one it replaces stays
    restorable with `wayfinder rollback`."""
    runtime = _runtime(store)
    try:
        runtime.ensure_ontology()
        report = knowledge.load_files(
            _expand(files), store=runtime.store, validator=runtime.validator, graph=graph, by=_acting(by)
        )
    except WayfinderError as exc:
        _fail(exc)
    runtime.store.flush()
    for name, count in report.graphs.items():
        out.print(f"loaded {count} triples into <{name}>")
    out.print(f"{report.entailed} entailed triples (OWL 2 RL)")


@app.command()
def validate(
    files: Annotated[list[Path] | None, typer.Argument(help="Files or folders to check; none: the whole store")] = None,
    store: StoreOption = None,
) -> None:
    """Check ontology, catalog and shapes files, or the whole store; exit 1 on violations."""
    runtime = _runtime(store) if not files else Runtime(settings=Settings(store=":memory:"))
    try:
        validator = runtime.validator
        if files:
            replacing: dict = {}
            paths = _expand(files)
            for path in paths:
                triples = knowledge.read_rdf(path)
                replacing.setdefault(knowledge.graph_for(path, triples), []).extend(triples)
            if knowledge.graph_named("ontology") not in replacing:
                replacing[knowledge.graph_named("ontology")] = knowledge.read_rdf(runtime.ontology_file)
            _, violations = knowledge.check(runtime.store, validator, replacing)
            checked = f"{len(paths)} file(s)"
        else:
            violations = knowledge.check_store(runtime.store, validator)
            checked = f"the store at {runtime.settings.store}"
        if violations:
            raise RefusedWrite(violations)
    except WayfinderError as exc:
        _fail(exc)
    out.print(
        f"[green]valid[/]: {checked} conform to {len(list(runtime.settings.shapes_dir.glob('*.ttl')))} shapes files"
    )


@app.command()
def query(
    query_or_file: Annotated[str, typer.Argument(help="A SPARQL query, or a .rq file")],
    store: StoreOption = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table, csv or json")] = "table",
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help='Bind a variable: NAME=IRI or NAME="literal"')
    ] = None,
) -> None:
    """Run a SPARQL query against the store and print the result."""
    text = Path(query_or_file).read_text() if query_or_file.endswith(".rq") else query_or_file
    _run_and_print(_runtime(store), text, param=param, format=format)


def _run_and_print(
    runtime: Runtime, text: str, *, param: list[str] | None, format: str, store: GraphStore | None = None
) -> None:
    """Bind and run a query on the runtime's store (or ``store``) and print its answer."""
    try:
        bindings = dict(_parse_param(p) for p in param or [])
        query = text if isinstance(text, Query) else Query(text)
        if not query.parameters:  # a query that declares none takes what it is given, as IRIs or literals
            query = Query(text, parameters={name: Parameter(name, "ANY") for name in bindings})
        try:
            bound = query.bind(**bindings)
        except (ValueError, TypeError) as exc:
            raise InvalidInput("--param", str(exc)) from None
        result = (store or runtime.store).query(bound)
    except WayfinderError as exc:
        _fail(exc)
    except (OSError, RuntimeError) as exc:  # pyoxigraph's evaluation errors
        err.print(f"[bold red]error[/]: {exc}")
        raise typer.Exit(2) from None
    if isinstance(result, ox.QueryBoolean):
        out.print("true" if bool(result) else "false")
        return
    if isinstance(result, ox.QueryTriples):
        sys.stdout.write((ox.serialize(list(result), format=ox.RdfFormat.TURTLE) or b"").decode())
        return
    names = [v.value for v in result.variables]
    rows = [[_show(s[n]) for n in names] for s in result]
    if format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(names)
        writer.writerows(rows)
    elif format == "json":
        sys.stdout.write(json.dumps([dict(zip(names, r, strict=True)) for r in rows], indent=2) + "\n")
    else:
        table = Table(*names)
        for r in rows:
            table.add_row(*(v or "" for v in r))
        out.print(table)
        out.print(f"{len(rows)} row(s)", style="dim")


@app.command()
def backup(
    destination: Annotated[Path, typer.Argument(help="A folder that does not exist yet")],
    store: StoreOption = None,
) -> None:
    """Copy the embedded store, consistently, to a new folder, with its audit anchors and analytics log beside it
    (restore: serve with --store DESTINATION)."""
    runtime = _runtime(store)
    if runtime.store.location is None:
        _fail(
            InvalidInput(
                "--store",
                "back up an embedded store folder; a shared store is backed up on its server with `oxigraph backup`",
            )
        )
    if destination.exists():
        _fail(InvalidInput("destination", f"{destination} exists already; name a new folder"))
    # In this order: an anchor names a record that the store holds when it is copied, or that a seal moved
    # meanwhile into a segment, which is copied after the store.
    anchors = runtime.trail.anchor_file
    if anchors is not None and anchors.exists():
        shutil.copy(anchors, destination.with_name(destination.name + ".anchors.jsonl"))
    runtime.store.backup(destination)
    segments = 0
    if runtime.sealed is not None:
        segments = runtime.sealed.copy_to(destination.with_name(destination.name + ".sealed"))
    from service.analytics import feed

    feed.log(runtime).backup(destination.with_name(destination.name + ".analytics.duckdb"))  # caught up first
    out.print(
        f"backed up {len(runtime.store)} quads, {segments} sealed audit segments and the analytics log to {destination}"
    )


analytics_app = typer.Typer(help="The analytics log (events, exposures, consents) that KPIs and experiments read.")
app.add_typer(analytics_app, name="analytics")


@analytics_app.command("export")
def analytics_export(
    folder: Annotated[Path, typer.Argument(help="A folder that does not exist yet")],
    store: StoreOption = None,
) -> None:
    """Write the analytics log, complete and consistent, as Parquet files (one per table, with a manifest): what
    Spark or a warehouse reads, and `experiment results --export` analyses."""
    from service.analytics import feed

    runtime = _runtime(store)
    try:
        counts = feed.for_analysis(runtime).export_parquet(folder)
    except WayfinderError as exc:
        _fail(exc)
    finally:
        runtime.close()
    rows = ", ".join(f"{n} {table}" for table, n in counts.items())
    out.print(f"exported the analytics log to {folder}: {rows}", highlight=False)


@app.command()
def migrate(store: StoreOption = None) -> None:
    """Upgrade a store written by an earlier release to this release's layout, in place (back it up first)."""
    from service.knowledge import migrations

    runtime = _runtime(store)
    try:
        steps = migrations.migrate(runtime.store, migrations.Context(runtime.ontology_file, runtime.validator))
    except WayfinderError as exc:
        _fail(exc)
    runtime.store.flush()
    for line in steps:
        out.print(line, highlight=False)
    out.print(
        f"the store is at layout {migrations.LAYOUT}{'' if steps else ' already: nothing to do'}", highlight=False
    )


@app.command("app-token")
def app_token(
    user_id: Annotated[str, typer.Argument(help="The user the token acts for")],
    app_name: Annotated[str, typer.Option("--app", help="Principal of an `app` key in WAYFINDER_API_KEYS(_FILE)")],
    ttl: Annotated[int, typer.Option(help="Seconds until it expires")] = 900,
) -> None:
    """Print a per-user app token, signed as a product's backend signs it (for trying app credentials)."""
    from service.decisions.subjects import check_id
    from service.identity.app_tokens import mint

    settings = Settings()
    try:
        check_id(user_id, "USER_ID")
        signing = parse_keys(settings.api_keys, settings.api_keys_file).signing_keys(app_name)
        if not signing:
            raise InvalidInput("--app", f"no key of role app with principal {app_name!r} is configured")
        if not 0 < ttl <= settings.app_token_max_ttl_s:
            raise InvalidInput("--ttl", f"must be between 1 and {settings.app_token_max_ttl_s:g} s")
    except WayfinderError as exc:
        _fail(exc)
    out.print(mint(user_id, signing[-1].secret, app=app_name, ttl_s=ttl), highlight=False)


@app.command()
def train(
    store: StoreOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the split and of the model's initialisation")] = 0,
    epochs: Annotated[int | None, typer.Option(help="Epochs per ensemble member [default: 300]")] = None,
    members: Annotated[int | None, typer.Option(help="Ensemble members [default: 5]")] = None,
    requested_by: Annotated[str | None, typer.Option("--requested-by", help="Who asked for the run (recorded)")] = None,
    processes: Annotated[
        int, typer.Option(help="Processes that train data-parallel (torch.distributed, gloo), each on a share of users")
    ] = 1,
) -> None:
    """Train on the store's consented data, evaluate on held-out users, register a candidate; print its version."""
    from service.models import training

    runtime = _runtime(store)
    try:
        version = training.train(
            runtime,
            seed=seed,
            epochs=epochs,
            members=members,
            requested_by=requested_by or os.environ.get("USER"),
            progress=sys.stderr.isatty(),
            processes=processes,
        )
    except WayfinderError as exc:
        _fail(exc)
    err.print(f"trained on {version.training_users} users; held-out metrics {json.dumps(version.metrics)}")
    out.print(version.version)


@app.command()
def world(
    store: StoreOption = None,
    users: Annotated[int, typer.Option(help="Users to generate, with histories and consent records")] = 3000,
    seed: Annotated[int, typer.Option(help="Seed of the world")] = 7,
) -> None:
    """Generate a synthetic onboarding world into a new embedded store: catalog, policy, users with histories.

    For trying training, promotion and model serving: the demo has too few users to train on.
    """
    import tempfile

    from service.synthetic import write_world

    if not 50 <= users <= 200_000:
        _fail(InvalidInput("--users", "must be between 50 and 200000"))
    runtime = _runtime(store)
    if runtime.store.url is not None:
        _fail(InvalidInput("--store", "generate a world into an embedded store folder"))
    runtime.ensure_ontology()
    if runtime.catalog.steps:
        _fail(InvalidInput("--store", "this store has a catalog already; name a new folder"))
    generated = generate_world(seed=seed, n_users=users)
    with tempfile.TemporaryDirectory() as tmp:
        catalog, people = write_world(generated, Path(tmp))
        try:
            runtime.load([catalog, runtime.settings.demo_dir.parent / "world" / "policy.ttl"])
        except WayfinderError as exc:
            _fail(exc)
        runtime.store.bulk_load(people, format=ox.RdfFormat.N_QUADS)
    runtime.store.flush()
    out.print(
        f"{generated.name}: {len(generated.steps)} steps, {len(generated.features)} features, {users} users "
        f"in {runtime.store.location}"
    )


ByOption = Annotated[str, typer.Option("--by", help="Who acts (recorded as the change's principal)")]
APPROVER_ROLES = ("operator", "auditor", "engineer")
RoleOption = Annotated[
    str,
    typer.Option(
        "--role",
        help="The role the approver acts in, recorded with the approval: operator, auditor or engineer (a change "
        "to who sees high-impact steps needs approvals of two roles)",
    ),
]


def _approver_role(role: str) -> str:
    if role not in APPROVER_ROLES:
        out.print(f"--role: one of {', '.join(APPROVER_ROLES)}, not {role!r}", highlight=False)
        raise typer.Exit(2)
    return role


def _acting(by: str) -> str:
    """The name a change records as who made it; the CLI runs without API keys, so the operator names it."""
    if not by.strip():
        _fail(InvalidInput("--by", "name who acts"))
    return by.strip()


rollback_app = typer.Typer(
    help="Operators: restore an earlier version of a catalog or policy graph, through the same validation as a load.",
    no_args_is_help=True,
)
app.add_typer(rollback_app, name="rollback")
VersionArgument = Annotated[
    int | None, typer.Argument(help="The version number to restore (see `wayfinder versions`); default: the previous")
]


def _rollback(kind: str, name: str, number: int | None, by: str, store: str | None) -> None:
    runtime = _runtime(store)
    try:
        restored = knowledge.rollback(
            f"{kind}/{name}", number, store=runtime.store, validator=runtime.validator, by=_acting(by)
        )
    except WayfinderError as exc:
        _fail(exc)
    runtime.store.flush()
    now_at = history.current(runtime.store)[restored.graph]
    out.print(f"{restored.name}: restored version {restored.number} as version {now_at.rsplit('/', 1)[-1]}")


@rollback_app.command("catalog")
def rollback_catalog(
    name: Annotated[str, typer.Argument(help="The catalog graph's name, e.g. demo")],
    version: VersionArgument = None,
    by: ByOption = knowledge.LOCAL_OPERATOR,
    store: StoreOption = None,
) -> None:
    """Restore a catalog graph's earlier version."""
    _rollback("catalog", name, version, by, store)


@rollback_app.command("policy")
def rollback_policy(
    name: Annotated[str, typer.Argument(help="The policy graph's name (its file's stem), e.g. default")],
    version: VersionArgument = None,
    by: ByOption = knowledge.LOCAL_OPERATOR,
    store: StoreOption = None,
) -> None:
    """Restore a policy graph's earlier version; approvals count again for the content they judged."""
    _rollback("policies", name, version, by, store)


@app.command()
def versions(
    name: Annotated[str | None, typer.Argument(help="One graph, e.g. catalog/demo or policies/default")] = None,
    store: StoreOption = None,
) -> None:
    """List the recorded versions of the catalog and policy graphs: who loaded each, when, and its content hash."""
    runtime = _runtime(store)
    try:
        graph = knowledge.graph_named(name) if name else None
    except WayfinderError as exc:
        _fail(exc)
    current = history.current(runtime.store)
    table = Table("graph", "version", "loaded by", "loaded at", "content hash", "restores", "current")
    for v in history.versions(runtime.store, graph):
        restores = v.restores.rsplit("/", 1)[-1] if v.restores else "-"
        at = v.loaded_at.isoformat() if v.loaded_at else "-"
        mark = "yes" if current.get(v.graph) == v.iri else ""
        table.add_row(v.name, str(v.number), v.loaded_by, at, v.content_hash[:12], restores, mark)
    Console(width=max(out.width, 120)).print(table)


model_app = typer.Typer(
    help="Operators: the model registry. Only an approved (promoted) version serves.", no_args_is_help=True
)
app.add_typer(model_app, name="model")


policy_app = typer.Typer(
    help="Operators: policy versions and their approvals. With API keys a version serves once approved.",
    no_args_is_help=True,
)
app.add_typer(policy_app, name="policy")


@policy_app.command("list")
def policy_list(store: StoreOption = None) -> None:
    """List the policy versions: as they serve (with API keys configured), as declared, and their approvals."""
    from service.governance import approvals
    from service.knowledge.policies import read_policies

    runtime = _runtime(store)
    declared = read_policies(runtime.store, runtime.queries)
    table = Table("version", "serves as", "declared", "approved by (content as it is)", "content hash")
    for iri, version in sorted(runtime.knowledge.policies.items(), key=lambda item: item[1].label):
        current = [a for a in approvals.of(runtime, iri) if a.content == version.content_hash]
        verdicts = ", ".join(f"{a.by} ({a.verdict})" for a in current) or "-"
        table.add_row(version.label, version.status, declared[iri].status, verdicts, (version.content_hash or "-")[:12])
    Console(width=max(out.width, 120)).print(table)


@policy_app.command("evaluate")
def policy_evaluate(
    candidate: Annotated[str, typer.Argument(help="The candidate version's label, e.g. default@1.3.0")],
    control: Annotated[
        str | None, typer.Option(help="A version to compare with; default: the versions that logged the decisions")
    ] = None,
    window_days: Annotated[float, typer.Option(help="Days after a decision a completion counts", min=0.01)] = 7.0,
    max_decisions: Annotated[int, typer.Option(help="The newest logged decisions to read, at most")] = 20_000,
    margin: Annotated[
        float | None, typer.Option(help="Exit 1 unless the difference's lower bound is above -MARGIN")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Estimate a candidate's step uptake offline from an exploring version's logged decisions (SNIPW, DR)."""
    from datetime import timedelta

    from service.governance import evaluation

    runtime = _runtime(store)
    try:
        found = evaluation.evaluate(
            runtime, candidate, control=control, window=timedelta(days=window_days), max_decisions=max_decisions
        )
    except WayfinderError as exc:
        _fail(exc)
    table = Table("policy", "estimator", "uptake", f"{found.difference.level:.0%} interval", "effective n")
    for name, e in (
        (found.candidate, found.candidate_snipw),
        (found.candidate, found.candidate_dr),
        (found.control, found.control_value),
        ("difference", found.difference),
        ("difference", found.difference_snipw),
    ):
        table.add_row(
            name, e.estimator, f"{e.value:.4f}", f"{e.low:.4f} to {e.high:.4f}", f"{e.effective_sample_size:.0f}"
        )
    out.print(f"{found.decisions} logged decisions, {found.rows} shown steps, a {found.window_days:g}-day window")
    Console(width=max(out.width, 100)).print(table)
    if margin is not None:
        verdict = found.not_worse(margin)
        out.print(f"not worse than control by more than {margin}: {'yes' if verdict else 'no'}")
        if not verdict:
            raise typer.Exit(1)


@policy_app.command("approve")
def policy_approve(
    versions: Annotated[list[str], typer.Argument(help="Versions by label, e.g. default@1.2.0")],
    approved_by: Annotated[str, typer.Option("--approved-by", help="Who approves (recorded)")],
    reject: Annotated[bool, typer.Option("--reject", help="Record a rejection instead")] = False,
    role: RoleOption = "operator",
    store: StoreOption = None,
) -> None:
    """Record an approval (or rejection) of policy versions as their content is now."""
    from service.governance import approvals

    role = _approver_role(role)
    runtime = _runtime(store)
    verdict = approvals.REJECTED if reject else approvals.APPROVED
    for label in versions:
        try:
            approvals.approve_policy(runtime, label, by=approved_by, role=role, verdict=verdict)
        except WayfinderError as exc:
            _fail(exc)
        out.print(f"{label}: {verdict} by {approved_by}")


def _print_impact(found) -> None:
    """Print an impact assessment: the verdict, its baseline and counts per high-impact step."""
    verdict = (
        f"high-impact: approvals of two roles, one of them {found.role}" if found.high_impact else "not high-impact"
    )
    out.print(f"{verdict}; against {found.baseline}: {found.summary()}", highlight=False)
    table = Table("high-impact step", "shown now", "shown by it", "gained", "lost", "moved")
    for s in found.steps:
        table.add_row(local_id(s.step), *(str(n) for n in (s.before, s.after, s.gained, s.lost, s.moved)))
    out.print(table)
    out.print(f"impact assessment {found.record}", highlight=False)


@policy_app.command("impact")
def policy_impact(
    version: Annotated[str, typer.Argument(help="A version by label, e.g. default@1.3.0")],
    store: StoreOption = None,
) -> None:
    """Assess (and record) whether a policy version changes who sees the catalog's high-impact steps."""
    from service.governance import impact
    from service.knowledge.policies import read_policies

    runtime = _runtime(store)
    declared = {v.label: v for v in read_policies(runtime.store, runtime.queries).values()}
    if version not in declared:
        _fail(NotFound(f"no policy version {version!r}; the versions are {', '.join(sorted(declared))}"))
    try:
        _print_impact(impact.assess_policy(runtime, declared[version]))
    except WayfinderError as exc:
        _fail(exc)


@model_app.command("list")
def model_list(
    store: StoreOption = None, format: Annotated[str, typer.Option("--format", "-f", help="table or json")] = "table"
) -> None:
    """List the registered versions, oldest first."""
    from dataclasses import asdict

    from service.models import records

    versions = records.versions(_runtime(store))
    if format == "json":
        out.print_json(json.dumps([asdict(v) for v in versions], default=str))
        return
    table = Table("version", "status", "trained", "users", "test AUC", "approved by", "supersedes")
    for v in versions:
        table.add_row(
            v.version,
            v.status,
            v.trained_at.isoformat(timespec="seconds"),
            str(v.training_users),
            str(v.metrics.get("test_auc", "-")),
            v.approved_by or "-",
            v.supersedes or "-",
        )
    Console(width=max(out.width, 140)).print(table)


@model_app.command("promote")
def model_promote(
    version: Annotated[str, typer.Argument(help="A version from `wayfinder model list`")],
    approved_by: Annotated[str, typer.Option("--approved-by", help="Who approved it (recorded)")],
    store: StoreOption = None,
) -> None:
    """Approve a version and make it serve; the active one is retired."""
    from service.models import lifecycle

    try:
        promoted = lifecycle.promote(_runtime(store), version, approved_by=approved_by)
    except WayfinderError as exc:
        _fail(exc)
    out.print(f"{promoted.version} is active (approved by {promoted.approved_by})")


@model_app.command("approve")
def model_approve(
    version: Annotated[str, typer.Argument(help="A version from `wayfinder model list`")],
    approved_by: Annotated[str, typer.Option("--approved-by", help="Who approves it (recorded)")],
    reject: Annotated[bool, typer.Option("--reject", help="Record a rejection instead")] = False,
    role: RoleOption = "operator",
    store: StoreOption = None,
) -> None:
    """Record an approval (or rejection) of a version as it is, without promoting it."""
    from service.governance import approvals
    from service.models import lifecycle

    role = _approver_role(role)
    runtime = _runtime(store)
    verdict = approvals.REJECTED if reject else approvals.APPROVED
    try:
        judged = lifecycle.approve(runtime, version, approved_by=approved_by, role=role, verdict=verdict)
    except WayfinderError as exc:
        _fail(exc)
    current = [a for a in approvals.of(runtime, judged.iri) if a.content == judged.artifact_hash]
    out.print(f"{judged.version}: {verdict} by {approved_by}; {len(current)} verdicts on it as it is")


@model_app.command("impact")
def model_impact(
    version: Annotated[str, typer.Argument(help="A version from `wayfinder model list`")],
    store: StoreOption = None,
) -> None:
    """Assess (and record) whether a model version changes who sees the catalog's high-impact steps."""
    from service.governance import impact
    from service.models import records

    runtime = _runtime(store)
    try:
        _print_impact(impact.assess_model(runtime, records.find(runtime, version)))
    except WayfinderError as exc:
        _fail(exc)


@model_app.command("rollback")
def model_rollback(store: StoreOption = None) -> None:
    """Return to the version the active one superseded."""
    from service.models import lifecycle

    try:
        back = lifecycle.rollback(_runtime(store))
    except WayfinderError as exc:
        _fail(exc)
    out.print(f"{back.version} is active again")


@model_app.command("health")
def model_health(
    version: Annotated[
        str | None, typer.Argument(help="A version from `wayfinder model list`; default: the active one")
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Score the latest decisions with it instead of reading those it served")
    ] = False,
    record: Annotated[bool, typer.Option("--record/--no-record", help="Append the report to the audit trail")] = True,
    by: Annotated[str | None, typer.Option("--by", help="Who asks (recorded with the report)")] = None,
    store: StoreOption = None,
) -> None:
    """Drift of a version's inputs and scores since training, calibration by decile, and the alerts.

    Exits 1 when a figure passes a limit of the governance policy (ontology/policies/governance.ttl).
    """
    from service.models import monitoring

    runtime = _runtime(store)
    try:
        report = monitoring.model_health(runtime, version, offline=offline or None)
        recorded = monitoring.record_health(runtime, report, requested_by=by) if record else None
    except WayfinderError as exc:
        _fail(exc)
    _print_health(report)
    if recorded:
        out.print(f"report: {recorded}")
    if report.breaches:
        raise typer.Exit(1)


def _print_health(report: ModelHealth) -> None:
    """Print a health report: the sample, PSI by subject, calibration by decile, the alerts."""
    limits = report.limits
    out.print(f"model version {report.version} ({report.status}): {report.verdict}")
    if limits.policy is None:
        out.print("limits: no governance policy is loaded, nothing is judged")
    else:
        shift, ece = limits.max_population_shift, limits.max_calibration_error
        out.print(
            f"limits of {local_id(limits.policy)}: PSI {'-' if shift is None else f'{shift:g}'}, "
            f"calibration error {'-' if ece is None else f'{ece:g}'}"
        )
    for note in report.notes:
        out.print(f"note: {note}")
    h = report.health
    if h is None:
        return
    out.print(f"{report.source}: {report.decisions} decisions ({report.left_out} left out), {report.scores} scores")
    table = Table("subject", "PSI", "largest change (training -> now)")
    for s in (*h.features, h.score):
        i = max(range(len(s.bins)), key=lambda k: abs(s.current[k] - s.reference[k]))
        change = f"{local_id(s.bins[i])}: {s.reference[i]:.1%} -> {s.current[i]:.1%}"
        table.add_row(s.feature, f"{s.psi:.3f}", change)
    out.print(table)
    fit = h.calibration
    if fit is not None:
        units = report.calibration_units
        out.print(f"calibration: the first step's model score against activation, {units} decisions, by decile")
        deciles = Table("decile", "decisions", "mean score", "activated")
        for k, b in enumerate(fit.bins, start=1):
            deciles.add_row(str(k), str(b.count), f"{b.mean_prediction:.3f}", f"{b.observed_rate:.1%}")
        out.print(deciles)
        agreement = "-" if fit.rank_agreement is None else f"{fit.rank_agreement:.2f}"
        out.print(f"ECE {fit.ece:.3f}, slope {fit.slope:.3f}, intercept {fit.intercept:.3f}, agreement {agreement}")
    alerts = report.alerts
    out.print("alerts:" if alerts else "alerts: none")
    for alert in alerts:
        out.print(f"  {'BREACH' if alert in report.breaches else 'warning'}: {alert}", highlight=False)


@app.command()
def evaluate(
    users: Annotated[int, typer.Option(help="Users per synthetic world")] = 10_000,
    members: Annotated[int | None, typer.Option(help="Ensemble members [default: 5]")] = None,
    ablations: Annotated[bool, typer.Option(help="Also train the ablations (single member, no aux, no GNN)")] = True,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the results as JSON here")] = None,
) -> None:
    """NDCG@5 against the planted truth on held-out new users of two synthetic worlds, with the baselines."""
    from service.models import evaluation

    command = " ".join(["wayfinder", "evaluate", *sys.argv[2:]])
    results = evaluation.run(users=users, members=members, ablations=ablations, command=command)
    if out_file is not None:
        out_file.write_text(json.dumps(results, indent=2) + "\n")
    out.print(evaluation.table(results), highlight=False)
    for world in results["worlds"]:
        out.print(f"\n[bold]{world['world']['name']}[/]: segment activation lift, top steps per role and industry")
        table = Table("role", "industry", "activation rate", "step", "completers", "activated after", "lift")
        for row in world["segment_lift_table"]:
            for i, step in enumerate(row["top_steps"]):
                table.add_row(
                    local_id(row["role"]) if i == 0 else "",
                    local_id(row["industry"]) if i == 0 else "",
                    f"{row['activation_rate']:.2f}" if i == 0 else "",
                    local_id(step["step"]),
                    str(step["completers"]),
                    f"{step['share']:.2f}",
                    f"{step['lift']:+.2f}",
                )
        out.print(table)


fairness_app = typer.Typer(
    help="Operators and auditors: fairness reports on model and policy versions (the fairness gate).",
    no_args_is_help=True,
)
app.add_typer(fairness_app, name="fairness")


@fairness_app.command("report")
def fairness_report(
    version: Annotated[str, typer.Argument(help="A model version (`wayfinder model list`) or a label, default@1.3.0")],
    channel: Annotated[str, typer.Option(help="The channel ranked for: WEB, MOBILE, IN_APP or EMAIL")] = "WEB",
    limit: Annotated[int, typer.Option(help="How many steps a decision shows")] = 5,
    record: Annotated[bool, typer.Option("--record", help="Store the report in the audit trail, as the gate")] = False,
    store: StoreOption = None,
) -> None:
    """Exposure and activation by protected group under a version, with intervals and the gate's breaches.

    Exit 1 when the version breaches a fairness limit of the governance policy."""
    from service.governance import fairness_gate

    runtime = _runtime(store)
    try:
        judged = fairness_gate.judge(runtime, version, channel=channel, limit=limit)
        if record:
            judged = fairness_gate.record(runtime, judged)
    except WayfinderError as exc:
        _fail(exc)
    g = judged.gates
    out.print(
        f"{judged.kind} {version}, ranked by {judged.ranked_by} on {channel}: {judged.users} users with a FAIRNESS "
        f"consent and a protected group ({g.protected_attribute or 'protected attribute'}), limits of "
        f"{g.policy or 'no governance policy'}"
    )
    found = judged.report
    if found is not None:
        counts = [f"{c.group} {c.users}" + (" (too few to report)" if c.suppressed else "") for c in found.groups]
        out.print(f"groups: {', '.join(counts)}")
        table = Table("metric", "group", "users", "value", f"{found.confidence:.0%} interval", "difference", "ratio")
        for b in (found.activation, *found.exposure):
            d = b.disparity
            for i, gv in enumerate(b.groups):
                first = i == 0
                table.add_row(
                    (b.metric if b.step is None else f"exposure to {b.step}") if first else "",
                    gv.group,
                    str(gv.users),
                    f"{gv.value.value:.3f}",
                    _interval(gv.value),
                    f"{d.difference.value:.3f} ({_interval(d.difference)})" if d and first else "",
                    f"{d.ratio.value:.3f} ({_interval(d.ratio)})" if d and first else "",
                )
        Console(width=max(out.width, 140)).print(table)
    for breach in judged.breaches:
        out.print(f"[bold red]breach[/]: {escape(str(breach))}")
    if judged.record:
        out.print(f"stored as {judged.record}")
    out.print("passed the fairness gate" if judged.passed else "refused by the fairness gate")
    if not judged.passed:
        raise typer.Exit(1)


def _interval(estimate: Any) -> str:
    return f"{estimate.low:.3f} to {estimate.high:.3f}"


audit_app = typer.Typer(
    help="Auditors: lineage of decisions, shipped lineage queries, chain verification.", no_args_is_help=True
)
app.add_typer(audit_app, name="audit")


SealedOption = Annotated[
    bool,
    typer.Option(
        "--sealed",
        help="Answer over the sealed segments too (loaded into a checkpoint of the store, removed afterwards)",
    ),
]
SinceOption = Annotated[
    str | None, typer.Option("--since", help="With --sealed: only segments with decisions at or after this time")
]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="With --sealed: only segments with decisions before this time")
]


def _when(option: str, text: str | None) -> datetime | None:
    from service.clock import parse_datetime

    if text is None:
        return None
    try:
        return parse_datetime(text)
    except ValueError:
        _fail(InvalidInput(option, f"an ISO 8601 date or time with a zone, e.g. 2026-01-31T00:00:00Z, not {text!r}"))
        raise  # unreachable: _fail exits


@contextlib.contextmanager
def _lineage_store(
    runtime: Runtime, sealed: bool, since: str | None, until: str | None, *, record: ox.NamedNode | None = None
) -> Iterator[GraphStore]:
    """The store lineage queries run on: the hot store, or with ``sealed`` an archive of it and its segments (of
    the window; of one ``record``, only that record's, when it is not in the hot store)."""
    from service.audit import sealed as tier

    if not sealed:
        if since is not None or until is not None:
            _fail(InvalidInput("--since" if since is not None else "--until", "chooses segments: give --sealed too"))
        yield runtime.store
        return
    if runtime.store.location is None:
        _fail(InvalidInput("--sealed", "answers over an embedded store's folder and its segments"))
    if record is not None and since is None and until is None:
        with tier.holding(runtime.store, runtime.sealed, record) as holding:
            yield holding
        return
    segments = tier.chosen(runtime.sealed, _when("--since", since), _when("--until", until))
    with tier.archive(runtime.store, segments) as archived:
        yield archived


@audit_app.command("decision")
def audit_decision(
    decision_id: Annotated[str, typer.Argument(help="The decision ID (nextSteps' decisionId)")],
    store: StoreOption = None,
    sealed: SealedOption = False,
    since: SinceOption = None,
    until: UntilOption = None,
) -> None:
    """Print the lineage of one decision: what it used, which versions, what it returned."""
    from service.decisions.decide import UUID_PATTERN
    from service.knowledge import vocab
    from service.knowledge.store import bound

    if not UUID_PATTERN.fullmatch(decision_id):
        _fail(InvalidInput("DECISION_ID", f"a decision ID is a UUID (nextSteps' decisionId), not {decision_id!r}"))
    runtime = _runtime(store)
    record = ox.NamedNode(vocab.DECISION_BASE + decision_id)
    with _lineage_store(runtime, sealed, since, until, record=record) as lineage:
        rows = lineage.select(runtime.queries["lineage/why-decision"].bind(decision=record))
    if not rows:
        hint = "" if sealed else " in the hot store (a sealed one is found with --sealed)"
        err.print(f"[bold red]error[/]: no decision {decision_id!r}{hint}")
        raise typer.Exit(2)
    head = rows[0]

    def value(name: str) -> str:
        term = head[name]
        return "-" if term is None else term.value

    out.print(f"[bold]decision[/] {decision_id}")
    out.print(f"  at            {value('at')}")
    out.print(f"  personalised  {value('personalized')}")
    out.print(
        f"  policy        {value('policyVersion')} (hash {value('policyHash')[:16]}, approved by {value('approvedBy')})"
    )
    out.print(f"  model         {value('modelVersion')}")
    out.print(f"  variant       {value('variant')}")
    for kind, title in (
        ("consent", "consent read"),
        ("profile", "profile facts used"),
        ("event", "events used"),
        ("returned", "returned, in rank order"),
    ):
        items = [r for r in rows if bound(r, "kind").value == kind]
        out.print(f"  [bold]{title}[/] ({len(items)})")
        for r in items:
            extra = (
                f"#{bound(r, 'rank').value} score {float(bound(r, 'score').value):.3f} " if kind == "returned" else ""
            )
            out.print(f"    {extra}{bound(r, 'item').value}  {bound(r, 'detail').value}")


@audit_app.command("query")
def audit_query(
    name: Annotated[str, typer.Argument(help="A query of queries/lineage/, e.g. why-decision")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help='Bind a variable: NAME=IRI or NAME="literal"')
    ] = None,
    store: StoreOption = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table, csv or json")] = "table",
    sealed: SealedOption = False,
    since: SinceOption = None,
    until: UntilOption = None,
) -> None:
    """Run a shipped lineage query with parameters (over the sealed segments too with --sealed)."""
    runtime = _runtime(store)
    key = f"lineage/{name.removesuffix('.rq')}"
    if key not in runtime.queries:
        names = ", ".join(sorted(k.removeprefix("lineage/") for k in runtime.queries if k.startswith("lineage/")))
        err.print(f"[bold red]error[/]: no lineage query {name!r}; shipped: {names}")
        raise typer.Exit(2)
    with _lineage_store(runtime, sealed, since, until) as lineage:
        _run_and_print(runtime, runtime.queries[key], param=param, format=format, store=lineage)


@audit_app.command("seal")
def audit_seal(
    store: StoreOption = None,
    older_than_days: Annotated[
        float | None,
        typer.Option(
            "--older-than-days", help="Seal decisions older than this; default WAYFINDER_AUDIT_SEAL_AFTER_DAYS (90)"
        ),
    ] = None,
) -> None:
    """Move decision records older than an age out of the hot store into immutable, verifiable segments."""
    from service.audit.sealed import seal_trail

    runtime = _runtime(store)
    try:
        report = seal_trail(runtime, after_days=older_than_days)
    except WayfinderError as exc:
        _fail(exc)
        raise  # unreachable: _fail exits
    folder = runtime.sealed.folder if runtime.sealed is not None else None
    for segment in report.segments:
        out.print(
            f"sealed {segment.name}: records {segment.first} to {segment.last} of chain {segment.chain} "
            f"({segment.decisions} decisions, {segment.bytes:,} bytes)",
            highlight=False,
        )
    out.print(
        f"{len(report.segments)} segments, {report.records} records sealed before {report.cutoff.isoformat()}; "
        f"{report.decisions_removed} decision records left the hot store; segments in {folder}",
        highlight=False,
    )


@audit_app.command("archive")
def audit_archive(
    destination: Annotated[Path, typer.Argument(help="A folder that does not exist yet")],
    store: StoreOption = None,
    since: Annotated[str | None, typer.Option("--since", help="Only segments with decisions at or after this")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Only segments with decisions before this")] = None,
) -> None:
    """Build a store that holds the hot store and the sealed decisions (of a time window), for lineage queries:
    `wayfinder audit query --store DESTINATION`, or `oxigraph serve-read-only --location DESTINATION`."""
    from service.audit import sealed as tier

    runtime = _runtime(store)
    if runtime.store.location is None:
        _fail(InvalidInput("--store", "an archive is built from an embedded store's folder"))
    if destination.exists():
        _fail(InvalidInput("destination", f"{destination} exists already; name a new folder"))
    segments = tier.chosen(runtime.sealed, _when("--since", since), _when("--until", until))
    with tier.archive(runtime.store, segments, destination) as archived:
        quads = len(archived)
    out.print(
        f"archived {quads} quads in {destination}: the hot store and {len(segments)} sealed segments "
        f"({sum(s.records for s in segments)} records)",
        highlight=False,
    )


# A full check hashes in worker processes once the chains are this long: starting them costs about a second.
PARALLEL_VERIFY_FROM = 5_000
MAX_VERIFY_WORKERS = 4


@audit_app.command("verify")
def audit_verify(
    store: StoreOption = None,
    since_anchor: Annotated[
        bool,
        typer.Option(
            "--since-anchor",
            help="Check only what was appended since each chain's last external anchor (seconds, however long the "
            "chains), that the anchored record is unchanged, and that every anchor names its record; the full check "
            "re-hashes everything",
        ),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Processes that read back and hash the records of the full check (embedded store). Default: one per "
            f"core (at most {MAX_VERIFY_WORKERS}) once the anchors show {PARALLEL_VERIFY_FROM:,} records, else 1",
        ),
    ] = None,
) -> None:
    """Check the whole audit chain; exit 1 naming the first broken record, 2 when the anchors are unreadable or missing."""
    from rich.markup import escape

    from service.audit.chain import verify, verify_since_anchors
    from service.errors import BrokenAnchors

    runtime = _runtime(store)
    try:
        anchors = runtime.trail.anchors()
        if since_anchor:
            result = verify_since_anchors(runtime.store, runtime.queries["audit-head"], anchors, sealed=runtime.sealed)
        else:
            if workers is None:
                anchored: dict[str, int] = {}  # each chain's last anchored sequence: how long it is, at least
                for anchor in anchors:
                    chain = anchor.get("chain", "main")
                    anchored[chain] = max(anchored.get(chain, 0), int(anchor["sequence"]))
                long_enough = sum(anchored.values()) >= PARALLEL_VERIFY_FROM
                workers = min(os.cpu_count() or 1, MAX_VERIFY_WORKERS) if long_enough else 1
            result = verify(
                runtime.store, runtime.queries["audit-index"], anchors=anchors, workers=workers, sealed=runtime.sealed
            )
        if result.ok:
            runtime.trail.require_anchors(result.chains, anchors)
    except BrokenAnchors as exc:
        err.print(f"[bold red]error[/]: {escape(exc.message)}", highlight=False)
        raise typer.Exit(2) from None
    finally:
        runtime.close()  # a failed check must not keep the store's folder locked
    if not result.ok:
        err.print(
            f"[bold red]broken[/] at record {result.broken_sequence}: {escape(result.broken_record or '(no record)')}"
        )
        err.print(f"  {escape(result.reason or '')}", highlight=False)
        raise typer.Exit(1)
    if since_anchor:
        heads = ", ".join(f"{chain} at {n}" for chain, n in sorted(result.chains.items()))
        out.print(
            f"[green]intact since the anchors[/]: {result.records} records checked (the anchored ones and those after),"
            f" {result.anchors_checked} external anchors match; heads: {heads or 'none'}"
        )
        return
    out.print(f"[green]intact[/]: {result.records} records chained, {result.anchors_checked} external anchors match")


@audit_app.command("rederive")
def audit_rederive(
    decision_id: Annotated[str, typer.Argument(metavar="DECISION_ID", help="The decision's ID (a UUID)")],
    store: StoreOption = None,
) -> None:
    """Rank a past decision again from its record alone (the catalog and policy versions it used, its inputs and
    model version) and compare with what it returned; exit 1 when they differ."""
    from service.decisions.rederive import rederive

    runtime = _runtime(store)
    try:
        found = rederive(runtime, decision_id)
    except WayfinderError as exc:
        _fail(exc)
    versions = ", ".join(v.removeprefix(KNOWLEDGE_VERSION_BASE) for v in found.knowledge_versions)
    out.print(f"knowledge versions: {versions}")
    out.print(f"returned: {', '.join(local_id(s) for s in found.shown)}")
    out.print(f"derived:  {', '.join(local_id(s) for s in found.derived_shown)}")
    if not found.matches:
        for difference in found.differences:
            err.print(f"[bold red]differs[/]: {difference}", highlight=False)
        raise typer.Exit(1)
    out.print(f"[green]re-derived[/]: the {len(found.recorded)} candidates' scores and the order returned follow")


@app.command()
def purge(
    store: StoreOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what has expired; remove and record nothing")
    ] = False,
) -> None:
    """Remove the records whose retention period has run out and chain a purge record; print counts per rule."""
    from service.audit import retention

    try:
        report = retention.purge(_runtime(store), dry_run=dry_run)
    except WayfinderError as exc:
        _fail(exc)
    table = Table("rule", "period", "cutoff", "kind", "records")
    for outcome in report.rules:
        kinds = outcome.removed or {"-": 0}
        for i, (kind, count) in enumerate(sorted(kinds.items())):
            table.add_row(
                local_id(outcome.rule) if i == 0 else "",
                outcome.period if i == 0 else "",
                outcome.cutoff.isoformat(timespec="seconds") if i == 0 else "",
                local_id(kind),
                str(count),
            )
    Console(width=max(out.width, 120)).print(table)
    if dry_run:
        out.print(f"dry run: {report.records_removed} records would be removed; nothing was changed")
    elif report.purge_id is None:
        out.print("nothing expired; no purge recorded")
    else:
        out.print(
            f"purged {report.records_removed} records ({report.triples_removed} triples); "
            f"purge record {report.purge_id}"
        )
    if report.receipts_removed:
        out.print(
            f"{report.receipts_removed} write receipts past their idempotency window "
            f"{'would be ' if dry_run else ''}removed"
        )


user_app = typer.Typer(help="Data subjects' rights: access to and export of one user's data.", no_args_is_help=True)
app.add_typer(user_app, name="user")


@user_app.command("export")
def user_export(
    user_id: Annotated[str, typer.Argument(help="The user's ID")],
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the JSON-LD here instead of stdout")] = None,
    store: StoreOption = None,
) -> None:
    """Everything held about one user (profile, events, consent history, decisions) as one JSON-LD document."""
    from service.audit.portability import export_user

    try:
        document = export_user(_runtime(store), user_id)
    except WayfinderError as exc:
        _fail(exc)
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if out_file is None:
        sys.stdout.write(text)
        return
    out_file.write_text(text)
    err.print(f"wrote {out_file}")


delivery_app = typer.Typer(
    help="Operators: the outbox of e-mail and push messages (the worker that sends them, the dead-letter list).",
    no_args_is_help=True,
)
app.add_typer(delivery_app, name="delivery")


@delivery_app.command("run")
def delivery_run(
    once: Annotated[bool, typer.Option("--once", help="Send what is due now, then exit")] = False,
    store: StoreOption = None,
) -> None:
    """Send due messages to the senders (WAYFINDER_SENDERS), every delivery_interval_s, until stopped."""
    import time

    from service.delivery import worker

    runtime = _runtime(store)
    if not runtime.settings.senders:
        _fail(InvalidInput("WAYFINDER_SENDERS", "no sender webhook is configured, so there is nowhere to deliver"))
    interval = runtime.settings.delivery_interval_s or 1.0
    with worker.client_for(runtime) as client:
        while True:
            for outcome in worker.deliver_due(runtime, client):
                out.print(f"{outcome.delivery_id}  {outcome.state}  attempt {outcome.attempts}  {outcome.error or ''}")
            if once:
                return
            time.sleep(interval)


@delivery_app.command("list")
def delivery_list(
    state: Annotated[
        str | None, typer.Option(help="PENDING, DELIVERED, DEAD_LETTERED (the dead-letter list) or CANCELLED")
    ] = None,
    first: Annotated[int, typer.Option(help="How many, newest first")] = 50,
    store: StoreOption = None,
) -> None:
    """List outbox messages: state, attempts, channel, decision and the last error."""
    from service.delivery import outbox

    runtime = _runtime(store)
    try:
        found = outbox.messages(runtime.store, state=state, first=first)
    except WayfinderError as exc:
        _fail(exc)
    table = Table("delivery", "state", "attempts", "channel", "decision", "created", "last error")
    for m in found:
        table.add_row(
            m.id,
            m.state,
            str(m.attempts),
            local_id(m.channel),
            m.decision_id,
            m.created_at.isoformat(),
            m.last_error or "",
        )
    out.print(table)


@delivery_app.command("requeue")
def delivery_requeue(
    delivery_id: Annotated[str, typer.Argument(metavar="ID", help="A dead-lettered message's ID")],
    store: StoreOption = None,
) -> None:
    """Send a dead-lettered message again: pending, due now, its attempts counted from zero."""
    from service.delivery import worker

    try:
        message = worker.requeue(_runtime(store), delivery_id)
    except WayfinderError as exc:
        _fail(exc)
    out.print(f"{message.id} requeued: {message.state}")


experiment_app = typer.Typer(
    help="Operators: experiments comparing policy versions (create, approve, start, ramp, reweight, stop, results).",
    no_args_is_help=True,
)
app.add_typer(experiment_app, name="experiment")


def _percent(share: float | None) -> str:
    return "-" if share is None or not math.isfinite(share) else f"{share:+.1%}"


def _number(number: float | None) -> str:
    return "-" if number is None or not math.isfinite(number) else f"{number:.4g}"


def _arms_text(experiment: Experiment) -> str:
    return "\n".join(f"{a.name}={a.policy_version} {a.weight:.3g} {a.status}" for a in experiment.arms)


def _describe(experiment: Experiment) -> str:
    arms = ", ".join(
        f"{a.name}={a.policy_version} {a.weight:.3g}{'' if a.status == 'active' else ' ' + a.status}"
        for a in experiment.arms
    )
    return f"{experiment.id} is {experiment.status} (coverage {experiment.coverage:g}; arms {arms})"


_SPEC_KEYS = {
    "id": str,
    "arms": list,
    "guardrails": list,
    "coverage": float,
    "holdout": float,
    "offlineMargin": float,
}
_ARM_KEYS = {"name": str, "policyVersion": str, "weight": float}
_GUARDRAIL_KEYS = {"kpi": str, "maxRelativeDrop": float, "detectableDrop": float}
_KINDS: dict[type, str] = {str: "a string", list: "a list"}
_REQUIRED = {"id", "arms", "name", "policyVersion", "weight", "kpi", "maxRelativeDrop"}


def _fields(data: object, where: str, keys: dict[str, type]) -> dict[str, Any]:
    """The object's fields, checked against ``keys`` (name -> type); raise InvalidInput naming the first bad one."""
    if not isinstance(data, dict):
        raise InvalidInput(where, f"an object, got {type(data).__name__}")
    for key in data:
        if key not in keys:
            raise InvalidInput(f"{where}.{key}", f"unknown field; expected {', '.join(keys)}")
    found: dict[str, Any] = {}
    for key, kind in keys.items():
        if key not in data:
            if key in _REQUIRED:
                raise InvalidInput(f"{where}.{key}", "missing")
            continue
        item = data[key]
        if kind is float:
            ok = isinstance(item, int | float) and not isinstance(item, bool)
            expected = "a number"
        else:
            ok = isinstance(item, kind)
            expected = _KINDS[kind]
        if not ok:
            raise InvalidInput(f"{where}.{key}", f"{expected}, got {json.dumps(item)}")
        found[key] = float(item) if kind is float else item
    return found


def _spec_of_file(path: Path) -> ExperimentSpec:
    """The ExperimentSpec a JSON file describes, in ExperimentInput's shape (GraphQL)."""
    from service.experiments.registry import ArmSpec, ExperimentSpec, Guardrail

    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidInput("FILE", f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SyntaxProblem(str(path), f"not JSON: {exc.msg}", line=exc.lineno, column=exc.colno) from None
    spec = _fields(data, "input", _SPEC_KEYS)
    arms = [_fields(a, f"input.arms[{i}]", _ARM_KEYS) for i, a in enumerate(spec["arms"])]
    guardrails = [
        _fields(g, f"input.guardrails[{i}]", _GUARDRAIL_KEYS) for i, g in enumerate(spec.get("guardrails", []))
    ]
    return ExperimentSpec(
        id=spec["id"],
        arms=[ArmSpec(a["name"], a["policyVersion"], a["weight"]) for a in arms],
        guardrails=[
            Guardrail(
                g["kpi"],
                g["maxRelativeDrop"],
                **({"detectable_drop": g["detectableDrop"]} if "detectableDrop" in g else {}),
            )
            for g in guardrails
        ],
        coverage=spec.get("coverage", 1.0),
        holdout=spec.get("holdout", 0.0),
        offline_margin=spec.get("offlineMargin"),
    )


@experiment_app.command("list")
def experiment_list(store: StoreOption = None) -> None:
    """List the experiments by ID: status, coverage, arms (the first is the control), guardrails."""
    from service.experiments import registry

    found = registry.experiments(_runtime(store))
    table = Table(
        "id", "status", "coverage", "arms (name=policy weight status)", "guardrails", "created by", "approved by"
    )
    for e in found:
        table.add_row(
            e.id,
            e.status,
            f"{e.coverage:g}",
            _arms_text(e),
            "\n".join(
                f"{g.kpi} max drop {g.max_relative_drop:g}, detectable {g.detectable_drop:g}" for g in e.guardrails
            )
            or "-",
            escape(e.created_by or "-"),
            escape(e.approved_by or "-"),
        )
    Console(width=max(out.width, 160)).print(table)
    out.print(f"{len(found)} experiment(s)", style="dim")


@experiment_app.command("create")
def experiment_create(
    file: Annotated[
        Path,
        typer.Argument(
            help='JSON as GraphQL\'s ExperimentInput: {"id", "arms": [{"name", "policyVersion", "weight"}], '
            '"guardrails": [{"kpi", "maxRelativeDrop", "detectableDrop"}], "coverage"}; the first arm is the control'
        ),
    ],
    by: ByOption,
    store: StoreOption = None,
) -> None:
    """Record a draft experiment from a JSON file."""
    from service.experiments import registry

    who = _acting(by)
    try:
        spec = _spec_of_file(file)
        created = registry.create(_runtime(store), spec, by=who)
    except WayfinderError as exc:
        _fail(exc)
    out.print(_describe(created), highlight=False)


ExperimentId = Annotated[str, typer.Argument(metavar="ID", help="An ID from `wayfinder experiment list`")]


def _change_experiment(store: str | None, by: str, change: Callable[[Runtime, str], Experiment]) -> Experiment:
    """Apply one change to an experiment as ``by``; a refusal ends the command with its message."""
    who = _acting(by)
    try:
        return change(_runtime(store), who)
    except WayfinderError as exc:
        _fail(exc)
        raise  # unreachable: _fail exits


@experiment_app.command("approve")
def experiment_approve(
    experiment_id: ExperimentId, by: ByOption, role: RoleOption = "operator", store: StoreOption = None
) -> None:
    """Approve a draft; four eyes: whoever created it may not approve it."""
    from service.experiments import registry

    role = _approver_role(role)
    approved = _change_experiment(
        store, by, lambda runtime, who: registry.approve(runtime, experiment_id, by=who, four_eyes=True, role=role)
    )
    out.print(f"{approved.id} approved by {escape(approved.approved_by or '')}", highlight=False)


@experiment_app.command("start")
def experiment_start(experiment_id: ExperimentId, by: ByOption, store: StoreOption = None) -> None:
    """Start assigning users. The CLI acts on the store directly, as the service does without API keys
    (development mode), so no approval is required; approve first to have one on record."""
    from service.experiments import registry

    started = _change_experiment(
        store, by, lambda runtime, who: registry.start(runtime, experiment_id, by=who, needs_approval=False)
    )
    out.print(_describe(started), highlight=False)


@experiment_app.command("ramp")
def experiment_ramp(
    experiment_id: ExperimentId,
    coverage: Annotated[float, typer.Argument(help="The share of users it takes in, in (0, 1]")],
    by: ByOption,
    store: StoreOption = None,
) -> None:
    """Change the share of users it takes in; widening a guarded one needs evidence able to detect its harms."""
    from service.experiments import ramps

    ramped = _change_experiment(store, by, lambda runtime, who: ramps.ramp(runtime, experiment_id, coverage, by=who))
    out.print(_describe(ramped), highlight=False)


@experiment_app.command("reweight")
def experiment_reweight(
    experiment_id: ExperimentId,
    weights: Annotated[list[float], typer.Argument(help="One positive weight per arm, in arm order (normalised)")],
    by: ByOption,
    store: StoreOption = None,
) -> None:
    """Change the arms' weights; users already assigned keep their arm."""
    from service.experiments import registry

    after = _change_experiment(
        store, by, lambda runtime, who: registry.reweight(runtime, experiment_id, weights, by=who)
    )
    out.print(_describe(after), highlight=False)


@experiment_app.command("stop")
def experiment_stop(experiment_id: ExperimentId, by: ByOption, store: StoreOption = None) -> None:
    """Stop assigning: every user is served by the policy's active version again."""
    from service.experiments import registry

    stopped = _change_experiment(store, by, lambda runtime, who: registry.stop(runtime, experiment_id, by=who))
    out.print(_describe(stopped), highlight=False)


@experiment_app.command("results")
def experiment_results(
    experiment_id: Annotated[str, typer.Argument(metavar="ID", help="An ID from `wayfinder experiment list`")],
    store: StoreOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the analysis snapshot (moments, method, verdicts) as JSON")
    ] = False,
    export: Annotated[
        Path | None,
        typer.Option(
            "--export",
            help="Analyse this export of the analytics log (`wayfinder analytics export`) instead of the service's "
            "own log, on DuckDB or, with --spark-master, on Spark",
        ),
    ] = None,
    spark_master: Annotated[
        str | None,
        typer.Option(
            "--spark-master",
            help="Run the KPI SQL on Spark with this master (local[2], spark://host:7077); needs --export",
        ),
    ] = None,
) -> None:
    """Analyse the experiment now: per KPI and arm its level and lift with always-valid intervals, SRM, guardrails."""
    from service.experiments.analysis import ALPHA, CORRECTION, analyse

    if spark_master is not None and export is None:
        err.print("[bold red]error[/]: --spark-master: needs --export, the Parquet files Spark reads")
        raise typer.Exit(2)
    try:
        with _analytics_reader(export, spark_master) as reading:
            analysis = analyse(_runtime(store), experiment_id, elog=reading)
    except WayfinderError as exc:
        _fail(exc)
    if as_json:
        sys.stdout.write(json.dumps(analysis.snapshot(), indent=2) + "\n")
        return
    experiment = analysis.experiment
    wide = Console(width=max(out.width, 140))
    out.print(
        f"[bold]{experiment.id}[/] ({experiment.status}) at {analysis.at.isoformat(timespec='seconds')}; "
        f"control: {experiment.control.name}",
        highlight=False,
    )
    out.print(
        f"{1 - ALPHA:.0%} intervals; lifts relative to control, with always-valid confidence sequences; "
        f"p always valid, {CORRECTION}-adjusted over the KPIs no guardrail watches",
        style="dim",
        highlight=False,
    )
    users = {a.name: a.users for a in analysis.arms}
    by_kpi: dict[str, list[tuple[str, KpiResult]]] = {}
    for arm in analysis.arms:
        for k in arm.kpis:
            by_kpi.setdefault(k.kpi, []).append((arm.name, k))
    for kpi, rows in by_kpi.items():
        table = Table(
            "arm",
            "users",
            "units",
            escape("estimate [lower, upper]"),
            escape("lift [lower, upper]"),
            "p (adjusted)",
            "decision",
            title=kpi,
            title_justify="left",
        )
        for name, k in rows:
            table.add_row(
                name,
                str(users[name]),
                str(k.units),
                escape(f"{_number(k.estimate)} [{_number(k.lower)}, {_number(k.upper)}]"),
                "-"
                if k.lift is None
                else escape(f"{_percent(k.lift)} [{_percent(k.lift_lower)}, {_percent(k.lift_upper)}]"),
                _number(k.p_value),
                k.decision or "-",
            )
        wide.print(table)
    out.print(f"SRM p-value {_number(analysis.srm_p_value)}", highlight=False)
    if analysis.sample_ratio_mismatch:
        out.print("[bold red]sample ratio mismatch[/]: the arms' exposures do not match their weights")
    if analysis.guardrails:
        table = Table("arm", "kpi", "state", "estimate", "bound", "threshold", title="guardrails", title_justify="left")
        for g in analysis.guardrails:
            table.add_row(
                g.arm,
                g.kpi,
                "[bold red]harm[/]" if g.state == "harm" else g.state,
                _percent(g.estimate),
                _percent(g.bound),
                _percent(g.threshold),
            )
        wide.print(table)
    else:
        out.print("no guardrails")


@contextlib.contextmanager
def _analytics_reader(export: Path | None, spark_master: str | None) -> Iterator[AnalyticsReader | None]:
    """The log an analysis reads: None (the service's own), an export on DuckDB, or an export on Spark."""
    if export is None:
        yield None
        return
    if spark_master is None:
        from service.analytics.log import open_parquet

        with open_parquet(export) as duck:
            yield duck
        return
    try:
        from pyspark.sql import SparkSession

        from service.analytics.spark import SparkLog
    except ImportError:
        err.print("[bold red]error[/]: --spark-master: pyspark is not installed (pip install 'wayfinder[spark]')")
        raise typer.Exit(2) from None
    session = SparkSession.builder.master(spark_master).appName("wayfinder-analytics").getOrCreate()
    try:
        yield SparkLog(session, export)
    finally:
        session.stop()


@experiment_app.command("monitor")
def experiment_monitor(store: StoreOption = None) -> None:
    """Run the guardrail monitor once: analyse each running experiment, roll back arms shown harmful."""
    from service.experiments import monitor

    try:
        checked = monitor.check(_runtime(store))
    except WayfinderError as exc:
        _fail(exc)
    if not checked:
        out.print("no running or stopped experiments")
        return
    table = Table("id", "status", "arms")
    for e in checked:
        table.add_row(e.id, e.status, "\n".join(f"{a.name} {a.status}" for a in e.arms))
    Console(width=max(out.width, 100)).print(table)


flag_app = typer.Typer(
    help="Operators: feature flags that pin which policy version serves which users (list, evaluate, create, "
    "update, on, off).",
    no_args_is_help=True,
)
app.add_typer(flag_app, name="flag")

_FLAG_KEYS = {
    "id": str,
    "policy": str,
    "variants": list,
    "defaultVariant": str,
    "rules": list,
    "prerequisites": list,
    "enabled": bool,
}
_FLAG_REQUIRED = {"id", "policy", "variants", "defaultVariant"}


def _flag_of_file(path: Path) -> Flag:
    """The flag a JSON file describes, in GraphQL's FlagInput shape; InvalidInput names the first bad field."""
    from service.experiments import flags

    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise InvalidInput("FILE", f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise SyntaxProblem(str(path), f"not JSON: {exc.msg}", line=exc.lineno, column=exc.colno) from None
    if not isinstance(data, dict):
        raise InvalidInput("input", f"an object, got {type(data).__name__}")
    for key in data:
        if key not in _FLAG_KEYS:
            raise InvalidInput(f"input.{key}", f"unknown field; expected {', '.join(_FLAG_KEYS)}")
    for key, kind in _FLAG_KEYS.items():
        if key in _FLAG_REQUIRED and key not in data:
            raise InvalidInput(f"input.{key}", "missing")
        if key in data and not isinstance(data[key], kind):
            raise InvalidInput(f"input.{key}", f"expected {kind.__name__}, got {json.dumps(data[key])}")
    try:
        return flags.Flag(
            id=data["id"],
            policy=data["policy"],
            variants=tuple((v["name"], v["policyVersion"]) for v in data["variants"]),
            default_variant=data["defaultVariant"],
            rules=tuple(
                flags.Rule(
                    conditions=tuple(
                        flags.Condition(c["attribute"], tuple(c["values"])) for c in r.get("conditions", [])
                    ),
                    variant=r.get("variant"),
                    split=tuple((x["variant"], float(x["weight"])) for x in r.get("split", [])),
                )
                for r in data.get("rules", [])
            ),
            prerequisites=tuple(flags.Prerequisite(p["flag"], p["variant"]) for p in data.get("prerequisites", [])),
            enabled=data.get("enabled", True),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidInput(
            "input", f"malformed variants, rules or prerequisites ({type(exc).__name__}: {exc})"
        ) from None


def _flag_text(flag: Flag) -> str:
    variants = ", ".join(f"{n}={v}" for n, v in flag.variants)
    state = "on" if flag.enabled else "off (kill switch)"
    return f"{flag.id} v{flag.version} pins {flag.policy}: {state}; default {flag.default_variant}; {variants}"


@flag_app.command("list")
def flag_list(store: StoreOption = None) -> None:
    """List the flags: policy pinned, state, version, variants, rules and prerequisites."""
    from service.experiments import flags

    found = flags.flags(_runtime(store))
    table = Table("id", "policy", "state", "version", "default", "variants", "rules", "prerequisites", "created by")
    for f in found:
        rules = []
        for r in f.rules:
            when = " and ".join(f"{c.attribute} in {','.join(c.values)}" for c in r.conditions) or "everyone"
            then = r.variant or ", ".join(f"{v} {w:.0%}" for v, w in r.split)
            rules.append(f"{when}: {then}")
        table.add_row(
            f.id,
            f.policy,
            "on" if f.enabled else "off",
            str(f.version),
            f.default_variant,
            "\n".join(f"{n}={v}" for n, v in f.variants),
            escape("\n".join(rules) or "-"),
            "\n".join(f"{p.flag}={p.variant}" for p in f.prerequisites) or "-",
            escape(f.created_by),
        )
    Console(width=max(out.width, 140)).print(table)
    out.print(f"{len(found)} flag(s)", style="dim")


@flag_app.command("evaluate")
def flag_evaluate(
    flag_id: Annotated[str, typer.Argument(metavar="ID")],
    user_id: Annotated[str, typer.Argument(metavar="USER")],
    channel: Annotated[str, typer.Option(help="The request's channel: WEB, MOBILE, IN_APP or EMAIL")] = "WEB",
    store: StoreOption = None,
) -> None:
    """Evaluate a flag for a user as nextSteps would now (value, variant, reason, error code); records nothing."""
    from service.decisions import decide

    try:
        result = decide.flag_details(_runtime(store), flag_id, user_id, channel=channel)
    except WayfinderError as exc:
        _fail(exc)
    for name in ("flag", "value", "variant", "reason", "error_code", "flag_version", "bucket", "detail"):
        shown = getattr(result, name)
        out.print(f"  {name:<13} {escape(str(shown)) if shown not in (None, '') else '-'}", highlight=False)


def _save_flag(file: Path, by: str, store: str | None, kind: str) -> None:
    from service.experiments import flags

    who = _acting(by)
    try:
        saved = flags.save(_runtime(store), _flag_of_file(file), by=who, kind=kind)
    except WayfinderError as exc:
        _fail(exc)
    out.print(_flag_text(saved), highlight=False)


FlagFile = Annotated[
    Path,
    typer.Argument(
        help='JSON as GraphQL\'s FlagInput: {"id", "policy", "variants": [{"name", "policyVersion"}], "defaultVariant", '
        '"rules": [{"conditions": [{"attribute", "values"}], "variant" or "split": [{"variant", "weight"}]}], '
        '"prerequisites": [{"flag", "variant"}], "enabled"}'
    ),
]


@flag_app.command("create")
def flag_create(file: FlagFile, by: ByOption, store: StoreOption = None) -> None:
    """Create a flag (version 1) from a JSON file."""
    _save_flag(file, by, store, "create")


@flag_app.command("update")
def flag_update(file: FlagFile, by: ByOption, store: StoreOption = None) -> None:
    """Replace a flag's definition from a JSON file: its next version."""
    _save_flag(file, by, store, "update")


def _switch(flag_id: str, enabled: bool, by: str, store: str | None) -> None:
    from service.experiments import flags

    who = _acting(by)
    try:
        saved = flags.set_enabled(_runtime(store), flag_id, enabled, by=who)
    except WayfinderError as exc:
        _fail(exc)
    out.print(_flag_text(saved), highlight=False)


@flag_app.command("on")
def flag_on(flag_id: Annotated[str, typer.Argument(metavar="ID")], by: ByOption, store: StoreOption = None) -> None:
    """Turn a flag on: its rules apply again."""
    _switch(flag_id, True, by, store)


@flag_app.command("off")
def flag_off(flag_id: Annotated[str, typer.Argument(metavar="ID")], by: ByOption, store: StoreOption = None) -> None:
    """The kill switch: everyone gets the flag's default variant from the next request on."""
    _switch(flag_id, False, by, store)


def _parse_param(text: str) -> tuple[str, ox.NamedNode | ox.Literal]:
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise SyntaxProblem("--param", f"expected NAME=VALUE, got {text!r}")
    if value.startswith('"') and value.endswith('"') and len(value) >= 2:
        return name, ox.Literal(value[1:-1])
    if "://" in value or value.startswith("urn:"):
        return name, ox.NamedNode(value)
    return name, ox.Literal(value)


def _show(term) -> str | None:
    return None if term is None else term.value


if __name__ == "__main__":
    app()
