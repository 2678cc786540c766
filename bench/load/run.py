"""Load test of issue 6: each service configuration over the same populated store, driven by loadgen.

Configurations (each starts from its own copy of one populated store):

- ``embedded-1``: ``wayfinder serve --store DIR`` (pyoxigraph in the service process);
- ``shared-1``, ``shared-2``: ``oxigraph serve --location DIR`` and
  ``wayfinder serve --store http://127.0.0.1:PORT --workers 1|2``;
- ``shared-2-reconnect``: the same with 2 workers, but each virtual client opens a new connection
  every 20 requests. With keep-alive connections opened at once, one worker process accepts them
  all and the other idles (``decisions_by_process`` in the results shows it).
- ``shared-4-reconnect``: 4 workers, reconnecting likewise: more service processes than this
  machine's cores, to see where the server saturates.

An embedded store with 2 workers cannot run: one process opens an embedded store, and
``wayfinder serve --workers 2`` refuses a store that is not a URL.

For each, the script copies the store (``oxigraph backup``, hard links), starts the processes with
a ``client`` API key, times a few single nextSteps requests (the preflight: a store whose decision
takes longer than ``--max-preflight-ms`` is not load-tested), runs the mix, stops the processes,
and counts decisions, events and consent records in the store, to check that every write the
service acknowledged is there. It samples the CPU time of the service processes, of the Oxigraph
server and of the load generator over the measured window.

    .venv/bin/python -m bench.load.run --users 1000 --clients 8 --duration 60

Writes ``bench/load/results/load-<users>.json`` and ``.md`` (the table).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench import lib
from bench.load import loadgen

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

BIN = Path(sys.executable).parent
OXIGRAPH = str(BIN / "oxigraph")  # run.py --oxigraph and --wayfinder change these (another machine's install)
WAYFINDER = [str(BIN / "wayfinder")]
RESULTS = HERE / "results"
# name: (store, worker processes, requests per connection: 0 keeps each client's connection open)
CONFIGS = {
    "embedded-1": ("embedded", 1, 0),
    "shared-1": ("shared", 1, 0),
    "shared-2": ("shared", 2, 0),
    "shared-2-reconnect": ("shared", 2, 20),
    "shared-4-reconnect": ("shared", 4, 20),
}
NOT_POSSIBLE = {
    "embedded-2": "an embedded store opens in one process only: `wayfinder serve --workers 2` "
    "refuses a store that is not an http:// URL"
}
PREFIX = (
    "PREFIX wf: <https://w3id.org/wayfinder/ontology#> PREFIX dpv: <https://w3id.org/dpv#> "
    "PREFIX g: <https://w3id.org/wayfinder/graph/> "
)
COUNTS = {
    "decisions": "SELECT (COUNT(?d) AS ?n) WHERE { GRAPH g:audit { ?d a wf:Decision } }",
    "events": "SELECT (COUNT(?e) AS ?n) WHERE { GRAPH ?g { ?e wf:byUser ?u ; wf:occurredAt ?t } }",
    "consent_records": "SELECT (COUNT(?c) AS ?n) WHERE { GRAPH g:consent { ?c a dpv:ConsentRecord } }",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cpu_list(text: str) -> set[int]:
    """CPUs from '0,1' or '0-3'."""
    cpus: set[int] = set()
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def pinned(cpus: set[int] | None):
    """A preexec_fn that keeps a child process on these CPUs (None: where its parent runs)."""
    return (lambda: os.sched_setaffinity(0, cpus)) if cpus else None


def populate(store: Path, users: int, seed: int) -> dict:
    """Build the store with bench/next_steps/populate.py (in a child process, which closes it on exit)."""
    code = (
        "import json, sys; from pathlib import Path; from bench.next_steps.populate import populate; "
        "r = populate(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), 5000, True); "
        "print('RESULT ' + json.dumps(r, default=str))"
    )
    if store.exists():
        shutil.rmtree(store)
    done = subprocess.run(
        [sys.executable, "-c", code, str(store), str(users), str(seed)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def select_csv(location: Path, query: str) -> list[list[str]]:
    """Rows of a SELECT over a closed store (the ``oxigraph query`` command), header left out."""
    done = subprocess.run(
        [OXIGRAPH, "query", "--location", str(location), "--query", PREFIX + query, "--results-format", "csv"],
        capture_output=True,
        text=True,
        check=True,
    )
    return [line.split(",") for line in done.stdout.splitlines()[1:] if line]


def count_writes(location: Path) -> dict[str, int]:
    """Decisions, events and consent records in a closed store."""
    return {name: int(select_csv(location, query)[0][0]) for name, query in COUNTS.items()}


def decisions_by_chain(location: Path) -> dict[str, int]:
    """Decisions per audit chain: each service process writes its own chain, so this is the work per process."""
    rows = select_csv(
        location,
        "SELECT ?chain (COUNT(?d) AS ?n) WHERE { GRAPH g:audit { ?d a wf:Decision ; "
        "wf:chain ?chain } } GROUP BY ?chain",
    )
    return {chain: int(n) for chain, n in rows}


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time of these processes and all their descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    wanted, frontier = set(), list(pids)
    while frontier:
        pid = frontier.pop()
        if pid in stats and pid not in wanted:
            wanted.add(pid)
            frontier += [child for child, (parent, _) in stats.items() if parent == pid]
    return sum(stats[p][1] for p in wanted)


def peak_rss_mb(pids: list[int]) -> float:
    """The summed peak resident memory (VmHWM) of these processes and their descendants, in MB, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    wanted, frontier = set(), list(pids)
    while frontier:
        pid = frontier.pop()
        if pid in parents and pid not in wanted:
            wanted.add(pid)
            frontier += [child for child, parent in parents.items() if parent == pid]
    total_kib = 0
    for pid in wanted:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total_kib += next((int(x.split()[1]) for x in status.splitlines() if x.startswith("VmHWM:")), 0)
    return total_kib / 1024


def busy_cores_seconds() -> float:
    """CPU seconds spent by the whole machine (every process, every core) since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(below: float, patience_s: float, window_s: float = 5.0) -> dict:
    """Wait until the rest of the machine keeps fewer than ``below`` cores busy (over ``window_s``)."""
    started_at = time.monotonic()
    while True:
        first = busy_cores_seconds()
        time.sleep(window_s)
        busy = (busy_cores_seconds() - first) / window_s
        waited = time.monotonic() - started_at
        if busy < below or waited >= patience_s:
            return {"busy_cores_before": round(busy, 2), "waited_s": round(waited, 1), "quiet": busy < below}


def working_tree_changes() -> list[str] | None:
    """Files of the service that differ from HEAD: the figures measure the working tree, not only HEAD."""
    try:
        done = subprocess.run(
            ["git", "status", "--porcelain", "--", "service", "queries", "ontology", "shapes", "embeddings"],
            cwd=ROOT,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},  # read only: never refresh the index under another git
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None  # a copy without git
    return [line.strip() for line in done.stdout.splitlines()]


def wait_until(check, process: subprocess.Popen, what: str, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start; its log, {log}:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


@contextmanager
def started(
    name: str, kind: str, workers: int, store: Path, work: Path, env: dict[str, str], cpus: set[int] | None = None
):
    """The service (and, for a shared store, the Oxigraph server) on free ports; yields (url, pids)."""
    processes: list[subprocess.Popen] = []
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        pids: dict[str, int] = {}
        if kind == "shared":
            port = free_port()
            log = logs / f"{name}-oxigraph.log"
            oxigraph = subprocess.Popen(
                [OXIGRAPH, "serve", "--location", str(store), "--bind", f"127.0.0.1:{port}"],
                stdout=log.open("w"),
                stderr=subprocess.STDOUT,
                preexec_fn=pinned(cpus),
            )
            processes.append(oxigraph)
            target = f"http://127.0.0.1:{port}"
            wait_until(
                lambda: httpx.get(target + "/query", params={"query": "ASK {}"}, timeout=2).status_code == 200,
                oxigraph,
                "oxigraph serve",
                log,
                120,
            )
            pids["oxigraph"] = oxigraph.pid
        else:
            target = str(store)
        port = free_port()
        log = logs / f"{name}-wayfinder.log"
        service = subprocess.Popen(
            [*WAYFINDER, "serve", "--store", target, "--port", str(port), "--workers", str(workers)],
            cwd=ROOT,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            preexec_fn=pinned(cpus),
        )
        processes.append(service)
        url = f"http://127.0.0.1:{port}"
        wait_until(
            # 900 s: without WAYFINDER_ANALYTICS_DIR, each process of a shared store rebuilds its analytics log
            # from the store before it answers (at 100k users, two processes at once: about 5 minutes)
            lambda: httpx.get(url + "/healthz", timeout=2).status_code == 200,
            service,
            "wayfinder serve",
            log,
            900,
        )
        if workers > 1:  # /healthz answers as soon as the first worker does; give the others their start-up
            time.sleep(5)
        pids["wayfinder"] = service.pid
        yield url, pids
    finally:
        for process in reversed(processes):  # the service first, then the store under it
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def preflight(url: str, key: str, users: list[str], count: int = 6) -> list[float]:
    """Milliseconds of single nextSteps requests, one at a time (the first one is cold)."""
    times = []
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {key}"}, timeout=600) as http:
        for user in users[:count]:
            started_at = time.perf_counter()
            body = http.post(
                "/graphql",
                json={"query": loadgen.NEXT_STEPS, "variables": {"user": user, "channel": "WEB", "limit": 5}},
            ).json()
            times.append(round((time.perf_counter() - started_at) * 1e3, 1))
            if body.get("errors"):
                raise RuntimeError(f"preflight nextSteps failed: {body['errors']}")
    return times


def run_config(name: str, args, source: Path, before: dict[str, int], users: list[str]) -> dict:
    kind, workers, per_connection = CONFIGS[name]
    work: Path = args.work
    store = work / f"store-{name}"
    if store.exists():
        shutil.rmtree(store)
    subprocess.run(
        [OXIGRAPH, "backup", "--location", str(source), "--destination", str(store)], check=True, capture_output=True
    )
    # With API keys a policy version serves once approved: approve the demo's, as a release manager would.
    subprocess.run(
        [*WAYFINDER, "policy", "approve", "default@1.2.0", "--approved-by", "bench", "--store", str(store)],
        check=True,
        capture_output=True,
    )
    key = secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYFINDER_")}
    env.update(
        {
            "WAYFINDER_API_KEYS": f"{key}:client",
            "WAYFINDER_MODELS_DIR": str(work / "models"),
            "WAYFINDER_LOG_FORMAT": "json",
        }
    )
    out: dict = {"kind": kind, "workers": workers, "requests_per_connection": per_connection}
    if args.quiet_below:
        out["machine_before"] = wait_for_quiet(args.quiet_below, args.quiet_patience)
        print(f"  machine before the start: {out['machine_before']}", flush=True)
    server_cpus = cpu_list(args.server_cpus) if args.server_cpus else None
    with started(name, kind, workers, store, work, env, server_cpus) as (url, pids):
        rng = loadgen.random.Random(args.seed + 7)
        pre = preflight(url, key, rng.sample(users, min(6, len(users))))
        # The first decision of a process imports the model registry (torch): seconds, once.
        out["preflight_next_steps_ms"] = {"first_cold": pre[0], "then": pre[1:]}
        print(f"  {name}: single nextSteps {pre} ms", flush=True)
        warm = statistics.median(pre[1:] or pre)
        if warm > args.max_preflight_ms:
            out["skipped"] = (
                f"a single nextSteps takes {warm:,.0f} ms (median of {len(pre[1:])} after the first), "
                f"over --max-preflight-ms {args.max_preflight_ms}"
            )
            return out
        config = loadgen.LoadConfig(
            url=url,
            users=users,
            clients=args.clients,
            duration_s=args.duration,
            warmup_s=args.warmup,
            api_key=key,
            timeout_s=args.timeout,
            seed=args.seed,
            requests_per_connection=per_connection,
        )
        samples: dict[str, dict[str, float]] = {}

        def mark(when: str) -> None:
            samples[when] = {
                "wayfinder": cpu_seconds([pids["wayfinder"]]),
                "oxigraph": cpu_seconds([pids["oxigraph"]]) if "oxigraph" in pids else 0.0,
                "loadgen": time.process_time(),
                "machine": busy_cores_seconds(),
                "wall": time.perf_counter(),
                "loadavg": os.getloadavg(),
            }

        report, ledger = asyncio.run(loadgen.run(config, mark=mark))
        out.update(report)
        wall = samples["stop"]["wall"] - samples["start"]["wall"]
        requests = max(report["overall"]["requests"], 1)
        cpu = {
            who: samples["stop"][who] - samples["start"][who] for who in ("wayfinder", "oxigraph", "loadgen", "machine")
        }
        # What the rest of the machine (other sessions' tests and benchmarks) used meanwhile.
        cpu["others"] = max(0.0, cpu.pop("machine") - cpu["wayfinder"] - cpu["oxigraph"] - cpu["loadgen"])
        out["cpu"] = {
            "seconds": {k: round(v, 2) for k, v in cpu.items()},
            "ms_per_request": {k: round(v * 1e3 / requests, 2) for k, v in cpu.items()},
            "cores_busy": {k: round(v / wall, 2) for k, v in cpu.items()},
            "cores": os.cpu_count(),
        }
        out["loadavg"] = {"start": samples["start"]["loadavg"], "stop": samples["stop"]["loadavg"]}
        out["peak_rss_mb"] = {
            "wayfinder": round(peak_rss_mb([pids["wayfinder"]]), 1),
            "oxigraph": round(peak_rss_mb([pids["oxigraph"]]), 1) if "oxigraph" in pids else None,
        }
    after = count_writes(store)
    out["decisions_by_process"] = decisions_by_chain(store)
    acknowledged = {
        "decisions": ledger.decisions + len(pre),
        "events": ledger.events,
        "consent_records": ledger.consents,
    }
    out["stored_check"] = {
        "acknowledged": acknowledged,
        "stored": {k: after[k] - before[k] for k in after},
        "all_stored": all(after[k] - before[k] == acknowledged[k] for k in after),
        "note": "decisions include the preflight requests; counts include the warm-up",
    }
    if not args.keep:
        shutil.rmtree(store)
        Path(f"{store}.anchors.jsonl").unlink(missing_ok=True)  # the audit checkpoints of the embedded store
    return out


def table(results: dict) -> str:
    rows = []
    for name, r in results["configurations"].items():
        if "skipped" in r:
            rows.append((name, "skipped: " + r["skipped"], *[""] * 10))
            continue
        ops, overall = r["by_operation"], r["overall"]
        cell = lambda op, key, ops=ops: loadgen.ms(ops.get(op, {}).get(key))  # noqa: E731
        check = r["stored_check"]["all_stored"]
        rows.append(
            (
                name,
                f"{overall['throughput_rps']:,.1f}",
                f"{loadgen.ms(overall.get('p50_ms'))} / {loadgen.ms(overall.get('p99_ms'))}",
                f"{cell('nextSteps', 'p50_ms')} / {cell('nextSteps', 'p99_ms')}",
                f"{cell('events', 'p50_ms')} / {cell('events', 'p99_ms')}",
                f"{cell('consent', 'p50_ms')} / {cell('consent', 'p99_ms')}",
                f"{overall['requests']:,}",
                f"{overall['errors']} ({overall['error_rate']:.2%})",
                overall["refused"],
                "yes" if check else "NO",
                " / ".join(f"{r['cpu']['cores_busy'][k]:.2f}" for k in ("wayfinder", "oxigraph", "loadgen", "others")),
                " / ".join(
                    "-" if r.get("peak_rss_mb", {}).get(k) is None else f"{r['peak_rss_mb'][k]:,.0f}"
                    for k in ("wayfinder", "oxigraph")
                ),
            )
        )
    for name, why in NOT_POSSIBLE.items():
        rows.append((name, "not possible: " + why, *[""] * 10))
    return lib.table(
        [
            "configuration",
            "req/s",
            "all p50 / p99 ms",
            "nextSteps p50 / p99",
            "events p50 / p99",
            "consent p50 / p99",
            "requests",
            "errors (rate)",
            "refused",
            "writes all stored",
            "cores busy: service / oxigraph / loadgen / others",
            "peak MB: service / oxigraph",
        ],
        rows,
    )


def write(results: dict, out: Path, command: str, args) -> None:
    text = (
        f"{args.users:,} users, {args.clients} clients, {args.duration:g} s per configuration, git "
        f"{results['git_head']} (service on {results['cpus']['server']}, load generator on "
        f"{results['cpus']['loadgen']}).\n\n{table(results)}"
    )
    lib.write_result(out.parent, out.stem, results, markdown=text, command=command)


def main(argv: list[str] | None = None) -> None:
    global OXIGRAPH, WAYFINDER
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds per configuration")
    parser.add_argument("--warmup", type=float, default=10.0, help="unmeasured seconds first")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a request counts as an error")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--max-preflight-ms",
        type=float,
        default=100.0,
        help="skip the load on a store where one nextSteps takes longer (median of 5)",
    )
    parser.add_argument(
        "--quiet-below",
        type=float,
        default=0.0,
        help="before each configuration, wait until other processes keep fewer cores busy than this",
    )
    parser.add_argument("--quiet-patience", type=float, default=600.0, help="longest wait for quiet, seconds")
    parser.add_argument("--server-cpus", help="keep the service and Oxigraph on these CPUs, e.g. 0-1")
    parser.add_argument("--loadgen-cpus", help="keep this process (the load generator) on these CPUs, e.g. 2-3")
    parser.add_argument("--oxigraph", default=OXIGRAPH, help="the oxigraph command")
    parser.add_argument("--wayfinder", default=shlex.join(WAYFINDER), help="the wayfinder command")
    parser.add_argument("--git-head", help="the commit measured, where this copy has no .git")
    parser.add_argument("--work", type=Path, default=Path("/tmp/wf-load"), help="stores and logs go here")
    parser.add_argument("--repopulate", action="store_true", help="rebuild the populated store even if it exists")
    parser.add_argument("--keep", action="store_true", help="keep each configuration's store after its run")
    parser.add_argument("--out", type=Path, help="result JSON (default results/load-<users>.json)")
    args = parser.parse_args(argv)
    OXIGRAPH, WAYFINDER = args.oxigraph, shlex.split(args.wayfinder)
    if args.loadgen_cpus:
        os.sched_setaffinity(0, cpu_list(args.loadgen_cpus))
    names = [n for n in args.configs.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown configurations {unknown}; {NOT_POSSIBLE}")
    command = lib.command_line()
    print(f"command: {command}", flush=True)
    args.work.mkdir(parents=True, exist_ok=True)
    label = lib.size_label(args.users)
    source, meta_file = args.work / f"source-{label}", args.work / f"source-{label}.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() and source.exists() else None
    if args.repopulate or meta is None or meta.get("users") != args.users:
        print(f"populating {args.users:,} users into {source}", flush=True)
        started_at = time.perf_counter()
        populated = populate(source, args.users, seed=42)
        meta = {
            "users": args.users,
            "seed": 42,
            "git_head": args.git_head or lib.environment()["git_head"],
            "seconds": round(time.perf_counter() - started_at, 1),
            "populate": populated,
        }
        meta_file.write_text(json.dumps(meta, indent=2))
    if not names:
        print("no configuration named: the store is populated, nothing else to do")
        return
    before = count_writes(source)
    users = loadgen.user_ids(args.users)
    results = {
        "users": args.users,
        "store": meta,
        "store_counts_before": before,
        "configurations": {},
        "not_possible": NOT_POSSIBLE,
        "working_tree_changes": working_tree_changes(),
    }
    out = args.out or RESULTS / f"load-{label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    results["environment"] = lib.environment()
    results["git_head"] = args.git_head or results["environment"]["git_head"]
    results["cpus"] = {"server": args.server_cpus or "any", "loadgen": args.loadgen_cpus or "any"}
    results["environment"]["versions"]["oxigraph (server)"] = subprocess.run(
        [OXIGRAPH, "--version"], capture_output=True, text=True
    ).stdout.strip()
    for name in names:
        print(f"{name}: {args.clients} clients, {args.warmup:g} s warm-up, {args.duration:g} s", flush=True)
        results["configurations"][name] = run_config(name, args, source, before, users)
        write(results, out, command, args)  # after each configuration, so that a run cut short keeps its figures
    print(table(results))
    print(f"wrote {os.path.relpath(out, ROOT)} and .md")
    failed = [
        n
        for n, r in results["configurations"].items()
        if "skipped" not in r and (r["overall"]["errors"] or not r["stored_check"]["all_stored"])
    ]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
