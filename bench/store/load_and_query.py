"""Load and query benchmark: pyoxigraph vs rdflib on the same synthetic store.

(a) Load the N-Quads file (the store layout, named graphs) and the N-Triples
    file (the same triples, no graph names) of --triples triples:
    - pyoxigraph: Store() in memory and Store(path) on disk, Store.load vs
      Store.bulk_load;
    - rdflib: Dataset.parse(format="nquads") for the N-Quads file and
      Graph.parse(format="nt") for the N-Triples file.
    Like is compared with like: N-Quads in pyoxigraph vs N-Quads in an rdflib
    Dataset, N-Triples in pyoxigraph vs N-Triples in an rdflib Graph.
    Every run is a fresh process (so RSS growth is that load's alone), the runs
    of all variants interleave, and the table shows medians over --runs runs.

(b) The "next steps" query (queries/next-steps-tuned.rq: user -> completed step ->
    next step -> introduced feature, in an area where the user used a feature,
    with every prerequisite completed) for --users random users, p50/p99 per
    pass, on the N-Quads store with the union of the named graphs as default
    graph (as the service queries it), in the process of the last load run:
    - pyoxigraph: the user's IRI written into the query; substitutions= (what
      service/knowledge/embedded.py does);
    - rdflib Dataset(default_union=True): the query string with the IRI
      written in (parsed on every call), and prepareQuery + initBindings.
    Results are compared user by user across engines and variants.
    Then, on the --pitfall-triples store, what goes wrong on a few users: the
    tuned query with the user bound by VALUES (as the shared-store mode binds
    parameters), the natural formulation (next-steps.rq), the service's
    queries/service/candidates.rq with substitutions= and with IRIs inline, and
    a two-pattern lookup (a user's StepCompleted events) with substitutions=
    and inline, which isolates how substitutions= plans.

    .venv/bin/python -m bench.store.load_and_query            # 1M triples, ~10 min
    .venv/bin/python -m bench.store.load_and_query --quick    # 100k triples, 1 min
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import lib
from bench.store import generate

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = HERE / "results"
QUERIES = HERE / "queries"
TMP = HERE / "tmp"
USER_BASE = "https://w3id.org/wayfinder/user/"
WEB = "https://w3id.org/wayfinder/ontology#Web"

LOAD_VARIANTS = [
    # (engine, store, method, format)
    ("pyoxigraph", "memory", "load", "nquads"),
    ("pyoxigraph", "memory", "bulk_load", "nquads"),
    ("pyoxigraph", "disk", "load", "nquads"),
    ("pyoxigraph", "disk", "bulk_load", "nquads"),
    ("pyoxigraph", "memory", "load", "ntriples"),
    ("pyoxigraph", "memory", "bulk_load", "ntriples"),
    ("rdflib", "Dataset", "parse", "nquads"),
    ("rdflib", "Graph", "parse", "ntriples"),
]
QUERY_ON = {("pyoxigraph", "memory", "bulk_load", "nquads"), ("rdflib", "Dataset", "parse", "nquads")}


def inline(query: str, user: str, **more: str) -> str:
    """Write the IRIs of ?user (and of more variables) into the query, and drop them from the projections."""
    text = re.sub(r"\?user\b", f"<{user}>", query)
    for name, iri in more.items():
        text = re.sub(rf"\?{name}\b", f"<{iri}>", text)
    return re.sub(
        r"(SELECT\s+(?:DISTINCT\s+)?)([^{]*?)(WHERE)",
        lambda m: m.group(1) + re.sub(r"<[^>]+>\s*", "", m.group(2)) + m.group(3),
        text,
    )


def with_values(query: str, user: str) -> str:
    """Bind ?user with a VALUES block at the top of the outer WHERE (as the shared-store mode does)."""
    return query.replace("WHERE {", f"WHERE {{ VALUES ?user {{ <{user}> }}", 1)


def signature(rows: list[str]) -> str:
    return hashlib.sha1("\n".join(sorted(rows)).encode()).hexdigest()[:12]


def timed_pass(users: list[str], run) -> tuple[dict, dict]:
    times, sigs = [], {}
    for u in users:
        t0 = time.perf_counter()
        rows = run(u)
        times.append(time.perf_counter() - t0)
        sigs[u] = signature(rows)
    stats = {
        "n": len(times),
        "p50_s": lib.percentile(times, 50),
        "p99_s": lib.percentile(times, 99),
        "mean_s": sum(times) / len(times),
        "max_s": max(times),
    }
    return stats, sigs


def passes(users: list[str], run, n: int, warmup: list[str]) -> dict:
    for u in warmup:
        run(u)
    out = {"passes": []}
    sigs = None
    for _ in range(n):
        stats, sigs = timed_pass(users, run)
        out["passes"].append(stats)
    out["p50_s"] = statistics.median([p["p50_s"] for p in out["passes"]])
    out["p99_s"] = statistics.median([p["p99_s"] for p in out["passes"]])
    out["signatures"] = sigs
    out["answers"] = None
    return out


# ---------------------------------------------------------------------------
# Child process: one load (and, for the last run of some variants, the queries)


def child(spec: dict) -> dict:
    engine, store_kind, method, fmt, path = spec["engine"], spec["store"], spec["method"], spec["format"], spec["path"]
    if engine == "pyoxigraph":  # import before the baseline: RSS growth is the data's, not the library's
        import pyoxigraph  # noqa: F401
    else:
        import rdflib  # noqa: F401
        import rdflib.plugins.parsers.nquads  # noqa: F401
        import rdflib.plugins.parsers.ntriples  # noqa: F401
    gc.collect()
    rss0 = lib.rss_mb()
    result: dict = {}
    if engine == "pyoxigraph":
        import pyoxigraph as ox

        rdf_format = ox.RdfFormat.N_QUADS if fmt == "nquads" else ox.RdfFormat.N_TRIPLES
        location = None
        if store_kind == "disk":
            location = TMP / f"ox-{method}-{time.time_ns()}"
            store = ox.Store(str(location))
        else:
            store = ox.Store()
        t0 = time.perf_counter()
        getattr(store, method)(path=path, format=rdf_format)
        result["load_s"] = time.perf_counter() - t0
        if location is not None:
            t1 = time.perf_counter()
            store.flush()
            result["flush_s"] = time.perf_counter() - t1
        result["triples"] = len(store)
        rss1, hwm = lib.rss_mb(), lib.peak_rss_mb()
        if location is not None:
            result["disk_mb"] = sum(f.stat().st_size for f in location.rglob("*") if f.is_file()) / 1e6
    else:
        import rdflib

        graph = rdflib.Dataset(default_union=True) if store_kind == "Dataset" else rdflib.Graph()
        t0 = time.perf_counter()
        graph.parse(path, format="nquads" if fmt == "nquads" else "nt")
        result["load_s"] = time.perf_counter() - t0
        result["triples"] = len(graph)
        gc.collect()
        rss1, hwm = lib.rss_mb(), lib.peak_rss_mb()
    result["rss_growth_mb"] = rss1 - rss0
    result["peak_rss_growth_mb"] = hwm - rss0
    result["triples_per_s"] = result["triples"] / result["load_s"]

    if spec.get("queries"):
        q = spec["queries"]
        users, warmup = q["users"], q["warmup"]
        tuned = (QUERIES / "next-steps-tuned.rq").read_text()
        natural = (QUERIES / "next-steps.rq").read_text()
        candidates = (HERE / "queries" / "candidates-before-rewrite.rq").read_text()
        out: dict = {}
        if engine == "pyoxigraph":

            def ox_rows(text, subs=None):
                return [
                    s["next"].value
                    for s in store.query(text, substitutions=subs or {}, use_default_graph_as_union=True)
                ]

            def user_var(u):
                return {ox.Variable("user"): ox.NamedNode(u)}

            out["next-steps-tuned, IRI inline"] = passes(
                users, lambda u: ox_rows(inline(tuned, u)), q["ox_passes"], warmup
            )
            out["next-steps-tuned, substitutions="] = passes(
                users, lambda u: ox_rows(tuned, user_var(u)), q["ox_passes"], warmup
            )
            if q.get("pitfalls"):
                few = users[: q["pitfall_users"]]
                out["next-steps-tuned, VALUES"] = passes(few, lambda u: ox_rows(with_values(tuned, u)), 1, [])
                lookup = (
                    "PREFIX wf: <https://w3id.org/wayfinder/ontology#>\n"
                    "SELECT ?user ?next WHERE { ?next wf:byUser ?user ; a wf:StepCompleted }"
                )
                out["user's completions (2 patterns), substitutions="] = passes(
                    few, lambda u: ox_rows(lookup, user_var(u)), 1, []
                )
                out["user's completions (2 patterns), IRI inline"] = passes(
                    few, lambda u: ox_rows(inline(lookup, u)), 1, []
                )
                out["next-steps (natural), IRI inline"] = passes(few, lambda u: ox_rows(inline(natural, u)), 1, [])
                web = ox.NamedNode(WEB)

                def cand(u, subst):
                    if subst:
                        sols = store.query(
                            candidates,
                            use_default_graph_as_union=True,
                            substitutions={ox.Variable("user"): ox.NamedNode(u), ox.Variable("channel"): web},
                        )
                    else:
                        sols = store.query(inline(candidates, u, channel=WEB), use_default_graph_as_union=True)
                    return [s["step"].value for s in sols]

                out["service candidates.rq, substitutions="] = passes(few, lambda u: cand(u, True), 1, [])
                out["service candidates.rq, IRIs inline"] = passes(few, lambda u: cand(u, False), 1, [])
        else:
            from rdflib import URIRef
            from rdflib.plugins.sparql import prepareQuery

            def rl_rows(result_rows):
                return [str(r.next) for r in result_rows]

            prepared = prepareQuery(tuned)
            out["next-steps-tuned, IRI inline (string, parsed per call)"] = passes(
                users, lambda u: rl_rows(graph.query(inline(tuned, u))), q["rdflib_passes"], warmup[:3]
            )
            out["next-steps-tuned, prepareQuery + initBindings"] = passes(
                users,
                lambda u: rl_rows(graph.query(prepared, initBindings={"user": URIRef(u)})),
                q["rdflib_passes"],
                warmup[:3],
            )
        result["queries"] = out
    if engine == "pyoxigraph":
        del store
        if store_kind == "disk":
            shutil.rmtree(location, ignore_errors=True)
    return result


def run_child(spec: dict, timeout: float) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.store.load_and_query", "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child failed for {spec}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description="pyoxigraph vs rdflib: load and query")
    parser.add_argument("--triples", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3, help="load runs per variant (medians)")
    parser.add_argument("--users", type=int, default=200, help="random users per query pass")
    parser.add_argument("--ox-passes", type=int, default=3)
    parser.add_argument("--rdflib-passes", type=int, default=1)
    parser.add_argument("--pitfall-triples", type=int, default=100_000)
    parser.add_argument("--pitfall-users", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--quick", action="store_true", help="100k triples, 2 runs, 50 users")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.quick:
        args.triples, args.runs, args.users = 100_000, 2, 50

    started = time.perf_counter()
    machine = lib.environment()
    files = generate.ensure(args.triples, args.seed)
    meta = json.loads(Path(files["meta"]).read_text())
    rng = random.Random(args.seed)
    user_numbers = rng.sample(range(1, meta["users"] + 1), min(args.users + 10, meta["users"]))
    users = [f"{USER_BASE}u{n:07d}" for n in user_numbers[: args.users]]
    warmup = [f"{USER_BASE}u{n:07d}" for n in user_numbers[args.users :]]
    TMP.mkdir(exist_ok=True)

    loads: dict[tuple, list[dict]] = {v: [] for v in LOAD_VARIANTS}
    queries: dict[str, dict] = {}
    for run in range(args.runs):
        for variant in LOAD_VARIANTS:
            engine, store_kind, method, fmt = variant
            spec = {"engine": engine, "store": store_kind, "method": method, "format": fmt, "path": files[fmt]}
            if run == args.runs - 1 and variant in QUERY_ON:
                spec["queries"] = {
                    "users": users,
                    "warmup": warmup,
                    "ox_passes": args.ox_passes,
                    "rdflib_passes": args.rdflib_passes,
                }
            r = run_child(spec, timeout=900)
            for name, q in r.pop("queries", {}).items():
                queries[f"{engine}: {name}"] = q
            loads[variant].append(r)
            print(f"  run {run + 1}/{args.runs} {engine} {store_kind} {method} {fmt}: {r['load_s']:.2f} s", flush=True)

    # Pitfalls, on the smaller store.
    pitfall_files = generate.ensure(args.pitfall_triples, args.seed)
    pmeta = json.loads(Path(pitfall_files["meta"]).read_text())
    prng = random.Random(args.seed + 1)
    pusers = [f"{USER_BASE}u{n:07d}" for n in prng.sample(range(1, pmeta["users"] + 1), args.pitfall_users + 3)]
    spec = {
        "engine": "pyoxigraph",
        "store": "memory",
        "method": "bulk_load",
        "format": "nquads",
        "path": pitfall_files["nquads"],
        "queries": {
            "users": pusers[: args.pitfall_users],
            "warmup": pusers[args.pitfall_users :],
            "ox_passes": 1,
            "rdflib_passes": 1,
            "pitfalls": True,
            "pitfall_users": args.pitfall_users,
        },
    }
    pitfalls = run_child(spec, timeout=900).get("queries", {})
    print("  pitfalls done", flush=True)

    # Answers must agree across engines and variants of the same question.
    for group in (queries, pitfalls):
        references: dict[str, dict] = {}
        for name, q in group.items():
            key = "candidates" if "candidates" in name else "lookup" if "completions" in name else "next-steps"
            reference = references.setdefault(key, q["signatures"])
            same = all(reference.get(u, s) == s for u, s in q["signatures"].items())
            q["answers"] = ("reference" if reference is q["signatures"] else "same") if same else "DIFFERENT"
    for q in list(queries.values()) + list(pitfalls.values()):
        q.pop("signatures")

    load_rows, load_json = [], []
    for variant, runs in loads.items():
        engine, store_kind, method, fmt = variant
        med = {
            k: statistics.median([r[k] for r in runs])
            for k in ("load_s", "triples_per_s", "rss_growth_mb", "peak_rss_growth_mb")
        }
        extra = ""
        if store_kind == "disk":
            med["flush_s"] = statistics.median([r["flush_s"] for r in runs])
            med["disk_mb"] = statistics.median([r["disk_mb"] for r in runs])
            extra = f"flush {med['flush_s']:.2f} s, {med['disk_mb']:.0f} MB on disk"
        call = {
            "pyoxigraph": f"Store({'path' if store_kind == 'disk' else ''}).{method}",
            "rdflib": f"{store_kind}.parse",
        }[engine]
        load_rows.append(
            [
                engine,
                call,
                "N-Quads" if fmt == "nquads" else "N-Triples",
                f"{med['load_s']:.2f} s",
                f"{med['triples_per_s'] / 1000:,.0f}k/s",
                f"+{med['rss_growth_mb']:,.0f} MB",
                f"+{med['peak_rss_growth_mb']:,.0f} MB",
                extra,
                " / ".join(f"{r['load_s']:.2f}" for r in runs),
            ]
        )
        load_json.append(
            {
                "engine": engine,
                "store": store_kind,
                "method": method,
                "format": fmt,
                "triples": runs[0]["triples"],
                "median": med,
                "runs": runs,
            }
        )

    def query_rows(qs: dict) -> list[list]:
        return [
            [
                name,
                q["passes"][0]["n"],
                len(q["passes"]),
                lib.duration_text(q["p50_s"]),
                lib.duration_text(q["p99_s"]),
                q["answers"],
            ]
            for name, q in qs.items()
        ]

    elapsed = time.perf_counter() - started
    text = "\n".join(
        [
            f"data: {Path(files['nquads']).relative_to(ROOT)} ({meta['triples']:,} triples, {meta['users']:,} users, "
            f"{meta['events']:,} events, {meta['consent_records']:,} consent records); seed {args.seed}",
            f"machine at start: {lib.machine_line(machine)}",
            "",
            f"(a) load, median of {args.runs} runs (each in a fresh process)",
            "",
            lib.table(
                ["engine", "call", "file", "time", "triples/s", "RSS growth", "peak RSS growth", "disk", "runs (s)"],
                load_rows,
            ),
            "",
            f"(b) next-steps query on the {meta['triples']:,}-triple N-Quads store (union default graph), "
            f"p50/p99 over random users; median over passes",
            "",
            lib.table(["engine: variant", "users", "passes", "p50", "p99", "answers"], query_rows(queries)),
            "",
            f"(b') formulations that go wrong, pyoxigraph, {pmeta['triples']:,}-triple store, {args.pitfall_users} users",
            "",
            lib.table(["variant", "users", "passes", "p50", "p99", "answers"], query_rows(pitfalls)),
            "",
            f"total time {elapsed:.0f} s",
        ]
    )
    print(f"\ncommand: {lib.command_line()}\n{text}")
    path = lib.write_result(
        RESULTS,
        "load_and_query" + ("-quick" if args.quick else ""),
        {
            "environment_at_start": machine,
            "data": {
                **meta,
                "nquads": str(Path(files["nquads"]).relative_to(ROOT)),
                "ntriples": str(Path(files["ntriples"]).relative_to(ROOT)),
                "ontology_sha256_16": lib.files_digest([ROOT / "ontology" / "wayfinder.ttl"]),
            },
            "load": load_json,
            "query": {
                "query_file": "bench/store/queries/next-steps-tuned.rq",
                "users": len(users),
                "variants": queries,
            },
            "pitfalls": {"triples": pmeta["triples"], "users": args.pitfall_users, "variants": pitfalls},
            "total_s": elapsed,
        },
        markdown=text,
    )
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
