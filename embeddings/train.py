"""The training loop: split users, fit each ensemble member full-batch, keep its best epoch by validation loss.

Objective, per training user: ``P(activated) = sigmoid(base(u) + sum of uplift(u, s) over
the steps u completed)``, by binary cross-entropy. Activators and non-activators are
contrasted within one likelihood, and because every completed step enters the same sum
a step is credited only with the activation its completion adds beyond the user's
other completions: the engagement that makes late, rarely shown steps look good in raw
activation shares (the logging policy's popularity bias) is explained by the other
terms, not by the step. Completion in the logs follows the default flow, not value, so
which steps a user happened to complete is what identifies each step's uplift.

Auxiliary task, weight ``aux``: hide one consented ``FeatureUsed`` event of each training
user and predict its feature from the rest of their inputs (cross-entropy over the
catalog's features). Catalog-node parameters (embeddings, per-step factors) get an L2
penalty ``l2_identity``: the rarely completed steps stay near what the catalog says
about them.

With ``TrainOptions.objective="usage"`` (data without an activation outcome), the auxiliary
task is the whole objective: each user keeps their first ``usage_inputs`` used features (by
the time the service recorded them) as inputs, the model predicts the rest, and the
validation loss is that cross-entropy. A new user is ranked from their first events too.

The epoch kept is the one with the lowest validation log-loss, an observable quantity;
NDCG@5 against a planted truth, when one is given, is only shown and recorded.

With ``TrainOptions.stack`` (the default; it needs training users of both outcomes), the
ensemble is then stacked with a logistic regression on
knowledge-graph crosses (``embeddings/stack.py``): one more ensemble per cross-fitting
fold of the training users, and the regression folded into the full ensemble.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial

import torch
from torch import Tensor, distributed, nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm  # type: ignore[import-untyped]

from embeddings.evaluate import mean_ndcg, model_scores
from embeddings.export import Export
from embeddings.inputs import UserInputs, catalog_edges, catalog_sizes, completion_matrix, user_inputs
from embeddings.model import ModelConfig, UpliftEnsemble, UpliftGNN
from embeddings.stack import fold_users, stack_ensemble


@dataclass
class Split:
    """User node indices of the three sets; validation and test users never train the model."""

    train: Tensor
    validation: Tensor
    test: Tensor


@dataclass(frozen=True)
class TrainOptions:
    """Hyper-parameters of a training run (the defaults are the ones the bench uses)."""

    members: int = 5
    epochs: int = 300
    lr: float = 0.02
    aux: float = 1.0
    l2_identity: float = 3e-3
    l2_shared: float = 1e-5
    hidden: int = 16
    layers: int = 2
    dropout: float = 0.2
    eval_every: int = 10
    wide: bool = False  # the wide part of the model (embeddings/model.py)
    l2_wide: float = 1e-3  # L2 penalty of the wide part's weights
    stack: bool = True  # stack the GNN with a regression on knowledge-graph crosses (embeddings/stack.py)
    stack_folds: int = 2  # cross-fitting folds of the training users for stacking
    # "activation" (the service's) or "usage": the auxiliary task alone, for data without an
    # activation outcome (bench/gnn/movielens.py); each user keeps their first ``usage_inputs``
    # used features as inputs and the model predicts the others.
    objective: str = "activation"
    usage_inputs: int = 5
    # Training users per optimisation step (in each process, when training on several): None takes them all at once,
    # one step an epoch; a number bounds the memory a step's activations take, whatever the number of users.
    batch_users: int | None = None


@dataclass
class TrainResult:
    model: UpliftEnsemble  # what serves: the GNN ensemble, or the stacked model built on it
    split: Split
    options: TrainOptions
    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    gnn: UpliftEnsemble | None = None  # the GNN ensemble alone, when ``model`` is stacked on it
    # When stacked: the training users, fold by fold, each with the stacked model built on the GNN that never saw them
    out_of_fold: list[tuple[UpliftEnsemble, Tensor]] = field(default_factory=list)
    peak_rss_mb: list[float] = field(default_factory=list)  # each training process's peak memory, when measured


def split_users(n_users: int, *, seed: int, validation: float = 0.1, test: float = 0.1) -> Split:
    """Return a seeded random split of user indices."""
    order = torch.randperm(n_users, generator=torch.Generator().manual_seed(seed))
    n_test, n_val = int(round(n_users * test)), int(round(n_users * validation))
    return Split(
        train=order[n_test + n_val :].sort().values,
        validation=order[n_test : n_test + n_val].sort().values,
        test=order[:n_test].sort().values,
    )


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with n intra-op threads, then restore the previous setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def mask_used(
    users: UserInputs, generator: torch.Generator, keep: int | None = None
) -> tuple[UserInputs, Tensor, Tensor]:
    """Hide used features of every user who has one; return the rest, whose each hidden one was, and which.

    ``keep=None`` hides one random feature per user. ``keep=k`` keeps the user's first k
    (by ``used_at``; in random order where the inputs carry no times) and hides the others;
    a user with k or fewer keeps all but their last.
    """
    n = users.used_user.numel()
    if keep is not None and users.used_at is not None:  # each user's events by time
        by_time = torch.argsort(users.used_at, stable=True)
        order = by_time[torch.argsort(users.used_user[by_time], stable=True)]
    else:  # each user's events in random order
        order = torch.argsort(torch.rand(n, generator=generator) + users.used_user.to(torch.float64) * 2.0)
    grouped = users.used_user[order]  # each user's events together
    counts = torch.bincount(grouped, minlength=users.size)
    rank = torch.arange(n) - (counts.cumsum(0) - counts)[grouped]
    if keep is None:
        hidden_sorted = rank == 0
    else:
        hidden_sorted = rank >= torch.clamp(counts[grouped] - 1, max=keep)
    hidden = order[hidden_sorted]
    kept = torch.ones(n, dtype=torch.bool)
    kept[hidden] = False
    rest = UserInputs(
        role=users.role,
        industry=users.industry,
        plan=users.plan,
        used_user=users.used_user[kept],
        used_feature=users.used_feature[kept],
        used_at=users.used_at[kept] if users.used_at is not None else None,
    )
    return rest, users.used_user[hidden], users.used_feature[hidden]


def usage_loss(
    model: UpliftGNN, catalog: dict[str, Tensor], users: UserInputs, generator: torch.Generator, keep: int | None
) -> Tensor:
    """Return the cross-entropy of the hidden used features given the rest (the auxiliary task, or the usage objective)."""
    rest, who, target = mask_used(users, generator, keep)
    return -model.usage_log_probs(catalog, rest)[who, target].mean()


def activation_loss(uplift: Tensor, base: Tensor, completed: Tensor, activated: Tensor) -> Tensor:
    """Return the binary cross-entropy of the additive uplift model of activation."""
    return F.binary_cross_entropy_with_logits(base + (uplift * completed).sum(1), activated)


def train_model(
    export: Export,
    *,
    seed: int = 0,
    options: TrainOptions | None = None,
    split: Split | None = None,
    truth: Mapping[str, Mapping[str, float]] | None = None,
    threads: int = 1,
    progress: bool = True,
    processes: int = 1,
) -> TrainResult:
    """Train an ensemble of uplift GNNs on the training users; return it with its split and metrics.

    One intra-op thread by default: the graphs are small, and OpenMP's synchronisation
    costs more than it saves on them (on a busy 2-core machine, a thousand times more).

    ``processes`` above 1 trains data-parallel (:mod:`embeddings.distributed`): that many processes, each fitting
    on its share of the training users, their gradients averaged by ``torch.distributed`` at every step.
    """
    if processes > 1 and not distributed.is_initialized():
        from embeddings.distributed import train_in_processes

        return train_in_processes(
            export, processes, seed=seed, options=options, split=split, truth=truth, threads=threads
        )
    options = options or TrainOptions()
    if options.objective not in ("activation", "usage"):
        raise ValueError(f"objective: {options.objective!r} is neither 'activation' nor 'usage'")
    if options.objective == "usage" and not export.data["user", "used", "feature"].edge_index.numel():
        raise ValueError("objective: 'usage' needs FeatureUsed events, and the export has none")
    if options.stack and options.wide:
        raise ValueError("stack: the stacked regression is the wide part; train the GNN without one (wide=False)")
    if options.batch_users is not None and options.batch_users < 1:
        raise ValueError(f"batch_users: {options.batch_users} is not a positive number of users")
    started = time.perf_counter()
    data = export.data
    split = split or split_users(int(data["user"].num_nodes), seed=seed)
    edges = catalog_edges(data)
    config = ModelConfig(
        sizes=catalog_sizes(data),
        relations=tuple(edges),
        hidden=options.hidden,
        layers=options.layers,
        dropout=options.dropout,
        wide=options.wide,
    )
    with torch_threads(threads):
        val_users = [export.iris("user")[i] for i in split.validation.tolist()]
        labels = data["user"].y[split.train]
        # a regression needs both outcomes
        stack = options.stack and options.objective == "activation" and 0 < int(labels.sum()) < labels.numel()
        rounds = 1 + (options.stack_folds if stack else 0)
        bar = tqdm(total=rounds * options.members * options.epochs, desc="train", disable=not progress, leave=False)
        fit = partial(
            _ensemble, export, config=config, edges=edges, options=options, truth=truth, val_users=val_users, bar=bar
        )
        history: list[dict[str, float]] = []
        ensemble = gnn = fit(split, seed=seed, salt=0, history=history)
        stacked: dict[str, float] = {}
        out_of_fold: list[tuple[UpliftEnsemble, Tensor]] = []
        if stack:  # cross-fitted GNNs, then the stacked regression folded into the full one
            folds = []
            for f, users in enumerate(fold_users(split.train, options.stack_folds, seed=seed)):
                rest = replace(split, train=split.train[~torch.isin(split.train, users)])
                folds.append((fit(rest, seed=seed, salt=f + 1, history=[]), users))
            result = stack_ensemble(export, full=ensemble, folds=folds, validation=split.validation)
            ensemble, out_of_fold = result.model, result.out_of_fold
            stacked = {
                "stack_c": result.c,
                "stack_deep_weight": round(result.deep_weight, 6),
                "stack_base_weight": round(result.base_weight, 6),
                "stack_gnn_scale": result.gnn_scale,
            }
        bar.close()
        metrics: dict[str, float] = dict(stacked)
        if truth is not None and options.objective == "activation":
            metrics["val_ndcg5"] = mean_ndcg(
                model_scores(ensemble, export, split.validation),
                users=val_users,
                truth=truth,
                step_index=export.index["step"],
            )
    return TrainResult(
        model=ensemble,
        split=split,
        options=options,
        metrics=metrics,
        history=history,
        seconds=time.perf_counter() - started,
        gnn=gnn if stack else None,
        out_of_fold=out_of_fold,
    )


def _ensemble(
    export: Export,
    split: Split,
    *,
    seed: int,
    salt: int,
    config: ModelConfig,
    edges: dict,
    options: TrainOptions,
    truth: Mapping[str, Mapping[str, float]] | None,
    val_users: list[str],
    bar: tqdm,
    history: list[dict[str, float]],
) -> UpliftEnsemble:
    """Fit ``options.members`` members on ``split.train``, seeded from ``seed`` (and ``salt`` for a fold)."""
    members = []
    for k in range(options.members):
        member_seed = seed * 1009 + k + 104729 * salt
        torch.manual_seed(member_seed)
        members.append(UpliftGNN(config))
        history += _fit(
            members[-1],
            export,
            split=split,
            edges=edges,
            options=options,
            seed=member_seed,
            truth=truth,
            val_users=val_users,
            bar=bar,
            member=k,
        )
    return UpliftEnsemble(config, members).eval()


class _Objective(nn.Module):
    """A training step's loss as a module's forward, which DistributedDataParallel needs to average the gradients."""

    def __init__(self, model: UpliftGNN, options: TrainOptions) -> None:
        super().__init__()
        self.model = model
        self.options = options

    def forward(
        self, edges: dict, users: UserInputs, completed: Tensor, activated: Tensor, generator: torch.Generator
    ) -> Tensor:
        model, options = self.model, self.options
        catalog = model.encode_catalog(edges)
        if options.objective == "usage":
            return usage_loss(model, catalog, users, generator, options.usage_inputs)
        h = model.encode_users(catalog, users)
        uplift = model.uplift(catalog, edges, h, users)
        loss = activation_loss(uplift, model.base(h).squeeze(-1), completed, activated)
        if options.aux and users.used_user.numel():
            loss = loss + options.aux * usage_loss(model, catalog, users, generator, None)
        return loss


def _fit(
    model: UpliftGNN,
    export: Export,
    *,
    split: Split,
    edges: dict,
    options: TrainOptions,
    seed: int,
    truth: Mapping[str, Mapping[str, float]] | None,
    val_users: list[str],
    bar: tqdm,
    member: int,
) -> list[dict[str, float]]:
    """Fit one member in place; return its validation history."""
    data = export.data
    identity = {id(p) for p in model.identity_parameters()}
    wide = {id(p) for p in model.wide_parameters()}
    groups = [
        {"params": [p for p in model.parameters() if id(p) in identity], "weight_decay": options.l2_identity},
        {"params": [p for p in model.parameters() if id(p) in wide], "weight_decay": options.l2_wide},
        {"params": [p for p in model.parameters() if id(p) not in identity | wide], "weight_decay": options.l2_shared},
    ]
    optimiser = torch.optim.Adam([g for g in groups if g["params"]], lr=options.lr)
    objective: nn.Module = _Objective(model, options)
    mine, processes = split.train, 1
    if distributed.is_initialized():  # this process's share of the training users; DDP averages the gradients
        processes = distributed.get_world_size()
        mine = split.train[distributed.get_rank() :: processes]
        objective = DistributedDataParallel(objective, find_unused_parameters=True)  # a step may skip a head
    # Every process takes as many steps an epoch (the collective needs them all), from the largest share's size.
    share = math.ceil(split.train.numel() / processes)
    steps = max(1, math.ceil(share / (options.batch_users or max(1, share))))
    order = mine[torch.randperm(mine.numel(), generator=torch.Generator().manual_seed(seed))] if steps > 1 else mine
    batches = [
        (user_inputs(data, users), completion_matrix(data, users), data["user"].y[users])
        for users in (b.sort().values for b in torch.tensor_split(order, steps))
    ]
    val_in, val_done, val_y = (
        user_inputs(data, split.validation),
        completion_matrix(data, split.validation),
        data["user"].y[split.validation],
    )
    generator = torch.Generator().manual_seed(seed)
    best = (float("inf"), copy.deepcopy(model.state_dict()), 0)
    history: list[dict[str, float]] = []
    postfix: dict[str, float] = {"member": member}
    for epoch in range(1, options.epochs + 1):
        model.train()
        for train_in, train_done, train_y in batches:
            optimiser.zero_grad()
            loss = objective(edges, train_in, train_done, train_y, generator)
            loss.backward()
            optimiser.step()
        postfix["loss"] = round(loss.item(), 4)
        if epoch % options.eval_every == 0 or epoch == options.epochs:
            model.eval()
            with torch.no_grad():
                if options.objective == "usage":  # the same hidden features at every evaluation
                    fixed = torch.Generator().manual_seed(seed)
                    val_loss = usage_loss(
                        model, model.encode_catalog(edges), val_in, fixed, options.usage_inputs
                    ).item()
                else:
                    uplift, base = model(edges, val_in)
                    val_loss = activation_loss(uplift, base, val_done, val_y).item()
            row = {"member": member, "epoch": epoch, "loss": loss.item(), "val_loss": val_loss}
            postfix["val_loss"] = round(val_loss, 4)
            if truth is not None and options.objective == "activation":
                row["val_ndcg5"] = mean_ndcg(
                    uplift.numpy().astype(float), users=val_users, truth=truth, step_index=export.index["step"]
                )
                postfix["val_ndcg5"] = round(row["val_ndcg5"], 4)
            history.append(row)
            if val_loss < best[0]:
                best = (val_loss, copy.deepcopy(model.state_dict()), epoch)
        bar.set_postfix(postfix, refresh=False)
        bar.update(1)
    model.load_state_dict(best[1])
    model.eval()
    history.append({"member": member, "best_epoch": best[2], "val_loss": best[0]})
    return history
