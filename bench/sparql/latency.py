"""Time /sparql queries end to end through the endpoint: a worker process per query, as auditors see it.

Runs against whatever `service` package is first on the path, so the same script
times two versions side by side: this checkout, and another one (a git worktree of
an older commit) given first on PYTHONPATH, this checkout after it for ``bench.lib``.
Prints p50 and p90 (nearest rank, ``bench.lib.percentile``) per query and writes JSON.

    .venv/bin/python -m bench.sparql.latency --runs 20 --out bench/sparql/results/now.json
    git worktree add /tmp/before <commit>
    cd /tmp/before && PYTHONPATH=/tmp/before:/work/main /work/main/.venv/bin/python /work/main/bench/sparql/latency.py \
        --runs 20 --out /work/main/bench/sparql/results/before.json
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bench import lib

QUERIES = {
    "ask": "ASK {}",
    "decisions-by-policy": (
        "PREFIX wf: <https://w3id.org/wayfinder/ontology#> "
        "SELECT ?policy (COUNT(?d) AS ?n) WHERE { ?d a wf:Decision ; wf:policyVersion ?policy } GROUP BY ?policy"
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import service
    from service.audit.sparql import SparqlEndpoint
    from service.decisions import decide, users
    from service.demo import knowledge_files
    from service.runtime import Runtime
    from service.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        runtime = Runtime(settings=Settings(store=str(Path(tmp) / "store"), models_dir=Path(tmp) / "models"))
        runtime.ensure_ontology()
        runtime.load(knowledge_files(runtime))
        for i in range(20):
            users.register(runtime, users.Registration(id=f"u{i}", consents=["PERSONALIZATION"]))
            decide.next_steps(runtime, f"u{i}")
        endpoint = SparqlEndpoint(runtime.store, timeout_s=10, max_rows=1000)
        results = {}
        for name, query in QUERIES.items():
            times = []
            for _ in range(args.runs + 1):  # the first is a warm-up
                started = time.perf_counter()
                answer = asyncio.run(endpoint.answer(query, accept=["application/sparql-results+json"]))
                times.append(time.perf_counter() - started)
                assert answer.status == 200, answer.body[:200]
            times = times[1:]
            results[name] = {
                "p50_ms": round(1000 * lib.percentile(times, 50), 1),
                "p90_ms": round(1000 * lib.percentile(times, 90), 1),
                "runs": len(times),
                "samples_ms": [round(1000 * t, 1) for t in times],
            }
            print(f"{name:22s} p50 {results[name]['p50_ms']:7.1f} ms   p90 {results[name]['p90_ms']:7.1f} ms")
        endpoint.close()
    if args.out:
        text = lib.table(
            ["query", "runs", "p50 ms", "p90 ms"],
            [(name, r["runs"], r["p50_ms"], r["p90_ms"]) for name, r in results.items()],
        )
        payload = {"service": str(Path(service.__file__).parent), "results": results}
        lib.write_result(args.out.resolve().parent, args.out.stem, payload, markdown=text)


if __name__ == "__main__":
    main()
