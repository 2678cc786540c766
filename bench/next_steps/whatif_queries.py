"""What-if: the two slow per-user SPARQL queries of nextSteps, as shipped and rewritten (NOT the service).

Evidence for the report, not a fix: the service's files are unchanged. For random
users of a populated store it times

- ``candidates`` as the service runs it (queries/service/candidates.rq, ?user
  and ?channel bound through pyoxigraph ``substitutions``), and a rewrite with
  the same answers: the user's step events subtracted with MINUS instead of
  correlated FILTER NOT EXISTS, and the user and channel IRIs written into the
  query text (typed terms, serialised by pyoxigraph, as Store.commit does);
- ``consent-records`` as shipped (substitutions) and with the user IRI inlined.

Why it matters: pyoxigraph plans a query before it sees the substitutions, so
``?record a dpv:ConsentRecord`` (every record of every user) can come first;
and a FILTER NOT EXISTS correlated on ?step is evaluated once per step, from the
step side (every user's events about that step). Both costs grow with the whole
store, not with the user. The rewrite's answers are compared with the shipped
query's for every user where the shipped query runs (``--compare``, all users by
default; on the 100k store each shipped run takes tens of seconds).

    .venv/bin/python bench/next_steps/whatif_queries.py --store /tmp/wf-bench-store --users 200 --compare 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import pyoxigraph as ox  # noqa: E402

import benchlib  # noqa: E402
from service import vocab  # noqa: E402
from service.runtime import Runtime  # noqa: E402
from service.settings import Settings  # noqa: E402

CANDIDATES_REWRITE = """
PREFIX wf: <https://w3id.org/wayfinder/ontology#>
SELECT DISTINCT ?step WHERE {
  ?step a wf:Step ;
        wf:availableOn $CHANNEL .
  MINUS {
    ?done wf:byUser $USER ;
          wf:aboutStep ?step .
    { ?done a wf:StepCompleted } UNION { ?done a wf:StepDismissed }
  }
  MINUS {
    ?step wf:requires+ ?prerequisite .
    MINUS { ?completed wf:byUser $USER ; a wf:StepCompleted ; wf:aboutStep ?prerequisite . }
  }
  FILTER (NOT EXISTS { ?step wf:forRole ?anyRole }
          || EXISTS { $USER wf:hasRole ?role . ?step wf:forRole ?role })
  FILTER NOT EXISTS {
    ?step wf:requiresPlan ?requiredPlan .
    FILTER NOT EXISTS { $USER wf:hasPlan ?plan . ?plan wf:includesPlan* ?requiredPlan }
  }
}
"""


def inline(text: str, **terms: ox.NamedNode) -> str:
    """Write the terms into the query body (str(NamedNode) is its N-Triples form, escaping included)."""
    head, body = text.split("WHERE", 1)
    for name, term in terms.items():
        head = head.replace(f" ?{name}", "")
        body = body.replace(f"?{name}", str(term))
    return head + "WHERE" + body


def timed(fn) -> tuple[object, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path("/tmp/wf-bench-store"))
    parser.add_argument("--users", type=int, default=200, help="random users timed with the rewrites")
    parser.add_argument("--compare", type=int, default=None, help="users also run with the shipped queries (default: all)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--label")
    args = parser.parse_args(argv)
    command = benchlib.command_line()
    print(f"command: {command}", flush=True)
    meta = json.loads(Path(str(args.store) + ".bench.json").read_text())
    label = args.label or benchlib.size_label(meta["users"])
    rng = random.Random(args.seed)
    ids = [meta["id_format"].format(rng.randrange(meta["first"], meta["first"] + meta["users"])) for _ in range(args.users)]
    compare = len(ids) if args.compare is None else min(args.compare, len(ids))

    runtime = Runtime(settings=Settings(store=str(args.store)))
    store = runtime.store
    shipped_c, shipped_r = runtime.queries["candidates"], runtime.queries["consent-records"]
    web = vocab.WEB
    times: dict[str, list[float]] = {k: [] for k in ("candidates shipped", "candidates rewrite",
                                                     "consent-records shipped", "consent-records inlined")}
    same = {"candidates": 0, "consent-records": 0}
    try:
        for i, uid in enumerate(ids):
            user = vocab.user_iri(uid)
            new_c, dt = timed(lambda: sorted(r["step"].value for r in store.select(
                inline(CANDIDATES_REWRITE.replace("$USER", "?user").replace("$CHANNEL", "?channel"),
                       user=user, channel=web))))
            times["candidates rewrite"].append(dt)
            new_r, dt = timed(lambda: [r["record"].value for r in store.select(inline(shipped_r, user=user))])
            times["consent-records inlined"].append(dt)
            if i < compare:
                old_c, dt = timed(lambda: sorted(r["step"].value for r in store.select(shipped_c, user=user, channel=web)))
                times["candidates shipped"].append(dt)
                old_r, dt = timed(lambda: [r["record"].value for r in store.select(shipped_r, user=user)])
                times["consent-records shipped"].append(dt)
                if old_c != new_c or old_r != new_r:
                    raise SystemExit(f"different answers for {uid}: {old_c} vs {new_c}, {old_r} vs {new_r}")
                same["candidates"] += 1
                same["consent-records"] += 1
                print(f"  {uid}: candidates {times['candidates shipped'][-1] * 1e3:,.1f} ms shipped, "
                      f"{times['candidates rewrite'][-1] * 1e3:.2f} ms rewritten; consent-records "
                      f"{times['consent-records shipped'][-1] * 1e3:,.1f} ms shipped, "
                      f"{times['consent-records inlined'][-1] * 1e3:.2f} ms inlined; same answers", flush=True)
    finally:
        store.close()

    summary = {k: benchlib.summary_ms(v) for k, v in times.items() if v}
    rows = [(k, s["n"], s["p50_ms"], s["p99_ms"], s["max_ms"]) for k, s in summary.items()]
    print(f"\n## per-user queries of nextSteps, shipped vs rewritten, store {label} (ms)\n")
    print(benchlib.table(["query", "users", "p50", "p99", "max"], rows))
    print(f"\nsame answers on all {compare} users run both ways")
    payload = {"name": f"whatif-queries-{label}", "command": command, "store": meta, "users": len(ids),
               "compared_users": compare, "same_answers": same, "timings": summary,
               "candidates_rewrite": CANDIDATES_REWRITE, **benchlib.environment()}
    out = benchlib.write_result(f"whatif-queries-{label}", payload)
    print(f"wrote {os.path.relpath(out, ROOT)}")


if __name__ == "__main__":
    main()
