"""Evaluation: NDCG against the planted truth, the baselines, and the rules stand-in's weights from the policy."""

from __future__ import annotations

import numpy as np
import pytest

from embeddings.evaluate import (
    evaluate,
    mean_ndcg,
    model_scores,
    ndcg_at_k,
    popularity_scores,
    rule_weights,
    rules_scores,
    segment_lift,
)
from service.knowledge.policies import active_version

POLICY = """
@prefix wf:  <https://w3id.org/wayfinder/ontology#> .
@prefix pol: <https://w3id.org/wayfinder/policy/> .
pol:default a wf:Policy .
pol:other a wf:Policy .
pol:default-1.9.0 a wf:PolicyVersion ; wf:versionOf pol:default ; wf:version "1.9.0" ; wf:status "active" ;
    wf:depthWeight -0.1 ; wf:unlockWeight 0.1 ; wf:affinityWeight 0.1 .
pol:default-1.10.0 a wf:PolicyVersion ; wf:versionOf pol:default ; wf:version "1.10.0" ; wf:status "active" ;
    wf:depthWeight -0.2 ; wf:affinityWeight 0.2 .
pol:default-2.0.0 a wf:PolicyVersion ; wf:versionOf pol:default ; wf:version "2.0.0" ; wf:status "candidate" ;
    wf:depthWeight -0.3 ; wf:unlockWeight 0.3 ; wf:affinityWeight 0.3 .
pol:other-9.0.0 a wf:PolicyVersion ; wf:versionOf pol:other ; wf:version "9.0.0" ; wf:status "active" ;
    wf:depthWeight -0.4 ; wf:unlockWeight 0.4 ; wf:affinityWeight 0.4 .
"""


def test_ndcg():
    assert ndcg_at_k([3, 2, 1], [3, 2, 1], k=2) == pytest.approx(1.0)
    assert ndcg_at_k([1, 2, 3], [3, 2, 0], k=1) == pytest.approx(0.0)
    assert 0 < ndcg_at_k([2, 3, 1], [3, 2, 1], k=2) < 1


def test_short_training_beats_popularity_against_the_truth(world, exported, trained):
    metrics = evaluate(
        trained.model, exported, train=trained.split.train, test=trained.split.test, truth=world.truth_table()
    )
    assert metrics["model"] > metrics["popularity"] + 0.2
    assert metrics["model"] > metrics["random"] + 0.2
    assert metrics["model"] > metrics["segment_lift"]
    assert "val_ndcg5" in trained.metrics and any("val_loss" in row for row in trained.history)


def test_segment_lift_table(exported, trained):
    lift = segment_lift(exported, trained.split.train)
    rows = lift.table(exported, top=2)
    assert rows and all(len(r["top_steps"]) == 2 for r in rows)
    assert rows[0]["top_steps"][0]["lift"] >= rows[0]["top_steps"][1]["lift"]
    assert popularity_scores(exported, trained.split.train).sum() > 0


def test_mean_ndcg_uses_the_truths_candidates(world, exported, trained):
    users = [exported.iris("user")[i] for i in trained.split.test.tolist()]
    scores = model_scores(trained.model, exported, trained.split.test)
    assert 0.0 < mean_ndcg(scores, users=users, truth=world.truth_table(), step_index=exported.index["step"]) <= 1.0


def test_the_rules_weights_are_those_the_service_ranks_with_by_default(runtime):
    served = active_version(runtime.knowledge.policies, "default")
    assert rule_weights() == {
        "depth": pytest.approx(served.depth_weight),
        "unlock": pytest.approx(served.unlock_weight),
        "affinity": pytest.approx(served.affinity_weight),
    }
    assert rule_weights() == {"depth": -0.05, "unlock": 0.04, "affinity": 0.35}


def test_the_rules_weights_are_the_highest_active_version_s(tmp_path):
    policy = tmp_path / "policy.ttl"
    policy.write_text(POLICY)
    # 1.10.0 is above 1.9.0; 2.0.0 is only a candidate; another policy does not count; unstated is 0
    assert rule_weights(policy) == {"depth": -0.2, "unlock": 0.0, "affinity": 0.2}
    assert rule_weights(policy, policy="other") == {"depth": -0.4, "unlock": 0.4, "affinity": 0.4}
    with pytest.raises(ValueError, match="no active version of policy 'nope'"):
        rule_weights(policy, policy="nope")


def test_the_rules_stand_in_scores_with_the_weights_it_is_given(exported, trained):
    users = trained.split.test[:30]
    order_only = rules_scores(exported, users, weights={"depth": 0.0, "unlock": 0.0, "affinity": 0.0})
    assert (order_only == order_only[0]).all()  # the place in the default journey alone: the same for everyone
    default = rules_scores(exported, users)
    assert np.array_equal(default, rules_scores(exported, users, weights=rule_weights()))
    assert not np.array_equal(default, order_only)
    assert not (default == default[0]).all()  # affinity with the features a user used is personal
