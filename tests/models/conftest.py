"""The model registry's fixtures: a synthetic world on a running service, and versions registered without training.

A synthetic world (its catalog, a hybrid default policy and 1,500 users) is loaded
into a real store, once per session; each test gets a fresh copy. Training is short
(one member, few epochs): these tests check the registry's behaviour, the bench
(``wayfinder evaluate``) checks the model's quality. Tests of the records and the
life cycle alone register versions whose artefact is a few bytes: no training, no torch.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyoxigraph as ox
import pytest

from embeddings.world import generate_world
from service.knowledge import vocab
from service.knowledge.embedded import Store
from service.models.records import version_name, version_quads
from service.runtime import Runtime
from service.settings import Settings
from service.synthetic import write_world
from tests.graphql_client import GraphQLClient

SIZES = {"n_steps": 20, "n_features": 30, "n_areas": 4, "n_roles": 4, "n_industries": 3}
POLICY = """
@prefix wf:  <https://w3id.org/wayfinder/ontology#> .
@prefix pol: <https://w3id.org/wayfinder/policy/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
pol:default a wf:Policy ; rdfs:label "World policy"@en ; rdfs:comment "Rules and model, mixed."@en .
pol:default-2.0.0 a wf:PolicyVersion ;
    rdfs:label "World policy 2.0.0"@en ;
    wf:versionOf pol:default ; wf:version "2.0.0" ; wf:status "active" ;
    wf:approvedBy "Test team" ; wf:approvedAt "2026-11-26T09:00:00Z"^^xsd:dateTime ;
    wf:ruleWeight 0.1 ; wf:modelWeight 1.0 ; wf:depthWeight 0.0 ; wf:unlockWeight 0.0 ; wf:affinityWeight 0.0 .
"""
QUICK = {"epochs": 40, "members": 1}
TRAIN = (
    "mutation T($seed: Int!, $epochs: Int, $members: Int) { trainModel(seed: $seed, epochs: $epochs, members: $members) "
    "{ version status artifactHash dataSnapshot hyperParameters metrics trainingUsers approvedBy supersedes } }"
)
PROMOTE = (
    "mutation P($v: String!, $by: String!) { promoteModel(version: $v, approvedBy: $by) "
    "{ version status approvedBy approvedAt supersedes } }"
)
ROLLBACK = "mutation { rollbackModel { version status } }"
MODELS = "{ models { version status supersedes } }"
REGISTER = "mutation R($input: RegisterUserInput!) { registerUser(input: $input) { id } }"
EVENTS = "mutation E($inputs: [EventInput!]!) { recordEvents(inputs: $inputs) }"


@pytest.fixture(scope="session")
def world():
    return generate_world(seed=9, n_users=1500, **SIZES)


@pytest.fixture(scope="session")
def world_quads(world, tmp_path_factory) -> list:
    folder = tmp_path_factory.mktemp("world")
    catalog, users = write_world(world, folder)
    policy = folder / "policy.ttl"
    policy.write_text(POLICY)
    runtime = Runtime(settings=Settings(store=":memory:"))
    runtime.ensure_ontology()
    runtime.load([catalog, policy])
    runtime.store.bulk_load(users, format=ox.RdfFormat.N_QUADS)
    return list(runtime.store.quads())


@pytest.fixture
def world_runtime(world_quads) -> Runtime:
    store = Store(":memory:")
    store.commit(add=world_quads)
    return Runtime(settings=Settings(store=":memory:"), store=store)


@pytest.fixture
def api(world_runtime):
    from starlette.testclient import TestClient

    from service.api.app import create_app

    with TestClient(create_app(world_runtime)) as http:
        yield GraphQLClient(http)


def new_user(api: GraphQLClient, world, user_id: str, *, role: int = 0, industry: int = 0, features=(0, 1)) -> None:
    """Register a user the model never saw, with consent to personalisation and a few first events."""
    leaves = [f for f in world.features if f not in world.areas]
    api.data(
        REGISTER,
        {
            "input": {
                "id": user_id,
                "role": vocab.local_id(world.roles[role]),
                "industry": vocab.local_id(world.industries[industry]),
                "plan": vocab.local_id(world.plans[-1]),
                "consents": ["PERSONALIZATION"],
            }
        },
    )
    api.data(
        EVENTS,
        {
            "inputs": [
                {"userId": user_id, "type": "FEATURE_USED", "featureId": vocab.local_id(leaves[f])} for f in features
            ]
        },
    )


def register_untrained(
    runtime: Runtime, artefact: bytes, *, minute: int = 0, used: tuple[str, ...] = (), requested_by: str | None = None
) -> str:
    """Record a candidate version whose artefact is the given bytes, trained at 10:MM; return its name."""
    at = datetime(2026, 11, 26, 10, minute, tzinfo=UTC)
    quads = version_quads(
        artefact,
        snapshot="b" * 64,
        hyper_parameters={"epochs": 1, "seed": minute},
        metrics={"test_auc": 0.5, "test_log_loss": float("nan")},
        started=at,
        ended=at,
        training_users=len(used),
        used=used,
        requested_by=requested_by,
    )
    runtime.store.commit(add=quads)
    return version_name(artefact)
