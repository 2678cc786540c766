"""The GNN against strong tabular baselines on several world families, seeds and training sizes.

For each truth family of ``embeddings/world.py`` (``FAMILIES``), seed and number of
training users: generate the world, write its catalog and users in the service's layout
and load them into a pyoxigraph store (``service.models.evaluation.world_store``), export
the consented users to PyG (``embeddings.export``), and split the exported users at random
into ``--test`` test users, ``--validation`` validation users and ``--train`` training users
(the rest are not used). Every method is fitted on the training users, chooses what it
chooses (epoch, L2 strength, boosting rounds) on the validation users' log-loss, and
ranks the test users' role- and plan-eligible steps as NEW users (profile and first
events only). NDCG@5 is against the world's planted truth.

Methods: the uplift GNN (``embeddings.train``, default options), additive logistic
regression and gradient boosting on knowledge-graph features (``embeddings.baselines``),
per-segment activation lift and popularity (``embeddings.evaluate``). Reference, not a
method: ``segment_oracle`` ranks by the mean TRUE values of the training users of the
same role, industry and plan (what knowing the segment's truth gives).

Intervals: 95 % percentile bootstrap over test users (scipy.stats.bootstrap, 2,000
resamples) of the mean NDCG@5 per run, and of the per-user difference between the GNN
and the best baseline of the run (paired); over seeds, the mean of the runs and the
bootstrap over all their test users pooled.

    .venv/bin/python -m bench.gnn.families --out bench/gnn/results/families.json
    .venv/bin/python -m bench.gnn.families --families prerequisite,noisy --out bench/gnn/results/families-held-out.json

``prerequisite`` and ``noisy`` are held out: not run by default, kept for after any
change to the model is chosen on the others.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from bench import lib
from embeddings.baselines import AdditiveLogistic, CompletionBoosting, catalog_view, user_view
from embeddings.evaluate import model_scores, popularity_scores, segment_lift, segment_scores, user_ndcg
from embeddings.export import Export, export_graph
from embeddings.inputs import catalog_edges, completion_matrix, user_inputs
from embeddings.model import UpliftEnsemble
from embeddings.train import Split, TrainOptions, activation_loss, train_model
from embeddings.world import World, family_params, generate_world
from service.knowledge.vocab import local_id
from service.models.evaluation import WORLDS, world_store

HERE = Path(__file__).resolve().parent
DEVELOPMENT = ("interaction", "additive", "plan_gated")
METHODS = ("served", "gnn", "stacked", "additive_logistic", "gradient_boosting", "segment_lift", "popularity")
BASELINES = METHODS[3:]


def split_counts(n: int, *, seed: int, test: int, validation: int, train: int) -> Split:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    if test + validation + train > n:
        raise ValueError(f"{n} exported users cannot hold {test} test, {validation} validation and {train} training")
    return Split(
        train=order[test + validation : test + validation + train].sort().values,
        validation=order[test : test + validation].sort().values,
        test=order[:test].sort().values,
    )


def interval(values: np.ndarray, seed: int) -> list[float]:
    """Return the 95 % percentile bootstrap interval of the mean."""
    if values.size < 2:
        return [float(values.mean()), float(values.mean())] if values.size else [0.0, 0.0]
    ci = stats.bootstrap(
        (values,), np.mean, n_resamples=2000, method="percentile", random_state=seed
    ).confidence_interval
    return [round(float(ci.low), 4), round(float(ci.high), 4)]


def segment_oracle(world: World, export: Export, train: torch.Tensor, test: torch.Tensor) -> np.ndarray:
    """Rank by the mean true values of the training users of the same segment (reference only)."""
    users = export.iris("user")
    order = [world.steps.index(s) for s in export.iris("step")]
    sums: dict[tuple[int, int, int], np.ndarray] = {}
    counts: dict[tuple[int, int, int], int] = {}
    overall = np.zeros(len(order))
    for i in train.tolist():
        r = world.user(local_id(users[i]))
        key = (r.role, r.industry, r.plan)
        sums[key] = sums.get(key, 0) + r.values[order]
        counts[key] = counts.get(key, 0) + 1
        overall += r.values[order]
    overall /= max(1, train.numel())
    rows = []
    for i in test.tolist():
        r = world.user(local_id(users[i]))
        key = (r.role, r.industry, r.plan)
        rows.append(sums[key] / counts[key] if key in counts else overall)
    return np.stack(rows)


@torch.no_grad()
def validation_loss(model: UpliftEnsemble, export: Export, users: torch.Tensor) -> float:
    """Return the activation log-loss of a model on these users: observable, unlike the planted truth."""
    uplift, base = model(catalog_edges(export.data), user_inputs(export.data, users))
    return float(activation_loss(uplift, base, completion_matrix(export.data, users), export.data["user"].y[users]))


def run(family: str, seed: int, n_train: int, args: argparse.Namespace, workdir: Path) -> dict:
    spec = {k: v for k, v in WORLDS[0].items() if k != "seed"}
    n_users = int((n_train + args.validation + args.test) / 0.8) + 50  # about 85 % are exported (ANALYTICS)
    t0 = time.perf_counter()
    world = generate_world(seed=seed, n_users=n_users, params=family_params(family), name=f"{family}-{seed}", **spec)
    store, _ = world_store(world, workdir)
    export = export_graph(store)
    del store
    split = split_counts(
        int(export.data["user"].num_nodes), seed=seed, test=args.test, validation=args.validation, train=n_train
    )
    truth = world.truth_table()
    users = export.iris("user")
    test_users = [users[i] for i in split.test.tolist()]
    step_index = export.index["step"]

    def ndcg(scores: np.ndarray) -> np.ndarray:
        return user_ndcg(scores, users=test_users, truth=truth, step_index=step_index, k=5)

    timings: dict[str, float] = {"world_and_export_s": time.perf_counter() - t0}
    per_user: dict[str, np.ndarray] = {}
    losses = {}
    t = time.perf_counter()
    trained = train_model(
        export,
        seed=seed,
        options=TrainOptions(members=args.members, stack=True, stack_folds=args.stack_folds),
        split=split,
        progress=False,
    )
    timings["gnn_and_stacked_s"] = time.perf_counter() - t
    assert trained.gnn is not None
    for name, model in (("gnn", trained.gnn), ("stacked", trained.model)):
        per_user[name] = ndcg(model_scores(model, export, split.test))
        losses[name] = validation_loss(model, export, split.validation)
    served = "stacked"  # what the service trains by default (TrainOptions.stack)
    per_user["served"] = per_user[served]

    catalog = catalog_view(export)
    train_view, val_view, test_view = (
        user_view(export, catalog, ix) for ix in (split.train, split.validation, split.test)
    )
    t = time.perf_counter()
    logistic = AdditiveLogistic(catalog).fit(train_view, val_view)
    per_user["additive_logistic"] = ndcg(logistic.scores(test_view))
    timings["additive_logistic_s"] = time.perf_counter() - t
    t = time.perf_counter()
    boosting = CompletionBoosting(catalog, seed=seed).fit(train_view, val_view)
    per_user["gradient_boosting"] = ndcg(boosting.scores(test_view))
    timings["gradient_boosting_s"] = time.perf_counter() - t
    per_user["segment_lift"] = ndcg(segment_scores(segment_lift(export, split.train), export, split.test))
    per_user["popularity"] = ndcg(np.tile(popularity_scores(export, split.train), (split.test.numel(), 1)))
    per_user["segment_oracle"] = ndcg(segment_oracle(world, export, split.train, split.test))

    means = {m: float(v.mean()) for m, v in per_user.items()}
    best = max(BASELINES, key=lambda m: means[m])
    return {
        "family": family,
        "served_model": served,
        "validation_loss": {k: round(v, 5) for k, v in losses.items()},
        "seed": seed,
        "train_users": n_train,
        "validation_users": int(split.validation.numel()),
        "test_users": int(split.test.numel()),
        "exported_users": int(export.data["user"].num_nodes),
        "activation_rate": round(float(export.data["user"].y.float().mean()), 4),
        "ndcg5": {m: round(v, 4) for m, v in means.items()},
        "ndcg5_interval": {m: interval(v, seed) for m, v in per_user.items()},
        "best_baseline": best,
        "served_minus_best_baseline": round(means["served"] - means[best], 4),
        "served_minus_best_baseline_interval": interval(per_user["served"] - per_user[best], seed),
        "chosen": {
            "logistic_C": logistic.c,
            "boosting_rounds": boosting.model.max_iter if boosting.model else None,
            **trained.metrics,
        },
        "timings": {k: round(v, 1) for k, v in timings.items()},
        "_per_user": per_user,
    }


def pooled(runs: list[dict]) -> dict:
    """Over the seeds of one family and training size: mean of the runs and the pooled bootstrap."""
    methods = list(runs[0]["_per_user"])
    all_users = {m: np.concatenate([r["_per_user"][m] for r in runs]) for m in methods}
    means = {m: round(float(np.mean([r["ndcg5"][m] for r in runs])), 4) for m in methods}
    best = max(BASELINES, key=lambda m: means[m])
    diff = np.concatenate([r["_per_user"]["served"] - r["_per_user"][best] for r in runs])
    return {
        "family": runs[0]["family"],
        "train_users": runs[0]["train_users"],
        "seeds": [r["seed"] for r in runs],
        "ndcg5": means,
        "ndcg5_interval": {m: interval(v, 0) for m, v in all_users.items()},
        "best_baseline": best,
        "served_models": [r["served_model"] for r in runs],
        "served_minus_best_baseline": round(means["served"] - means[best], 4),
        "served_minus_best_baseline_interval": interval(diff, 0),
    }


def table(rows: list[Mapping]) -> str:
    header = ["family", "train users", "seeds", *METHODS, "segment oracle", "served - best baseline"]
    body = []

    def cell(r: Mapping, m: str) -> str:
        lo, hi = r["ndcg5_interval"][m]
        return f"{r['ndcg5'][m]:.3f} [{lo:.3f}, {hi:.3f}]"

    for r in rows:
        lo, hi = r["served_minus_best_baseline_interval"]
        body.append(
            [
                r["family"],
                r["train_users"],
                len(r["seeds"]),
                *[f"**{cell(r, m)}**" if m == r["best_baseline"] else cell(r, m) for m in METHODS],
                cell(r, "segment_oracle"),
                f"{r['served_minus_best_baseline']:+.3f} [{lo:+.3f}, {hi:+.3f}] vs {r['best_baseline']}",
            ]
        )
    return lib.table(header, body)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default=",".join(DEVELOPMENT), help="comma-separated (embeddings.world.FAMILIES)")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--train", default="300,1000,2500", help="training users per run, comma-separated")
    parser.add_argument("--validation", type=int, default=500)
    parser.add_argument("--test", type=int, default=600)
    parser.add_argument("--members", type=int, default=5, help="GNN ensemble members")
    parser.add_argument(
        "--stack-folds", type=int, default=TrainOptions.stack_folds, help="cross-fitting folds of the stacked model"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "families.json")
    args = parser.parse_args(argv)
    command = lib.command_line()
    print(f"command: {command}", flush=True)
    runs: list[dict] = []
    rows: list[dict] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="wf-families-") as tmp:
        for family in args.families.split(","):
            for n_train in (int(n) for n in args.train.split(",")):
                group = []
                for seed in (int(s) for s in args.seeds.split(",")):
                    r = run(family, seed, n_train, args, Path(tmp))
                    print(
                        f"{family:>13} train {n_train:>5} seed {seed}: "
                        + ", ".join(f"{m} {v:.3f}" for m, v in r["ndcg5"].items())
                        + f" ({sum(r['timings'].values()):.0f} s)",
                        flush=True,
                    )
                    group.append(r)
                rows.append(pooled(group))
                runs += group
    text = table(rows)
    print(text)
    for r in runs:
        r.pop("_per_user")
    payload = {"runs": runs, "pooled": rows, "total_s": round(time.perf_counter() - started, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = lib.write_result(args.out.parent, args.out.stem, payload, markdown=text, command=command)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
