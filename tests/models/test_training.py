"""Training on a running service: a candidate with its lineage, refusals, one run at a time, no blocking."""

from __future__ import annotations

import hashlib
import json
import threading
import time

import numpy as np
import pyoxigraph as ox
import pytest

from service.errors import Conflict, InvalidInput
from service.knowledge import vocab
from service.knowledge.queries import inline
from service.models import records, training
from tests.graphql_client import NEXT_STEPS, GraphQLClient
from tests.models.conftest import MODELS, QUICK, TRAIN, new_user


def test_training_registers_a_candidate_with_its_lineage(api, world_runtime, world):
    trained = api.data(TRAIN, {"seed": 0, **QUICK})["trainModel"]
    version = trained["version"]
    assert trained["status"] == "candidate" and trained["approvedBy"] is None
    assert version == trained["artifactHash"][:12]
    assert json.loads(trained["hyperParameters"])["epochs"] == QUICK["epochs"]
    metrics = json.loads(trained["metrics"])
    assert metrics["test_users"] > 0 and 0.0 <= metrics["test_auc"] <= 1.0
    # the artefact in the store is the one the hash names
    stored = records.artefact(world_runtime, records.find(world_runtime, version))

    assert hashlib.sha256(stored).hexdigest() == trained["artifactHash"]
    # PROV: a training run that used one ANALYTICS consent record per training user
    used = world_runtime.store.select(
        inline(
            "PREFIX prov: <http://www.w3.org/ns/prov#> SELECT (COUNT(?r) AS ?n) ?model WHERE { "
            "?model prov:wasGeneratedBy ?run . ?run prov:used ?r } GROUP BY ?model",
            model=ox.NamedNode(vocab.MODEL_BASE + version),
        )
    )
    assert int(used[0]["n"].value) == trained["trainingUsers"] > 0
    purposes = world_runtime.store.select(
        inline(
            "PREFIX prov: <http://www.w3.org/ns/prov#> PREFIX dpv: <https://w3id.org/dpv#> "
            "SELECT DISTINCT ?purpose ?status ?model WHERE { ?model prov:wasGeneratedBy ?run . ?run prov:used ?r . "
            "?r dpv:hasPurpose ?purpose ; dpv:hasConsentStatus ?status }",
            model=ox.NamedNode(vocab.MODEL_BASE + version),
        )
    )
    assert {(r["purpose"], r["status"]) for r in purposes} == {(vocab.ANALYTICS, vocab.CONSENT_GIVEN)}
    # a candidate does not serve
    new_user(api, world, "fresh-1")
    rec = api.data(NEXT_STEPS, {"user": "fresh-1"})["nextSteps"]
    assert rec["modelVersion"] is None and rec["personalized"]
    # the same data and seed give the same version, registered once
    again = api.data(TRAIN, {"seed": 0, **QUICK})["trainModel"]
    assert again["version"] == version
    assert [m["version"] for m in api.data(MODELS)["models"]] == [version]


def test_withdrawn_analytics_consent_lists_the_model_trained_under_it(api, world_runtime, world):
    version = api.data(TRAIN, {"seed": 0, **QUICK})["trainModel"]["version"]
    user = next(u for u in world.users if u.analytics_active())
    withdrawn = api.data(
        "mutation W($u: ID!) { withdrawConsent(userId: $u, purpose: ANALYTICS) { granted affectedModelVersions } }",
        {"u": vocab.local_id(user.iri)},
    )["withdrawConsent"]
    assert not withdrawn["granted"] and version in withdrawn["affectedModelVersions"]


def test_too_little_data_to_train_is_refused(client):
    error = client.error(TRAIN, {"seed": 0, **QUICK})
    assert error["extensions"]["code"] == "NOT_ENOUGH_DATA" and "ANALYTICS" in error["message"]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        ({"seed": -1}, "seed"),
        ({"seed": 2**31}, "seed"),
        ({"epochs": 0}, "epochs"),
        ({"epochs": training.MAX_EPOCHS + 1}, "epochs"),
        ({"members": 0}, "members"),
        ({"members": training.MAX_MEMBERS + 1}, "members"),
    ],
)
def test_a_request_out_of_range_is_refused_before_anything_is_read(runtime, request_, field):
    before = len(runtime.store)
    with pytest.raises(InvalidInput) as refused:
        training.train(runtime, **{"seed": 0, **request_})
    assert refused.value.field == field
    assert len(runtime.store) == before


def test_the_requested_epochs_and_members_replace_the_defaults_and_only_they():
    options = training.train_options(seed=0, epochs=7, members=2)
    assert (options.epochs, options.members) == (7, 2)
    default = training.train_options(seed=0, epochs=None, members=None)
    assert (default.epochs, default.members) == (300, 5)
    assert (options.lr, options.hidden) == (default.lr, default.hidden)


def test_a_second_run_in_the_same_process_is_refused_while_one_runs(world_runtime):
    assert training._training.acquire(blocking=False)  # as a run in progress holds it
    try:
        with pytest.raises(Conflict, match="already in progress"):
            training.train(world_runtime, seed=0, **QUICK)
    finally:
        training._training.release()
    assert records.versions(world_runtime) == []


def test_auc_counts_ties_as_half_and_needs_both_classes():
    labels = np.array([1.0, 0.0, 1.0, 0.0])
    assert training.auc(np.array([0.9, 0.1, 0.8, 0.2]), labels) == 1.0
    assert training.auc(np.array([0.1, 0.9, 0.2, 0.8]), labels) == 0.0
    assert training.auc(np.array([0.5, 0.5, 0.5, 0.5]), labels) == 0.5
    assert np.isnan(training.auc(np.array([0.3, 0.4]), np.array([1.0, 1.0])))


def test_training_does_not_block_next_steps(world_runtime, world):
    """trainModel runs in a worker thread: nextSteps is answered while it runs."""
    import httpx

    from tests.conftest import serving

    with serving(world_runtime) as base, httpx.Client(base_url=base, timeout=120) as http:
        api = GraphQLClient(http)
        new_user(api, world, "fresh-n")
        result: dict = {}
        trainer = threading.Thread(
            target=lambda: result.update(api.data(TRAIN, {"seed": 3, "epochs": 100, "members": 1}))
        )
        trainer.start()
        time.sleep(0.5)  # let the training start
        answered_during_training = 0
        while trainer.is_alive() and answered_during_training < 5:
            rec = api.data(NEXT_STEPS, {"user": "fresh-n"})["nextSteps"]
            assert rec["steps"]
            answered_during_training += trainer.is_alive()
        trainer.join()
        assert result["trainModel"]["status"] == "candidate"
        assert answered_during_training == 5
