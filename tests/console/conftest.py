"""The console's fixtures: a small world with decisions and a guarded experiment, served with keys of each role."""

from __future__ import annotations

import pytest

from bench.experiments.simulate import Scenario, run, runtime_for_simulation
from service.knowledge.embedded import Store
from service.runtime import Runtime
from service.settings import Settings
from tests.conftest import approve_policies

AUDITOR_KEY = "console-auditor-key-0123456789"
OPERATOR_KEY = "console-operator-key-0123456789"
CLIENT_KEY = "console-client-key-0123456789"
SECOND_OPERATOR_KEY = "console-operator-two-key-0123456789"
KEYS = (
    f"{AUDITOR_KEY}:auditor:audrey,{OPERATOR_KEY}:operator:olga,{SECOND_OPERATOR_KEY}:operator:omar,{CLIENT_KEY}:client"
)
EXPERIMENT = "sim-console"


@pytest.fixture(scope="session")
def world_quads() -> list:
    """A world made through the API: 300 users decided for and activated over days, in an experiment whose
    treatment does harm, checked by the guardrail monitor every 50 users (so its snapshots are stored). The
    monitor rolled the treatment back at 150 to 200 users in nine runs of this scenario (at 200 users and 20 a
    day it had not acted by the end in two runs of four)."""
    runtime = runtime_for_simulation()
    run(Scenario("console", rates=(0.6, 0.1), users=300, check_every=50, users_per_day=10), runtime)
    return list(runtime.store.quads())


@pytest.fixture
def console_runtime(world_quads, tmp_path) -> Runtime:
    """That world in a store of its own, on a service with an auditor, an operator and a client key."""
    store = Store(tmp_path / "store")
    store.commit(add=world_quads)
    settings = Settings(
        store=str(tmp_path / "store"), models_dir=tmp_path / "models", api_keys=KEYS, guardrail_interval_s=0
    )
    runtime = Runtime(settings=settings, store=store)
    approve_policies(runtime)
    return runtime
