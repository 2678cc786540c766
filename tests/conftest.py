"""Shared fixtures: real pyoxigraph stores (in memory or in a temporary folder), real apps."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.demo import knowledge_files
from service.runtime import Runtime
from service.settings import Settings
from service.store import Store

ROOT = Path(__file__).resolve().parent.parent



@pytest.fixture(scope="session")
def knowledge_quads() -> list:
    """The ontology, demo catalog and policies as loaded (validated, with entailments), built once."""
    runtime = Runtime(settings=Settings(store=":memory:"))
    runtime.ensure_ontology()
    runtime.load(knowledge_files(runtime))
    return list(runtime.store.quads())


@pytest.fixture
def runtime(knowledge_quads, tmp_path) -> Runtime:
    """A runtime over a fresh in-memory store holding the demo knowledge and no users."""
    store = Store(":memory:")
    store.commit(add=knowledge_quads)
    return Runtime(settings=Settings(store=":memory:", models_dir=tmp_path / "models"), store=store)


@pytest.fixture
def disk_runtime(knowledge_quads, tmp_path) -> Runtime:
    """A runtime over a store in a temporary folder holding the demo knowledge."""
    store = Store(tmp_path / "store")
    store.commit(add=knowledge_quads)
    return Runtime(settings=Settings(store=str(tmp_path / "store"), models_dir=tmp_path / "models"), store=store)


@pytest.fixture
def client(runtime):
    """A GraphQL client over the app through starlette's TestClient."""
    from starlette.testclient import TestClient

    from service.api.app import create_app

    from .graphql_client import GraphQLClient

    with TestClient(create_app(runtime)) as http:
        yield GraphQLClient(http)
