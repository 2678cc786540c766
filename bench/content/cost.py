"""What step content costs a nextSteps decision: the demo with its content against the same demo without it.

Two in-memory runtimes, each loaded with ``service.demo.load_demo``: one from the shipped
ontology folder (every step has content in en and pt-BR), one from a copy whose demo
catalog has no ``wf:StepContent``, no ``wf:hasContent`` and no ``wf:Catalog`` (every step
falls back to its label). Requests alternate between the two, round-robin over the demo
users, so that both see the same machine:

- ``decide``: ``service.decisions.decide.next_steps(runtime, user, limit=5, locale=...)``,
  audit record included (with content: ``locale="pt-BR"``, so lookup walks a chain);
- ``graphql``: the same through the schema in process (``schema.execute_sync``), asking
  for ``content { locale headline body ctaLabel link }`` of each step where the catalog has
  content, and for the steps alone where it has none.

Reported: p50 and p99 of each, the ratio with content / without, and how many quads one
decision record adds to the store in each (the issue's bar is 1.2x, with pacing too).

With ``--paced``, the runtime with content also serves ``default@1.7.0`` (set active in its copy
of the ontology folder): 1.2.0 with ``pol:paced``, its caps, cool-downs, quiet hours and session
budget. The other still serves 1.2.0, paced by ``wf:DefaultPacing`` (snoozes only, one query of
the user's events). The demo users start no sessions, so the session budget reads every step
shown to them since registration: the more requests, the more it reads.

    .venv/bin/python -m bench.content.cost --requests 1500 --out bench/content/results/cost.json
    .venv/bin/python -m bench.content.cost --paced --requests 600 --out bench/content/results/cost-paced.json
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import rdflib
from rdflib.namespace import RDF

from bench import lib
from bench.lib.stats import summary_ms
from service.api.credentials import OPEN_CALLER
from service.api.schema import build_schema
from service.decisions import decide
from service.demo import load_demo
from service.runtime import Runtime
from service.settings import Settings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WF = rdflib.Namespace("https://w3id.org/wayfinder/ontology#")
USERS = ("ana", "eli", "maya", "ada", "sam", "noor")  # data/demo/users.json
WITH = (
    'query N($u: ID!) { nextSteps(userId: $u, limit: 5, locale: "pt-BR") { decisionId steps { rank score '
    "step { id } content { locale headline body ctaLabel link } } } }"
)
WITHOUT = "query N($u: ID!) { nextSteps(userId: $u, limit: 5) { decisionId steps { rank score step { id } } } }"


def without_content(folder: Path) -> Path:
    """Copy the ontology folder with the demo catalog's content taken out; return the copy's path."""
    copy = folder / "ontology"
    shutil.copytree(ROOT / "ontology", copy)
    demo = copy / "catalog" / "demo.ttl"
    graph = rdflib.Graph().parse(demo)
    for node in set(graph.subjects(RDF.type, WF.StepContent)) | set(graph.subjects(RDF.type, WF.Catalog)):
        graph.remove((node, None, None))
    graph.remove((None, WF.hasContent, None))
    demo.write_text(graph.serialize(format="turtle"))
    return copy


def paced(folder: Path) -> Path:
    """Copy the ontology folder with default@1.7.0 (1.2.0, paced) active; return the copy's path."""
    copy = folder / "ontology-paced"
    shutil.copytree(ROOT / "ontology", copy)
    policies = copy / "policies" / "default.ttl"
    text = policies.read_text()
    head, marker, rest = text.partition('wf:version "1.7.0" ;\n    wf:status "candidate" ;')
    assert marker, "default@1.7.0 is no longer a candidate in ontology/policies/default.ttl"
    policies.write_text(head + 'wf:version "1.7.0" ;\n    wf:status "active" ;' + rest)
    return copy


def runtime_on(ontology: Path, models: Path) -> Runtime:
    runtime = Runtime(settings=Settings(store=":memory:", ontology_dir=ontology, models_dir=models))
    load_demo(runtime)
    return runtime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1500, help="per variant and kind")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "cost.json")
    parser.add_argument("--paced", action="store_true", help="content and default@1.7.0's pacing against neither")
    args = parser.parse_args(argv)
    command = lib.command_line()
    with tempfile.TemporaryDirectory(prefix="wf-content-") as tmp:
        runtimes = {
            "with": runtime_on(paced(Path(tmp)) if args.paced else ROOT / "ontology", Path(tmp) / "m1"),
            "without": runtime_on(without_content(Path(tmp)), Path(tmp) / "m2"),
        }
        assert runtimes["with"].catalog.steps[0].contents and not runtimes["without"].catalog.steps[0].contents
        served = decide.next_steps(runtimes["with"], "maya", limit=5).policy_version
        assert served == ("default@1.7.0" if args.paced else "default@1.2.0"), served
        users = list(USERS)
        schema = build_schema()
        quads_per_decision = {}
        for variant, runtime in runtimes.items():  # what one decision record adds to the store, with 5 steps returned
            before = len(runtime.store)
            decide.next_steps(runtime, "maya", limit=5, locale="pt-BR" if variant == "with" else None)
            quads_per_decision[variant] = len(runtime.store) - before
        seconds: dict[str, list[float]] = {f"{kind}_{v}": [] for kind in ("decide", "graphql") for v in runtimes}
        for i in range(args.requests + 50):  # the first 50 of each warm up and are not counted
            user = users[i % len(users)]
            for variant, runtime in runtimes.items():
                t = time.perf_counter()
                decide.next_steps(runtime, user, limit=5, locale="pt-BR" if variant == "with" else None)
                took = time.perf_counter() - t
                t2 = time.perf_counter()
                result = schema.execute_sync(
                    WITH if variant == "with" else WITHOUT,
                    variable_values={"u": user},
                    context_value={
                        "runtime": runtime,
                        "request": None,
                        "response": None,
                        "role": OPEN_CALLER.role,
                        "principal": OPEN_CALLER.principal,
                        "subject": OPEN_CALLER.subject,
                        "keys_on": False,
                    },
                )
                took2 = time.perf_counter() - t2
                assert result.errors is None, result.errors
                if i >= 50:
                    seconds[f"decide_{variant}"].append(took)
                    seconds[f"graphql_{variant}"].append(took2)
    summary = {name: summary_ms(values) for name, values in seconds.items()}
    ratios = {
        kind: {q: round(summary[f"{kind}_with"][q] / summary[f"{kind}_without"][q], 3) for q in ("p50_ms", "p99_ms")}
        for kind in ("decide", "graphql")
    }
    rows = [
        [
            kind,
            f"{summary[f'{kind}_without']['p50_ms']:.2f}",
            f"{summary[f'{kind}_with']['p50_ms']:.2f}",
            f"{ratios[kind]['p50_ms']:.2f}x",
            f"{summary[f'{kind}_without']['p99_ms']:.2f}",
            f"{summary[f'{kind}_with']['p99_ms']:.2f}",
            f"{ratios[kind]['p99_ms']:.2f}x",
        ]
        for kind in ("decide", "graphql")
    ]
    text = lib.table(["request", "p50 without", "p50 with", "ratio", "p99 without", "p99 with", "ratio"], rows)
    text += f"\n\nQuads one decision adds (5 steps returned): {quads_per_decision['without']} without content, "
    text += f"{quads_per_decision['with']} with.\n"
    print(text)
    out = lib.write_result(
        args.out.parent,
        args.out.stem,
        {
            "requests": args.requests,
            "paced": args.paced,
            "summary": summary,
            "ratios": ratios,
            "quads_per_decision": quads_per_decision,
        },
        markdown=text,
        command=command,
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
