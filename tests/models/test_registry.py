"""The model registry on a running service: train, lineage, promote, serve, roll back, refuse.

A synthetic world (its catalog, a hybrid default policy and 1,500 users) is loaded
into a real store; training is short (one member, few epochs): these tests check the
registry's behaviour, the bench (``wayfinder evaluate``) checks the model's quality.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time

import pyoxigraph as ox
import pytest

from embeddings.world import generate_world
from service.knowledge import vocab
from service.knowledge.embedded import Store
from service.models import registry
from service.runtime import Runtime
from service.settings import Settings
from service.synthetic import write_world
from tests.graphql_client import NEXT_STEPS, GraphQLClient

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


@pytest.fixture(scope="module")
def world():
    return generate_world(seed=9, n_users=1500, **SIZES)


@pytest.fixture(scope="module")
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


def test_training_registers_a_candidate_with_its_lineage(api, world_runtime, world):
    trained = api.data(TRAIN, {"seed": 0, **QUICK})["trainModel"]
    version = trained["version"]
    assert trained["status"] == "candidate" and trained["approvedBy"] is None
    assert version == trained["artifactHash"][:12]
    assert json.loads(trained["hyperParameters"])["epochs"] == QUICK["epochs"]
    metrics = json.loads(trained["metrics"])
    assert metrics["test_users"] > 0 and 0.0 <= metrics["test_auc"] <= 1.0
    # the artefact in the store is the one the hash names
    stored = registry.artefact(world_runtime, registry.find(world_runtime, version))
    import hashlib

    assert hashlib.sha256(stored).hexdigest() == trained["artifactHash"]
    # PROV: a training run that used one ANALYTICS consent record per training user
    used = world_runtime.store.select(
        "PREFIX prov: <http://www.w3.org/ns/prov#> SELECT (COUNT(?r) AS ?n) ?model WHERE { "
        "?model prov:wasGeneratedBy ?run . ?run prov:used ?r } GROUP BY ?model".bind(
            model=ox.NamedNode(vocab.MODEL_BASE + version)
        )
    )
    assert int(used[0]["n"].value) == trained["trainingUsers"] > 0
    purposes = world_runtime.store.select(
        "PREFIX prov: <http://www.w3.org/ns/prov#> PREFIX dpv: <https://w3id.org/dpv#> "
        "SELECT DISTINCT ?purpose ?status ?model WHERE { ?model prov:wasGeneratedBy ?run . ?run prov:used ?r . "
        "?r dpv:hasPurpose ?purpose ; dpv:hasConsentStatus ?status }".bind(
            model=ox.NamedNode(vocab.MODEL_BASE + version)
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


def test_promote_and_rollback_while_serving(api, world, world_runtime):
    first = api.data(TRAIN, {"seed": 0, **QUICK})["trainModel"]["version"]
    second = api.data(TRAIN, {"seed": 1, **QUICK})["trainModel"]["version"]
    assert first != second
    new_user(api, world, "fresh-r")
    api.data(PROMOTE, {"v": first, "by": "Ada"})
    assert api.data(NEXT_STEPS, {"user": "fresh-r"})["nextSteps"]["modelVersion"] == first
    promoted = api.data(PROMOTE, {"v": second, "by": "Grace"})["promoteModel"]
    assert promoted["supersedes"] == first
    assert api.data(NEXT_STEPS, {"user": "fresh-r"})["nextSteps"]["modelVersion"] == second
    back = api.data(ROLLBACK)["rollbackModel"]
    assert back == {"version": first, "status": "active"}
    assert api.data(NEXT_STEPS, {"user": "fresh-r"})["nextSteps"]["modelVersion"] == first
    metrics = api.http.get("/metrics").text
    assert f'wayfinder_model_version_served{{version="{first}"}} 1.0' in metrics
    assert f'wayfinder_model_version_served{{version="{second}"}} 0.0' in metrics
    statuses = {m["version"]: m["status"] for m in api.data(MODELS)["models"]}
    assert statuses == {first: "active", second: "rolled-back"}
    # the first version superseded nothing: there is nothing further back
    error = api.error(ROLLBACK)
    assert error["extensions"]["code"] == "CONFLICT"
    assert api.data(NEXT_STEPS, {"user": "fresh-r"})["nextSteps"]["modelVersion"] == first


def test_registry_refusals_name_the_field_and_change_nothing(api, world_runtime):
    version = api.data(TRAIN, {"seed": 0, **QUICK})["trainModel"]["version"]
    before = len(world_runtime.store)
    unknown = api.error(PROMOTE, {"v": "0123456789ab", "by": "Ada"})
    assert unknown["extensions"]["code"] == "NOT_FOUND"
    blank = api.error(PROMOTE, {"v": version, "by": "  "})
    assert blank["extensions"]["code"] == "BAD_USER_INPUT" and "approvedBy" in blank["message"]
    assert api.error(ROLLBACK)["extensions"]["code"] == "CONFLICT"
    bad = api.error(TRAIN, {"seed": 0, "epochs": 0})
    assert bad["extensions"]["code"] == "BAD_USER_INPUT" and "epochs" in bad["message"]
    assert len(world_runtime.store) == before
    api.data(PROMOTE, {"v": version, "by": "Ada"})
    assert api.error(PROMOTE, {"v": version, "by": "Ada"})["extensions"]["code"] == "CONFLICT"


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
    world_runtime.models._loaded = None  # as a freshly started process would
    new_user(api, world, "fresh-t")
    assert api.data(NEXT_STEPS, {"user": "fresh-t"})["nextSteps"]["modelVersion"] is None


def test_withdrawn_analytics_consent_lists_the_model_trained_under_it(api, world_runtime, world):
    version = api.data(TRAIN, {"seed": 0, **QUICK})["trainModel"]["version"]
    user = next(u for u in world.users if u.analytics_active)
    withdrawn = api.data(
        "mutation W($u: ID!) { withdrawConsent(userId: $u, purpose: ANALYTICS) { granted affectedModelVersions } }",
        {"u": vocab.local_id(user.iri)},
    )["withdrawConsent"]
    assert not withdrawn["granted"] and version in withdrawn["affectedModelVersions"]


def test_too_little_data_to_train_is_refused(client):
    error = client.error(TRAIN, {"seed": 0, **QUICK})
    assert error["extensions"]["code"] == "NOT_ENOUGH_DATA" and "ANALYTICS" in error["message"]


def test_training_does_not_block_next_steps(world_runtime, world):
    """trainModel runs in a worker thread: nextSteps is answered while it runs."""
    import httpx

    from tests.conftest import serving

    with serving(world_runtime) as base, httpx.Client(base_url=base, timeout=120) as http:
        api = GraphQLClient(http)
        new_user(api, world, "fresh-n")
        result: dict = {}
        trainer = threading.Thread(
            target=lambda: result.update(api.data(TRAIN, {"seed": 3, "epochs": 400, "members": 2}))
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


def test_command_line_world_train_promote_rollback(tmp_path):
    from typer.testing import CliRunner

    from service.cli import app

    cli, store = CliRunner(), str(tmp_path / "world")
    made = cli.invoke(app, ["world", "--store", store, "--users", "300", "--seed", "5"])
    assert made.exit_code == 0, made.output
    assert cli.invoke(app, ["world", "--store", store]).exit_code == 2  # a catalog is there already
    versions = []
    for seed in (0, 1):
        trained = cli.invoke(app, ["train", "--store", store, "--seed", str(seed), "--epochs", "20", "--members", "1"])
        assert trained.exit_code == 0, trained.output
        versions.append(trained.stdout.strip().splitlines()[-1])
    listed = json.loads(cli.invoke(app, ["model", "list", "--store", store, "-f", "json"]).stdout)
    assert [(v["version"], v["status"]) for v in listed] == [(versions[0], "candidate"), (versions[1], "candidate")]
    for version in versions:
        assert cli.invoke(app, ["model", "promote", version, "--approved-by", "Ada", "--store", store]).exit_code == 0
    assert cli.invoke(app, ["model", "rollback", "--store", store]).exit_code == 0
    listed = json.loads(cli.invoke(app, ["model", "list", "--store", store, "-f", "json"]).stdout)
    assert {v["version"]: v["status"] for v in listed} == {versions[0]: "active", versions[1]: "rolled-back"}
    refused = cli.invoke(app, ["model", "promote", "nope", "--approved-by", "Ada", "--store", store])
    assert refused.exit_code == 2 and "no model version" in refused.output


def test_registry_records_pass_the_model_shapes(api, world_runtime):
    from service.knowledge.terms import to_rdflib_graph
    from service.knowledge.validation import Validator

    first = api.data(TRAIN, {"seed": 0, **QUICK})["trainModel"]["version"]
    second = api.data(TRAIN, {"seed": 1, **QUICK})["trainModel"]["version"]
    api.data(PROMOTE, {"v": first, "by": "Ada"})
    api.data(PROMOTE, {"v": second, "by": "Grace"})
    api.data(ROLLBACK)
    data = to_rdflib_graph(world_runtime.store.graph(vocab.MODELS_GRAPH))
    assert len(data) > 20
    data += world_runtime.knowledge.graph
    violations = Validator(world_runtime.settings.shapes_dir).validate(data)
    assert [v for v in violations if "/model/" in v.focus] == []
