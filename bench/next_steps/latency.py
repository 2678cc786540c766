"""nextSteps latency and recordEvents throughput, in process and over HTTP (GraphQL).

Against a store built by populate.py (``--store``), or against the demo store
(``--demo``: ``service.demo.load_demo`` into a temporary folder, deleted after).
In order, in one run (the on-disk store is opened by one process at a time, so
the in-process runtime is closed before the server starts, and reopened after):

1. in process: ``service.decisions.decide.next_steps(runtime, user, channel="WEB", limit=5)``
   for random users (seeded), audit write included: p50/p90/p99/max; the same
   with every stage timed (consent, profile, events, candidates SPARQL, ranking,
   audit record) to say where the time goes; the same request through the
   GraphQL schema in process (``schema.execute_sync``: parse, validate, execute,
   no HTTP), and a what-if schema whose validation cache can hit; cProfiles ->
   results/profile-next-steps-LABEL.txt, profile-graphql-next-steps-LABEL.txt;
2. over HTTP: uvicorn in a subprocess over the same store (bench_app.py:
   ``service.api.app.create_app``, logging as ``wayfinder serve``; uvloop,
   httptools, 1 worker, log level warning), driven with httpx: nextSteps over
   1 connection sequentially and over 8 concurrent connections (asyncio), p50/p99
   and requests/s; then recordEvents in batches of 100 and 1,000, events/s;
3. in process again: ``service.decisions.users.record_events`` in batches of 100 and
   1,000 events (5 events per user: 20 and 200 users per batch on the synthetic
   store), events/s with stage times, and its cProfile ->
   results/profile-record-events-LABEL.txt; then one new user (registered
   through the service) whose history grows to 20, 100, 500 and 2,000 events:
   nextSteps latency at each size, and a cProfile at the largest ->
   results/profile-next-steps-long-history-LABEL.txt.

Every measurement stops at its request count or its time budget, whichever
comes first (at least one request). When one decision takes longer than
``--slow-ms`` (the 100k store: tens of seconds), the run switches to slow mode:
a few requests per measurement, stages timed on the main measurement, and the
measurements that cannot finish in the budget (8 connections, batches of 1,000,
GraphQL-only overheads already measured on the demo store, history growth) are
skipped with the reason and the predicted time written down.

``--quick``: the in-process nextSteps measurement only (for the scaling table).

Goals (issue): p99 < 10 ms in process and < 25 ms over HTTP at 100k users,
recordEvents >= 5,000 events/s. The tables say met or missed, and by how much.

    .venv/bin/python -m bench.next_steps.latency --demo
    .venv/bin/python -m bench.next_steps.latency --store /tmp/wf-bench-store
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import pstats
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx

from bench import lib
from service.decisions import decide, users, writes
from service.knowledge import vocab
from service.runtime import Runtime
from service.settings import Settings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = HERE / "results"

GOAL_INPROC_P99_MS = 10.0
GOAL_HTTP_P99_MS = 25.0
GOAL_EVENTS_PER_S = 5000.0

# What a client app asks for (the same selection as tests/graphql_client.py).
NEXT_STEPS = """
query Next($user: ID!, $channel: Channel! = WEB, $limit: Int! = 5) {
  nextSteps(userId: $user, channel: $channel, limit: $limit) {
    decisionId personalized policyVersion modelVersion variant
    steps { rank score reasons step { id title channels requires { id } introduces { id title } } }
  }
}
"""
RECORD_MANY = "mutation Many($inputs: [EventInput!]!) { recordEvents(inputs: $inputs) }"
EVENTS_PER_USER = 5


def _batches(size: int, times: list[float], events: int) -> dict:
    """What a run of write batches came to: counts, throughput and the batch latency."""
    total = sum(times)
    return {
        "batch_size": size,
        "users_per_batch": size // EVENTS_PER_USER,
        "batches": len(times),
        "events": events,
        "seconds": round(total, 3),
        "events_per_s": round(events / total, 1),
        "batch_latency": lib.summary_ms(times),
    }


def log(msg: str) -> None:
    print(msg, flush=True)


def loadavg() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


class Budget:
    """Stop a measurement at ``n`` items or ``seconds``, whichever comes first, after at least ``minimum``."""

    def __init__(self, n: int, seconds: float, minimum: int = 1) -> None:
        self.n, self.seconds, self.minimum = n, seconds, minimum
        self.t0 = time.perf_counter()
        self.done = 0

    def more(self) -> bool:
        if self.done < self.minimum:
            return True
        return self.done < self.n and time.perf_counter() - self.t0 < self.seconds


class GcWatch:
    """Python's cyclic garbage collections during a measurement: how many, and the pauses (ms)."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._t = 0.0

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.pauses[info["generation"]].append(time.perf_counter() - self._t)

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self._callback)

    def result(self) -> dict:
        return {
            f"gen{g}": {
                "collections": len(p),
                "total_ms": round(sum(p) * 1e3, 1),
                "max_ms": round(max(p) * 1e3, 1) if p else 0.0,
            }
            for g, p in self.pauses.items()
        }


# ---------------------------------------------------------------------------
# Users and event batches


def feature_consent(store, uid: str) -> bool:
    """Whether the user's latest consent records allow FEATURE_USED (Personalization or Analytics).

    Read with triple patterns (bench bookkeeping, not timed), independently of the
    service's consent-records query.
    """
    user = vocab.user_iri(uid)
    latest: dict[str, tuple[str, bool]] = {}
    for q in store.quads(predicate=vocab.HAS_DATA_SUBJECT, object=user, graph=vocab.CONSENT_GRAPH):
        fields = {p.predicate.value: p.object for p in store.quads(subject=q.subject, graph=vocab.CONSENT_GRAPH)}
        purpose = fields[vocab.HAS_PURPOSE.value].value
        at = fields[vocab.IS_INDICATED_AT_TIME.value].value
        granted = fields[vocab.HAS_CONSENT_STATUS.value] == vocab.CONSENT_GIVEN
        if purpose not in latest or at >= latest[purpose][0]:
            latest[purpose] = (at, granted)
    return any(latest.get(p.value, ("", False))[1] for p in (vocab.PERSONALIZATION, vocab.ANALYTICS))


class Pool:
    """The users a run draws from, with what each may report (consent), and the catalog IDs."""

    def __init__(self, runtime: Runtime, user_ids: list[str], rng: random.Random, sample: int = 2000) -> None:
        catalog = runtime.catalog
        self.steps = sorted(catalog.by_id["Step"])
        self.features = sorted(catalog.by_id["Feature"])
        chosen = user_ids if len(user_ids) <= sample else rng.sample(user_ids, sample)
        self.feature_ok = {uid: feature_consent(runtime.store, uid) for uid in chosen}
        self.event_users = list(self.feature_ok)

    def batch(self, rng: random.Random, size: int) -> list[dict]:
        """``size`` events, EVENTS_PER_USER per user: 50% FEATURE_USED (when consented), 40% completed, 10% dismissed."""
        out: list[dict] = []
        while len(out) < size:
            uid = rng.choice(self.event_users)
            for _ in range(min(EVENTS_PER_USER, size - len(out))):
                r = rng.random()
                if r < 0.5 and self.feature_ok[uid]:
                    out.append({"userId": uid, "type": "FEATURE_USED", "featureId": rng.choice(self.features)})
                elif r < 0.9:
                    out.append({"userId": uid, "type": "STEP_COMPLETED", "stepId": rng.choice(self.steps)})
                else:
                    out.append({"userId": uid, "type": "STEP_DISMISSED", "stepId": rng.choice(self.steps)})
        return out


def reports(batch: list[dict]) -> list[users.EventReport]:
    return [
        users.EventReport(user_id=e["userId"], type=e["type"], step_id=e.get("stepId"), feature_id=e.get("featureId"))
        for e in batch
    ]


# ---------------------------------------------------------------------------
# Stage timers: wrap, by name, the functions next_steps / record_events call


class Stages:
    def __init__(self) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)
        self._undo: list[tuple[object, str, object, bool]] = []

    def wrap(self, owner: object, attr: str, label: str) -> None:
        original = getattr(owner, attr, None)
        if original is None:  # the service changed: time what still exists
            return
        had_own = isinstance(owner, type(sys)) or attr in getattr(owner, "__dict__", {})
        times = self.times[label]

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                times.append(time.perf_counter() - t)

        setattr(owner, attr, timed)
        self._undo.append((owner, attr, original, had_own))

    def wrap_select(self, runtime: Runtime) -> None:
        """Time store.select per shipped query (by file stem).

        A query is known by its first line (the question in its header comment), which
        stays as it is when sparql_terms.inline writes the parameters into the text.
        """
        store = runtime.store
        original = store.select
        names = {text.split("\n", 1)[0]: stem for stem, text in runtime.queries.items()}
        times = self.times

        def select(query, /, **bindings):
            t = time.perf_counter()
            try:
                return original(query, **bindings)
            finally:
                times["sparql " + names.get(query.split("\n", 1)[0], "other")].append(time.perf_counter() - t)

        store.select = select
        self._undo.append((store, "select", original, False))

    def restore(self) -> None:
        for owner, attr, original, had_own in reversed(self._undo):
            if had_own:
                setattr(owner, attr, original)
            else:
                delattr(owner, attr)
        self._undo.clear()

    def summary(self, requests: int, total_s: float) -> list[dict]:
        rows = []
        for label, values in self.times.items():
            if not values:
                continue
            s = sorted(values)
            rows.append(
                {
                    "stage": label,
                    "calls_per_request": round(len(s) / requests, 2),
                    "mean_ms_per_request": round(sum(s) / requests * 1e3, 3),
                    "p50_ms": round(lib.percentile(s, 50) * 1e3, 3),
                    "p99_ms": round(lib.percentile(s, 99) * 1e3, 3),
                    "share_of_total": round(sum(s) / total_s, 3),
                }
            )
        return rows


def stage_table(rows: list[dict]) -> str:
    return lib.table(
        ["stage (indented: inside the one above)", "calls/req", "mean ms/req", "p50 ms", "p99 ms", "share"],
        [
            (
                r["stage"],
                r["calls_per_request"],
                r["mean_ms_per_request"],
                r["p50_ms"],
                r["p99_ms"],
                f"{r['share_of_total'] * 100:.0f}%",
            )
            for r in rows
        ],
    )


NEXT_STEPS_STAGES = [
    "require_user (exists)",
    "consents",
    "  sparql consent-records",
    "profile",
    "  sparql profile",
    "events",
    "  sparql user-events",
    "sparql candidates",
    "rank (policies)",
    "decision_triples",
    "audit append (hash + commit)",
    "  store.commit (audit write)",
]


def next_steps_stages(runtime: Runtime) -> Stages:
    stages = Stages()
    for name, label in (
        ("require_user", "require_user (exists)"),
        ("consents", "consents"),
        ("profile", "profile"),
        ("events", "events"),
        ("rank", "rank (policies)"),
        ("decision_triples", "decision_triples"),
    ):
        stages.wrap(decide, name, label)
    stages.wrap(runtime.trail, "append", "audit append (hash + commit)")
    stages.wrap(runtime.store, "commit", "  store.commit (audit write)")
    stages.wrap_select(runtime)
    return stages


def stage_rows(stages: Stages, requests: int, total_s: float) -> list[dict]:
    rows = stages.summary(requests, total_s)
    for r in rows:  # the SPARQL of consents/profile/events runs inside those stages
        if r["stage"] in ("sparql consent-records", "sparql profile", "sparql user-events"):
            r["stage"] = "  " + r["stage"]
    top = {
        "require_user (exists)",
        "consents",
        "profile",
        "events",
        "rank (policies)",
        "decision_triples",
        "audit append (hash + commit)",
        "sparql candidates",
    }
    accounted = sum(r["mean_ms_per_request"] for r in rows if r["stage"] in top)
    mean_total = total_s / requests * 1e3
    rows.append(
        {
            "stage": "rest of next_steps (+ timer overhead)",
            "calls_per_request": 1,
            "mean_ms_per_request": round(mean_total - accounted, 3),
            "p50_ms": None,
            "p99_ms": None,
            "share_of_total": round((mean_total - accounted) / mean_total, 3),
        }
    )
    order = NEXT_STEPS_STAGES + ["rest of next_steps (+ timer overhead)"]
    rows.sort(key=lambda r: order.index(r["stage"]) if r["stage"] in order else 99)
    return rows


# ---------------------------------------------------------------------------
# In process


def inproc_next_steps(
    runtime: Runtime, pick, budget: Budget, cpu: list[float] | None = None
) -> tuple[list[float], int]:
    """Wall time per request; with ``cpu``, also this thread's CPU time per request (robust to a busy machine)."""
    times, candidates = [], 0
    while budget.more():
        uid = pick()
        c = time.thread_time()
        t = time.perf_counter()
        rec = decide.next_steps(runtime, uid, channel="WEB", limit=5)
        times.append(time.perf_counter() - t)
        if cpu is not None:
            cpu.append(time.thread_time() - c)
        candidates += len(rec.candidates)
        budget.done += 1
    return times, candidates


def measure_next_steps(runtime: Runtime, pick, budget: Budget, *, staged: bool) -> dict:
    stages = next_steps_stages(runtime) if staged else None
    la0 = loadavg()
    cpu: list[float] = []
    try:
        with GcWatch() as watch:
            times, candidates = inproc_next_steps(runtime, pick, budget, cpu)
    finally:
        if stages:
            stages.restore()
    out = {
        "requests": len(times),
        "latency": lib.summary_ms(times),
        "cpu": lib.summary_ms(cpu),
        "gc": watch.result(),
        "mean_candidates": round(candidates / len(times), 2),
        "requests_per_s": round(len(times) / sum(times), 2),
        "stages_timed": staged,
        "loadavg_before": la0,
        "loadavg_after": loadavg(),
    }
    if stages:
        out["stages"] = stage_rows(stages, len(times), sum(times))
    return out


class _Response:
    status_code = 200
    headers: dict = {}


def graphql_schema(runtime: Runtime):
    from service.api.schema import build_schema

    try:
        return build_schema(runtime.settings)
    except TypeError:  # older signature
        return build_schema()


def graphql_context(runtime: Runtime) -> dict:
    """What WayfinderGraphQL.get_context gives a resolver when the service runs without API keys."""
    try:
        from service.identity.keys import OPEN
    except ImportError:
        OPEN = "open"
    return {"runtime": runtime, "request": None, "response": _Response(), "role": OPEN, "principal": OPEN}


def inproc_graphql(runtime: Runtime, schema, pick, budget: Budget) -> list[float]:
    times = []
    while budget.more():
        uid = pick()
        t = time.perf_counter()
        result = schema.execute_sync(NEXT_STEPS, variable_values={"user": uid}, context_value=graphql_context(runtime))
        times.append(time.perf_counter() - t)
        budget.done += 1
        if result.errors:
            raise RuntimeError(f"GraphQL error for {uid}: {result.errors}")
    return times


def graphql_what_if_schema(runtime: Runtime):
    """The service's schema with its limit rules built ONCE, so that ValidationCache can hit (a what-if, not the service).

    service/api/schema.py passes ``lambda: QueryDepthLimiter(...)`` and ``lambda: MaxAliasesLimiter(...)``:
    strawberry instantiates extensions per request and each instance creates a new validation-rule
    class, so ``execution_context.validation_rules`` differs on every request and ValidationCache
    (an lru_cache keyed by schema, document and rules) never hits: every request is fully validated,
    and the rule classes created per request (kept by that cache, cyclic) are garbage for full GCs.
    """
    import strawberry
    from strawberry.extensions import AddValidationRules, MaxTokensLimiter, ParserCache, ValidationCache
    from strawberry.extensions.max_aliases import create_validator as aliases_rule
    from strawberry.extensions.query_depth_limiter import create_validator as depth_rule

    from service.api import schema as api
    from service.api.limits import field_budget

    settings = runtime.settings
    rules = [
        field_budget(settings.max_fields),
        depth_rule(settings.max_query_depth, None, None),
        aliases_rule(settings.max_aliases),
    ]
    return strawberry.Schema(
        query=api.Query,
        mutation=api.Mutation,
        extensions=[
            api.ErrorCodes,
            lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
            lambda: ParserCache(maxsize=256),
            lambda: AddValidationRules(rules),
            lambda: ValidationCache(maxsize=256),
        ],
    )


def validation_cache_hits(schema, runtime: Runtime, uid: str, n: int = 20) -> dict | None:
    """How often strawberry's shared validate_document cache hits over ``n`` identical requests."""
    try:
        from strawberry.extensions.validation_cache import _get_validate_cache
    except ImportError:
        return None
    cache = _get_validate_cache(256)
    before = cache.cache_info()
    for _ in range(n):
        schema.execute_sync(NEXT_STEPS, variable_values={"user": uid}, context_value=graphql_context(runtime))
    after = cache.cache_info()
    return {"requests": n, "hits": after.hits - before.hits, "misses": after.misses - before.misses}


def profile_to_file(name: str, title: str, fn, note: str) -> dict:
    profiler = cProfile.Profile()
    t = time.perf_counter()
    profiler.enable()
    fn()
    profiler.disable()
    wall = time.perf_counter() - t
    out = io.StringIO()
    out.write(
        f"# {title}\n# call: {note}\n# wall time under the profiler: {wall:.2f} s\n"
        f"# command: {lib.command_line()}\n# {lib.environment()['date']}, loadavg {loadavg()}; "
        "cProfile overhead inflates Python-heavy code (rdflib, pyshacl, graphql-core), not Rust (pyoxigraph)\n"
        "# 'store.py:NN(<listcomp>)' in Store.select is where pyoxigraph evaluates a SELECT (solutions are lazy)\n\n"
    )
    out.write("## top 15 by cumulative time\n")
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats("cumulative").print_stats(15)
    out.write("\n## top 15 by own time (tottime)\n")
    stats.sort_stats("tottime").print_stats(15)
    path = RESULTS / f"{name}.txt"
    path.write_text(out.getvalue())
    return {"file": os.path.relpath(path, ROOT), "wall_s": round(wall, 3)}


def inproc_record_events(runtime: Runtime, pool: Pool, rng: random.Random, size: int, budget: Budget) -> dict:
    stages = Stages()
    stages.wrap(users, "require_user", "require_user (exists)")
    stages.wrap(users, "consents", "consents (once per user in the batch)")
    stages.wrap(users, "commit_validated", "commit_validated")
    stages.wrap(writes, "neighbourhood", "  neighbourhood (rdflib copy of knowledge + users)")
    stages.wrap(runtime.validator, "_core", "  validate: pyshacl core shapes")
    stages.wrap(runtime.validator, "_sparql", "  validate: SHACL-SPARQL in oxigraph")
    stages.wrap(runtime.store, "commit", "  store.commit")
    times, cpu, events = [], [], 0
    try:
        while budget.more():
            batch = reports(pool.batch(rng, size))
            c = time.thread_time()
            t = time.perf_counter()
            users.record_events(runtime, batch)
            times.append(time.perf_counter() - t)
            cpu.append(time.thread_time() - c)
            events += len(batch)
            budget.done += 1
    finally:
        stages.restore()
    total = sum(times)
    rows = stages.summary(len(times), total)
    return {
        **_batches(size, times, events),
        "events_per_cpu_s": round(events / sum(cpu), 1),
        "stages": rows,
    }


def register_probe(runtime: Runtime, rng: random.Random) -> str:
    """Register a fresh user through the service (both consents) for the history-growth measurement."""
    catalog = runtime.catalog
    uid = f"bench-probe-{rng.getrandbits(32):08x}"
    roles, plans = sorted(catalog.by_id["Role"]), sorted(catalog.by_id["Plan"])
    users.register(
        runtime,
        users.Registration(
            id=uid,
            role=roles[0],
            plan=plans[len(plans) // 2],
            signup_channel="WEB",
            consents=["PERSONALIZATION", "ANALYTICS"],
        ),
    )
    return uid


def history_scaling(
    runtime: Runtime, pool: Pool, rng: random.Random, uid: str, sizes: list[int], reps: int, budget_s: float, label: str
) -> dict:
    """nextSteps latency for one user as their history grows (events added untimed, 90% FEATURE_USED)."""
    out = []
    current = len(users.events(runtime, uid))
    for size in sizes:
        while current < size:
            n = min(500, size - current)
            batch = []
            for _ in range(n):
                if rng.random() < 0.9:
                    batch.append(users.EventReport(uid, "FEATURE_USED", feature_id=rng.choice(pool.features)))
                else:
                    batch.append(users.EventReport(uid, "STEP_COMPLETED", step_id=rng.choice(pool.steps)))
            users.record_events(runtime, batch)
            current += n
        times, _ = inproc_next_steps(runtime, lambda: uid, Budget(reps, budget_s))
        rec = decide.next_steps(runtime, uid, channel="WEB", limit=5)
        out.append({"events": current, "candidates": len(rec.candidates), "latency": lib.summary_ms(times)})
        log(f"  history {current:>5} events: p50 {out[-1]['latency']['p50_ms']:.1f} ms ({len(times)} requests)")
    profile = profile_to_file(
        f"profile-next-steps-long-history-{label}",
        f"in-process next_steps for one user with {current} events in their history, 5 requests, store {label}",
        lambda: [decide.next_steps(runtime, uid, channel="WEB", limit=5) for _ in range(5)],
        "decide.next_steps(runtime, user, channel='WEB', limit=5)",
    )
    return {"user": uid, "sizes": out, "profile": profile}


# ---------------------------------------------------------------------------
# Over HTTP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


class Server:
    def __init__(self, store: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "bench.next_steps.bench_app:create",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--workers",
            "1",
            "--log-level",
            "warning",
        ]
        env = {**os.environ, "WF_BENCH_STORE": str(store)}
        # The service logs one JSON line per decision (as `wayfinder serve` does): keep them out of the console.
        fd, name = tempfile.mkstemp(prefix="wf-bench-server-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        t0 = time.perf_counter()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() - t0 > 180:
                self.stop()
                raise RuntimeError("uvicorn did not become healthy in 180 s")
            time.sleep(0.2)
        self.startup_s = time.perf_counter() - t0

    def command(self) -> str:
        return " ".join(os.path.relpath(a, ROOT) if a.startswith(str(ROOT)) else a for a in self.argv)

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def log_lines(self) -> int:
        try:
            return self.log_path.read_bytes().count(b"\n")
        except OSError:
            return 0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        self.log_path.unlink(missing_ok=True)


def _check(body: dict) -> None:
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {body['errors']}")


def _latency_row(what: str, m: dict, goal_p99_ms: float) -> tuple:
    """A table row of a latency run: requests, percentiles, throughput, and the p99 against its goal."""
    lat = m["latency"]
    return (
        what,
        m["requests"],
        lat["p50_ms"],
        lat["p90_ms"],
        lat["p99_ms"],
        lat["max_ms"],
        m["requests_per_s"],
        verdict(lat["p99_ms"], goal_p99_ms, lower_is_better=True),
    )


def _timed_post(client: httpx.Client, query: str, variables: dict, times: list[float]) -> dict:
    """POST one GraphQL request, add its time to ``times``, and return its body once checked for errors."""
    t = time.perf_counter()
    body = client.post("/graphql", json={"query": query, "variables": variables}).json()
    times.append(time.perf_counter() - t)
    _check(body)
    return body


def http_sequential(server: Server, pick, budget: Budget) -> dict:
    with httpx.Client(base_url=server.url, timeout=1800) as client:
        cpu0 = cpu_seconds(server.proc.pid)
        times = []
        t0 = time.perf_counter()
        while budget.more():
            uid = pick()
            _timed_post(client, NEXT_STEPS, {"user": uid}, times)
            budget.done += 1
        wall = time.perf_counter() - t0
        cpu1 = cpu_seconds(server.proc.pid)
    return {
        "connections": 1,
        "requests": len(times),
        "wall_s": round(wall, 3),
        "requests_per_s": round(len(times) / wall, 2),
        "latency": lib.summary_ms(times),
        "server_cpu_ms_per_request": round((cpu1 - cpu0) / len(times) * 1e3, 3) if cpu0 is not None else None,
    }


def http_concurrent(server: Server, ids: list[str], connections: int) -> dict:
    async def run() -> tuple[list[float], float]:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        times: list[float] = []
        queue: asyncio.Queue = asyncio.Queue()
        for uid in ids:
            queue.put_nowait(uid)
        async with httpx.AsyncClient(base_url=server.url, timeout=1800, limits=limits) as client:

            async def worker() -> None:
                while not queue.empty():
                    uid = queue.get_nowait()
                    t = time.perf_counter()
                    r = await client.post("/graphql", json={"query": NEXT_STEPS, "variables": {"user": uid}})
                    body = r.json()
                    times.append(time.perf_counter() - t)
                    _check(body)

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(connections)))
            return times, time.perf_counter() - t0

    cpu0 = cpu_seconds(server.proc.pid)
    try:
        import uvloop

        times, wall = uvloop.run(run())
    except ImportError:
        times, wall = asyncio.run(run())
    cpu1 = cpu_seconds(server.proc.pid)
    return {
        "connections": connections,
        "requests": len(ids),
        "wall_s": round(wall, 3),
        "requests_per_s": round(len(ids) / wall, 2),
        "latency": lib.summary_ms(times),
        "server_cpu_ms_per_request": round((cpu1 - cpu0) / len(ids) * 1e3, 3) if cpu0 is not None else None,
    }


def http_record_events(server: Server, pool: Pool, rng: random.Random, size: int, budget: Budget) -> dict:
    with httpx.Client(base_url=server.url, timeout=1800) as client:
        times, events = [], 0
        while budget.more():
            batch = pool.batch(rng, size)
            body = _timed_post(client, RECORD_MANY, {"inputs": batch}, times)
            budget.done += 1
            if body["data"]["recordEvents"] != len(batch):
                raise RuntimeError("recordEvents stored a different number of events")
            events += len(batch)
    return _batches(size, times, events)


# ---------------------------------------------------------------------------


def verdict(value: float, goal: float, *, lower_is_better: bool) -> str:
    if lower_is_better:
        if value <= goal:
            return f"met ({value:,.2f} <= {goal:g}, {goal - value:,.2f} to spare)"
        return f"MISSED by {value - goal:,.2f} ms ({value / goal:,.1f}x the goal)"
    if value >= goal:
        return f"met ({value:,.0f} >= {goal:,.0f})"
    return f"MISSED by {goal - value:,.0f}/s ({value / goal * 100:.2g}% of the goal; {goal / value:,.1f}x short)"


def close(runtime: Runtime) -> None:
    """Release the on-disk store (one process at a time may open it)."""
    if hasattr(runtime.store, "close"):
        runtime.store.close()
    else:
        runtime.store.flush()
    gc.collect()


def skipped(reason: str, **extra) -> dict:
    log(f"skipped: {reason}")
    return {"skipped": reason, **extra}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--store", type=Path, default=Path("/tmp/wf-bench-store"), help="store built by populate.py")
    target.add_argument("--demo", action="store_true", help="the demo store (load_demo into a temporary folder)")
    parser.add_argument("--requests", type=int, default=2000, help="nextSteps requests per measurement")
    parser.add_argument("--budget-s", type=float, default=90.0, help="time cap of one measurement (at least 1 request)")
    parser.add_argument("--slow-ms", type=float, default=1000.0, help="a decision slower than this: slow mode")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="in-process nextSteps only")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--label", help="name of the result files (default: demo, or the user count: 100k)")
    args = parser.parse_args(argv)
    command = lib.command_line()
    log(f"command: {command}")
    rng = random.Random(args.seed)
    tmp: Path | None = None
    result: dict = {
        "command": command,
        "goals": {
            "inproc_p99_ms": GOAL_INPROC_P99_MS,
            "http_p99_ms": GOAL_HTTP_P99_MS,
            "record_events_per_s": GOAL_EVENTS_PER_S,
        },
        "budget_s_per_measurement": args.budget_s,
    }

    t_start = time.perf_counter()
    if args.demo:
        from service.demo import load_demo

        tmp = Path(tempfile.mkdtemp(prefix="wf-bench-demo-"))
        store = tmp / "store"
        runtime = Runtime(settings=Settings(store=str(store)))
        t = time.perf_counter()
        added = load_demo(runtime)
        data = json.loads((runtime.settings.demo_dir / "users.json").read_text())
        user_ids = [u["id"] for u in data["users"]]
        label = args.label or "demo"
        result["store"] = {
            "kind": "demo",
            "users": len(user_ids),
            "events": added["events"],
            "quads": len(runtime.store),
            "load_demo_s": round(time.perf_counter() - t, 2),
        }
    else:
        store = args.store
        meta_path = Path(str(store) + ".bench.json")
        if not meta_path.exists():
            sys.exit(f"{meta_path} not found: build the store with populate.py first")
        meta = json.loads(meta_path.read_text())
        user_ids = [meta["id_format"].format(i) for i in range(meta["first"], meta["first"] + meta["users"])]
        label = args.label or lib.size_label(meta["users"])
        runtime = Runtime(settings=Settings(store=str(store)))
        result["store"] = {"kind": "synthetic", "path": str(store), **meta}
    result["name"] = f"latency-{label}"
    log(f"store: {result['store']}")
    pick = lambda: rng.choice(user_ids)  # noqa: E731
    B = lambda n=args.requests, s=args.budget_s, minimum=1: Budget(n, s, minimum)  # noqa: E731

    # -- 1. in process: nextSteps, its stages, GraphQL in process, profiles ------
    try:
        t = time.perf_counter()
        decide.next_steps(runtime, user_ids[0], channel="WEB", limit=5)
        cold_ms = (time.perf_counter() - t) * 1e3
        if cold_ms > 10 * args.slow_ms:  # no need to warm up to know
            warm = [cold_ms / 1e3]
        else:
            warm, _ = inproc_next_steps(runtime, pick, B(200, 20))
        slow = statistics.median(warm) * 1e3 > args.slow_ms
        result["first_request_ms"] = round(cold_ms, 2)
        result["warmup"] = {"requests": len(warm), "median_ms": round(statistics.median(warm) * 1e3, 2)}
        result["slow_mode"] = slow
        if slow:
            log(
                f"SLOW MODE: a decision takes {statistics.median(warm):.1f} s; at most {args.budget_s:.0f} s per "
                "measurement, stages timed on the main measurement"
            )
        main_m = measure_next_steps(runtime, pick, B(minimum=2 if slow else 1), staged=slow)
        result["inproc_next_steps"] = main_m
        log(f"in-process nextSteps: {main_m['latency']}")
        if not slow:
            m = measure_next_steps(runtime, pick, B(min(1000, args.requests), args.budget_s), staged=True)
            result["inproc_next_steps_stages"] = m
            stages = m["stages"]
        else:
            stages = main_m["stages"]
        log(stage_table(stages))
        if args.quick:
            pool = None
        else:
            if slow:
                why = (
                    f"each request takes {main_m['latency']['p50_ms'] / 1e3:.1f} s; the GraphQL layer adds "
                    "milliseconds (measured on the demo store)"
                )
                result["inproc_graphql_next_steps"] = skipped(why)
            else:
                schema = graphql_schema(runtime)
                inproc_graphql(runtime, schema, pick, B(100, 20))  # warm the parser/validation caches
                with GcWatch() as watch:
                    gql_times = inproc_graphql(runtime, schema, pick, B())
                result["inproc_graphql_next_steps"] = {
                    "latency": lib.summary_ms(gql_times),
                    "gc": watch.result(),
                    "validation_cache": validation_cache_hits(schema, runtime, user_ids[0]),
                }
                log(f"in-process GraphQL nextSteps: {result['inproc_graphql_next_steps']}")
                try:
                    what_if = graphql_what_if_schema(runtime)
                except Exception as exc:  # the service's schema module changed shape: skip the what-if
                    result["what_if_cached_validation"] = skipped(f"what-if schema: {exc!r}")
                else:
                    inproc_graphql(runtime, what_if, pick, B(100, 20))
                    with GcWatch() as watch:
                        gql_times = inproc_graphql(runtime, what_if, pick, B(min(1000, args.requests)))
                    result["what_if_cached_validation"] = {
                        "latency": lib.summary_ms(gql_times),
                        "gc": watch.result(),
                        "validation_cache": validation_cache_hits(what_if, runtime, user_ids[0]),
                        "note": "NOT the service: its schema with the limit rules built once (graphql_what_if_schema)",
                    }
                    log(f"what-if GraphQL: {result['what_if_cached_validation']}")
                result["profile_graphql_next_steps"] = profile_to_file(
                    f"profile-graphql-next-steps-{label}",
                    f"nextSteps through the GraphQL schema in process "
                    f"(schema.execute_sync), 300 random users, store {label}",
                    lambda: inproc_graphql(runtime, schema, pick, B(300, 120)),
                    "schema.execute_sync(NEXT_STEPS, ...)",
                )
            n_prof = 1 if slow else 500
            result["profile_next_steps"] = profile_to_file(
                f"profile-next-steps-{label}",
                f"in-process next_steps, {n_prof} random users, store {label}",
                lambda: inproc_next_steps(runtime, pick, B(n_prof, args.budget_s)),
                "decide.next_steps(runtime, user, channel='WEB', limit=5)",
            )
            pool = Pool(runtime, user_ids, rng)
    finally:
        close(runtime)
        del runtime

    # -- 2. over HTTP: nextSteps (1 and 8 connections), recordEvents -------------
    if not args.skip_http and not args.quick:
        server = Server(store)
        try:
            result["http_server"] = {
                "command": f"WF_BENCH_STORE={store} {server.command()}",
                "startup_s": round(server.startup_s, 2),
            }
            log(f"uvicorn up in {server.startup_s:.1f} s: {result['http_server']['command']}")
            if not slow:
                http_sequential(server, pick, B(200, 20))  # warm
            seq = http_sequential(server, pick, B(minimum=2 if slow else 1))
            log(f"HTTP nextSteps, 1 connection: {seq['latency']}, {seq['requests_per_s']} req/s")
            mean_s = seq["latency"]["mean_ms"] / 1e3
            n_conc = args.requests if not slow else 0
            if slow:
                conc = skipped(
                    f"one request takes {mean_s:.1f} s and the server runs resolvers one at a time: 16 "
                    f"requests over 8 connections would take ~{16 * mean_s / 60:.0f} min, each waiting "
                    f"~{8 * mean_s:.0f} s",
                    connections=8,
                )
            else:
                n_conc = max(16, min(args.requests, int(args.budget_s / max(mean_s, 1e-4))))
                conc = http_concurrent(server, [pick() for _ in range(n_conc)], 8)
                log(f"HTTP nextSteps, 8 connections: {conc['latency']}, {conc['requests_per_s']} req/s")
            result["http_next_steps"] = [seq, conc]
            result["http_record_events"] = []
            if not slow:
                http_record_events(server, pool, rng, 10, B(3, 10))  # warm the validator
            first = http_record_events(server, pool, rng, 100, B(40, args.budget_s))
            result["http_record_events"].append(first)
            per_event = first["seconds"] / first["events"]
            if slow and per_event * 1000 > args.budget_s:
                result["http_record_events"].append(
                    skipped(
                        f"a batch of 1,000 events ({1000 // EVENTS_PER_USER} users) would take ~{per_event * 1000 / 60:.0f} min "
                        f"at the rate of the batches of 100",
                        batch_size=1000,
                    )
                )
            else:
                result["http_record_events"].append(http_record_events(server, pool, rng, 1000, B(8, args.budget_s)))
            for r in result["http_record_events"]:
                if "events_per_s" in r:
                    log(f"HTTP recordEvents batch {r['batch_size']}: {r['events_per_s']:,.0f} events/s")
            result["http_server"]["log_lines"] = server.log_lines()
        finally:
            server.stop()

    # -- 3. in process: recordEvents, its profile, history growth -----------------
    if not args.quick:
        runtime = Runtime(settings=Settings(store=str(store)))
        try:
            if not slow:
                users.record_events(runtime, reports(pool.batch(rng, 10)))  # warm: validator, shapes
            first = inproc_record_events(runtime, pool, rng, 100, B(40, args.budget_s))
            result["inproc_record_events"] = [first]
            per_event = first["seconds"] / first["events"]
            if slow and per_event * 1000 > args.budget_s:
                result["inproc_record_events"].append(
                    skipped(
                        f"a batch of 1,000 events would take ~{per_event * 1000 / 60:.0f} min at the rate of the batches "
                        "of 100",
                        batch_size=1000,
                    )
                )
            else:
                result["inproc_record_events"].append(
                    inproc_record_events(runtime, pool, rng, 1000, B(8, args.budget_s))
                )
            for r in result["inproc_record_events"]:
                if "events_per_s" in r:
                    log(
                        f"in-process recordEvents batch {r['batch_size']}: {r['events_per_s']:,.0f} events/s "
                        f"({r['batches']} batches, p50 {r['batch_latency']['p50_ms']:.0f} ms)"
                    )
                    log(stage_table(r["stages"]))
            sizes = (20,) if slow else (100, 100, 100, 100, 100, 1000)
            result["profile_record_events"] = profile_to_file(
                f"profile-record-events-{label}",
                f"in-process users.record_events, batches of {', '.join(map(str, sizes))} "
                f"events ({EVENTS_PER_USER} per user), store {label}",
                lambda: [users.record_events(runtime, reports(pool.batch(rng, n))) for n in sizes],
                "users.record_events(runtime, reports)",
            )
            if slow:
                result["history_scaling"] = skipped("a decision already takes seconds at ~20 events per user")
            else:
                probe = register_probe(runtime, rng)
                log(f"nextSteps as {probe}'s history grows:")
                result["history_scaling"] = history_scaling(
                    runtime, pool, rng, probe, [0, 20, 100, 500, 2000], 20, 10.0, label
                )
        finally:
            close(runtime)
            del runtime
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    result["total_run_s"] = round(time.perf_counter() - t_start, 1)
    text = summary(result, label)
    out = lib.write_result(RESULTS, f"latency-{label}", result, markdown=text, command=command)
    log(f"\ncommand: {command}\nwrote {out.relative_to(ROOT)} in {result['total_run_s']} s")


def summary(result: dict, label: str) -> str:
    """Print the tables of a run; return them as Markdown."""
    parts: list[str] = []
    rows = []
    m = result["inproc_next_steps"]
    rows.append(_latency_row("nextSteps in process (next_steps + audit write)", m, GOAL_INPROC_P99_MS))
    cpu = m.get("cpu")
    if cpu:
        rows.append(
            (
                "  same, CPU time of the calling thread",
                cpu["n"],
                cpu["p50_ms"],
                cpu["p90_ms"],
                cpu["p99_ms"],
                cpu["max_ms"],
                "",
                "wall minus CPU = waiting for a core (busy machine) or I/O",
            )
        )
    for key, what in (
        ("inproc_graphql_next_steps", "nextSteps via the GraphQL schema, in process"),
        ("what_if_cached_validation", "(what-if, not the service) same, validation cache hitting"),
    ):
        m = result.get(key)
        if m and "latency" in m:
            lat = m["latency"]
            g2 = m.get("gc", {}).get("gen2", {})
            note = f"{g2['collections']} full GCs ({g2['total_ms']:.0f} ms, max {g2['max_ms']:.0f} ms)" if g2 else ""
            rows.append((what, lat["n"], lat["p50_ms"], lat["p90_ms"], lat["p99_ms"], lat["max_ms"], "", note))
        elif m:
            rows.append((what, 0, "", "", "", "", "", "skipped: " + m["skipped"]))
    for m in result.get("http_next_steps", []):
        what = f"nextSteps over HTTP, {m['connections']} connection{'s' if m['connections'] > 1 else ''}"
        if "latency" in m:
            rows.append(_latency_row(what, m, GOAL_HTTP_P99_MS))
        else:
            rows.append((what, 0, "", "", "", "", "", "skipped: " + m["skipped"]))
    parts.append(
        f"## nextSteps, store {label} (ms)\n\n"
        + lib.table(["what", "requests", "p50", "p90", "p99", "max", "req/s", "goal"], rows)
    )
    rows = []
    for where, key in (("in process", "inproc_record_events"), ("over HTTP", "http_record_events")):
        for r in result.get(key, []):
            what = f"recordEvents {where}, batches of {r['batch_size']}"
            if "events_per_s" in r:
                per_cpu = f" ({r['events_per_cpu_s']:,.0f} per CPU s)" if "events_per_cpu_s" in r else ""
                rows.append(
                    (
                        what,
                        r["batches"],
                        r["batch_latency"]["p50_ms"],
                        r["batch_latency"]["max_ms"],
                        f"{r['events_per_s']:,.0f}{per_cpu}",
                        verdict(r["events_per_s"], GOAL_EVENTS_PER_S, lower_is_better=False),
                    )
                )
            else:
                rows.append((what, 0, "", "", "", "skipped: " + r["skipped"]))
    if rows:
        parts.append(
            f"## recordEvents, store {label}\n\n"
            + lib.table(["what", "batches", "batch p50 ms", "batch max ms", "events/s", "goal"], rows)
        )
    hs = result.get("history_scaling")
    if hs and "sizes" in hs:
        parts.append(
            f"## nextSteps as one new user's history grows, store {label} (ms)\n\n"
            + lib.table(
                ["events in history", "candidates", "requests", "p50", "p99"],
                [
                    (h["events"], h["candidates"], h["latency"]["n"], h["latency"]["p50_ms"], h["latency"]["p99_ms"])
                    for h in hs["sizes"]
                ],
            )
        )
    text = "\n\n".join(parts)
    log("\n" + text)
    return text


if __name__ == "__main__":
    main()
