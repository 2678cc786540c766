"""The per-user queries of nextSteps, before and after they were made to start from the user.

For random users of a populated store it times, query by query,

- the queries as they were before (755e586, kept below as BEFORE): ?user and
  ?channel bound with pyoxigraph ``substitutions``, correlated FILTER NOT EXISTS
  in candidates.rq, every pattern over the union of all graphs;
- the queries as the service runs them now (queries/service/*.rq, terms written
  into the text by service/knowledge/queries.py, the user's facts read in their own
  graph, conditions subtracted with MINUS),

and checks that both give the same rows for every user run both ways
(``--compare``, all users by default; on the 100k store each candidates run of
the old form takes tens of seconds). The channel rotates over the four channels,
and each user is drawn once, so the reads are as cold as in a run of nextSteps.

    .venv/bin/python -m bench.next_steps.read_queries --store /tmp/wf-bench-store --users 400 --compare 2
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from pathlib import Path

import pyoxigraph as ox

from bench import lib
from service.knowledge import vocab
from service.knowledge.queries import inline
from service.knowledge.store import Row
from service.runtime import Runtime, term
from service.settings import Settings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = HERE / "results"

PREFIXES = "PREFIX wf: <https://w3id.org/wayfinder/ontology#>\nPREFIX dpv: <https://w3id.org/dpv#>\n"

# The four queries as they were at 755e586 (header comments left out), run with substitutions.
BEFORE = {
    "candidates": PREFIXES
    + """SELECT DISTINCT ?step ?user ?channel WHERE {
  ?step a wf:Step ;
        wf:availableOn ?channel .
  FILTER NOT EXISTS {
    ?done wf:byUser ?user ;
          wf:aboutStep ?step .
    { ?done a wf:StepCompleted } UNION { ?done a wf:StepDismissed }
  }
  FILTER NOT EXISTS {
    ?step wf:requires+ ?prerequisite .
    FILTER NOT EXISTS {
      ?completed a wf:StepCompleted ;
                 wf:byUser ?user ;
                 wf:aboutStep ?prerequisite .
    }
  }
  FILTER (NOT EXISTS { ?step wf:forRole ?anyRole }
          || EXISTS { ?user wf:hasRole ?role . ?step wf:forRole ?role })
  FILTER NOT EXISTS {
    ?step wf:requiresPlan ?requiredPlan .
    FILTER NOT EXISTS { ?user wf:hasPlan ?plan . ?plan wf:includesPlan* ?requiredPlan }
  }
}""",
    "consent-records": PREFIXES
    + """SELECT ?user ?record ?purpose ?code ?status ?at WHERE {
  ?record a dpv:ConsentRecord ;
          dpv:hasDataSubject ?user ;
          dpv:hasPurpose ?purpose ;
          dpv:hasConsentStatus ?status ;
          dpv:isIndicatedAtTime ?at .
  ?purpose wf:purposeCode ?code .
}
ORDER BY ?at ?record""",
    "profile": PREFIXES
    + """SELECT ?user ?role ?industry ?plan ?signupChannel ?pseudonym ?registeredAt WHERE {
  ?user a wf:User .
  OPTIONAL { ?user wf:hasRole ?role }
  OPTIONAL { ?user wf:hasIndustry ?industry }
  OPTIONAL { ?user wf:hasPlan ?plan }
  OPTIONAL { ?user wf:signupChannel ?signupChannel }
  OPTIONAL { ?user wf:pseudonym ?pseudonym }
  OPTIONAL { ?user wf:registeredAt ?registeredAt }
}""",
    "user-events": PREFIXES
    + """SELECT ?user ?event ?type ?step ?feature ?at WHERE {
  ?event wf:byUser ?user ;
         a ?type ;
         wf:occurredAt ?at .
  FILTER (?type IN (wf:StepCompleted, wf:StepDismissed, wf:FeatureUsed, wf:Activated, wf:Converted))
  OPTIONAL { ?event wf:aboutStep ?step }
  OPTIONAL { ?event wf:aboutFeature ?feature }
}
ORDER BY ?at ?event""",
}
# The parameters each query takes now (written into the text), from the user and the channel.
PARAMETERS = {
    "candidates": ("user", "userGraph", "channel"),
    "consent-records": ("user",),
    "profile": ("user", "userGraph"),
    "user-events": ("user", "userGraph"),
}


def substituted(store: ox.Store, query: str, bound: dict[str, ox.NamedNode]) -> list[Row]:
    """Return the rows of a query run as before: its parameters bound with pyoxigraph's ``substitutions``."""
    solutions = store.query(
        query, substitutions={ox.Variable(k): v for k, v in bound.items()}, use_default_graph_as_union=True
    )
    assert isinstance(solutions, ox.QuerySolutions)
    names = [v.value for v in solutions.variables]
    return [{name: solution[name] for name in names} for solution in solutions]


def projected(query: str) -> set[str]:
    """Return the variables a SELECT of BEFORE projects, less the parameters (written into the text now)."""
    head = query[query.index("SELECT") : query.index("WHERE")]
    return set(re.findall(r"\?(\w+)", head)) - {"user", "channel"}


def answer(rows: list[dict], columns: set[str]) -> list[tuple]:
    """Rows in a stable order, on the columns both forms project (the queries now also give ?recordedAt, ?orderedAt)."""
    return sorted(tuple(sorted((k, str(v)) for k, v in row.items() if k in columns)) for row in rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path("/tmp/wf-bench-store"))
    parser.add_argument("--users", type=int, default=400, help="random users, each run once with the service's queries")
    parser.add_argument("--compare", type=int, default=None, help="users also run with the old queries (default: all)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--label")
    args = parser.parse_args(argv)
    print(f"command: {lib.command_line()}", flush=True)
    meta = json.loads(Path(str(args.store) + ".bench.json").read_text())
    label = args.label or lib.size_label(meta["users"])
    rng = random.Random(args.seed)
    population = range(meta["first"], meta["first"] + meta["users"])
    ids = [meta["id_format"].format(i) for i in rng.sample(population, min(args.users, len(population)))]
    compare = len(ids) if args.compare is None else min(args.compare, len(ids))

    runtime = Runtime(settings=Settings(store=str(args.store)))
    channels = list(runtime.knowledge.codes.channels.values())
    store = runtime.store
    # The old forms bind with pyoxigraph's substitutions, which the service no longer offers: they run on
    # the same folder opened read-only by pyoxigraph itself (populate.py flushed it; nothing writes it here).
    raw = ox.Store.read_only(str(args.store))
    times: dict[str, list[float]] = {f"{name} {when}": [] for name in BEFORE for when in ("before", "now")}
    same = 0
    try:
        for i, uid in enumerate(ids):
            values = {"user": vocab.user_iri(uid), "userGraph": vocab.user_graph(uid), "channel": term(channels[i % 4])}
            now, before = {}, {}
            for name in BEFORE:
                text = inline(runtime.queries[name], **{p: values[p] for p in PARAMETERS[name]})
                t = time.perf_counter()
                now[name] = answer(store.select(text), projected(BEFORE[name]))
                times[f"{name} now"].append(time.perf_counter() - t)
            if i >= compare:
                continue
            for name, text in BEFORE.items():
                bound = {"user": values["user"], **({"channel": values["channel"]} if name == "candidates" else {})}
                t = time.perf_counter()
                before[name] = answer(substituted(raw, text, bound), projected(text))
                times[f"{name} before"].append(time.perf_counter() - t)
            if before != now:
                raise SystemExit(f"different answers for {uid} on {channels[i % 4]}: {before} vs {now}")
            same += 1
            print(
                f"  {uid} ({vocab.local_id(channels[i % 4])}): "
                + ", ".join(
                    f"{name} {times[name + ' before'][-1] * 1e3:,.1f} -> {times[name + ' now'][-1] * 1e3:.2f} ms"
                    for name in BEFORE
                )
                + "; same answers",
                flush=True,
            )
    finally:
        store.close()

    summary = {k: lib.summary_ms(v) for k, v in times.items() if v}
    rows = []
    for name in BEFORE:
        b, n = summary.get(f"{name} before"), summary[f"{name} now"]
        rows.append(
            (
                name,
                b["n"] if b else 0,
                b["p50_ms"] if b else "",
                b["p99_ms"] if b else "",
                n["n"],
                n["p50_ms"],
                n["p99_ms"],
                n["max_ms"],
            )
        )
    text = (
        f"## per-user queries of nextSteps, before and now, store {label} (ms)\n\n"
        + lib.table(
            ["query", "users before", "before p50", "before p99", "users now", "now p50", "now p99", "now max"], rows
        )
        + f"\n\nsame answers on all {same} users run both ways"
    )
    print("\n" + text)
    payload = {
        "store": meta,
        "users": len(ids),
        "compared_users": same,
        "timings": summary,
        "before": BEFORE,
        "now": {name: runtime.queries[name] for name in BEFORE},
    }
    out = lib.write_result(RESULTS, f"read-queries-{label}", payload, markdown=text)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
