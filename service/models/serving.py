"""Serving: the scorer of the active model version, loaded from its artefact in the store.

Every decision asks the store which version is active (one small query), so a promotion
or rollback, made by this process or another one on a shared store, serves from the
next request on. Loading a version checks its artefact's hash; an artefact that fails it,
or does not load, never serves: decisions fall back to the rules, and the error is logged.
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass, field

from embeddings.scoring import Scorer
from service.errors import NotFound
from service.knowledge.store import bound
from service.metrics import MODEL_SERVED
from service.models.records import ModelVersion, artefact, find
from service.runtime import Runtime

log = logging.getLogger("wayfinder.models")


@dataclass
class Serving:
    """The scorer of the active version, reloaded when another version becomes active."""

    _loaded: tuple[str, Scorer] | None = None  # (artefact SHA-256, its scorer)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def scorer(self, runtime: Runtime) -> Scorer | None:
        """Return the scorer of the active version, or None when none is active or it cannot serve."""
        rows = runtime.store.select(runtime.queries["model-active"])
        if not rows:
            self._serve(None)
            return None
        version, sha = bound(rows[0], "version").value, bound(rows[0], "hash").value
        loaded = self._loaded
        if loaded is not None and loaded[0] == sha:
            return loaded[1]
        with self._lock:
            if self._loaded is None or self._loaded[0] != sha:
                try:
                    scorer = Scorer.from_bytes(artefact(runtime, find(runtime, version)), sha256=sha, version=version)
                except (ValueError, NotFound, RuntimeError) as exc:
                    log.error("model version cannot serve", extra={"model_version": version, "error": str(exc)})
                    self._serve(None)
                    return None
                self._serve(scorer)
                self._loaded = (sha, scorer)
            return self._loaded[1]

    def _serve(self, scorer: Scorer | None) -> None:
        """Set the served-version gauge: 1 for the version now serving, 0 for the one that stopped."""
        previous = self._loaded[1].version if self._loaded else None
        current = scorer.version if scorer else None
        if previous != current:
            if previous:
                MODEL_SERVED.labels(previous).set(0)
            if current:
                MODEL_SERVED.labels(current).set(1)
        if scorer is None:
            self._loaded = None


_serving: weakref.WeakKeyDictionary[Runtime, Serving] = weakref.WeakKeyDictionary()
_serving_lock = threading.Lock()


def serving_of(runtime: Runtime) -> Serving:
    """Return the runtime's serving state, made on first use (one per runtime, as the runtime is one per process)."""
    with _serving_lock:
        found = _serving.get(runtime)
        if found is None:
            found = _serving[runtime] = Serving()
        return found


# Scorers of versions loaded to be judged or replayed (health, fairness, re-derivation), by artefact hash.
MAX_SCORERS = 4
_scorers: dict[str, Scorer] = {}
_scorers_lock = threading.Lock()


def version_scorer(runtime: Runtime, version: ModelVersion) -> Scorer:
    """The scorer of any registered version (serving or not), loaded once per artefact and checked against its
    hash; raises ValueError or RuntimeError when its artefact does not load."""
    with _scorers_lock:
        found = _scorers.pop(version.artifact_hash, None)
        if found is None:
            data = artefact(runtime, version)
            found = Scorer.from_bytes(data, sha256=version.artifact_hash, version=version.version)
        _scorers[version.artifact_hash] = found  # the most recently used last
        while len(_scorers) > MAX_SCORERS:
            del _scorers[next(iter(_scorers))]
        return found


def scorer_of_bytes(data: bytes, *, version: str) -> Scorer:
    """The scorer of an artefact not registered yet (a version being registered)."""
    return Scorer.from_bytes(data, version=version)


def active_scorer(runtime: Runtime) -> Scorer | None:
    """Return the scorer of the store's active model version, or None when none is active or it cannot serve."""
    return serving_of(runtime).scorer(runtime)
