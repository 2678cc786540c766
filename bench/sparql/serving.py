"""/sparql as auditors meet it over HTTP: small-query latency, throughput from 4 clients, read-your-writes, and what
a runaway query does to nextSteps, for this checkout and an older one side by side on one store.

For each tree (``--tree PATH``, repeatable; ``.`` is this checkout) it copies one prepared store (the demo knowledge,
``--users`` users with a decision each), starts ``python -m service.cli serve`` from that tree on it, and measures:

- ``ask`` and ``by-policy`` (a GROUP BY over the decisions): sequential p50 and p90 of ``--runs`` requests;
- ``throughput``: ``ASK {}`` from 4 client threads for ``--seconds``, answers per second;
- ``read-your-writes``: after each of 50 nextSteps calls returns, whether an ASK for its decision finds it;
- ``next-steps`` (first, before any snapshot): nextSteps p50 and p90 alone, then while a runaway query is asked again
  and again in another thread (each stopped at the time limit, 2 s here), then alone again; the ratio is the p50
  beside the runaway over the p50 of both runs alone.

    .venv/bin/python -m bench.sparql.serving --tree /tmp/before --tree . --out bench/sparql/results/serving.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench import lib

ASK = "ASK {}"
BY_POLICY = (
    "PREFIX wf: <https://w3id.org/wayfinder/ontology#> "
    "SELECT ?policy (COUNT(?d) AS ?n) WHERE { ?d a wf:Decision ; wf:policyVersion ?policy } GROUP BY ?policy"
)
RUNAWAY = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i . ?j ?k ?l }"
JSON = {"accept": "application/sparql-results+json"}


def prepare(folder: Path, users: int) -> Path:
    """A store with the demo knowledge and ``users`` users who each got one decision."""
    from service.decisions import decide
    from service.decisions import users as people
    from service.demo import knowledge_files
    from service.runtime import Runtime
    from service.settings import Settings

    store = folder / "store"
    runtime = Runtime(settings=Settings(store=str(store), models_dir=folder / "models"))
    runtime.ensure_ontology()
    runtime.load(knowledge_files(runtime))
    for i in range(users):
        people.register(runtime, people.Registration(id=f"u{i}", role="analyst", consents=["PERSONALIZATION"]))
        decide.next_steps(runtime, f"u{i}")
    runtime.store.close()
    return store


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(tree: Path, store: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(tree), "WAYFINDER_SPARQL_TIMEOUT_S": "2", "WAYFINDER_LOG_LEVEL": "warning"}
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--store", str(store), "--port", str(port)],
        cwd=tree,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the service from {tree} did not start")


def timed(call, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def measure(url: str, *, runs: int, seconds: float, users: int) -> dict:
    http = httpx.Client(base_url=url, timeout=60)

    def ask(query: str) -> None:
        response = http.get("/sparql", params={"query": query}, headers=JSON)
        assert response.status_code == 200, response.text[:200]

    def next_steps(i: int) -> str:
        body = {"query": f'{{ nextSteps(userId: "u{i % users}") {{ decisionId }} }}'}
        response = http.post("/graphql", json=body)
        assert response.status_code == 200 and "errors" not in response.json(), response.text[:200]
        return response.json()["data"]["nextSteps"]["decisionId"]

    out: dict = {}
    counter = iter(range(10**9))
    next_steps(0)
    alone = timed(lambda: next_steps(next(counter)), runs)  # first, before any snapshot was taken
    running = threading.Event()
    running.set()
    stopped = []

    def runaway() -> None:
        mine = httpx.Client(base_url=url, timeout=60)
        while running.is_set():
            stopped.append(mine.get("/sparql", params={"query": RUNAWAY}).status_code)

    thread = threading.Thread(target=runaway)
    thread.start()
    time.sleep(0.5)
    beside = timed(lambda: next_steps(next(counter)), runs)
    running.clear()
    thread.join()
    again = timed(lambda: next_steps(next(counter)), runs)  # alone again, so drift shows
    out["next-steps"] = {
        "alone": lib.summary_ms(alone),
        "beside-runaway": lib.summary_ms(beside),
        "alone-after": lib.summary_ms(again),
        "p50_ratio": round(lib.percentile(beside, 50) / lib.percentile(alone + again, 50), 3),
        "runaway_statuses": sorted(set(stopped)),
    }

    for name, query in (("ask", ASK), ("by-policy", BY_POLICY)):
        ask(query)  # warm-up
        out[name] = lib.summary_ms(timed(lambda q=query: ask(q), runs))

    counts = [0, 0, 0, 0]
    stop = time.monotonic() + seconds

    def client(k: int) -> None:
        mine = httpx.Client(base_url=url, timeout=60)
        while time.monotonic() < stop:
            if mine.get("/sparql", params={"query": ASK}, headers=JSON).status_code == 200:
                counts[k] += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out["throughput"] = {"answers_per_s": round(sum(counts) / seconds, 1), "clients": 4, "seconds": seconds}

    seen = 0
    for i in range(50):
        decision = next_steps(i)
        found = http.get(
            "/sparql",
            params={"query": f"ASK {{ <https://w3id.org/wayfinder/decision/{decision}> ?p ?o }}"},
            headers=JSON,
        )
        seen += found.status_code == 200 and found.json()["boolean"] is True
    out["read-your-writes"] = {"visible": seen, "of": 50}

    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, action="append", required=True)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        prepared = prepare(Path(tmp) / "prepared", args.users)
        for tree in args.tree:
            tree = tree.resolve()
            store = Path(tmp) / f"store-{len(results)}"
            shutil.copytree(prepared, store)
            port = free_port()
            process = serve(tree, store, port)
            try:
                started = time.monotonic()
                results[str(tree)] = measure(
                    f"http://127.0.0.1:{port}", runs=args.runs, seconds=args.seconds, users=args.users
                )
                results[str(tree)]["seconds"] = round(time.monotonic() - started, 1)
            finally:
                process.terminate()
                process.wait(timeout=30)
            r = results[str(tree)]
            print(
                f"{tree}: ask p50 {r['ask']['p50_ms']} ms, by-policy p50 {r['by-policy']['p50_ms']} ms, "
                f"{r['throughput']['answers_per_s']} answers/s from 4 clients, read-your-writes "
                f"{r['read-your-writes']['visible']}/50, nextSteps p50 {r['next-steps']['alone']['p50_ms']} ms alone "
                f"and {r['next-steps']['beside-runaway']['p50_ms']} ms beside a runaway query "
                f"({r['next-steps']['p50_ratio']}x)",
                flush=True,
            )
    if args.out:
        rows = [
            (
                tree,
                r["ask"]["p50_ms"],
                r["by-policy"]["p50_ms"],
                r["throughput"]["answers_per_s"],
                f"{r['read-your-writes']['visible']}/50",
                r["next-steps"]["alone"]["p50_ms"],
                r["next-steps"]["beside-runaway"]["p50_ms"],
                r["next-steps"]["p50_ratio"],
            )
            for tree, r in results.items()
        ]
        text = lib.table(
            [
                "tree",
                "ASK p50 ms",
                "GROUP BY p50 ms",
                "ASK/s, 4 clients",
                "read your writes",
                "nextSteps p50 ms",
                "beside runaway",
                "ratio",
            ],
            rows,
        )
        lib.write_result(args.out.resolve().parent, args.out.stem, {"results": results}, markdown=text)


if __name__ == "__main__":
    main()
