"""Serving: only the active version scores, from the next request on; an artefact that cannot load never serves."""

from __future__ import annotations

import base64
import hashlib
import re

import pyoxigraph as ox
from prometheus_client import REGISTRY

from service.knowledge import vocab
from service.models import lifecycle
from service.models.serving import Serving, serving_of
from tests.graphql_client import NEXT_STEPS
from tests.models.conftest import PROMOTE, QUICK, REGISTER, TRAIN, new_user, register_untrained


def test_a_promoted_version_serves_new_users_from_the_next_request(api, world_runtime, world):
    version = api.data(TRAIN, {"seed": 0, **QUICK})["trainModel"]["version"]
    new_user(api, world, "fresh-a", role=0, industry=0, features=(0, 1))
    new_user(api, world, "fresh-b", role=1, industry=2, features=(7, 9))
    assert api.data(NEXT_STEPS, {"user": "fresh-a"})["nextSteps"]["modelVersion"] is None

    promoted = api.data(PROMOTE, {"v": version, "by": "Ada Operator"})["promoteModel"]
    assert promoted["status"] == "active" and promoted["approvedBy"] == "Ada Operator"
    a = api.data(NEXT_STEPS, {"user": "fresh-a", "limit": 10})["nextSteps"]
    b = api.data(NEXT_STEPS, {"user": "fresh-b", "limit": 10})["nextSteps"]
    assert a["modelVersion"] == b["modelVersion"] == version
    # users the model never saw get scores from their profile and first events, without retraining
    assert [s["step"]["id"] for s in a["steps"]] != [s["step"]["id"] for s in b["steps"]] or [
        s["score"] for s in a["steps"]
    ] != [s["score"] for s in b["steps"]]
    # the decision names the model version, and the lineage query finds it
    rows = world_runtime.store.select(
        world_runtime.queries["lineage/decisions-by-model-version"].bind(model=ox.NamedNode(vocab.MODEL_BASE + version))
    )
    assert {r["decision"].value.rsplit("/", 1)[-1] for r in rows} >= {a["decisionId"], b["decisionId"]}
    # a user without personalisation consent is not scored by the model
    api.data(REGISTER, {"input": {"id": "private-1", "role": vocab.local_id(world.roles[0])}})
    assert api.data(NEXT_STEPS, {"user": "private-1"})["nextSteps"]["modelVersion"] is None


def test_an_artefact_that_fails_its_hash_never_serves(api, world, world_runtime):
    version = api.data(TRAIN, {"seed": 0, **QUICK})["trainModel"]["version"]
    api.data(PROMOTE, {"v": version, "by": "Ada"})
    node = ox.NamedNode(vocab.MODEL_BASE + version)
    [quad] = list(world_runtime.store.quads(subject=node, predicate=vocab.ARTIFACT))
    data = bytearray(base64.b64decode(quad.object.value))
    data[-10] ^= 0xFF
    world_runtime.store.commit(
        remove=[quad],
        add=[
            ox.Quad(
                node,
                vocab.ARTIFACT,
                ox.Literal(base64.b64encode(bytes(data)).decode(), datatype=vocab.XSD_BASE64),
                quad.graph_name,
            )
        ],
    )
    serving_of(world_runtime)._loaded = None  # as a freshly started process would
    new_user(api, world, "fresh-t")
    assert api.data(NEXT_STEPS, {"user": "fresh-t"})["nextSteps"]["modelVersion"] is None


def test_explanations_cite_how_similar_users_fared(api, world):
    version = api.data(TRAIN, {"seed": 0, **QUICK})["trainModel"]["version"]
    api.data(PROMOTE, {"v": version, "by": "Ada"})
    reasons = []
    for role in range(len(world.roles)):
        for industry in range(len(world.industries)):
            user = f"fresh-{role}-{industry}"
            new_user(api, world, user, role=role, industry=industry)
            rec = api.data(NEXT_STEPS, {"user": user, "limit": 10})["nextSteps"]
            reasons += [r for s in rec["steps"] for r in s["reasons"]]
    cited = [r for r in reasons if " who completed this step activated " in r]
    assert cited, reasons
    assert all(re.fullmatch(r".+s in .+ who completed this step activated \d+\.\dx as often", r) for r in cited)


def test_without_an_active_version_nothing_serves(runtime):
    serving = Serving()
    assert serving.scorer(runtime) is None
    register_untrained(runtime, b"a candidate", minute=1)
    assert serving.scorer(runtime) is None  # a candidate does not serve


def test_an_active_artefact_that_is_not_a_model_never_serves_and_is_not_counted(runtime):
    garbage = b"not a torch file, though its hash is the registered one"
    version = register_untrained(runtime, garbage, minute=1)
    assert hashlib.sha256(garbage).hexdigest().startswith(version)
    lifecycle.promote(runtime, version, approved_by="Ada")
    assert Serving().scorer(runtime) is None  # refused, not raised: decisions fall back to the rules
    assert REGISTRY.get_sample_value("wayfinder_model_version_served", {"version": version}) in (None, 0.0)
