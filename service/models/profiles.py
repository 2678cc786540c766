"""A model version's training profile: what its inputs and scores looked like over the users it was trained on.

Kept with the version in the models graph (``wf:trainingProfile``, JSON) when it is registered, it is the
reference that model health (``service.models.monitoring``) measures drift against. It holds what the model
reads of a user, as counts, never a user's own row:

- ``role``, ``industry``, ``plan``: users per category (IRIs; ``(none)`` for a user without one);
- ``features_used``: users per number of distinct features used (the model reads no other behaviour: steps
  completed only decide which steps are candidates, and training users have completed far more of them than
  users still onboarding, so comparing those counts would only measure that);
- ``scores``: the model's scores of the candidate steps of up to ``SCORE_USERS`` training users (drawn with
  the training seed), each user's candidates being the steps ``queries/service/candidates.rq`` would offer
  them now on the ``WEB`` channel (the default of ``nextSteps``), at most ``MAX_SCORES`` values in all. Those
  candidates come later in a journey than a new user's; on the synthetic world, users registered afresh with
  the training users' profiles and first events score within a PSI of about 0.02 of them.

Every training user is a user of the export: one whose current ANALYTICS consent let the run read them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyoxigraph as ox

from service.decisions.candidates import candidate_steps
from service.decisions.ranking import Context
from service.decisions.subjects import user_by_pseudonym
from service.knowledge import vocab
from service.models.health import Sample
from service.models.records import ModelVersion, version_name
from service.runtime import Runtime

if TYPE_CHECKING:  # torch: imported by training, not with the API that reads profiles
    from torch import Tensor

    from service.models.serving import Scorer
    from service.models.training import Export

FORMAT = "wayfinder-training-profile/1"
CATEGORICAL = ("role", "industry", "plan")
NUMERIC = ("features_used",)
NONE = "(none)"
SCORE_USERS = 500
MAX_SCORES = 5000
SCORED_CHANNEL = "WEB"


@dataclass(frozen=True)
class TrainingProfile:
    users: int
    categorical: Mapping[str, Mapping[str, int]]  # feature -> category -> users
    numeric: Mapping[str, Mapping[int, int]]  # feature -> value -> users
    scores: tuple[float, ...]
    score_users: int  # the training users whose candidates were scored

    def reference(self) -> Sample:
        """The profile as a health sample: each user's values (in category or value order), then the scores."""
        features: dict[str, list[str] | list[float]] = {}
        for name in CATEGORICAL:
            features[name] = [c for c, n in sorted(self.categorical[name].items()) for _ in range(n)]
        for name in NUMERIC:
            features[name] = [float(v) for v, n in sorted(self.numeric[name].items()) for _ in range(n)]
        return Sample(features, list(self.scores))

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "users": self.users,
                "categorical": self.categorical,
                "numeric": {name: {str(v): n for v, n in counts.items()} for name, counts in self.numeric.items()},
                "scores": list(self.scores),
                "score_users": self.score_users,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> TrainingProfile:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} training profile")
        return cls(
            users=int(data["users"]),
            categorical={name: dict(counts) for name, counts in data["categorical"].items()},
            numeric={name: {int(v): n for v, n in counts.items()} for name, counts in data["numeric"].items()},
            scores=tuple(float(s) for s in data["scores"]),
            score_users=int(data["score_users"]),
        )


def training_profile(runtime: Runtime, export: Export, scorer: Scorer, *, seed: int = 0) -> TrainingProfile:
    """Return the profile of a model over the users of its training export."""
    data = export.data
    n = int(data["user"].num_nodes)
    users = export.iris("user")
    single = {}
    for name, rel in (("role", "hasRole"), ("industry", "hasIndustry"), ("plan", "hasPlan")):
        iris = export.iris(name)
        of = [NONE] * n
        for u, i in data["user", rel, name].edge_index.t().tolist():
            of[u] = iris[i]
        single[name] = of
    used = _per_user(data["user", "used", "feature"].edge_index, n)
    features = export.iris("feature")

    channel = runtime.knowledge.codes.channels.get(SCORED_CHANNEL) or next(
        iter(runtime.knowledge.codes.channels.values())
    )
    rng = np.random.default_rng(seed)
    sampled = sorted(rng.choice(n, size=min(n, SCORE_USERS), replace=False).tolist()) if n else []
    scores: list[float] = []
    for u in sampled:
        user = _user_of(runtime, users[u])
        if user is None:
            continue
        context = Context(
            channel=channel,
            personalized=True,
            role=_known(single["role"][u]),
            industry=_known(single["industry"][u]),
            plan=_known(single["plan"][u]),
            used_features=[features[f] for f in used[u]],
        )
        candidates = candidate_steps(runtime, user, channel)
        scores += scorer.score(context, candidates).values()
    if len(scores) > MAX_SCORES:
        scores = [scores[i] for i in sorted(rng.choice(len(scores), size=MAX_SCORES, replace=False))]
    return TrainingProfile(
        users=n,
        categorical={name: dict(sorted(Counter(values).items())) for name, values in single.items()},
        numeric={"features_used": dict(sorted(Counter(len(f) for f in used).items()))},
        scores=tuple(round(s, 6) for s in scores),
        score_users=len(sampled),
    )


def profile_quads(runtime: Runtime, data: bytes, export: Export, *, seed: int = 0) -> list[ox.Quad]:
    """Return the quad that keeps the training profile of the artefact ``data`` with its version."""
    from service.models.serving import scorer_of_bytes  # torch, imported when a version is registered

    scorer = scorer_of_bytes(data, version=version_name(data))
    profile = training_profile(runtime, export, scorer, seed=seed)
    model = ox.NamedNode(vocab.MODEL_BASE + version_name(data))
    return [ox.Quad(model, vocab.TRAINING_PROFILE, ox.Literal(profile.to_json()), vocab.MODELS_GRAPH)]


def profile_of(runtime: Runtime, version: ModelVersion) -> TrainingProfile | None:
    """Return a version's training profile, or None for a version registered without one."""
    node = ox.NamedNode(version.iri)
    for quad in runtime.store.quads(subject=node, predicate=vocab.TRAINING_PROFILE, graph=vocab.MODELS_GRAPH):
        if isinstance(quad.object, ox.Literal):
            return TrainingProfile.from_json(quad.object.value)
    return None


def _user_of(runtime: Runtime, key: str) -> ox.NamedNode | None:
    """The stored user an export names: by IRI (the graph's export) or by pseudonym (the analytics log's)."""
    return ox.NamedNode(key) if key.startswith(vocab.USER_BASE) else user_by_pseudonym(runtime, key)


def _per_user(edge_index: Tensor, n: int) -> list[list[int]]:
    """The distinct targets of each user's edges, by user index."""
    found: list[set[int]] = [set() for _ in range(n)]
    for u, target in edge_index.t().tolist():
        found[u].add(target)
    return [sorted(s) for s in found]


def _known(value: str) -> str | None:
    return None if value == NONE else value
