"""Mixing rules and the model: is a policy's mix ever worse than the better of rules alone and model alone?

For each world family of ``embeddings/world.py`` and seed: generate a world; its last
``--test`` users stay out of the store (new users the model never saw). The others are
loaded through the service's layout with the ontology, the world's catalog and the policy
versions of ``VERSIONS``, and a model is trained as ``trainModel`` trains one
(``service.models.training.train``: export, the stacked GNN, the rule calibrations). Each
test user's eligible steps are then ranked under each version by the decisions' own
ranking (``service.decisions.ranking.rank``, personalised, on the WEB channel, with the
trained model, as ``ranking.serving_model`` gives it to a decision: none for a calibrated
version that the model holds no calibration of) and scored by NDCG@5 against the world's
planted truth.

Every version has the generic weights of ``default@1.2.0`` (journey 1.0, depth -0.05,
unlock 0.04, affinity 0.35; that version's segment rules name the demo catalog's roles
and features, so on a world's catalog they would match nothing):

- ``rules``: modelWeight 0, the rules alone;
- ``model``: ruleWeight 0, the model alone;
- ``weighted``: ruleWeight 1 and modelWeight 1 added in their own units, as ``default@1.2.0``;
- ``calibrated``: ruleWeight 1 and modelWeight 1, ``wf:CalibratedSum``, as ``default@1.6.0``.

With ``--rules informed`` every version also has the rules a knowledge engineer who knows
the segments would write (:func:`segment_rules`): for each role and each industry, weight
0.4 on the feature area the world's hidden tables favour most for it.

Intervals: 95 % percentile bootstrap (scipy.stats.bootstrap, 2,000 resamples) over test
users of each mean, and of the paired per-user difference between ``calibrated`` and
the better (by mean) of ``rules`` and ``model`` in the same run.

    .venv/bin/python -m bench.gnn.mixing --out bench/gnn/results/mixing.json
    .venv/bin/python -m bench.gnn.mixing --rules informed --families interaction,additive,noisy --seeds 1 \\
        --out bench/gnn/results/mixing-informed.json
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import pyoxigraph as ox

from bench import lib
from bench.gnn.families import interval
from embeddings.evaluate import ndcg_at_k
from embeddings.world import FAMILIES, World, family_params, generate_world
from service.decisions.ranking import Context, rank, serving_model
from service.models import training
from service.models.evaluation import WORLDS
from service.models.serving import version_scorer
from service.runtime import Runtime
from service.settings import Settings
from service.synthetic import write_world

HERE = Path(__file__).resolve().parent
GENERIC = (
    "wf:journeyWeight 1.0 ; wf:depthWeight -0.05 ; wf:unlockWeight 0.04 ; wf:affinityWeight 0.35 ; "
    "wf:minEvidence 20 ; wf:liftToCite 1.2"
)
TEMPLATES = """
    wf:unlockReason "Needed before {unlocked}" ;
    wf:usedFeatureReason "More on {feature}, which you started using" ;
    wf:usedAreaReason "Unlocks {feature}, part of {area}, which you started using" ;
    wf:similarUsersReason "{role}s in {industry} who completed this step activated {lift}x as often" ;
    wf:introducesAreaReason "Introduces {feature}, part of {area}" ;
    wf:introducesReason "Introduces {feature}" ;
    wf:journeyReason "Next in the recommended journey" .
"""
VERSIONS = {  # name: (version, ruleWeight, modelWeight, mixing)
    "rules": ("1.0.0", 1.0, 0.0, "wf:WeightedSum"),
    "model": ("1.1.0", 0.0, 1.0, "wf:WeightedSum"),
    "weighted": ("1.2.0", 1.0, 1.0, "wf:WeightedSum"),
    "calibrated": ("1.3.0", 1.0, 1.0, "wf:CalibratedSum"),
}


def segment_rules(world: World) -> tuple[str, list[str]]:
    """Rules a knowledge engineer who knows the segments would write: per role and per industry, a rule
    (weight 0.4, as the demo's) for the feature area its hidden table favours most. Turtle and rule names."""
    text, names = "", []
    for kind, labels, table in (
        ("Role", world.roles, world.role_table),
        ("Industry", world.industries, world.industry_table),
    ):
        if table is None:
            continue
        for k, iri in enumerate(labels):
            area = world.features[world.areas[int(np.argmax(table[k]))]]
            name = f"pol:{kind.lower()}-{k}"
            text += (
                f'{name} a wf:RankingRule ; rdfs:label "{kind} {k} first"@en ; wf:when{kind} <{iri}> ; '
                f'wf:targetFeature <{area}> ; wf:weight 0.4 ; wf:reasonText "People like you start here" .\n'
            )
            names.append(name)
    return text, names


def policy_turtle(world: World, *, informed: bool) -> str:
    rules, names = segment_rules(world) if informed else ("", [])
    has_rules = f" wf:hasRule {', '.join(names)} ;" if names else ""
    text = (
        """
@prefix wf:  <https://w3id.org/wayfinder/ontology#> .
@prefix pol: <https://w3id.org/wayfinder/policy/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
pol:default a wf:Policy ; rdfs:label "Mixing bench policy"@en ; rdfs:comment "One rule set, four mixes."@en .
"""
        + rules
    )
    for name, (version, weight, model, mixing) in VERSIONS.items():
        text += f"""
pol:default-{version} a wf:PolicyVersion ;
    rdfs:label "Mixing bench: {name}"@en ;
    wf:versionOf pol:default ; wf:version "{version}" ; wf:status "candidate" ;
    wf:ruleWeight {weight} ; wf:modelWeight {model} ; wf:mixing {mixing} ; {GENERIC} ;{has_rules}{TEMPLATES}"""
    return text


def world_runtime(world: World, n_test: int, folder: Path, *, informed: bool) -> Runtime:
    """A runtime over a fresh store of the world's users but the last ``n_test``, with the bench's policy."""
    stored = dataclasses.replace(world, users=world.users[:-n_test])
    catalog, users = write_world(stored, folder)
    policy = folder / "policy.ttl"
    policy.write_text(policy_turtle(world, informed=informed))
    runtime = Runtime(settings=Settings(store=":memory:"))
    runtime.ensure_ontology()
    runtime.load([catalog, policy])
    runtime.store.bulk_load(users, format=ox.RdfFormat.N_QUADS)
    return runtime


def run(family: str, seed: int, args: argparse.Namespace, folder: Path) -> dict:
    spec = {k: v for k, v in WORLDS[0].items() if k != "seed"}
    t0 = time.perf_counter()
    world = generate_world(
        seed=seed, n_users=args.users + args.test, params=family_params(family), name=f"{family}-{seed}", **spec
    )
    runtime = world_runtime(world, args.test, folder, informed=args.rules == "informed")
    version = training.train(runtime, seed=seed, members=args.members)
    scorer = version_scorer(runtime, version)
    trained_s = time.perf_counter() - t0
    knowledge = runtime.knowledge
    by_name = {v.version: v for v in knowledge.policies.values()}
    policies = {name: by_name[spec_[0]] for name, spec_ in VERSIONS.items()}
    web = knowledge.codes.channels["WEB"]
    per_user: dict[str, list[float]] = {name: [] for name in VERSIONS}
    for user in world.users[-args.test :]:
        candidates = [world.steps[s] for s in world.eligible(user)]
        role, plan = world.roles[user.role], world.plans[user.plan]
        context = Context(
            channel=web,
            personalized=True,
            role=role,
            industry=world.industries[user.industry],
            plan=plan,
            used_features=[world.features[f] for f in user.early_features],
            eligible_roles=[role],
            eligible_plans=knowledge.catalog.plans_included(plan),
        )
        truth = world.truth(user)
        for name, policy in policies.items():
            # The model a decision under this version gets: none for a calibrated version without a calibration.
            served = serving_model(policy, scorer, personalized=True)
            ranked = rank(candidates, policy=policy, context=context, catalog=knowledge.catalog, model=served)
            gains = [truth[s.step] for s in ranked]
            per_user[name].append(ndcg_at_k([-k for k in range(len(ranked))], gains, k=5))
    arrays = {name: np.array(v) for name, v in per_user.items()}
    means = {name: float(v.mean()) for name, v in arrays.items()}
    better = max(("rules", "model"), key=means.__getitem__)
    fitted = scorer.calibration(policies["calibrated"])
    return {
        "family": family,
        "seed": seed,
        "rules": args.rules,
        "stored_users": args.users,
        "test_users": args.test,
        "model_version": version.version,
        "calibration": {"model": fitted[0], "rules": fitted[1]} if fitted else None,
        "ndcg5": {k: round(v, 4) for k, v in means.items()},
        "ndcg5_interval": {k: interval(v, seed) for k, v in arrays.items()},
        "better_alone": better,
        "calibrated_minus_better": round(means["calibrated"] - means[better], 4),
        "calibrated_minus_better_interval": interval(arrays["calibrated"] - arrays[better], seed),
        "weighted_minus_better": round(means["weighted"] - means[better], 4),
        "weighted_minus_better_interval": interval(arrays["weighted"] - arrays[better], seed),
        "seconds": round(time.perf_counter() - t0, 1),
        "train_seconds": round(trained_s, 1),
    }


def table(runs: list[dict]) -> str:
    header = ["family", "seed", *VERSIONS, "calibrated - better alone", "weighted - better alone", "calibration"]

    def cell(r: dict, name: str) -> str:
        lo, hi = r["ndcg5_interval"][name]
        return f"{r['ndcg5'][name]:.3f} [{lo:.3f}, {hi:.3f}]"

    def diff(r: dict, key: str) -> str:
        lo, hi = r[f"{key}_interval"]
        return f"{r[key]:+.3f} [{lo:+.3f}, {hi:+.3f}] vs {r['better_alone']}"

    body = []
    for r in runs:
        c = r["calibration"]
        body.append(
            [
                r["family"],
                r["seed"],
                *[cell(r, n) for n in VERSIONS],
                diff(r, "calibrated_minus_better"),
                diff(r, "weighted_minus_better"),
                f"model x{c['model']:.3g}, rules x{c['rules']:.3g}" if c else "none",
            ]
        )
    return lib.table(header, body)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated (embeddings.world.FAMILIES)")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--users", type=int, default=3000, help="users in the store (80 %% of those exported train)")
    parser.add_argument("--test", type=int, default=2000, help="new users ranked, never in the store")
    parser.add_argument(
        "--rules",
        choices=("generic", "informed"),
        default="generic",
        help="informed: plus segment rules (segment_rules)",
    )
    parser.add_argument("--members", type=int, default=None, help="GNN ensemble members (default: trainModel's)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "mixing.json")
    args = parser.parse_args(argv)
    command = lib.command_line()
    print(f"command: {command}", flush=True)
    runs = []
    started = time.perf_counter()
    for family in args.families.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            with tempfile.TemporaryDirectory(prefix="wf-mixing-") as tmp:
                r = run(family, seed, args, Path(tmp))
            print(
                f"{family:>13} seed {seed}: "
                + ", ".join(f"{m} {v:.3f}" for m, v in r["ndcg5"].items())
                + f"; calibrated - {r['better_alone']} {r['calibrated_minus_better']:+.3f} ({r['seconds']:.0f} s)",
                flush=True,
            )
            runs.append(r)
    text = table(runs)
    print(text)
    payload = {"runs": runs, "total_s": round(time.perf_counter() - started, 1)}
    out = lib.write_result(args.out.parent, args.out.stem, payload, markdown=text, command=command)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
