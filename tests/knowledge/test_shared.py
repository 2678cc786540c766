"""The shared-store mode: service runtimes over a real Oxigraph server (``oxigraph serve``)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from service.audit.chain import verify
from service.decisions import decide, users
from service.demo import knowledge_files
from service.errors import RefusedWrite
from service.knowledge.queries import Parameter, Query
from service.knowledge.shared import RemoteStore
from service.runtime import Runtime
from service.settings import Settings
from tests.oxigraph_server import free_port
from tests.paths import FIXTURES


def runtime_on(url: str, tmp_path: Path, instance: str = "") -> Runtime:
    return Runtime(settings=Settings(store=url, instance=instance, models_dir=tmp_path / "models"))


def test_the_service_runs_on_a_shared_store(server, tmp_path):
    runtime = runtime_on(server, tmp_path)
    assert isinstance(runtime.store, RemoteStore)
    runtime.ensure_ontology()
    runtime.load(knowledge_files(runtime))
    users.register(runtime, users.Registration(id="s1", role="analyst", plan="team", consents=["PERSONALIZATION"]))
    users.record_events(runtime, [users.EventReport("s1", "STEP_COMPLETED", step_id="explore-sample-data")])
    rec = decide.next_steps(runtime, "s1", limit=3)
    assert rec.personalized and len(rec.steps) == 3
    assert "explore-sample-data" not in {s.step.rsplit("/", 1)[-1] for s in rec.candidates}
    recorded = decide.read_decision(runtime, rec.decision_id).steps
    assert [(s.step, s.score, set(s.reasons)) for s in recorded] == [
        (s.step, s.score, set(s.reasons)) for s in rec.steps
    ]
    with pytest.raises(RefusedWrite):
        runtime.load([FIXTURES / "cycle.ttl"])
    assert verify(runtime.store, runtime.queries["audit-index"]).ok


def test_two_processes_share_one_store_each_with_its_own_audit_chain(server, tmp_path):
    first = runtime_on(server, tmp_path, "one")
    first.ensure_ontology()
    first.load(knowledge_files(first))
    second = runtime_on(server, tmp_path, "two")
    for runtime, uid in ((first, "a"), (second, "b")):
        users.register(runtime, users.Registration(id=uid, role="manager", plan="free", consents=["PERSONALIZATION"]))

    def serve(runtime, uid):
        for _ in range(10):
            decide.next_steps(runtime, uid)

    threads = [threading.Thread(target=serve, args=args) for args in ((first, "a"), (second, "b"), (first, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # A user registered through one process is seen by the other at once.
    assert users.profile(second, "a") is not None
    result = verify(first.store, first.queries["audit-index"])
    assert result.ok and result.records == 30


def test_parameters_are_written_into_the_text_as_typed_terms(server, tmp_path):
    import pyoxigraph as ox

    by_user = Query("SELECT ?user WHERE { ?user ?p ?o }", parameters={"user": Parameter("user", "IRI")})
    text = by_user.bind(user=ox.NamedNode("https://w3id.org/wayfinder/user/x"))
    assert (
        text
        == "SELECT (<https://w3id.org/wayfinder/user/x> AS ?user) WHERE { <https://w3id.org/wayfinder/user/x> ?p ?o }"
    )
    by_value = Query("SELECT ?s WHERE { ?s ?p ?v }", parameters={"v": Parameter("v", "ANY")})
    tricky = by_value.bind(v=ox.Literal('a" } ; DROP ALL ; #'))
    assert '"a\\" } ; DROP ALL ; #"' in tricky
    runtime = runtime_on(server, tmp_path)
    before = len(runtime.store)
    assert runtime.store.select(tricky) == [] and len(runtime.store) == before


def test_the_auditors_endpoint_queries_the_shared_store(server, tmp_path):
    from starlette.testclient import TestClient

    from service.api.app import create_app

    runtime = runtime_on(server, tmp_path)
    runtime.ensure_ontology()
    runtime.load(knowledge_files(runtime))
    with TestClient(create_app(runtime)) as http:
        answer = http.get(
            "/sparql",
            params={"query": "SELECT (COUNT(?s) AS ?n) WHERE { ?s a <https://w3id.org/wayfinder/ontology#Step> }"},
            headers={"accept": "text/csv"},
        )
    assert answer.status_code == 200 and answer.text.splitlines()[1] == "31"


def test_serve_with_two_workers_on_a_shared_store(server, tmp_path):
    port = free_port()
    wayfinder = str(Path(sys.executable).with_name("wayfinder"))
    process = subprocess.Popen(
        [wayfinder, "serve", "--store", server, "--port", str(port), "--workers", "2", "--demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(
                    "wayfinder serve --workers 2 did not start: "
                    + (process.stdout.read().decode() if process.poll() is not None else "")
                )
            time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=10) as client:
            for _ in range(20):
                body = client.post("/graphql", json={"query": '{ nextSteps(userId: "maya") { decisionId } }'}).json()
                assert body["data"]["nextSteps"]["decisionId"]
    finally:
        process.terminate()
        process.wait(timeout=20)
    runtime = runtime_on(server, tmp_path)
    result = verify(runtime.store, runtime.queries["audit-index"])
    assert result.ok and result.records == 20


def test_both_stores_offer_what_the_service_asks_of_a_store(server, tmp_path):
    """The embedded and the shared store implement the one protocol, bulk loads and the removal count included."""
    import pyoxigraph as ox

    from service.knowledge.embedded import Store
    from service.knowledge.store import GraphStore

    data = tmp_path / "data.nq"
    data.write_text('<urn:s> <urn:p> "o" <urn:g> .\n<urn:s> <urn:p> "p" <urn:g> .\n')
    for store in (Store(tmp_path / "embedded"), RemoteStore(server)):
        assert isinstance(store, GraphStore), type(store).__name__
        store.bulk_load(data, format=ox.RdfFormat.N_QUADS)
        assert len(store.graph(ox.NamedNode("urn:g"))) == 2
        before = store.removals
        store.commit(
            add=[ox.Quad(ox.NamedNode("urn:s"), ox.NamedNode("urn:p"), ox.Literal("q"), ox.NamedNode("urn:g"))]
        )
        assert store.removals == before  # an addition is not a removal
        store.commit(drop=[ox.NamedNode("urn:g")])
        assert store.removals == before + 1 and not store.graph(ox.NamedNode("urn:g"))
        store.close()


def test_experiment_results_on_a_shared_store_count_every_processs_writes(server, tmp_path):
    from service.experiments import registry
    from service.experiments.analysis import analyse

    first = runtime_on(server, tmp_path, "one")
    first.ensure_ontology()
    first.load(knowledge_files(first))
    second = runtime_on(server, tmp_path, "two")
    spec = registry.ExperimentSpec(
        "shared-exp", [registry.ArmSpec("a", "default@1.2.0", 1), registry.ArmSpec("b", "default@1.3.0", 1)]
    )
    registry.create(first, spec, by="test")
    registry.start(first, "shared-exp", by="test", needs_approval=False)
    for runtime, uid in ((first, "p1"), (second, "p2"), (second, "p3")):
        users.register(runtime, users.Registration(id=uid, role="manager", consents=["ANALYTICS"]))
        decide.next_steps(runtime, uid)  # the second process sees the experiment the first started
    users.record_events(second, [users.EventReport("p2", "ACTIVATED")])
    analysis = analyse(first, "shared-exp")  # in the process that wrote none of p2's and p3's data
    assert sum(a.users for a in analysis.arms) == 3
    activated = sum(m["total"] for m in analysis.moments["activation"].values())
    assert activated == 1


def test_a_rollback_survives_a_concurrent_change_from_another_process(server, tmp_path):
    """Process two rolls an arm back while process one, having read the experiment before, reweights it: the
    reweight rewrites the arm's status from its stale read, and the arm stays rolled back, for both processes."""
    from service.experiments import registry
    from service.experiments.assignment import current

    first = runtime_on(server, tmp_path, "one")
    first.ensure_ontology()
    first.load(knowledge_files(first))
    second = runtime_on(server, tmp_path, "two")
    spec = registry.ExperimentSpec(
        "race",
        [
            registry.ArmSpec("a", "default@1.2.0", 1),
            registry.ArmSpec("b", "default@1.3.0", 1),
            registry.ArmSpec("c", "default@1.3.0", 1),
        ],
    )
    registry.create(first, spec, by="test")
    registry.start(first, "race", by="test", needs_approval=False)
    stale = registry.require(first, "race")
    registry.roll_back(second, "race", "b", by="test", evidence=None)
    reweighted = registry.replace(
        stale, arms=tuple(registry.replace(a, weight=w) for a, w in zip(stale.arms, (0.5, 0.25, 0.25), strict=True))
    )
    registry._change(first, stale, reweighted, kind="reweight", by="operator")  # the commit of a stale read
    for runtime in (first, second):
        state = registry.require(runtime, "race")
        assert [a.rolled_back for a in state.arms] == [False, True, False]
        assert [round(a.weight, 2) for a in state.arms] == [0.5, 0.25, 0.25]
        assert current(runtime).by_policy["default"].arm("b").rolled_back
    # A second monitor's rollback of the same arm, also from a stale read, leaves it rolled back once in the state.
    registry.roll_back(first, "race", "c", by="test")
    assert [a.rolled_back for a in registry.require(second, "race").arms] == [False, True, True]


def test_with_an_analytics_folder_every_process_writes_segments_and_analysis_reads_them_without_a_rebuild(
    server, tmp_path, monkeypatch
):
    from service.analytics import feed
    from service.analytics.log import open_log
    from service.analytics.segments import SharedLog
    from service.audit import erasure
    from service.experiments import registry
    from service.experiments.analysis import analyse

    folder = tmp_path / "analytics"

    def on(instance):
        return Runtime(
            settings=Settings(store=server, instance=instance, models_dir=tmp_path / "models", analytics_dir=folder)
        )

    first = on("one")
    first.ensure_ontology()
    first.load(knowledge_files(first))
    second = on("two")
    spec = registry.ExperimentSpec(
        "segments", [registry.ArmSpec("a", "default@1.2.0", 1), registry.ArmSpec("b", "default@1.3.0", 1)]
    )
    registry.create(first, spec, by="test")
    registry.start(first, "segments", by="test", needs_approval=False)
    for runtime, uid in ((first, "p1"), (second, "p2"), (second, "p3"), (first, "p4")):
        users.register(runtime, users.Registration(id=uid, role="manager", consents=["ANALYTICS"]))
        decide.next_steps(runtime, uid)
    users.record_events(second, [users.EventReport("p2", "ACTIVATED"), users.EventReport("p4", "ACTIVATED")])
    assert isinstance(first.log, SharedLog) and isinstance(second.log, SharedLog)
    rebuilds = []
    monkeypatch.setattr(feed, "rebuild", lambda *a: rebuilds.append(a))
    # p2's and p3's rows were written by the other process, whose queue reaches its segments within a second.
    deadline = time.monotonic() + 10
    analysis = analyse(first, "segments")
    while sum(a.users for a in analysis.arms) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
        analysis = analyse(first, "segments")
    assert sum(a.users for a in analysis.arms) == 4
    assert sum(m["total"] for m in analysis.moments["activation"].values()) == 2
    assert rebuilds == []
    monkeypatch.undo()
    p2 = users.profile(second, "p2").pseudonym
    erasure.erase(first, "p2", requested_by="test")  # erased through the process that wrote none of p2's rows
    import duckdb

    for table in ("subjects", "events"):
        files = [str(p) for p in folder.glob(f"*/*-{table}.parquet")]
        with duckdb.connect() as conn:
            found = conn.execute("SELECT count(*) FROM read_parquet(?) WHERE subject = ?", [files, p2]).fetchall()
        assert found == [(0,)], table
    fresh = open_log(None)
    feed.rebuild(first, fresh)
    for table in ("subjects", "exposures"):
        query = f"SELECT * FROM {table} ORDER BY ALL"
        assert second.log.query(query) == fresh.query(query)
    events = "SELECT event, subject, type, recorded_s FROM events ORDER BY ALL"
    assert second.log.query(events) == fresh.query(events)
    for runtime in (first, second):
        runtime.close()


def test_a_policy_approval_in_one_process_reaches_the_others_within_a_second(server, tmp_path):
    from service.governance import approvals

    keys = "k" * 24 + ":client:backend"
    first = Runtime(settings=Settings(store=server, instance="one", api_keys=keys, models_dir=tmp_path / "m"))
    first.ensure_ontology()
    first.load(knowledge_files(first))
    second = Runtime(settings=Settings(store=server, instance="two", api_keys=keys, models_dir=tmp_path / "m"))
    label = "default@1.2.0"

    def status(runtime):
        return next(v.status for v in runtime.knowledge.policies.values() if v.label == label)

    assert status(first) == status(second) == "candidate"  # with keys, not approved yet
    approvals.approve_policy(first, label, by="release-manager")
    assert status(first) == "active"
    deadline = time.monotonic() + 5
    while status(second) != "active" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status(second) == "active"


def test_a_bulk_read_has_its_own_time_limit(server):
    """A shared store's requests are limited (store_timeout_s); a bulk read, such as the analytics log's rebuild
    at start, names a longer limit of its own (store_bulk_timeout_s) instead of failing the start."""
    import pyoxigraph as ox

    from service.errors import StoreUnavailable

    store = RemoteStore(server, timeout_s=0.05)
    p = ox.NamedNode("urn:x-test:p")
    store.commit(add=[ox.Quad(ox.NamedNode(f"urn:x-test:s{i}"), p, ox.Literal(str(i))) for i in range(200)])
    slow = "SELECT (COUNT(*) AS ?n) WHERE { ?a <urn:x-test:p> ?x . ?b <urn:x-test:p> ?y . ?c <urn:x-test:p> ?z }"
    with pytest.raises(StoreUnavailable):
        store.select(slow)
    assert int(store.select(slow, timeout_s=120)[0]["n"].value) == 200**3
