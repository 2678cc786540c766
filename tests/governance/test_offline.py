"""Off-policy estimates of a ranking policy: hand-computed values, interval coverage over simulated logs whose true
value is known exactly, and Thompson Sampling's click rate on the Open Bandit Dataset estimated from the random log.

:func:`coverage` is the simulation the coverage test runs; a bench can call it for other sizes.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pytest

from service.errors import InvalidInput
from service.governance import offline
from tests.governance import obd

Z95 = 1.959963984540054

# The hand-computed log: four rows, weights w = p1 / p0 = 2, 1, 2, 0.
REWARDS = [1.0, 0.0, 1.0, 0.0]
P0 = [0.5, 0.5, 0.25, 1.0]
P1 = [1.0, 0.5, 0.5, 0.0]


def test_ipw_is_the_mean_of_weighted_rewards():
    estimate = offline.ipw(REWARDS, p0=P0, p1=P1)
    # w * r = 2, 0, 2, 0; influence terms 1, -1, 1, -1; variance 4/3 * 4 / 4^2
    assert estimate.value == pytest.approx(1.0)
    assert estimate.stderr == pytest.approx(math.sqrt(1 / 3))
    assert (estimate.low, estimate.high) == pytest.approx((1 - Z95 * math.sqrt(1 / 3), 1 + Z95 * math.sqrt(1 / 3)))
    assert (estimate.rows, estimate.clusters, estimate.level) == (4, 4, 0.95)
    assert estimate.effective_sample_size == pytest.approx(5**2 / 9)  # (2+1+2+0)^2 / (4+1+4+0)


def test_cluster_variance_sums_the_influence_terms_of_each_decision_first():
    estimate = offline.ipw(REWARDS, p0=P0, p1=P1, clusters=["a", "a", "b", "c"])
    # per-cluster sums of 1, -1, 1, -1: a = 0, b = 1, c = -1; variance 3/2 * 2 / 4^2
    assert estimate.clusters == 3
    assert estimate.stderr == pytest.approx(math.sqrt(3) / 4)


def test_copies_of_a_row_within_one_decision_add_no_information():
    rewards = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    alone = offline.on_policy(rewards)
    copied = offline.on_policy(np.repeat(rewards, 3), clusters=np.repeat(np.arange(5), 3))
    assert copied.value == pytest.approx(alone.value)
    assert copied.stderr == pytest.approx(alone.stderr)
    assert offline.on_policy(np.repeat(rewards, 3)).stderr < alone.stderr


def test_snipw_divides_by_the_sum_of_weights_and_linearises_its_variance():
    estimate = offline.snipw(REWARDS, p0=P0, p1=P1)
    # V = 4 / 5; influence w (r - V) / mean(w) = 0.32, -0.64, 0.32, 0; variance 4/3 * 0.6144 / 4^2
    assert estimate.value == pytest.approx(0.8)
    assert estimate.stderr == pytest.approx(math.sqrt(0.0512))
    assert estimate.effective_sample_size == pytest.approx(25 / 9)


def test_snipw_stays_within_the_range_of_the_rewards_when_weights_are_huge():
    estimate = offline.snipw([1.0, 0.0, 1.0], p0=[0.001, 0.5, 0.5], p1=[1.0, 0.5, 0.5])
    ipw = offline.ipw([1.0, 0.0, 1.0], p0=[0.001, 0.5, 0.5], p1=[1.0, 0.5, 0.5])
    assert 0.0 <= estimate.value <= 1.0
    assert ipw.value > 300


def test_dr_adds_the_weighted_residual_to_the_model_value_of_the_target():
    q_logged, q_target = [0.5, 0.5, 0.5, 0.5], [0.6, 0.6, 0.2, 0.2]
    estimate = offline.dr(REWARDS, p0=P0, p1=P1, q_logged=q_logged, q_target=q_target)
    # 0.6 + 2 * 0.5, 0.6 + 1 * -0.5, 0.2 + 2 * 0.5, 0.2 + 0 = 1.6, 0.1, 1.2, 0.2
    assert estimate.value == pytest.approx(3.1 / 4)
    terms = np.array([1.6, 0.1, 1.2, 0.2]) - 3.1 / 4
    assert estimate.stderr == pytest.approx(math.sqrt(4 / 3 * terms @ terms) / 4)


def test_dr_with_an_exact_model_and_a_log_of_the_target_policy_has_no_variance():
    estimate = offline.dr([1.0, 0.0], p0=[0.5, 0.5], p1=[0.5, 0.5], q_logged=[1.0, 0.0], q_target=[0.7, 0.7])
    assert (estimate.value, estimate.stderr) == (pytest.approx(0.7), pytest.approx(0.0))


def test_difference_pairs_the_influence_terms_of_both_policies_on_the_same_log():
    candidate, control = offline.ipw(REWARDS, p0=P0, p1=P1), offline.on_policy(REWARDS)
    change = offline.difference(candidate, control)
    # per-row influence: (1, -1, 1, -1) - (0.5, -0.5, 0.5, -0.5); variance 4/3 * 1 / 4^2
    assert change.estimator == "ipw - on-policy"
    assert change.value == pytest.approx(0.5)
    assert change.stderr == pytest.approx(math.sqrt(1 / 12))
    assert change.low == pytest.approx(0.5 - Z95 * math.sqrt(1 / 12))
    assert offline.difference(candidate, candidate).stderr == 0.0


def test_not_worse_reads_the_lower_bound_of_the_difference_against_the_margin():
    candidate, control = offline.ipw(REWARDS, p0=P0, p1=P1), offline.on_policy(REWARDS)
    low = 0.5 - Z95 * math.sqrt(1 / 12)  # -0.066
    assert offline.not_worse(candidate, control, margin=-low + 0.01)
    assert not offline.not_worse(candidate, control, margin=-low - 0.01)
    with pytest.raises(InvalidInput) as error:
        offline.not_worse(candidate, control, margin=-0.1)
    assert error.value.field == "margin"


def test_difference_refuses_estimates_of_two_logs_or_two_levels():
    candidate = offline.ipw(REWARDS, p0=P0, p1=P1)
    for control in (offline.on_policy(REWARDS[:3]), offline.on_policy(REWARDS, level=0.9)):
        with pytest.raises(InvalidInput) as error:
            offline.difference(candidate, control)
        assert error.value.field == "control"


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"p0": [0.5, 0.0, 0.25, 1.0]}, "p0", "(0, 1]"),
        ({"p0": [0.5, 0.5, 1.25, 1.0]}, "p0", "(0, 1]"),
        ({"p1": [1.0, 0.5, -0.1, 0.0]}, "p1", "[0, 1]"),
        ({"p1": [1.0, 0.5, 0.5]}, "p1", "3 values for 4 rows"),
        ({"rewards": [1.0, math.nan, 1.0, 0.0]}, "rewards", "finite"),
        ({"rewards": []}, "rewards", "empty"),
        ({"rewards": [[1.0, 0.0], [1.0, 0.0]]}, "rewards", "1-D"),
        ({"p1": [0.0, 0.0, 0.0, 0.0]}, "p1", "0 on every logged row"),
        ({"clusters": ["a", "a", "a", "a"]}, "clusters", "at least 2"),
        ({"clusters": ["a", "b"]}, "clusters", "2 values for 4 rows"),
        ({"level": 1.0}, "level", "between 0 and 1"),
    ],
)
def test_invalid_logs_are_refused_naming_the_field_and_the_reason(change, field, reason):
    arguments = {"rewards": REWARDS, "p0": P0, "p1": P1} | change
    with pytest.raises(InvalidInput) as error:
        offline.snipw(arguments.pop("rewards"), **arguments)
    assert error.value.field == field
    assert reason in error.value.reason


def test_fitted_rewards_are_cell_means_shrunk_towards_the_position_mean():
    actions, positions, rewards = [0, 0, 1, 1], [0, 0, 0, 1], [1.0, 0.0, 1.0, 0.0]
    exact = offline.fitted_rewards(
        actions, positions=positions, rewards=rewards, n_actions=2, n_positions=2, folds=1, prior_rows=0
    )
    # position 0: action 0 shown twice (1, 0), action 1 once (1); position 1: action 1 once (0), action 0 never
    assert exact.tolist() == [[0.5, 1.0], [0.5, 1.0], [0.5, 1.0], [0.0, 0.0]]
    shrunk = offline.fitted_rewards(actions, positions=positions, rewards=rewards, n_actions=2, n_positions=2, folds=1)
    assert shrunk[0] == pytest.approx([(1 + 2 / 3) / 3, (1 + 2 / 3) / 2])


def test_fitted_rewards_of_a_decision_never_see_that_decision():
    rng = np.random.default_rng(5)
    actions, positions = rng.integers(0, 4, 600), np.tile(np.arange(3), 200)
    rewards, clusters = rng.integers(0, 2, 600).astype(float), np.repeat(np.arange(200), 3)
    before = offline.fitted_rewards(
        actions, positions=positions, rewards=rewards, n_actions=4, n_positions=3, clusters=clusters
    )
    flipped = rewards.copy()
    flipped[clusters == 17] = 1 - flipped[clusters == 17]
    after = offline.fitted_rewards(
        actions, positions=positions, rewards=flipped, n_actions=4, n_positions=3, clusters=clusters
    )
    assert np.array_equal(before[clusters == 17], after[clusters == 17])
    assert not np.array_equal(before, after)


def test_fitted_rewards_refuse_an_action_outside_the_table():
    with pytest.raises(InvalidInput) as error:
        offline.fitted_rewards([0, 3], positions=[0, 0], rewards=[1.0, 0.0], n_actions=3, n_positions=1)
    assert error.value.field == "actions"


# The simulated world: a few context types, ten steps, slates of three positions, a position-based
# click model (examination per position times attractiveness per context and step, times a
# per-decision engagement that correlates the rows of one decision), Plackett-Luce logging and
# target policies whose position-wise probabilities are exact, by enumerating the 10P3 = 720 slates.
ACTIONS, SLOTS = 10, 3
CONTEXT_SHARE = np.array([0.4, 0.3, 0.2, 0.1])
EXAMINATION = np.array([0.9, 0.6, 0.4])


@dataclass(frozen=True)
class World:
    attraction: np.ndarray  # (context, action): click probability when examined, for an average user
    logging_scores: np.ndarray  # (context, action): Plackett-Luce log-weights
    logging: np.ndarray  # (context, action, position): exact position-wise probabilities
    target: np.ndarray
    value: float  # the target policy's exact value: expected clicks per shown position
    logging_value: float


@dataclass(frozen=True)
class Coverage:
    """Shares of simulated logs whose 95% interval covers the target policy's exact value, and mean widths."""

    logs: int
    decisions: int
    rows: int
    value: float
    ipw: float
    snipw: float
    dr: float
    exact_dr: float  # DR with the world's own click probabilities as the reward model
    snipw_width: float
    dr_width: float
    exact_dr_width: float
    effective_sample_size: float  # mean over logs
    on_policy_mean: float  # over all logs, to check against the logging policy's exact value
    on_policy_stderr: float

    def __str__(self) -> str:
        return (
            f"{self.logs} logs of {self.decisions} decisions ({self.rows} rows, ESS {self.effective_sample_size:.0f}), "
            f"true value {self.value:.4f}: coverage IPW {self.ipw:.3f}, SNIPW {self.snipw:.3f}, DR {self.dr:.3f}, "
            f"DR with the exact model {self.exact_dr:.3f}; mean widths SNIPW {self.snipw_width:.4f}, "
            f"DR {self.dr_width:.4f}, exact DR {self.exact_dr_width:.4f}"
        )


def slate_probabilities(scores: np.ndarray, slots: int = SLOTS) -> np.ndarray:
    """Return P[context, action, position] of a Plackett-Luce ranking, exactly, from every ordered slate."""
    slates = np.array(list(itertools.permutations(range(scores.shape[1]), slots)))
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    chosen = weights[:, slates]  # (context, slate, position)
    taken = np.concatenate([np.zeros(chosen.shape[:2] + (1,)), np.cumsum(chosen, axis=2)[:, :, :-1]], axis=2)
    slate = np.prod(chosen / (weights.sum(axis=1)[:, None, None] - taken), axis=2)
    shown = np.zeros((len(slates), slots, scores.shape[1]))
    shown[np.arange(len(slates))[:, None], np.arange(slots), slates] = 1.0
    return np.einsum("cs,ska->cak", slate, shown)


def policy_value(probabilities: np.ndarray, attraction: np.ndarray) -> float:
    """Return the expected click per shown position, exactly: average engagement is 1."""
    per_context = np.einsum("cak,k,ca->c", probabilities, EXAMINATION, attraction) / SLOTS
    return float(CONTEXT_SHARE @ per_context)


def world(seed: int = 2024) -> World:
    """Return the simulated world; the target ranks by attractiveness, the logging policy nearly at random."""
    rng = np.random.default_rng(seed)
    attraction = rng.uniform(0.05, 0.45, size=(len(CONTEXT_SHARE), ACTIONS))
    logging_scores = rng.normal(0.0, 0.5, size=attraction.shape)
    target_scores = 6.0 * attraction + rng.normal(0.0, 0.3, size=attraction.shape)
    logging, target = slate_probabilities(logging_scores), slate_probabilities(target_scores)
    return World(
        attraction, logging_scores, logging, target, policy_value(target, attraction), policy_value(logging, attraction)
    )


def simulate_log(sim: World, decisions: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Return one log of the logging policy: one row per shown position, ``decisions * SLOTS`` rows."""
    contexts = rng.choice(len(CONTEXT_SHARE), size=decisions, p=CONTEXT_SHARE)
    # Gumbel top-k: the first SLOTS of scores plus Gumbel noise, in order, are a Plackett-Luce slate.
    slates = np.argsort(-(sim.logging_scores[contexts] + rng.gumbel(size=(decisions, ACTIONS))), axis=1)[:, :SLOTS]
    engagement = rng.uniform(0.0, 2.0, size=(decisions, 1))
    clicked = EXAMINATION * np.take_along_axis(sim.attraction[contexts], slates, axis=1) * engagement
    context, action = np.repeat(contexts, SLOTS), slates.ravel()
    position = np.tile(np.arange(SLOTS), decisions)
    return {
        "context": context,
        "action": action,
        "position": position,
        "reward": (rng.random(slates.shape) < clicked).ravel().astype(np.float64),
        "p0": sim.logging[context, action, position],
        "p1": sim.target[context, action, position],
        "decision": np.repeat(np.arange(decisions), SLOTS),
    }


def coverage(logs: int = 500, decisions: int = 1500, seed: int = 0) -> Coverage:
    """Return how often the 95% intervals of IPW, SNIPW and DR cover the target's exact value over simulated logs."""
    sim, rng = world(), np.random.default_rng(seed)
    rows = decisions * SLOTS
    hits = {"ipw": 0, "snipw": 0, "dr": 0, "exact_dr": 0}
    widths: dict[str, list[float]] = {name: [] for name in hits}
    sizes, means = [], []
    for i in range(logs):
        log = simulate_log(sim, decisions, rng)
        weighted = {"p0": log["p0"], "p1": log["p1"], "clusters": log["decision"]}
        target_at_position = sim.target[log["context"], :, log["position"]]  # (rows, actions)
        fitted = offline.fitted_rewards(
            log["action"], positions=log["position"], rewards=log["reward"], n_actions=ACTIONS, n_positions=SLOTS,
            clusters=log["decision"], seed=i,
        )  # fmt: skip
        exact = EXAMINATION[log["position"], None] * sim.attraction[log["context"]]
        estimates = {
            "ipw": offline.ipw(log["reward"], **weighted),
            "snipw": offline.snipw(log["reward"], **weighted),
            "dr": offline.dr(
                log["reward"], q_logged=fitted[np.arange(rows), log["action"]],
                q_target=(target_at_position * fitted).sum(axis=1), **weighted,
            ),
            "exact_dr": offline.dr(
                log["reward"], q_logged=exact[np.arange(rows), log["action"]],
                q_target=(target_at_position * exact).sum(axis=1), **weighted,
            ),
        }  # fmt: skip
        for name, estimate in estimates.items():
            hits[name] += estimate.low <= sim.value <= estimate.high
            widths[name].append(estimate.high - estimate.low)
        sizes.append(estimates["snipw"].effective_sample_size)
        means.append(float(log["reward"].mean()))
    return Coverage(
        logs=logs,
        decisions=decisions,
        rows=rows,
        value=sim.value,
        ipw=hits["ipw"] / logs,
        snipw=hits["snipw"] / logs,
        dr=hits["dr"] / logs,
        exact_dr=hits["exact_dr"] / logs,
        snipw_width=float(np.mean(widths["snipw"])),
        dr_width=float(np.mean(widths["dr"])),
        exact_dr_width=float(np.mean(widths["exact_dr"])),
        effective_sample_size=float(np.mean(sizes)),
        on_policy_mean=float(np.mean(means)),
        on_policy_stderr=float(np.std(means, ddof=1) / math.sqrt(logs)),
    )


@pytest.fixture(scope="module")
def simulated() -> Coverage:
    return coverage()


def test_exact_slate_probabilities_are_distributions_over_steps_at_each_position():
    probabilities = world().logging
    assert probabilities.sum(axis=1) == pytest.approx(np.ones((len(CONTEXT_SHARE), SLOTS)))
    assert np.all(probabilities.sum(axis=2) <= 1 + 1e-12)


def test_the_simulated_logs_agree_with_the_exact_value_of_the_logging_policy(simulated):
    sim = world()
    assert abs(simulated.on_policy_mean - sim.logging_value) < 4 * simulated.on_policy_stderr
    assert sim.value > sim.logging_value + 0.03  # the target is worth evaluating: it differs


def test_snipw_and_dr_intervals_cover_the_true_value_about_95_percent_of_the_time(simulated):
    print(simulated)
    assert simulated.logs >= 200
    for share in (simulated.snipw, simulated.dr, simulated.ipw):
        assert 0.90 <= share <= 0.99, str(simulated)


def test_dr_with_a_good_reward_model_gives_a_narrower_interval_than_snipw(simulated):
    # With the world's own click probabilities as the model; the per-(step, position) table ignores
    # the context, and in this world its DR interval is as wide as SNIPW's.
    assert simulated.exact_dr_width < simulated.snipw_width, str(simulated)


def test_a_paired_difference_on_one_log_is_tighter_than_two_independent_estimates():
    sim = world()
    log = simulate_log(sim, 1500, np.random.default_rng(11))
    candidate = offline.snipw(log["reward"], p0=log["p0"], p1=log["p1"], clusters=log["decision"])
    control = offline.on_policy(log["reward"], clusters=log["decision"])
    change = offline.difference(candidate, control)
    assert change.value == pytest.approx(candidate.value - control.value)
    assert change.stderr < math.hypot(candidate.stderr, control.stderr)
    assert offline.not_worse(candidate, control, margin=0.0)  # the target is better by about 0.047


# The Open Bandit Dataset (ZOZOTOWN, campaign "all"): Bernoulli Thompson Sampling's click rate,
# estimated from the uniform-random log and compared with its own on-policy mean, as OBP's
# calc_on_policy_policy_value_estimate computes it.
@pytest.fixture(scope="module")
def open_bandit() -> dict[str, np.ndarray]:
    if not obd.WHEEL.exists():
        pytest.skip(
            f"the Open Bandit Dataset sample is missing: `make test` downloads obp's wheel to {obd.WHEEL.parent}/"
        )
    log = obd.read_log(obd.WHEEL, "random", "all")
    bts = obd.bts_position_probabilities(obd.WHEEL, "all", n_sim=100_000, seed=20191124)
    return log | {"bts": bts, "on_policy": obd.read_log(obd.WHEEL, "bts", "all")["reward"]}


def test_the_random_log_shows_each_of_80_items_at_a_position_with_probability_one_in_80(open_bandit):
    assert np.all(open_bandit["pscore"] == 1 / 80)
    assert open_bandit["bts"].sum(axis=0) == pytest.approx(np.ones(obd.LEN_LIST))


def test_thompson_sampling_click_rate_estimated_from_the_random_log_matches_its_own_log(open_bandit):
    log, bts = open_bandit, open_bandit["bts"]
    truth = offline.on_policy(log["on_policy"])
    weighted = {"p0": log["pscore"], "p1": bts[log["action"], log["position"]]}
    fitted = offline.fitted_rewards(
        log["action"],
        positions=log["position"],
        rewards=log["reward"],
        n_actions=bts.shape[0],
        n_positions=obd.LEN_LIST,
    )
    estimates = [
        offline.ipw(log["reward"], **weighted),
        offline.snipw(log["reward"], **weighted),
        offline.dr(
            log["reward"],
            q_logged=fitted[np.arange(len(fitted)), log["action"]],
            q_target=(bts[:, log["position"]].T * fitted).sum(axis=1),
            **weighted,
        ),
    ]
    report = f"on-policy {truth.value:.5f} [{truth.low:.5f}, {truth.high:.5f}]; " + "; ".join(
        f"{e.estimator} {e.value:.5f} [{e.low:.5f}, {e.high:.5f}] ESS {e.effective_sample_size:.0f} "
        f"relative error {(e.value - truth.value) / truth.value:+.1%}"
        for e in estimates
    )
    print(report)
    snipw = estimates[1]
    assert snipw.low <= truth.value <= snipw.high, report
