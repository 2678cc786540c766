"""The Open Bandit Dataset's small sample, read from the obp 0.4.1 wheel (never installed: obp needs Python 3.10).

Facts taken from obp's own source in the wheel: ``obp/dataset/real.py`` reads ``item_id`` as the
action, ``position`` (1, 2, 3 in the file) as a 0-based position, ``click`` as the reward and
``propensity_score`` as the logging policy's position-wise propensity; ``obp/policy/contextfree.py``
ranks, for Bernoulli Thompson Sampling, the items by one Beta(alpha, beta) draw each and shows the
top ``len_list``, with the ZOZOTOWN prior of ``obp/policy/conf/prior_bts.yaml`` per campaign.
The sample's rows are independent draws (no impression groups them), so each row is its own cluster.
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import yaml

WHEEL = Path(__file__).resolve().parents[2] / "var" / "obd" / "obp-0.4.1-py3-none-any.whl"
LEN_LIST = 3


def read_log(wheel: Path, policy: str, campaign: str) -> dict[str, np.ndarray]:
    """Return the log of ``policy`` ("random" or "bts") in ``campaign``: action, position (0-based), reward, pscore."""
    with zipfile.ZipFile(wheel) as archive, archive.open(f"obp/dataset/obd/{policy}/{campaign}/{campaign}.csv") as raw:
        rows = list(csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8")))
    return {
        "action": np.array([int(row["item_id"]) for row in rows]),
        "position": np.array([int(row["position"]) - 1 for row in rows]),
        "reward": np.array([float(row["click"]) for row in rows]),
        "pscore": np.array([float(row["propensity_score"]) for row in rows]),
    }


def bts_prior(wheel: Path, campaign: str) -> tuple[np.ndarray, np.ndarray]:
    """Return the Beta prior (alpha, beta) per item that ZOZOTOWN's Thompson Sampling used in ``campaign``."""
    with zipfile.ZipFile(wheel) as archive:
        prior = yaml.safe_load(archive.read("obp/policy/conf/prior_bts.yaml"))[campaign]
    return np.asarray(prior["alpha"], dtype=np.float64), np.asarray(prior["beta"], dtype=np.float64)


def bts_position_probabilities(
    wheel: Path, campaign: str, *, len_list: int = LEN_LIST, n_sim: int = 100_000, seed: int = 0, chunk: int = 20_000
) -> np.ndarray:
    """Return ``P[item, position]`` that Thompson Sampling from the prior shows an item there, by Monte Carlo."""
    alpha, beta = bts_prior(wheel, campaign)
    rng = np.random.default_rng(seed)
    counts = np.zeros(len(alpha) * len_list)
    slots = np.arange(len_list)
    for start in range(0, n_sim, chunk):
        draws = rng.beta(alpha, beta, size=(min(chunk, n_sim - start), len(alpha)))
        top = np.argpartition(-draws, len_list - 1, axis=1)[:, :len_list]
        ranked = np.take_along_axis(top, np.argsort(-np.take_along_axis(draws, top, axis=1), axis=1), axis=1)
        counts += np.bincount((ranked * len_list + slots).ravel(), minlength=counts.size)
    return counts.reshape(len(alpha), len_list) / n_sim
