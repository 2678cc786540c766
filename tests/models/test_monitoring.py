"""Model health: a version's training profile, drift of its traffic, calibration, reports, the promotion gate.

A real store holding the synthetic world and the shipped governance policy (wf:maxPopulationShift 0.25, and no
calibration limit), two versions trained on it once per module, and decisions made in process.
"""

from __future__ import annotations

import gc
import json
import re

import numpy as np
import pyoxigraph as ox
import pytest
from prometheus_client import REGISTRY
from starlette.testclient import TestClient
from typer.testing import CliRunner

from embeddings.export import consent_records
from service.api.app import create_app
from service.cli import app as cli
from service.decisions import users
from service.decisions.decide import next_steps
from service.errors import Conflict
from service.knowledge import vocab
from service.knowledge.embedded import Store
from service.models import lifecycle, monitoring, training
from service.models.profiles import CATEGORICAL, MAX_SCORES, NUMERIC, SCORE_USERS, profile_of
from service.models.records import Status, find
from service.runtime import Runtime
from service.settings import Settings
from tests.graphql_client import GraphQLClient
from tests.models.conftest import QUICK, register_untrained
from tests.paths import ROOT

GOVERNANCE = ROOT / "ontology" / "policies" / "governance.ttl"
HEALTH = "{ models { version health { verdict source decisions inputs { subject psi } score { psi } alerts } } }"


@pytest.fixture(scope="module")
def trained(world_quads) -> tuple[list[ox.Quad], str, str]:
    """The world with the governance policy and two versions trained on it (the second one briefly), as quads."""
    runtime = runtime_over(Store(":memory:"), world_quads)
    runtime.load([GOVERNANCE])
    first = training.train(runtime, seed=0, **QUICK).version
    second = training.train(runtime, seed=1, epochs=10, members=1).version
    return list(runtime.store.quads()), first, second


@pytest.fixture(scope="module")
def shifted(trained) -> tuple[Runtime, list[ox.Quad]]:
    """The trained world, its first version active and serving the traffic of ``shift_traffic``: a runtime (for
    one test only) and its quads as they were then."""
    runtime = runtime_over(Store(":memory:"), trained[0])
    lifecycle.promote(runtime, trained[1], approved_by="Ada")
    shift_traffic(runtime, trained[1])
    return runtime, list(runtime.store.quads())


@pytest.fixture
def runtime(trained) -> Runtime:
    return runtime_over(Store(":memory:"), trained[0])


def runtime_over(store: Store, quads: list[ox.Quad]) -> Runtime:
    store.commit(add=quads)
    return Runtime(settings=Settings(store=str(store.location or ":memory:")), store=store)


def consenting(runtime: Runtime, *purposes: ox.NamedNode) -> list[str]:
    """The IDs of the world's users whose current consent records give every purpose, in ID order."""
    given = [set(consent_records(runtime.store, purpose=p)) for p in purposes]
    return sorted(vocab.local_id(u) for u in set.intersection(*given))


def shift_traffic(runtime: Runtime, version: str, n: int = 50) -> str:
    """Register ``n`` users like the world's, but all of the role the version's training users had least, and
    decide for each; return the role."""
    profile = profile_of(runtime, find(runtime, version))
    assert profile is not None
    roles = profile.categorical["role"]
    role = min(roles, key=roles.__getitem__)
    for like in consenting(runtime, vocab.PERSONALIZATION)[:n]:
        was = users.profile(runtime, like)
        assert was is not None
        user = f"shifted-{like}"
        industry, plan = (vocab.local_id(iri) if iri else None for iri in (was.industry, was.plan))
        consents = ["PERSONALIZATION", "ANALYTICS"]
        users.register(runtime, users.Registration(user, vocab.local_id(role), industry, plan, consents=consents))
        used = [
            vocab.local_id(e.feature) for e in users.events(runtime, like) if e.type == "FEATURE_USED" and e.feature
        ]
        users.record_events(runtime, [users.EventReport(user, "FEATURE_USED", feature_id=f) for f in used])
        next_steps(runtime, user)
    return role


def test_training_keeps_a_profile_of_what_the_model_read_and_scored(runtime, trained):
    version = find(runtime, trained[1])
    profile = profile_of(runtime, version)
    assert profile is not None and profile.users == version.training_users
    for name in CATEGORICAL:
        assert sum(profile.categorical[name].values()) == profile.users
    for name in NUMERIC:
        assert sum(profile.numeric[name].values()) == profile.users
    assert set(profile.categorical["role"]) <= {*runtime.catalog.entities, "(none)"}
    assert profile.score_users == min(profile.users, SCORE_USERS) and 0 < len(profile.scores) <= MAX_SCORES
    stored = list(runtime.store.quads(predicate=vocab.TRAINING_PROFILE, graph=vocab.MODELS_GRAPH))
    assert len(stored) == 2  # one per version, in the models graph
    # a version registered before profiles were kept is not assessed, and still promotes
    old = register_untrained(runtime, b"an old artefact")
    report = monitoring.model_health(runtime, old)
    assert report.verdict == "not assessed" and "without a training profile" in report.notes[0]
    assert lifecycle.promote(runtime, old, approved_by="Ada").status is Status.ACTIVE


def test_an_unchanged_population_raises_no_alert_and_shows_on_graphql_and_metrics(runtime, trained):
    first = trained[1]
    lifecycle.promote(runtime, first, approved_by="Ada")  # no traffic yet: not assessed, not refused
    for user in consenting(runtime, vocab.PERSONALIZATION)[:100]:
        assert next_steps(runtime, user).model_version == first
    with TestClient(create_app(runtime)) as http:
        api = GraphQLClient(http)
        health = {m["version"]: m["health"] for m in api.data(HEALTH)["models"]}
        metrics = http.get("/metrics").text
    served = health[first]
    assert served["verdict"] == "healthy" and served["alerts"] == []
    assert served["source"] == "served" and served["decisions"] == 100
    assert {s["subject"] for s in served["inputs"]} == {*CATEGORICAL, *NUMERIC}
    assert all(s["psi"] < 0.1 for s in served["inputs"]) and served["score"]["psi"] < 0.1
    # the candidate, judged on the same traffic scored by it, is healthy too
    assert health[trained[2]]["source"] == "offline" and health[trained[2]]["verdict"] == "healthy"
    psi = {s["subject"]: s["psi"] for s in served["inputs"]}
    found = re.search(rf'wayfinder_model_psi{{subject="role",version="{first}"}} ([0-9.e-]+)', metrics)
    assert found and float(found.group(1)) == pytest.approx(psi["role"])
    assert re.search(rf'wayfinder_model_psi{{subject="score",version="{first}"}}', metrics)
    assert f'wayfinder_model_health_breaches{{version="{first}"}} 0.0' in metrics


def test_a_shifted_population_raises_the_input_alert_and_blocks_promotion(shifted, trained):
    first, second = trained[1], trained[2]
    runtime = shifted[0]
    served = monitoring.model_health(runtime)
    assert served.version == first and served.verdict == "breach"
    assert "feature role" in [a.subject for a in served.breaches]
    assert not {"feature industry", "feature plan", "feature features_used"} & {a.subject for a in served.alerts}

    models, audit, size = (
        set(runtime.store.graph(vocab.MODELS_GRAPH)),
        len(runtime.store.graph(vocab.AUDIT_GRAPH)),
        len(runtime.store),
    )
    with pytest.raises(Conflict) as refused:
        lifecycle.promote(runtime, second, approved_by="Grace")
    assert re.search(r"feature role drifted .* PSI \d+\.\d{3} over the limit 0\.25", refused.value.message)
    # nothing of the promotion is written: only the health report that refused it, in the audit chain
    report = refused.value.details[0]["report"]
    added = list(runtime.store.quads(subject=ox.NamedNode(report)))
    assert {q.graph_name for q in added} == {vocab.AUDIT_GRAPH}
    assert len(runtime.store) == size + len(added)
    assert len(runtime.store.graph(vocab.AUDIT_GRAPH)) == audit + len(added)
    assert set(runtime.store.graph(vocab.MODELS_GRAPH)) == models
    assert find(runtime, second).status is Status.CANDIDATE and find(runtime, first).status is Status.ACTIVE
    # an auditor sees why, over the lineage query
    query = runtime.queries["lineage/model-health"].bind(model=ox.NamedNode(vocab.MODEL_BASE + second))
    rows = [
        {
            k: r[k].value if r[k] is not None else None
            for k in ("occasion", "verdict", "refusedPromotion", "requestedBy", "alert", "figures")
        }
        for r in runtime.store.select(query)
    ]
    refusing = [r for r in rows if r["refusedPromotion"] == "true"]
    assert refusing and {r["occasion"] for r in refusing} == {"promotion"} and refusing[0]["requestedBy"] == "Grace"
    assert any(r["alert"] and r["alert"].startswith("feature role: major shift") for r in refusing)
    figures = json.loads(refusing[0]["figures"])
    assert figures["source"] == "offline" and figures["limits"]["max_population_shift"] == 0.25
    shares = next(f for f in figures["features"] if f["feature"] == "role")
    assert max(shares["current"]) > 0.99 and figures["decisions"] == 50


def test_calibration_appears_once_activations_are_recorded(runtime, trained):
    first = trained[1]
    lifecycle.promote(runtime, first, approved_by="Ada")
    shown = {
        user: next_steps(runtime, user).steps
        for user in consenting(runtime, vocab.PERSONALIZATION, vocab.ANALYTICS)[:100]
    }
    top = {user: steps[0].model_score for user, steps in shown.items() if steps and steps[0].model_score is not None}
    before = monitoring.model_health(runtime)
    assert before.health is not None and before.health.calibration is None
    assert any("no activation has followed" in note for note in before.notes)

    # users shown a higher-scored first step activate, the others do not
    cut = float(np.median(list(top.values())))
    activated = [user for user, score in top.items() if score > cut]
    users.record_events(runtime, [users.EventReport(user, "ACTIVATED") for user in activated])
    after = monitoring.model_health(runtime)
    fit = after.health.calibration if after.health else None
    assert fit is not None and after.calibration_units == len(top)
    assert len(fit.bins) == 10 and sum(b.count for b in fit.bins) == len(top)
    assert fit.bins[-1].observed_rate == 1.0 and fit.bins[0].observed_rate == 0.0 and fit.slope > 0
    assert REGISTRY.get_sample_value("wayfinder_model_calibration_error", {"version": first}) == pytest.approx(fit.ece)
    # The shipped governance sets no calibration limit (the model predicts an uplift, not a probability).
    assert fit.ece > 0 and not any(a.subject == "calibration" for a in after.breaches)


def test_the_command_prints_the_figures_and_exits_non_zero_on_a_breach(shifted, trained, tmp_path):
    first = trained[1]
    disk = runtime_over(Store(tmp_path / "store"), shifted[1])
    old = register_untrained(disk, b"an old artefact")
    disk.close()
    store = str(tmp_path / "store")

    gc.collect()
    result = CliRunner().invoke(cli, ["model", "health", "--store", store, "--by", "Ada"])
    assert result.exit_code == 1, result.output
    assert f"model version {first} (active): breach" in result.output
    assert re.search(r"role\W+\d+\.\d{3}", result.output) and re.search(r"score\W+\d+\.\d{3}", result.output)
    assert "BREACH: feature role: major shift" in result.output and "report: https://w3id.org/" in result.output
    gc.collect()
    unassessed = CliRunner().invoke(cli, ["model", "health", old, "--store", store])
    assert unassessed.exit_code == 0 and "not assessed" in unassessed.output
