"""SHACL benchmark: pyshacl with the project's shapes, full store vs the per-write delta.

Shapes: shapes/*.ttl (catalog and privacy), parsed once into one rdflib graph, and
validated exactly as service/knowledge/validation.py does: pyshacl.validate(data,
shacl_graph=shapes, inference="none", advanced=True, allow_warnings=True,
focus_nodes=...). The data graph holds the ontology, the synthetic catalog and
the users, their events and consent records (bench/store/generate.py), sized in
SHACL target nodes: users + events + consent records.

1. Full validation of 10k and 100k nodes, in a fresh process each, stopped
   after --cap seconds (pyshacl cannot be interrupted otherwise): with all the
   shapes, and with all but wfsh:EventConsentShape (the one SPARQL constraint
   per event), to show where the time goes.
2. Cost per focus node at each size: pyshacl with focus_nodes= random samples
   of events / users / consent records over the whole graph (two calls, the
   second with twice the nodes: the difference is the marginal cost per node,
   the rest pyshacl's cost per call), and the full-run time these project.
3. The per-write delta, as service/decisions/writes.py builds it: 10 new events of one
   user, validated with focus_nodes= the 10 events over the knowledge
   (ontology + catalog) plus the user's graph and consent records read back
   from a pyoxigraph store that holds the 100k-node data; timed as neighbourhood
   build + validation. Also one refused write (FeatureUsed by a user without
   the consents), which must report the consent violation.

Each of 2 and 3 is also run with an experiment that the service does not do:
pyshacl re-parses the text of a SPARQL constraint for every focus node; the
"cached" variant patches pyshacl (in this process only) to parse each
constraint's text once (rdflib prepareQuery), to measure what the parsing costs.

    .venv/bin/python -m bench.store.shacl             # ~10 min
    .venv/bin/python -m bench.store.shacl --quick     # 2k/10k nodes, short caps
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import random
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pyoxigraph as ox

from bench import lib
from bench.store import generate as G
from service.decisions.users import event_quads
from service.synthetic import SyntheticEvent

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = HERE / "results"
SHAPES_DIR = ROOT / "shapes"
WF = G.WF
DPV = G.DPV
CONSENT_SHAPE = "https://w3id.org/wayfinder/shapes#EventConsentShape"


def load_shapes(without: str | None = None):
    import rdflib
    from rdflib.namespace import SH

    shapes = rdflib.Graph()
    for path in sorted(SHAPES_DIR.glob("*.ttl")):
        shapes.parse(path, format="turtle")
    if without:
        # Keep the shape, drop its target: it then validates nothing.
        for t in list(shapes.triples((rdflib.URIRef(without), SH.targetClass, None))):
            shapes.remove(t)
    return shapes


def build_graph(nodes: int, seed: int):
    """The ontology, the catalog and users up to `nodes` target nodes, as one rdflib graph."""
    import rdflib

    counts = G.Counts()
    graph = rdflib.Graph()
    G.add_to_rdflib(graph, G.generate(seed=seed, nodes=nodes, counts=counts))
    return graph, counts


def validate(data, shapes, focus=None):
    import pyshacl

    return pyshacl.validate(
        data, shacl_graph=shapes, inference="none", advanced=True, allow_warnings=True, focus_nodes=focus
    )


@contextlib.contextmanager
def cached_sparql_constraints():
    """Experiment: parse each SPARQL constraint's text once instead of once per focus node."""
    from pyshacl.constraints.sparql import sparql_based_constraints as module
    from rdflib.plugins.sparql import prepareQuery

    cls = module.SPARQLBasedConstraint
    original = cls._validate_sparql_query
    prepare = functools.lru_cache(maxsize=None)(prepareQuery)

    def patched(self, query, init_binds, target_graph):
        return original(self, prepare(query), init_binds, target_graph)

    cls._validate_sparql_query = patched
    try:
        yield
    finally:
        cls._validate_sparql_query = original


def violations_by_shape(report) -> dict[str, int]:
    import rdflib
    from rdflib.namespace import SH

    out: dict[str, int] = {}
    for result in report.subjects(rdflib.RDF.type, SH.ValidationResult):
        shape = str(report.value(result, SH.sourceShape)).rsplit("#", 1)[-1]
        out[shape] = out.get(shape, 0) + 1
    return out


# ---------------------------------------------------------------------------
# 1. Full validation (child process)


class Timeout(Exception):
    pass


def full_child(spec: dict) -> dict:
    t0 = time.perf_counter()
    graph, counts = build_graph(spec["nodes"], spec["seed"])
    shapes = load_shapes(without=CONSENT_SHAPE if spec["shapes"] == "without-consent" else None)
    built = time.perf_counter() - t0

    def on_alarm(signum, frame):
        raise Timeout()

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(spec["cap"]))
    t1 = time.perf_counter()
    try:
        conforms, report, _ = validate(graph, shapes)
        finished = True
    except Timeout:
        finished = False
    elapsed = time.perf_counter() - t1
    signal.alarm(0)
    return {
        "nodes": counts.nodes,
        "users": counts.users,
        "events": counts.events,
        "consents": counts.consents,
        "triples": len(graph),
        "build_s": built,
        "finished": finished,
        "validate_s": elapsed,
        "conforms": conforms if finished else None,
        "violations": violations_by_shape(report) if finished else None,
    }


def run_full(nodes: int, shapes: str, cap: float, seed: int) -> dict:
    spec = {"nodes": nodes, "shapes": shapes, "cap": cap, "seed": seed}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.store.shacl", "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=cap + 600,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------
# 2. Cost per focus node


def per_node_costs(graph, counts, shapes, sample: int, seed: int) -> dict:
    """Per kind of node: one call with `sample` focus nodes, one with 2 x `sample` other ones.

    The difference is the marginal cost of `sample` nodes; what remains of the
    first call is pyshacl's cost per call (it grows with the graph even with
    focus_nodes). The projection of a full run is the sum over all nodes of the
    marginal costs, plus one call's overhead.
    """
    import rdflib

    rng = random.Random(seed)
    kinds = {
        "event": [s for s in graph.subjects(rdflib.RDF.type, None) if str(s).startswith(G.BASE + "event/")],
        "user": list(graph.subjects(rdflib.RDF.type, rdflib.URIRef(WF + "User"))),
        "consent record": list(graph.subjects(rdflib.RDF.type, rdflib.URIRef(DPV + "ConsentRecord"))),
    }
    totals = {"event": counts.events, "user": counts.users, "consent record": counts.consents}
    out: dict = {"kinds": {}}
    for kind, nodes in kinds.items():
        nodes = sorted(set(nodes))
        picked = rng.sample(nodes, min(3 * sample, len(nodes)))
        times = []
        for focus in (picked[:sample], picked[sample:]):
            t0 = time.perf_counter()
            conforms, _, _ = validate(graph, shapes, focus=focus)
            times.append(time.perf_counter() - t0)
        marginal = max(0.0, (times[1] - times[0]) / (len(picked) - 2 * sample))
        out["kinds"][kind] = {
            "calls_s": times,
            "focus_sizes": [sample, len(picked) - sample],
            "marginal_s_per_node": marginal,
            "overhead_s_per_call": max(0.0, times[0] - sample * marginal),
            "total": totals[kind],
            "conforms": conforms,
        }
    overhead = statistics.median([k["overhead_s_per_call"] for k in out["kinds"].values()])
    out["overhead_s_per_call"] = overhead
    out["projected_full_s"] = overhead + sum(k["marginal_s_per_node"] * k["total"] for k in out["kinds"].values())
    return out


# ---------------------------------------------------------------------------
# 3. The per-write delta


def delta_bench(nodes: int, runs: int, seed: int, shapes) -> dict:
    import rdflib

    # The store, as the service holds it.
    counts = G.Counts()
    quads = list(G.generate(seed=seed, nodes=nodes, counts=counts))
    store = ox.Store()
    store.load("".join(G.nquads_lines(quads)), format=ox.RdfFormat.N_QUADS)
    knowledge = rdflib.Graph()  # runtime.knowledge.graph: ontology + catalog
    G.add_to_rdflib(knowledge, (q for q in quads if q[3] in (G.ONTOLOGY_GRAPH, G.CATALOG_GRAPH)))
    del quads
    rng = random.Random(seed + 7)
    cat = G.build_catalog(random.Random(seed))

    def new_user(i: int, refuse: bool = False):
        """Register a user with their consents (committed), and return the 10 new event quads."""
        c = G.Counts()
        while True:
            user_id = f"new{i:05d}"
            qs = G.user_quads(rng, cat, user_id, c, n_events=10)
            events = [q for q in qs if q[0].startswith(f"<{G.BASE}event/")]
            if len({q[0] for q in events}) == 10 or refuse:
                break
        stored = [q for q in qs if q not in events]
        if refuse:  # no consent at all, and one FeatureUsed event
            stored = [q for q in stored if q[3] != G.CONSENT_GRAPH]
            refused = SyntheticEvent(
                f"refused-{i}",
                G.WF + "FeatureUsed",
                datetime(2025, 6, 1, 10, tzinfo=UTC),
                feature=cat.features[0].iri[1:-1],
            )
            events = G.as_strings(
                event_quads(
                    ox.NamedNode(G.BASE + "event/" + refused.id),
                    user_id,
                    ox.NamedNode(refused.type),
                    at=refused.at,
                    feature=refused.feature,
                )
            )
        store.load("".join(G.nquads_lines(stored)), format=ox.RdfFormat.N_QUADS)
        return user_id, events

    def write(user_id: str, events: list) -> dict:
        """service/decisions/writes.py: neighbourhood + the new quads, focus = the new subjects."""
        t0 = time.perf_counter()
        graph = rdflib.Graph()
        graph += knowledge
        user = ox.NamedNode(G.BASE + "user/" + user_id)
        G.add_to_rdflib(
            graph,
            (
                (str(q.subject), str(q.predicate), str(q.object), None)
                for q in store.quads_for_pattern(None, None, None, ox.NamedNode(G.BASE + "graph/user/" + user_id))
            ),
        )
        consent = ox.NamedNode(G.BASE + "graph/consent")
        for record in store.quads_for_pattern(None, ox.NamedNode(DPV + "hasDataSubject"), user, consent):
            G.add_to_rdflib(
                graph,
                (
                    (str(q.subject), str(q.predicate), str(q.object), None)
                    for q in store.quads_for_pattern(record.subject, None, None, consent)
                ),
            )
        G.add_to_rdflib(graph, events)
        focus = sorted({rdflib.URIRef(q[0][1:-1]) for q in events})
        t1 = time.perf_counter()
        conforms, report, _ = validate(graph, shapes, focus=focus)
        t2 = time.perf_counter()
        return {
            "neighbourhood_s": t1 - t0,
            "validate_s": t2 - t1,
            "total_s": t2 - t0,
            "conforms": conforms,
            "triples": len(graph),
            "focus": len(focus),
            "violations": violations_by_shape(report),
        }

    out: dict = {"store_quads": len(store), "nodes": counts.nodes}
    deltas = [new_user(i) for i in range(runs + 1)]
    for label, ctx in (
        ("service (pyshacl as is)", contextlib.nullcontext()),
        ("experiment: SPARQL constraints parsed once", cached_sparql_constraints()),
    ):
        with ctx:
            write(*deltas[-1])  # warm-up
            results = [write(*d) for d in deltas[:runs]]
            refused = write(*new_user(10_000 + len(out), refuse=True))
        out[label] = {
            "runs": len(results),
            "neighbourhood_p50_s": statistics.median([r["neighbourhood_s"] for r in results]),
            "validate_p50_s": statistics.median([r["validate_s"] for r in results]),
            "total_p50_s": statistics.median([r["total_s"] for r in results]),
            "total_p99_s": lib.percentile([r["total_s"] for r in results], 99),
            "total_max_s": max(r["total_s"] for r in results),
            "graph_triples": results[0]["triples"],
            "focus_nodes": results[0]["focus"],
            "all_conform": all(r["conforms"] for r in results),
            "refused_write": {
                "conforms": refused["conforms"],
                "violations": refused["violations"],
                "total_s": refused["total_s"],
            },
        }
    return out


# ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description="pyshacl: full validation vs the per-write delta")
    parser.add_argument("--sizes", default="10000,100000", help="target nodes (users + events + consent records)")
    parser.add_argument("--cap", type=float, default=120, help="seconds before a full validation is stopped")
    parser.add_argument(
        "--cap-large",
        type=float,
        default=60,
        help="the same for sizes over 50k nodes (they cannot finish: see the projection)",
    )
    parser.add_argument("--sample", type=int, default=8, help="focus nodes per kind in the first per-node call")
    parser.add_argument("--delta-runs", type=int, default=15)
    parser.add_argument("--delta-nodes", type=int, default=100_000, help="size of the store the delta is read from")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--quick", action="store_true", help="sizes 2k,10k, cap 30 s, 5 delta runs")
    parser.add_argument("--full-only", action="store_true", help="only part 1 (for long runs with a high --cap)")
    parser.add_argument("--name", default=None, help="results/<name>.json (default shacl, or shacl-quick)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(full_child(json.loads(args.child))))
        return
    if args.quick:
        args.sizes, args.cap, args.delta_runs, args.delta_nodes, args.sample = "2000,10000", 30, 5, 10_000, 4
    sizes = [int(s) for s in args.sizes.split(",")]
    started = time.perf_counter()
    machine = lib.environment()
    shapes = load_shapes()
    shapes_digest = lib.files_digest(sorted(SHAPES_DIR.glob("*.ttl")))

    full: dict = {}
    per_node: dict = {}
    for nodes in sizes:
        for which in ("all", "without-consent"):
            r = run_full(nodes, which, args.cap if nodes <= 50_000 else args.cap_large, args.seed)
            full[f"{nodes}/{which}"] = r
            state = f"{r['validate_s']:.1f} s" if r["finished"] else f"stopped after {r['validate_s']:.0f} s"
            print(f"  full {nodes} nodes, shapes {which}: {state}", flush=True)
        if args.full_only:
            continue
        graph, counts = build_graph(nodes, args.seed)
        per_node[nodes] = {"service": per_node_costs(graph, counts, shapes, args.sample, args.seed)}
        with cached_sparql_constraints():
            per_node[nodes]["cached"] = per_node_costs(graph, counts, shapes, args.sample, args.seed)
        del graph
        print(f"  per-node costs at {nodes} nodes done", flush=True)
    delta = {} if args.full_only else delta_bench(args.delta_nodes, args.delta_runs, args.seed, shapes)
    print("  delta done", flush=True)
    elapsed = time.perf_counter() - started

    lines: list[str] = []
    emit = lines.append
    emit(f"machine at start: {lib.machine_line(machine)}")
    emit(f"shapes: shapes/*.ttl (sha256 {shapes_digest}), inference none, advanced=True")
    emit("")
    emit(
        f"1. full validation (fresh process each, stopped after {args.cap:.0f} s; {args.cap_large:.0f} s over 50k nodes)"
    )
    rows = []
    for key, r in full.items():
        nodes, which = key.split("/")
        rows.append(
            [
                f"{r['nodes']:,}",
                f"{r['users']:,} / {r['events']:,} / {r['consents']:,}",
                f"{r['triples']:,}",
                "all" if which == "all" else "all but EventConsentShape",
                f"{r['validate_s']:.1f} s" if r["finished"] else f"> {r['validate_s']:.0f} s (stopped)",
                "" if not r["finished"] else ("conforms" if r["conforms"] else json.dumps(r["violations"])),
            ]
        )
    emit(lib.table(["nodes", "users / events / consents", "triples", "shapes", "time", "result"], rows))
    emit("")
    if not args.full_only:
        emit(
            f"2. cost per focus node over the whole graph (calls with {args.sample} and {2 * args.sample} focus nodes "
            f"per kind; marginal = difference), and the full run it projects"
        )
        rows = []
        for nodes, variants in per_node.items():
            for label, r in variants.items():
                k = r["kinds"]
                rows.append(
                    [
                        f"{nodes:,}",
                        "service (pyshacl as is)" if label == "service" else "constraints parsed once",
                        lib.duration_text(k["event"]["marginal_s_per_node"]),
                        lib.duration_text(k["user"]["marginal_s_per_node"]),
                        lib.duration_text(k["consent record"]["marginal_s_per_node"]),
                        lib.duration_text(r["overhead_s_per_call"]),
                        f"{r['projected_full_s']:,.0f} s",
                    ]
                )
        emit(
            lib.table(
                ["nodes", "variant", "per event", "per user", "per consent record", "per call", "projected full run"],
                rows,
            )
        )
        emit("")
        emit(
            f"3. per-write delta: 10 new events of one user, neighbourhood read from a {delta['nodes']:,}-node store "
            f"({delta['store_quads']:,} quads); {args.delta_runs} writes"
        )
        rows = []
        for label, r in delta.items():
            if not isinstance(r, dict):
                continue
            rows.append(
                [
                    label,
                    f"{r['graph_triples']:,}",
                    r["focus_nodes"],
                    lib.duration_text(r["neighbourhood_p50_s"]),
                    lib.duration_text(r["validate_p50_s"]),
                    lib.duration_text(r["total_p50_s"]),
                    lib.duration_text(r["total_max_s"]),
                    "yes" if r["all_conform"] else "NO",
                    f"refused: {json.dumps(r['refused_write']['violations'])}"
                    if not r["refused_write"]["conforms"]
                    else "NOT refused",
                ]
            )
        emit(
            lib.table(
                [
                    "variant",
                    "graph triples",
                    "focus",
                    "neighbourhood p50",
                    "validate p50",
                    "total p50",
                    "total max",
                    "conform",
                    "bad write",
                ],
                rows,
            )
        )
    emit(f"\ntotal time {elapsed:.0f} s")
    text = "\n".join(lines)
    print(f"\ncommand: {lib.command_line()}\n{text}")
    path = lib.write_result(
        RESULTS,
        args.name or ("shacl" + ("-quick" if args.quick else "")),
        {
            "environment_at_start": machine,
            "shapes": {
                "files": [str(p.relative_to(ROOT)) for p in sorted(SHAPES_DIR.glob("*.ttl"))],
                "sha256_16": shapes_digest,
                "ontology_sha256_16": lib.files_digest([ROOT / "ontology" / "wayfinder.ttl"]),
            },
            "settings": {
                "inference": "none",
                "advanced": True,
                "allow_warnings": True,
                "cap_s": args.cap,
                "cap_large_s": args.cap_large,
                "delta_runs": args.delta_runs,
                "delta_nodes": args.delta_nodes,
                "sample": args.sample,
                "seed": args.seed,
            },
            "full": full,
            "per_node": {str(k): v for k, v in per_node.items()},
            "delta": delta,
            "total_s": elapsed,
        },
        markdown=text,
    )
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
