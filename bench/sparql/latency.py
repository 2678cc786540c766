"""Time /sparql queries end to end through the endpoint: a worker process per query, as auditors see it.

Runs against whatever `service` package is first on the path, so the same script
times two versions side by side: this checkout, and another one (a git worktree of
an older commit) given with PYTHONPATH. Prints p50 and p90 per query and writes JSON.

    .venv/bin/python bench/sparql/latency.py --runs 20 --out bench/sparql/results/now.json
    git worktree add /tmp/before <commit>
    PYTHONPATH=/tmp/before .venv/bin/python bench/sparql/latency.py --runs 20 --out bench/sparql/results/before.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

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
                answer = asyncio.run(endpoint.answer(query, accept="application/sparql-results+json"))
                times.append(time.perf_counter() - started)
                assert answer.status == 200, answer.body[:200]
            times = sorted(times[1:])
            results[name] = {
                "p50_ms": round(1000 * statistics.median(times), 1),
                "p90_ms": round(1000 * times[int(0.9 * (len(times) - 1))], 1),
                "runs": len(times),
            }
            print(f"{name:22s} p50 {results[name]['p50_ms']:7.1f} ms   p90 {results[name]['p90_ms']:7.1f} ms")
        endpoint.close()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "service": str(Path(service.__file__).parent),
                    "results": results,
                    "command": "python bench/sparql/latency.py " + f"--runs {args.runs}",
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
