"""Train one of RecBole's own models on a pre-split dataset and dump each test user's top-20.

This drives RecBole 1.2.1 (LightGCN, KGAT or CKE, as implemented by the library) so the
benchmark can compare our model against reference implementations on the very same
split. It reads RecBole atomic files DIR/NAME/NAME.{train,valid,test}.inter (plus NAME.kg
and NAME.link for the knowledge-aware models), trains with early stopping on the valid
file, reloads the best checkpoint, and ranks all items for every user in the test file
with RecBole's full-sort utility (which masks the user's training items).

It runs in its own virtual environment (bench/gnn/recbole-env.sh), never in the service's:
RecBole 1.2.1 needs numpy<2 (it uses ``np.bool8``) and pickles its config into checkpoints,
which the ``torch.load`` default of torch >= 2.6 (weights_only=True) refuses; the best
checkpoint is therefore reloaded here with ``weights_only=False``.

LightGCN and CKE repeat exactly for a given seed; KGAT drifts slightly between runs with
several CPU threads (sparse float sums), and repeats exactly with OMP_NUM_THREADS=1.

    var/recbole-env/bin/python bench/gnn/recbole_runner.py --data DIR --dataset NAME \
        --model LightGCN|KGAT|CKE --out topk.json [--epochs N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from typing import Any

os.environ.setdefault("DGLBACKEND", "pytorch")  # else dgl writes ~/.dgl/config.json on import
import torch

try:
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed
    from recbole.utils.case_study import full_sort_topk
except ImportError:  # the service's environment, which only imports this module: it runs in var/recbole-env
    Config = None

K = 20
MODELS = ("LightGCN", "KGAT", "CKE")
# Epoch caps for ml-100k on 2 idle CPU cores (about 1.1 s, 12 s and 6 s an epoch): at most
# 2-4 minutes a model; early stopping on the valid file usually ends runs sooner.
DEFAULT_EPOCHS = {"LightGCN": 100, "KGAT": 20, "CKE": 40}


def recbole_config(args: argparse.Namespace, data_dir: str, tmp: str) -> Config:
    load_col: dict[str, list[str]] = {"inter": ["user_id", "item_id", "timestamp"]}
    if args.model != "LightGCN":
        load_col["kg"] = ["head_id", "relation_id", "tail_id"]
        load_col["link"] = ["item_id", "entity_id"]
    params: dict[str, Any] = {
        "data_path": data_dir,
        "benchmark_filename": ["train", "valid", "test"],
        "load_col": load_col,
        # No filtering by counts: every test user must survive.
        "user_inter_num_interval": None,
        "item_inter_num_interval": None,
        "entity_kg_num_interval": None,
        "relation_kg_num_interval": None,
        "filter_inter_by_user_or_item": False,
        "eval_args": {"group_by": "user", "order": "TO", "mode": {"valid": "full", "test": "full"}},
        "metrics": ["Recall", "NDCG"],
        "topk": [K],
        "valid_metric": f"NDCG@{K}",
        "stopping_step": args.stopping_step,
        "epochs": args.epochs or DEFAULT_EPOCHS[args.model],
        "seed": args.seed,
        "reproducibility": True,
        "use_gpu": False,
        "device": "cpu",
        "show_progress": False,
        "checkpoint_dir": os.path.join(tmp, "saved"),
        "save_dataset": False,
        "save_dataloaders": False,
    }
    argv, sys.argv = sys.argv, sys.argv[:1]  # Config would also parse our command line
    try:
        config = Config(model=args.model, dataset=args.dataset, config_dict=params)
    finally:
        sys.argv = argv
    # Config points dataset "ml-100k" at RecBole's bundled copy whatever data_path says.
    config["data_path"] = os.path.join(data_dir, args.dataset)
    return config


def patch_dgl_edge_subgraph() -> None:
    """Let RecBole 1.2.1's KGAT run on DGL 1.x.

    KGAT.init_graph calls ``dgl.edge_subgraph(g, eids, preserve_nodes=True)``; DGL 0.7 renamed
    that keyword to ``relabel_nodes`` (preserve_nodes=True is relabel_nodes=False) and DGL 1.0
    dropped the old name, and no DGL that still has it is built for Python 3.11. Forward it.
    """
    import dgl

    original = dgl.edge_subgraph

    def edge_subgraph(graph: Any, edges: Any, *, preserve_nodes: bool | None = None, **kw: Any) -> Any:
        if preserve_nodes is not None:
            kw["relabel_nodes"] = not preserve_nodes
        return original(graph, edges, **kw)

    dgl.edge_subgraph = edge_subgraph


def run(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = os.path.abspath(args.data)
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="recbole-") as tmp:
        os.chdir(tmp)  # RecBole writes ./log and ./log_tensorboard into the working directory
        config = recbole_config(args, data_dir, tmp)
        init_seed(config["seed"], config["reproducibility"])
        init_logger(config)
        dataset = create_dataset(config)
        train_data, valid_data, test_data = data_preparation(config, dataset)
        logging.getLogger().info(dataset)
        if args.model == "KGAT":
            patch_dgl_edge_subgraph()
        init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
        train_set = train_data._dataset  # as recbole.quick_start does; KG loaders have no .dataset
        model = get_model(config["model"])(config, train_set).to(config["device"])
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)

        _, best_valid = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
        checkpoint = torch.load(trainer.saved_model_file, map_location="cpu", weights_only=False)
        model.load_state_dict(checkpoint["state_dict"])
        model.load_other_parameter(checkpoint.get("other_parameter"))
        test_result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)

        uid_field, iid_field = dataset.uid_field, dataset.iid_field
        test_uids = torch.unique(test_data.dataset.inter_feat[uid_field])
        train_feat = train_set.inter_feat
        seen: dict[int, set[int]] = {}
        for u, i in zip(train_feat[uid_field].tolist(), train_feat[iid_field].tolist(), strict=True):
            seen.setdefault(u, set()).add(i)
        topk: dict[str, list[str]] = {}
        for batch in torch.split(test_uids, 256):
            _, items = full_sort_topk(batch.numpy(), model, test_data, k=K, device=config["device"])
            for uid, row in zip(batch.tolist(), items.tolist(), strict=True):
                if seen.get(uid, set()) & set(row):
                    raise RuntimeError(f"user {uid}: a train item was not masked from the top-{K}")
                token = str(dataset.id2token(uid_field, uid))
                topk[token] = [str(t) for t in dataset.id2token(iid_field, row)]
        seconds = time.time() - start

    return {
        "model": args.model,
        "recbole": "1.2.1",
        "epochs_run": len(trainer.train_loss_dict),
        "seconds": round(seconds, 1),
        "best_valid": {k: float(v) for k, v in (best_valid or {}).items()},
        "test_result": {k: float(v) for k, v in test_result.items()},
        "topk": topk,
    }


def main(argv: list[str] | None = None) -> None:
    if Config is None:
        sys.exit(
            "recbole_runner: RecBole is not installed here; run it with var/recbole-env/bin/python "
            "(build it with bash bench/gnn/recbole-env.sh)"
        )
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="directory holding NAME/NAME.*.inter")
    parser.add_argument("--dataset", required=True, help="NAME of the atomic files")
    parser.add_argument("--model", required=True, choices=MODELS)
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--epochs", type=int, default=None, help="max epochs (default per model)")
    parser.add_argument("--stopping-step", type=int, default=5)
    parser.add_argument("--seed", type=int, default=2020)
    args = parser.parse_args(argv)
    out = os.path.abspath(args.out)
    result = run(args)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(
        f"{args.model}: {result['epochs_run']} epochs, {result['seconds']}s, "
        f"test {result['test_result']}, {len(result['topk'])} users -> {out}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
