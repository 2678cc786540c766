"""The life cycle of a model version: promote, roll back, refuse; through the API, the command line and in process."""

from __future__ import annotations

import json

import pyoxigraph as ox
import pytest

from service.errors import Conflict, InvalidInput, NotFound
from service.knowledge import vocab
from service.models import lifecycle, records
from service.models.records import Status
from tests.graphql_client import NEXT_STEPS
from tests.models.conftest import MODELS, PROMOTE, QUICK, ROLLBACK, TRAIN, new_user, register_untrained


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
    from service.errors import InvalidInput
    from service.models import training

    for processes in (0, training.MAX_PROCESSES + 1):
        with pytest.raises(InvalidInput, match="processes: must be between 1 and"):
            training.train(world_runtime, seed=0, processes=processes, **QUICK)
    assert len(world_runtime.store) == before
    api.data(PROMOTE, {"v": version, "by": "Ada"})
    assert api.error(PROMOTE, {"v": version, "by": "Ada"})["extensions"]["code"] == "CONFLICT"


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


def statuses_in_the_store(runtime) -> dict[str, ox.NamedNode | ox.BlankNode | ox.Literal]:
    """The wf:modelStatus of every version, as stored."""
    return {
        vocab.local_id(q.subject.value): q.object
        for q in runtime.store.quads(predicate=vocab.MODEL_STATUS, graph=vocab.MODELS_GRAPH)
    }


def test_each_promotion_retires_the_active_version_and_a_rollback_returns_to_it(runtime):
    a = register_untrained(runtime, b"artefact a", minute=1)
    b = register_untrained(runtime, b"artefact b", minute=2)
    assert statuses_in_the_store(runtime) == {a: vocab.CANDIDATE_VERSION, b: vocab.CANDIDATE_VERSION}

    promoted = lifecycle.promote(runtime, a, approved_by="  Ada  ")
    assert (promoted.status, promoted.approved_by, promoted.supersedes) == (Status.ACTIVE, "Ada", None)
    assert promoted.approved_at is not None
    second = lifecycle.promote(runtime, b, approved_by="Grace")
    assert (second.status, second.supersedes) == (Status.ACTIVE, a)
    assert statuses_in_the_store(runtime) == {a: vocab.RETIRED_VERSION, b: vocab.ACTIVE_VERSION}

    back = lifecycle.rollback(runtime)
    assert (back.version, back.status) == (a, Status.ACTIVE)
    assert statuses_in_the_store(runtime) == {a: vocab.ACTIVE_VERSION, b: vocab.ROLLED_BACK_VERSION}
    # the statuses are terms of the ontology, and nothing is left of the strings of layout 2
    assert not list(runtime.store.quads(predicate=vocab.STATUS, graph=vocab.MODELS_GRAPH))
    assert records.active(runtime).version == a  # type: ignore[union-attr]


def test_a_rolled_back_version_can_be_promoted_again_with_a_new_approval(runtime):
    a = register_untrained(runtime, b"artefact a", minute=1)
    b = register_untrained(runtime, b"artefact b", minute=2)
    lifecycle.promote(runtime, a, approved_by="Ada")
    lifecycle.promote(runtime, b, approved_by="Grace")
    lifecycle.rollback(runtime)
    again = lifecycle.promote(runtime, b, approved_by="Lin")
    assert (again.status, again.approved_by, again.supersedes) == (Status.ACTIVE, "Lin", a)
    assert statuses_in_the_store(runtime) == {a: vocab.RETIRED_VERSION, b: vocab.ACTIVE_VERSION}
    approvals = list(runtime.store.quads(subject=ox.NamedNode(vocab.MODEL_BASE + b), predicate=vocab.APPROVED_BY))
    assert [q.object.value for q in approvals] == ["Lin"]  # the earlier approval is replaced, not kept beside


def test_refusals_leave_the_store_as_it_was(runtime):
    a = register_untrained(runtime, b"artefact a", minute=1)
    before = set(runtime.store.quads())
    with pytest.raises(Conflict, match="nothing to roll back"):
        lifecycle.rollback(runtime)
    with pytest.raises(InvalidInput, match="at most 200"):
        lifecycle.promote(runtime, a, approved_by="A" * (lifecycle.MAX_APPROVER + 1))
    with pytest.raises(NotFound):
        lifecycle.promote(runtime, "0123456789ab", approved_by="Ada")
    assert set(runtime.store.quads()) == before
    lifecycle.promote(runtime, a, approved_by="Ada")
    with pytest.raises(Conflict, match="superseded no version"):
        lifecycle.rollback(runtime)
