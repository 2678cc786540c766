"""Calibrated mixing: a policy version's rules and the model put on one scale by held-out outcomes, unit-free."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
import torch

from embeddings.inputs import catalog_edges, completion_matrix, user_inputs
from embeddings.scoring import model_of
from embeddings.train import TrainOptions, split_users, train_model
from service.decisions import decide
from service.decisions.ranking import serving_model
from service.models import calibration, lifecycle, records, training
from service.models.serving import artefact, version_scorer
from tests.graphql_client import GraphQLClient
from tests.models.conftest import new_user

POL = "https://w3id.org/wayfinder/policy/"
VERSION = """
pol:default-{name} a wf:PolicyVersion ;
    rdfs:label "World policy {name}"@en ;
    wf:versionOf pol:default ; wf:version "{name}" ; wf:status "active" ;
    wf:approvedBy "Test team" ; wf:approvedAt "2026-11-27T09:00:00Z"^^xsd:dateTime ;
    wf:ruleWeight 1.0 ; wf:modelWeight 1.0 ; wf:mixing wf:CalibratedSum ;
    wf:journeyWeight {journey} ; wf:depthWeight {depth} ; wf:unlockWeight {unlock} ; wf:affinityWeight {affinity} ;
    wf:minEvidence 20 ; wf:liftToCite 1.2 ;
    wf:unlockReason "Needed before {{unlocked}}" ;
    wf:usedFeatureReason "More on {{feature}}, which you started using" ;
    wf:usedAreaReason "Unlocks {{feature}}, part of {{area}}, which you started using" ;
    wf:similarUsersReason "{{role}}s in {{industry}} who completed this step activated {{lift}}x as often" ;
    wf:introducesAreaReason "Introduces {{feature}}, part of {{area}}" ;
    wf:introducesReason "Introduces {{feature}}" ;
    wf:journeyReason "Next in the recommended journey" .
"""
PREFIXES = """
@prefix wf:  <https://w3id.org/wayfinder/ontology#> .
@prefix pol: <https://w3id.org/wayfinder/policy/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
"""


def versions(**scales: float) -> str:
    """Calibrated versions of one rule (the affinity of a step's area to the user's first events), each with its
    weight times the scale given (2.1.0 at 1x, ...)."""
    text = PREFIXES
    for name, k in scales.items():
        text += VERSION.format(name=name, journey=0.0, depth=0.0, unlock=0.0, affinity=1.0 * k)
    return text


@pytest.fixture
def calibrated(world_runtime, tmp_path):
    """The world's store with two calibrated versions of one rule set: 2.1.0, and 2.2.0 with every weight x10."""
    path = tmp_path / "calibrated.ttl"
    path.write_text(versions(**{"2.1.0": 1.0, "2.2.0": 10.0}))
    world_runtime.load([path])
    return world_runtime


def test_training_fits_units_for_each_calibrated_version_and_scaling_the_rules_only_rescales_theirs(calibrated):
    # The GNN alone (no stack): a stacked model whose validation users chose a heavy penalty on the GNN's columns
    # has nearly constant base log-odds, a flat direction of the likelihood in which the reference below wanders.
    version = training.train(calibrated, seed=0, epochs=20, members=1, stack=False)
    scorer = version_scorer(calibrated, version)
    policies = calibrated.knowledge.policies
    one, ten = policies[POL + "default-2.1.0"], policies[POL + "default-2.2.0"]
    assert set(scorer.calibrations) == {one.iri, ten.iri}  # 2.0.0 is a weighted sum: nothing to fit
    assert scorer.calibration(one) is not None and scorer.calibration(ten) is not None
    (model_1, rules_1), (model_10, rules_10) = scorer.calibration(one), scorer.calibration(ten)
    assert model_10 == pytest.approx(model_1, rel=1e-3)
    assert rules_1 > 0  # in this world, the affinity rule adds a little to the model
    assert rules_10 == pytest.approx(rules_1 / 10, rel=1e-3)  # the units absorb the scale of the weights

    # the fit itself, checked against statsmodels' maximum likelihood on the same columns
    export = training.training_export(calibrated)  # what training read: users keyed by pseudonym
    users = split_users(int(export.data["user"].num_nodes), seed=0).validation
    assert users.numel() >= calibration.MIN_USERS  # enough held-out users: none out of fold
    assert scorer.calibrations[one.iri]["users"] == scorer.calibrations[one.iri]["held_out"] == users.numel()
    model = model_of(artefact(calibrated, version), sha256=version.artifact_hash)
    fit = statsmodels_fit(calibrated, export, one, [(model, users)])
    assert agrees(fit, 0, model_1) and agrees(fit, 1, rules_1)


def agrees(fit, column: int, value: float) -> bool:
    """The calibration's weight is statsmodels' to 1 %, or to a tenth of its standard error where the likelihood is
    flat (the model's base log-odds nearly constant across users: the fit's near-zero penalty then moves the
    weights by a little of what the data cannot tell apart)."""
    return abs(fit.params[column] - value) <= max(1e-2 * abs(value), 1e-3, 0.1 * fit.bse[column])


def statsmodels_fit(runtime, export, version, scored, *, with_rules=True):
    """statsmodels' maximum likelihood of the calibration regression, over (model, users) pairs: its weights in
    the order model, rules (unless left out), base, then one per number of steps completed."""
    users = torch.cat([u for _, u in scored])
    with torch.no_grad():
        parts = [model(catalog_edges(export.data), user_inputs(export.data, u)) for model, u in scored]
    uplift, base = torch.cat([p[0] for p in parts]).numpy(), torch.cat([p[1] for p in parts]).numpy()
    done = completion_matrix(export.data, users).numpy()
    rules = calibration.rule_scores(
        runtime, version, calibration._contexts(runtime, export, users), export.iris("step")
    )
    x = np.column_stack([(uplift * done).sum(1), *([(rules * done).sum(1)] if with_rules else []), base])
    y = export.data["user"].y[users].numpy()
    # One term per number of steps completed (as the intercept and count terms of the calibration). Where all the
    # users of a count share one outcome, its term has no maximum-likelihood value (it runs to infinity, and the
    # calibration's near-zero penalty follows it far): in that limit those users are fitted exactly and weigh
    # nothing in the other weights, so the reference leaves them out.
    completed = done.sum(1).astype(int)
    mixed = [k for k in np.unique(completed) if 0 < y[completed == k].mean() < 1]
    rows = np.isin(completed, mixed)
    counts = (completed[rows, None] == np.array(mixed)[None, :]).astype(float)
    return sm.Logit(y[rows], np.column_stack([x[rows], counts])).fit(disp=0, maxiter=500)


def test_with_few_held_out_users_the_training_users_calibrate_too_each_scored_out_of_fold(calibrated):
    export = training.training_export(calibrated)
    result = train_model(export, seed=0, options=TrainOptions(epochs=20, members=1), progress=False)
    assert len(result.out_of_fold) == result.options.stack_folds
    folds = torch.cat([users for _, users in result.out_of_fold])
    assert torch.equal(folds.sort().values, result.split.train)  # every training user, once, out of their fold
    one = calibrated.knowledge.policies[POL + "default-2.1.0"]
    few = result.split.validation[: calibration.MIN_USERS - 1]

    alone = calibration.rule_calibrations(calibrated, export, result.model, few)
    assert alone == {}  # too few held-out users and nothing out of fold: no calibration, the rules serve alone
    fitted = calibration.rule_calibrations(calibrated, export, result.model, few, out_of_fold=result.out_of_fold)
    assert fitted[one.iri]["held_out"] == few.numel()
    assert fitted[one.iri]["users"] == few.numel() + result.split.train.numel()
    pooled = [(result.model, few), *result.out_of_fold]
    fit = statsmodels_fit(calibrated, export, one, pooled)
    if fitted[one.iri]["rules"] == 0:  # weighed against the steps beside the model: left out, the model fitted alone
        assert fit.params[1] < 0
        fit = statsmodels_fit(calibrated, export, one, pooled, with_rules=False)
    else:
        assert agrees(fit, 1, fitted[one.iri]["rules"])
    assert agrees(fit, 0, fitted[one.iri]["model"])
    # enough held-out users: the training users stay out
    enough = calibration.rule_calibrations(
        calibrated, export, result.model, result.split.validation, out_of_fold=result.out_of_fold
    )
    assert enough[one.iri]["users"] == enough[one.iri]["held_out"] == result.split.validation.numel()


def test_a_score_weighed_against_a_step_is_left_out_and_the_units_follow_any_rescaling():
    rng = np.random.default_rng(3)
    n = 4000
    model, rules = rng.normal(size=(2, n))
    controls = rng.normal(size=(n, 1))
    logit = 0.8 * model - 0.5 * rules + 0.3 * controls[:, 0]
    activated = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    b, a = calibration.fit_units(model, rules, controls, activated)
    assert a == 0.0 and b == pytest.approx(0.8, abs=0.1)  # the rules' negative weight: left out
    helpful = (rng.random(n) < 1 / (1 + np.exp(-(0.8 * model + 0.5 * rules)))).astype(int)
    b, a = calibration.fit_units(model, rules, controls, helpful)
    b7, a7 = calibration.fit_units(model * 7, rules / 3, controls, helpful)
    assert (b, a) == (pytest.approx(0.8, abs=0.1), pytest.approx(0.5, abs=0.1))
    assert (b7, a7) == (pytest.approx(b / 7, rel=1e-6), pytest.approx(a * 3, rel=1e-6))


def test_a_calibrated_version_mixes_in_log_odds_and_one_the_model_never_saw_ranks_by_rules(calibrated, world, tmp_path):
    from starlette.testclient import TestClient

    from service.api.app import create_app

    version = training.train(calibrated, seed=0, epochs=20, members=1)
    lifecycle.promote(calibrated, version.version, approved_by="Ada Operator")
    with TestClient(create_app(calibrated)) as http:
        new_user(GraphQLClient(http), world, "fresh-c", role=1, industry=2, features=(3, 5))
    policies = calibrated.knowledge.policies
    serving = policies[POL + "default-2.2.0"]  # the highest active version
    made = decide.next_steps(calibrated, "fresh-c", limit=5)
    assert made.policy_version == "default@2.2.0" and made.model_version == version.version
    model_units, rule_units = version_scorer(calibrated, records.find(calibrated, version.version)).calibration(serving)
    for s in made.candidates:
        expected = serving.rule_weight * rule_units * s.rule_score + serving.model_weight * model_units * s.model_score
        assert s.score == pytest.approx(expected, abs=1e-5)

    # a calibrated version loaded after the model was trained: no calibration, so the model does not serve it
    later = tmp_path / "later.ttl"
    later.write_text(versions(**{"2.3.0": 2.0}))
    calibrated.load([later])
    newest = calibrated.knowledge.policies[POL + "default-2.3.0"]
    scorer = version_scorer(calibrated, records.find(calibrated, version.version))
    assert scorer.calibration(newest) is None
    assert serving_model(newest, scorer, personalized=True) is None
    rules_only = decide.next_steps(calibrated, "fresh-c", limit=5)
    assert rules_only.policy_version == "default@2.3.0" and rules_only.model_version is None
    assert all(s.model_score is None for s in rules_only.candidates)
