"""The README's first query, run as a new user runs it after `make run`, answers what the README shows."""

from __future__ import annotations

import json
import re

import pytest
from starlette.testclient import TestClient

from service.api.app import create_app
from service.demo import load_demo
from service.runtime import Runtime
from service.settings import Settings
from tests.paths import ROOT

README = ROOT / "README.md"


def first_query() -> tuple[str, dict]:
    """Return the GraphQL query of the README's first curl command and the answer it documents."""
    text = README.read_text()
    section = text[text.index("### A first query") :]
    curl = re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)
    payload = re.search(r"-d '(.*?)'", curl, re.DOTALL).group(1)
    answer = re.search(r"```json\n(.*?)```", section, re.DOTALL).group(1)
    return json.loads(payload)["query"], json.loads(answer)


@pytest.fixture
def demo(tmp_path):
    runtime = Runtime(settings=Settings(store=":memory:", models_dir=tmp_path / "models"))
    load_demo(runtime)
    with TestClient(create_app(runtime)) as http:
        yield http


def test_the_first_query_answers_what_the_readme_shows(demo):
    query, documented = first_query()
    answer = demo.post("/graphql", json={"query": query}).json()
    assert "errors" not in answer, answer
    got, want = answer["data"]["nextSteps"], documented["data"]["nextSteps"]
    assert got["personalized"] == want["personalized"] and got["policyVersion"] == want["policyVersion"]
    assert [(s["rank"], s["step"], s["reasons"], s.get("content")) for s in got["steps"]] == [
        (s["rank"], s["step"], s["reasons"], s.get("content")) for s in want["steps"]
    ]
    # The README shortens scores to three decimals.
    assert [round(s["score"], 3) for s in got["steps"]] == [s["score"] for s in want["steps"]]
