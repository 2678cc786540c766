"""The shipped policy's ranking of the demo users, pinned: order, scores and reasons.

`tests/fixtures/demo-rankings.json` holds what `default@1.1.0` (rules only: the
demo has no promoted model) decides for each demo user on the web, five steps at
most. A change to a shipped policy is a new policy version, not an edit of an
active one: regenerate this file with the change and review the differences.
"""

from __future__ import annotations

import json

import pytest

from service.decisions import decide
from service.demo import load_demo
from service.knowledge.vocab import local_id
from service.runtime import Runtime
from service.settings import Settings
from tests.paths import FIXTURES, ROOT

PINNED = json.loads((FIXTURES / "demo-rankings.json").read_text())


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Runtime:
    runtime = Runtime(settings=Settings(store=":memory:", models_dir=tmp_path_factory.mktemp("models")))
    load_demo(runtime)
    return runtime


def test_every_demo_user_is_pinned():
    demo_users = [u["id"] for u in json.loads((ROOT / "data" / "demo" / "users.json").read_text())["users"]]
    assert sorted(PINNED) == sorted(demo_users)


@pytest.mark.parametrize("user", sorted(PINNED))
def test_the_demo_ranking_is_what_the_policy_decided(demo, user):
    rec = decide.next_steps(demo, user, channel="WEB", limit=5)
    pinned = PINNED[user]
    assert rec.personalized == pinned["personalized"] and rec.policy_version == pinned["policyVersion"]
    assert [local_id(s.step) for s in rec.steps] == [s["step"] for s in pinned["steps"]]
    assert [s.reasons for s in rec.steps] == [s["reasons"] for s in pinned["steps"]]
    assert [round(s.score, 6) for s in rec.steps] == [s["score"] for s in pinned["steps"]]
