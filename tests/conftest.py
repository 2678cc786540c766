"""Shared fixtures: real pyoxigraph stores (in memory or in a temporary folder), real apps."""

from __future__ import annotations

import contextlib

import pytest

from service.demo import knowledge_files
from service.knowledge.embedded import Store
from service.runtime import Runtime
from service.settings import Settings


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
    settings = Settings(
        store=str(tmp_path / "store"),
        models_dir=tmp_path / "models",
        sparql_timeout_s=3,
        sparql_max_rows=100,
    )
    return Runtime(settings=settings, store=store)


@pytest.fixture
def client(runtime):
    """A GraphQL client over the app through starlette's TestClient."""
    from starlette.testclient import TestClient

    from service.api.app import create_app

    from .graphql_client import GraphQLClient

    with TestClient(create_app(runtime)) as http:
        yield GraphQLClient(http)


@contextlib.contextmanager
def serving(runtime: Runtime):
    """Serve the app over a runtime with a real uvicorn server on a free loopback port; yield its base URL."""
    import socket
    import threading
    import time

    import uvicorn

    from service.api.app import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def server(tmp_path):
    """A real `oxigraph serve` over an empty folder, for the shared-store mode; yields its URL."""
    from .oxigraph_server import start_oxigraph

    url, process = start_oxigraph(tmp_path / "shared")
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def live_server(disk_runtime):
    """The app served by a real uvicorn server on a free loopback port; yields its base URL."""
    with serving(disk_runtime) as url:
        yield url


def approve_policies(runtime: Runtime, by: str = "release-manager") -> None:
    """Approve every policy version its file declares active, as a release manager does before a service with API
    keys serves them (with keys, an unapproved version is a candidate)."""
    from service.governance import approvals
    from service.knowledge.policies import read_policies

    for version in read_policies(runtime.store, runtime.queries).values():
        if version.status == "active":
            approvals.approve_policy(runtime, version.label, by=by)
