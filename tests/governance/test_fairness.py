"""Fairness reports: exposure and activation by group agree with fairlearn's MetricFrame, the stratified bootstrap
is as wide as fairlearn's, a planted disparity breaches its thresholds while a fair population does not, small
groups are suppressed, and bad input names its field."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from fairlearn.metrics import MetricFrame  # type: ignore[import-untyped, unused-ignore]

from service.errors import InvalidInput
from service.governance import fairness
from service.governance.fairness import Limits, Thresholds

STEPS = [f"s{i}" for i in range(1, 9)]


@dataclass(frozen=True)
class Population:
    """Users shown the top 4 of 8 steps in one to three decisions; ``demote`` pushes s1 down for a group."""

    sizes: dict[str, int]
    activation: dict[str, float]
    demote: dict[str, float] = field(default_factory=dict)

    def draw(self, seed: int) -> tuple[list[str], list[int], list[list[tuple[str, int]]]]:
        rng = np.random.default_rng(seed)
        groups, activated, shown = [], [], []
        for group, n in self.sizes.items():
            for _ in range(n):
                entries = []
                for _ in range(int(rng.integers(1, 4))):
                    scores = rng.normal(size=len(STEPS))
                    scores[0] -= self.demote.get(group, 0.0)
                    entries += [(STEPS[j], rank) for rank, j in enumerate(np.argsort(-scores)[:4], start=1)]
                groups.append(group)
                activated.append(int(rng.random() < self.activation[group]))
                shown.append(entries)
        return groups, activated, shown


PLANTED = Population({"a": 260, "b": 200, "c": 140}, {"a": 0.45, "b": 0.40, "c": 0.20}, demote={"c": 2.0})
ALIKE = Population({"a": 3000, "b": 3000, "c": 3000}, {"a": 0.4, "b": 0.4, "c": 0.4})
LIMITS = Thresholds(activation=Limits(0.1, 0.8), exposure=Limits(0.1, 0.8))


def exposure_by_definition(shown, steps) -> np.ndarray:
    """Users x steps, straight from the definition: 1 / log2(1 + best rank), 0 if never shown."""
    table = np.zeros((len(shown), len(steps)))
    for u, entries in enumerate(shown):
        for j, step in enumerate(steps):
            ranks = [r for s, r in entries if s == step]
            table[u, j] = 1.0 / math.log2(1 + min(ranks)) if ranks else 0.0
    return table


def metric_frame(groups, activated, shown, **bootstrap) -> MetricFrame:
    """fairlearn's MetricFrame of activation and each step's exposure (the mean of a per-user value) by group."""
    exposure = exposure_by_definition(shown, STEPS)

    def mean_of(y_true, y_pred, values):
        return float(np.mean(values))

    metrics = {"activation": lambda y_true, y_pred: float(np.mean(y_true))} | {s: mean_of for s in STEPS}
    params = {s: {"values": exposure[:, j]} for j, s in enumerate(STEPS)}
    y = np.asarray(activated)
    return MetricFrame(
        metrics=metrics, y_true=y, y_pred=y, sensitive_features=groups, sample_params=params, **bootstrap
    )


def breakdowns(report: fairness.FairnessReport) -> dict[str, fairness.Breakdown]:
    return {"activation": report.activation} | {b.step: b for b in report.exposure if b.step is not None}


def test_exposure_weighs_the_best_rank_a_user_was_shown_a_step_at():
    shown = [[("s1", 3), ("s2", 1)], [("s1", 1), ("s1", 3)]] * 5
    report = fairness.report(["x", "y"] * 5, [0, 1] * 5, shown, steps=["s1", "s2"], n_boot=10, min_group_size=1)
    by_group = {g.group: g.value.value for g in report.exposure_to("s1").groups}
    assert by_group == {"x": 0.5, "y": 1.0}  # rank 3 weighs 1 / log2(4); the second user's best rank is 1
    assert {g.group: g.value.value for g in report.exposure_to("s2").groups} == {"x": 1.0, "y": 0.0}


def test_group_values_differences_and_ratios_equal_fairlearns_metric_frame():
    groups, activated, shown = PLANTED.draw(7)
    report = fairness.report(groups, activated, shown, n_boot=50)
    frame = metric_frame(groups, activated, shown)
    difference, ratio = frame.difference(method="between_groups"), frame.ratio(method="between_groups")
    for metric, breakdown in breakdowns(report).items():
        for g in breakdown.groups:
            assert g.value.value == pytest.approx(frame.by_group.loc[g.group, metric], abs=1e-12)
        assert breakdown.disparity is not None
        assert breakdown.disparity.difference.value == pytest.approx(difference[metric], abs=1e-12)
        assert breakdown.disparity.ratio.value == pytest.approx(ratio[metric], abs=1e-12)
    assert [(c.group, c.users, c.suppressed) for c in report.groups] == [
        ("a", 260, False),
        ("b", 200, False),
        ("c", 140, False),
    ]


def test_bootstrap_intervals_hold_the_estimates_and_are_as_wide_as_fairlearns():
    groups, activated, shown = PLANTED.draw(11)
    report = fairness.report(groups, activated, shown, n_boot=1000, seed=np.random.default_rng(3))
    frame = metric_frame(groups, activated, shown, n_boot=100, ci_quantiles=[0.025, 0.975], random_state=5)
    (low, high), (d_low, d_high), (r_low, r_high) = frame.by_group_ci, frame.difference_ci(), frame.ratio_ci()
    for metric, breakdown in breakdowns(report).items():
        for g in breakdown.groups:
            assert g.value.low <= g.value.value <= g.value.high
            theirs = high.loc[g.group, metric] - low.loc[g.group, metric]
            assert 0.5 < (g.value.high - g.value.low) / theirs < 2.0
        assert breakdown.disparity is not None
        ours = breakdown.disparity.difference, breakdown.disparity.ratio
        theirs_d, theirs_r = d_high[metric] - d_low[metric], r_high[metric] - r_low[metric]
        assert 0.5 < (ours[0].high - ours[0].low) / theirs_d < 2.0
        assert 0.5 < (ours[1].high - ours[1].low) / theirs_r < 2.0
    planted = [report.activation.disparity, report.exposure_to("s1").disparity]
    for d in planted:
        assert d is not None
        assert d.difference.low <= d.difference.value <= d.difference.high
        assert d.ratio.low <= d.ratio.value <= d.ratio.high


def test_a_planted_disparity_breaches_the_thresholds_and_names_who_is_behind():
    groups, activated, shown = PLANTED.draw(13)
    breaches = fairness.report(groups, activated, shown, n_boot=200).breaches(LIMITS)
    found = {(b.metric, b.step, b.measure) for b in breaches}
    assert {("activation", None, "difference"), ("activation", None, "ratio")} <= found
    assert {("exposure", "s1", "difference"), ("exposure", "s1", "ratio")} <= found
    assert all(b.lowest == "c" for b in breaches if b.metric == "activation" or b.step == "s1")
    words = str(next(b for b in breaches if b.step == "s1" and b.measure == "ratio"))
    assert words.startswith("exposure to step s1: ratio between groups 0.")
    assert "below the minimum 0.800" in words and "lowest c" in words


def test_a_population_treated_alike_breaches_nothing():
    report = fairness.report(*ALIKE.draw(17), n_boot=200)
    assert report.breaches(LIMITS) == []
    assert report.breaches(Thresholds()) == []


def test_thresholds_judge_only_the_measures_they_set():
    groups, activated, shown = PLANTED.draw(13)
    report = fairness.report(groups, activated, shown, n_boot=50)
    breaches = report.breaches(Thresholds(activation=Limits(min_ratio=0.8)))
    assert [(b.metric, b.measure) for b in breaches] == [("activation", "ratio")]


def test_small_groups_are_counted_but_suppressed_and_change_no_figure():
    groups, activated, shown = PLANTED.draw(19)
    few = Population({"d": 9}, {"d": 1.0}, demote={"d": 5.0}).draw(23)
    with_few = fairness.report(groups + few[0], activated + few[1], shown + few[2], n_boot=100, min_group_size=10)
    without = fairness.report(groups, activated, shown, n_boot=100, min_group_size=10)
    assert with_few.groups[-1] == fairness.GroupCount("d", 9, suppressed=True)
    assert with_few.activation == without.activation
    assert with_few.exposure == without.exposure
    alone = fairness.report(few[0], few[1], few[2], n_boot=10)
    assert alone.activation.groups == () and alone.activation.disparity is None and alone.breaches(LIMITS) == []


def test_a_step_no_group_was_shown_has_ratio_one():
    groups, activated, shown = PLANTED.draw(29)
    unseen = fairness.report(groups, activated, shown, steps=["s1", "never"], n_boot=50).exposure_to("never")
    assert unseen.disparity is not None
    assert (unseen.disparity.difference.value, unseen.disparity.ratio.value) == (0.0, 1.0)
    assert (unseen.disparity.ratio.low, unseen.disparity.ratio.high) == (1.0, 1.0)


def test_the_same_seed_gives_the_same_report():
    groups, activated, shown = PLANTED.draw(31)
    assert fairness.report(groups, activated, shown, seed=4, n_boot=100) == fairness.report(
        groups, activated, shown, seed=4, n_boot=100
    )


@pytest.mark.parametrize(
    ("groups", "activated", "shown", "options", "field"),
    [
        (["a", "b"], [1], [[], []], {}, "activated"),
        (["a", "b"], [1, 0], [[]], {}, "shown"),
        ([], [], [], {}, "groups"),
        (["a", ""], [1, 0], [[], []], {}, "groups"),
        (["a", "b"], [1, 2], [[], []], {}, "activated"),
        (["a", "b"], [1, 0], [[("s1", 0)], []], {}, "shown"),
        (["a", "b"], [1, 0], [[("s1", 1.5)], []], {}, "shown"),
        (["a", "b"], [1, 0], [[("s1",)], []], {}, "shown"),
        (["a", "b"], [1, 0], [[], []], {"min_group_size": 0}, "min_group_size"),
        (["a", "b"], [1, 0], [[], []], {"n_boot": 0}, "n_boot"),
        (["a", "b"], [1, 0], [[], []], {"confidence": 1.0}, "confidence"),
        (["a", "b"], [1, 0], [[], []], {"steps": ["s1", "s1"]}, "steps"),
    ],
)
def test_bad_input_names_the_field(groups, activated, shown, options, field):
    with pytest.raises(InvalidInput) as raised:
        fairness.report(groups, activated, shown, **options)
    assert raised.value.field == field
