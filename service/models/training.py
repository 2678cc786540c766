"""Training a model version on the store: check the request, export, train, evaluate, register a candidate.

One training run per process at a time. The export reads only the users whose current
ANALYTICS consent record grants it (``embeddings.export``); the held-out users never
train the model. The artefact holds only what the data and the seed decide, so training
twice on the same data with the same seed gives the same version, which is registered once.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import asdict, replace
from datetime import datetime

import numpy as np
import pyoxigraph as ox
import torch

from embeddings.evaluate import mean_ndcg, model_scores
from embeddings.evidence import segment_counts
from embeddings.export import Export, export_log, snapshot_hash
from embeddings.inputs import catalog_edges, completion_matrix, user_inputs
from embeddings.model import UpliftEnsemble
from embeddings.scoring import artefact_bytes
from embeddings.train import TrainOptions, activation_loss, split_users, torch_threads, train_model
from service.analytics import feed
from service.clock import now
from service.errors import Conflict, InvalidInput, NotEnoughData
from service.knowledge import vocab
from service.knowledge.vocab import local_id
from service.models.calibration import rule_calibrations
from service.models.profiles import profile_quads
from service.models.records import ModelVersion, find, version_name, version_quads, versions
from service.runtime import Runtime

MIN_USERS = 20
MAX_EPOCHS = 2000
MAX_MEMBERS = 10
MAX_PROCESSES = 16  # training processes of one run (data parallel, embeddings/distributed.py)
_training = threading.Lock()
log = logging.getLogger("wayfinder.models")


def train(
    runtime: Runtime,
    *,
    seed: int = 0,
    epochs: int | None = None,
    members: int | None = None,
    requested_by: str | None = None,
    truth: Mapping[str, Mapping[str, float]] | None = None,
    progress: bool = False,
    stack: bool | None = None,
    processes: int = 1,
) -> ModelVersion:
    """Export the consented data, train, evaluate on held-out users, register a candidate version; return it.

    With ``truth`` (a planted truth of a synthetic world), the held-out NDCG@5 against it is recorded too.
    ``stack=False`` trains the GNN alone (``embeddings.train.TrainOptions.stack``). ``processes`` above 1 trains
    data-parallel on that many processes (``embeddings.distributed``).
    """
    if not 1 <= processes <= MAX_PROCESSES:
        raise InvalidInput("processes", f"must be between 1 and {MAX_PROCESSES}, got {processes}")
    options = train_options(seed=seed, epochs=epochs, members=members)
    options = options if stack is None else replace(options, stack=stack)
    if not _training.acquire(blocking=False):
        raise Conflict("a training run is already in progress in this process; wait for it to finish")
    try:
        return _train(
            runtime,
            seed=seed,
            options=options,
            requested_by=requested_by,
            truth=truth,
            progress=progress,
            processes=processes,
        )
    finally:
        _training.release()


def train_options(*, seed: int, epochs: int | None, members: int | None) -> TrainOptions:
    """Return the options of a requested run, refusing a seed, epoch count or ensemble size out of range."""
    if not 0 <= seed < 2**31:
        raise InvalidInput("seed", f"must be between 0 and {2**31 - 1}")
    if epochs is not None and not 1 <= epochs <= MAX_EPOCHS:
        raise InvalidInput("epochs", f"must be between 1 and {MAX_EPOCHS}, got {epochs}")
    if members is not None and not 1 <= members <= MAX_MEMBERS:
        raise InvalidInput("members", f"must be between 1 and {MAX_MEMBERS}, got {members}")
    options = TrainOptions()
    return replace(options, epochs=epochs or options.epochs, members=members or options.members)


def _train(
    runtime: Runtime,
    *,
    seed: int,
    options: TrainOptions,
    requested_by: str | None,
    truth: Mapping[str, Mapping[str, float]] | None,
    progress: bool,
    processes: int = 1,
) -> ModelVersion:
    started = now()
    export = training_export(runtime)
    if truth is not None:  # a planted truth names users by IRI; the export, by pseudonym
        pseudonyms = {
            q.subject.value: q.object.value
            for q in runtime.store.quads(predicate=vocab.PSEUDONYM)
            if isinstance(q.subject, ox.NamedNode) and isinstance(q.object, ox.Literal)
        }
        truth = {pseudonyms[u]: t for u, t in truth.items() if u in pseudonyms}
    check_enough(export)
    split = split_users(int(export.data["user"].num_nodes), seed=seed)
    result = train_model(
        export, seed=seed, options=options, split=split, truth=truth, progress=progress, processes=processes
    )
    metrics: dict[str, float] = held_out_metrics(result.model, export, split.test)
    metrics.update({k: round(v, 6) for k, v in result.metrics.items()})
    if truth is not None:
        users = [export.iris("user")[i] for i in split.test.tolist()]
        scores = model_scores(result.model, export, split.test)
        metrics["test_ndcg5_truth"] = round(
            mean_ndcg(scores, users=users, truth=truth, step_index=export.index["step"]), 6
        )
    # The rules of each calibrated policy version and the model on one scale, from the validation users' outcomes
    # (and the training users', out of fold, where the validation users are too few).
    calibrations = rule_calibrations(runtime, export, result.model, split.validation, out_of_fold=result.out_of_fold)
    for iri, fitted in calibrations.items():  # also in the version's metrics, where operators and auditors read them
        for score in ("model", "rules"):
            metrics[f"calibration {local_id(iri)} {score}"] = round(float(fitted[score]), 6)  # type: ignore[arg-type]
    # The artefact holds only what the data and seed decide, so retraining gives the same bytes.
    data = artefact_bytes(
        result.model, export, metrics=metrics, evidence=segment_counts(export, split.train), calibrations=calibrations
    )
    return register(
        runtime,
        data,
        export=export,
        hyper_parameters={**asdict(options), "seed": seed},
        metrics={**metrics, "training_seconds": round(result.seconds, 3)},
        started=started,
        requested_by=requested_by,
    )


def training_export(runtime: Runtime) -> Export:
    """What a model trains on: the catalog from the graph, and the users from the analytics log (caught up with the
    store first), keyed by pseudonym: ``export_log`` over ``queries/export/log-*.sql``, the SQL that Spark runs too."""
    return export_log(runtime.store, feed.for_analysis(runtime), event_codes=runtime.knowledge.codes.events)


def check_enough(export: Export) -> None:
    """Refuse to train on fewer than MIN_USERS exported users, or on users who all (or none) activated."""
    data = export.data
    n = int(data["user"].num_nodes)
    activated = int(data["user"].y.sum().item())
    if n < MIN_USERS or activated == 0 or activated == n:
        raise NotEnoughData(
            f"training needs at least {MIN_USERS} users with an ANALYTICS consent, some of whom activated and "
            f"some not; the store has {n} such users, {activated} of whom activated"
        )


def held_out_metrics(model: UpliftEnsemble, export: Export, users: torch.Tensor) -> dict[str, float]:
    """Activation log-loss and AUC on held-out users, with the base-rate log-loss for scale."""
    data = export.data
    y = data["user"].y[users]
    with torch.no_grad(), torch_threads(1):
        uplift, base = model(catalog_edges(data), user_inputs(data, users))
        done = completion_matrix(data, users)
        loss = activation_loss(uplift, base, done, y).item() if users.numel() else float("nan")
        logits = (base + (uplift * done).sum(1)).numpy()
    rate = float(y.mean()) if users.numel() else float("nan")
    base_loss = -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate)) if 0 < rate < 1 else float("nan")
    return {
        "test_users": int(users.numel()),
        "test_log_loss": round(loss, 6),
        "test_base_rate_log_loss": round(float(base_loss), 6),
        "test_auc": round(auc(logits, y.numpy()), 6),
    }


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Return the area under the ROC curve of the scores for 0/1 labels (ties count half); NaN without both."""
    positives, negatives = scores[labels > 0.5], scores[labels <= 0.5]
    if not len(positives) or not len(negatives):
        return float("nan")
    wins = (positives[:, None] > negatives[None, :]).sum() + 0.5 * (positives[:, None] == negatives[None, :]).sum()
    return float(wins / (len(positives) * len(negatives)))


def register(
    runtime: Runtime,
    data: bytes,
    *,
    export: Export,
    hyper_parameters: dict,
    metrics: dict,
    started: datetime,
    requested_by: str | None = None,
) -> ModelVersion:
    """Record a trained artefact as a candidate version with its lineage; return it (or the same one, if known)."""
    sha = hashlib.sha256(data).hexdigest()
    for existing in versions(runtime):
        if existing.artifact_hash == sha:
            return existing
    quads = version_quads(
        data,
        snapshot=snapshot_hash(export),
        hyper_parameters=hyper_parameters,
        metrics=metrics,
        started=started,
        ended=now(),
        training_users=int(export.data["user"].num_nodes),
        used=export.consent_records,
        requested_by=requested_by,
    )
    quads += profile_quads(runtime, data, export, seed=int(hyper_parameters.get("seed", 0)))  # model health's reference
    with runtime.store.write_lock:
        runtime.store.commit(add=quads)
    version = version_name(data)
    log.info("model registered", extra={"model_version": version, "training_users": len(export.consent_records)})
    return find(runtime, version)
