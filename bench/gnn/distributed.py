"""Training on one and on two processes (torch.distributed, gloo) on growing synthetic worlds: time, peak memory
per process and held-out NDCG@5, and the cost at 10M users projected from them.

Each world is generated (``embeddings.world``, the default family), bulk-loaded into an in-memory store and
exported as the service does; the training users are those the export holds, less the seeded validation and test
shares. Each training run is a fresh set of spawned processes (``embeddings.distributed.train_in_processes``, one
process included), so every process's peak memory is its own; the 1-process row also gives the time of
``train_model`` in this process, the path `wayfinder train` takes.

    .venv/bin/python -m bench.gnn.distributed --sizes 10000,40000,160000 --out bench/gnn/results/distributed.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import lib
from embeddings.distributed import train_in_processes
from embeddings.evaluate import mean_ndcg, model_scores
from embeddings.export import export_graph
from embeddings.train import TrainOptions, train_model
from embeddings.world import generate_world
from service.models.evaluation import world_store

SPEC = {"n_steps": 40, "n_features": 60, "n_areas": 6, "n_roles": 5, "n_industries": 6}  # world-101's catalog


def held_out(result, export, truth) -> float:
    users = result.split.test
    return mean_ndcg(
        model_scores(result.model, export, users),
        users=[export.iris("user")[i] for i in users.tolist()],
        truth=truth,
        step_index=export.index["step"],
    )


def run_size(n_users: int, args: argparse.Namespace, workdir: Path) -> dict:
    t = time.perf_counter()
    world = generate_world(seed=args.seed, n_users=n_users, **SPEC)
    store, _ = world_store(world, workdir)
    export = export_graph(store)
    del store
    prepared_s = time.perf_counter() - t
    truth = world.truth_table()
    options = TrainOptions(members=args.members, epochs=args.epochs, stack=False, batch_users=args.batch_users)
    row: dict = {"users": n_users, "exported_users": int(export.data["user"].num_nodes), "prepare_s": prepared_s}
    t = time.perf_counter()
    here = train_model(export, seed=0, options=options, progress=False)
    row["in_process_s"] = time.perf_counter() - t
    row["in_process_ndcg5"] = held_out(here, export, truth)
    row["train_users"] = int(here.split.train.numel())
    for processes in args.processes:
        result = train_in_processes(export, processes, seed=0, options=options)
        row[f"p{processes}"] = {
            "seconds": result.seconds,
            "ndcg5": held_out(result, export, truth),
            "peak_rss_mb": result.peak_rss_mb,
        }
        print(f"  {n_users:,} users, {processes} process(es): {result.seconds:.1f} s", flush=True)
    return row


def projection(rows: list[dict], processes: int, users: int) -> dict:
    """A least-squares line through (training users, seconds) and (training users, peak MB per process)."""
    x = np.array([r["train_users"] for r in rows], dtype=float)
    seconds = np.array([r[f"p{processes}"]["seconds"] for r in rows])
    peak = np.array([max(r[f"p{processes}"]["peak_rss_mb"]) for r in rows])
    s_fit, m_fit = np.polyfit(x, seconds, 1), np.polyfit(x, peak, 1)
    return {
        "train_users": users,
        "seconds": float(np.polyval(s_fit, users)),
        "peak_rss_mb_per_process": float(np.polyval(m_fit, users)),
        "seconds_per_1k_users": float(s_fit[0] * 1000),
        "mb_per_1k_users": float(m_fit[0] * 1000),
    }


def table(rows: list[dict], processes: list[int]) -> str:
    head = "| users | training users | in process: s, NDCG@5 | " + " | ".join(
        f"{p} process{'es' if p > 1 else ''}: s, NDCG@5, peak MB each" for p in processes
    )
    lines = [head + " |", "|" + "---|" * (3 + len(processes))]
    for r in rows:
        cells = [f"{r['users']:,}", f"{r['train_users']:,}", f"{r['in_process_s']:.1f}, {r['in_process_ndcg5']:.4f}"]
        for p in processes:
            got = r[f"p{p}"]
            peaks = " / ".join(f"{m:.0f}" for m in got["peak_rss_mb"])
            cells.append(f"{got['seconds']:.1f}, {got['ndcg5']:.4f}, {peaks}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,40000,160000")
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--members", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-users", type=int, default=None)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/gnn/results/distributed.json"))
    args = parser.parse_args(argv)
    args.processes = [int(p) for p in args.processes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for n in (int(s) for s in args.sizes.split(",")):
            rows.append(run_size(n, args, Path(folder)))
            print(table(rows, args.processes), flush=True)
    projections = {f"p{p}": projection(rows, p, 8_000_000) for p in args.processes} if len(rows) > 1 else {}
    text = table(rows, args.processes)
    if projections:
        text += "\n\nProjected to 10M users (8M training users), a straight line through the sizes above:\n\n"
        text += "\n".join(
            f"- {p}: {v['seconds'] / 3600:.1f} h, {v['peak_rss_mb_per_process'] / 1024:.1f} GB a process "
            f"({v['seconds_per_1k_users']:.2f} s and {v['mb_per_1k_users']:.1f} MB per 1,000 training users)"
            for p, v in projections.items()
        )
    print(text)
    lib.write_result(
        args.out.parent,
        args.out.stem,
        {"options": vars(args) | {"out": str(args.out)}, "rows": rows, "projection_10m": projections},
        markdown=text,
    )


if __name__ == "__main__":
    main()
