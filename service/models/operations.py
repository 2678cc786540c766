"""Ranking model versions for operators: train, list, promote, roll back.

The registry itself (records in the graph, artefacts, serving) lives in
``service.models.registry``; this module checks the request, allows one training run
per process at a time, and keeps torch out of the import path until it is needed.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from service.errors import Conflict, InvalidInput
from service.runtime import Runtime

MAX_EPOCHS = 2000
MAX_MEMBERS = 10
_training = threading.Lock()


def train(
    runtime: Runtime,
    *,
    seed: int = 0,
    epochs: int | None = None,
    members: int | None = None,
    requested_by: str | None = None,
    progress: bool = False,
):
    """Train on the store's consented data and register a candidate version; return it."""
    from embeddings.train import TrainOptions
    from service.models import registry

    if not 0 <= seed < 2**31:
        raise InvalidInput("seed", f"must be between 0 and {2**31 - 1}")
    if epochs is not None and not 1 <= epochs <= MAX_EPOCHS:
        raise InvalidInput("epochs", f"must be between 1 and {MAX_EPOCHS}, got {epochs}")
    if members is not None and not 1 <= members <= MAX_MEMBERS:
        raise InvalidInput("members", f"must be between 1 and {MAX_MEMBERS}, got {members}")
    options = TrainOptions()
    options = replace(options, epochs=epochs or options.epochs, members=members or options.members)
    if not _training.acquire(blocking=False):
        raise Conflict("a training run is already in progress in this process; wait for it to finish")
    try:
        return registry.train(runtime, seed=seed, options=options, requested_by=requested_by, progress=progress)
    finally:
        _training.release()


def versions(runtime: Runtime):
    from service.models import registry

    return registry.versions(runtime)


def promote(runtime: Runtime, version: str, *, approved_by: str):
    from service.models import registry

    return registry.promote(runtime, version, approved_by=approved_by)


def rollback(runtime: Runtime):
    from service.models import registry

    return registry.rollback(runtime)
