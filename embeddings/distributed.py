"""Training on several processes: data parallelism over the training users with ``torch.distributed``.

:func:`train_in_processes` starts ``processes`` workers (``torch.multiprocessing.spawn``), joined
in one process group over the gloo backend (CPU) through a rendezvous file. Each runs the same
:func:`~embeddings.train.train_model` on the same export, split and seed; in every member's fit it
takes its share of the training users (every ``processes``-th, by rank) and its model is wrapped
in ``DistributedDataParallel``, which averages the gradients across the processes at each step,
so every process holds the same parameters throughout and picks the same best epoch from the
same validation loss. The first process's result is returned.

The catalog (steps, features, areas, roles) is small whatever the number of users, so every
process encodes all of it at each step; what grows with the users is each step's batch: its
users' one-hop inputs (profile, consented first events, completed steps), which
``TrainOptions.batch_users`` bounds. PyG's neighbour sampler (``NeighborLoader``) would select the
same one-hop neighbourhoods, but it needs pyg-lib or torch-sparse, which have no build for this
torch; ``embeddings.inputs.user_inputs`` selects them for a batch instead.

On one machine this runs the processes on its cores. Across machines the same code runs under
``torchrun`` with a TCP rendezvous; that path is not exercised here.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import distributed

from embeddings.export import Export
from embeddings.train import Split, TrainOptions, TrainResult, train_model


def train_in_processes(
    export: Export,
    processes: int,
    *,
    seed: int = 0,
    options: TrainOptions | None = None,
    split: Split | None = None,
    truth: Mapping[str, Mapping[str, float]] | None = None,
    threads: int = 1,
) -> TrainResult:
    """Train as :func:`~embeddings.train.train_model` does, on ``processes`` processes; return the first's result."""
    if processes < 1:
        raise ValueError(f"processes: {processes} is not a positive number")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="wayfinder-train-") as folder:
        torch.multiprocessing.spawn(
            _train_rank,
            args=(processes, folder, export, seed, options, split, truth, threads),
            nprocs=processes,
            join=True,
        )
        result: TrainResult = torch.load(Path(folder) / "result.pt", weights_only=False)
    result.metrics["processes"] = processes
    result.seconds = time.perf_counter() - started
    return result


def _peak_rss_mb() -> float | None:
    """This process's peak resident memory (VmHWM), in MB, where Linux's /proc tells it."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    line = next((x for x in status.splitlines() if x.startswith("VmHWM:")), None)
    return int(line.split()[1]) / 1024 if line else None


def _train_rank(
    rank: int,
    processes: int,
    folder: str,
    export: Export,
    seed: int,
    options: TrainOptions | None,
    split: Split | None,
    truth: Mapping[str, Mapping[str, float]] | None,
    threads: int,
) -> None:
    distributed.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=processes)
    try:
        result = train_model(
            export, seed=seed, options=options, split=split, truth=truth, threads=threads, progress=False
        )
        # Every process must end with the same parameters: the gradients were averaged at every step.
        mine = torch.cat([v.detach().double().flatten() for v in result.model.state_dict().values()])
        theirs = [torch.empty_like(mine) for _ in range(processes)]
        distributed.all_gather(theirs, mine)
        if not all(torch.equal(mine, other) for other in theirs):
            raise RuntimeError("the processes' models differ after training: their gradients were not averaged")
        peaks: list[float | None] = [None] * processes
        distributed.all_gather_object(peaks, _peak_rss_mb())
        result.peak_rss_mb = [peak for peak in peaks if peak is not None]
        if rank == 0:
            torch.save(result, Path(folder) / "result.pt")
    finally:
        distributed.destroy_process_group()
