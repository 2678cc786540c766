"""The auditors' SPARQL endpoint stays inside its limits: no outbound calls, bounded workers, fresh after erasure."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pyoxigraph as ox
import pytest
from starlette.testclient import TestClient

from service.api.app import create_app
from service.audit.sparql import SparqlEndpoint, refusal
from service.knowledge.embedded import Store
from service.knowledge.shared import RemoteStore
from service.runtime import Runtime
from service.settings import Settings
from tests.conftest import serving
from tests.graphql_client import GraphQLClient
from tests.oxigraph_server import start_oxigraph
from tests.paths import ROOT

RUNAWAY = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i . ?j ?k ?l }"


class Listener:
    """A loopback TCP listener that records every connection made to it."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.socket.settimeout(0.1)
        self.port = self.socket.getsockname()[1]
        self.hits: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.socket.accept()
            except (TimeoutError, OSError):
                continue
            with connection:
                connection.settimeout(1)
                try:
                    self.hits.append(connection.recv(4096))
                    connection.sendall(b"HTTP/1.1 500 Nope\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                except OSError:
                    self.hits.append(b"")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.socket.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    listening = Listener()
    yield listening
    listening.close()


def runtime_with(runtime: Runtime, **overrides: object) -> Runtime:
    """Return a runtime over the same store with some settings changed."""
    settings = Settings(**{**runtime.settings.model_dump(), **overrides})
    return Runtime(settings=settings, store=runtime.store)


def hidden_services(port: int) -> list[str]:
    target = f"<http://127.0.0.1:{port}/x>"
    return [
        f"SELECT ?x WHERE {{ #c\rSERVICE {target} {{ ?x ?p ?o }} }}",
        f"SELECT ?x WHERE {{ #c\rSERVICE {target} {{ ?x ?p ?o }}\n ?x ?p ?o }}",
        f"SELECT ?x WHERE {{ # a comment\r\nSERVICE {target} {{ ?x ?p ?o }} }}",
        f"select ?x where {{ service {target} {{ ?x ?p ?o }} }}",
        f"SELECT ?x WHERE {{ SERVICE SILENT {target} {{ ?x ?p ?o }} }}",
        f"SELECT ?x WHERE {{ ?x ?p ?o . \\u0053ERVICE {target} {{ ?x ?p ?o }} }}",
        (
            "SELECT * WHERE { OPTIONAL { { ?a ?b ?c } UNION { { SELECT * WHERE { FILTER EXISTS { MINUS { "
            f"GRAPH ?g {{ #\r service silent {target} {{ ?s ?p ?o }} }} }} }} }} }} }} }} }}"
        ),
    ]


# -- outbound calls ------------------------------------------------------------


def test_a_service_hidden_after_a_carriage_return_comment_is_refused_and_reaches_nobody(live_server, listener):
    query = f"SELECT ?x WHERE {{ #c\rSERVICE <http://127.0.0.1:{listener.port}/x> {{ ?x ?p ?o }} }}"
    response = httpx.get(live_server + "/sparql", params={"query": query}, timeout=30)
    time.sleep(0.2)
    assert listener.hits == []
    assert response.status_code == 403 and "SERVICE" in response.text


def test_service_is_refused_however_it_is_hidden_on_an_embedded_store(disk_runtime, listener):
    with TestClient(create_app(disk_runtime)) as http:
        for query in hidden_services(listener.port):
            response = http.get("/sparql", params={"query": query})
            assert response.status_code == 403, (query, response.text)
    time.sleep(0.2)
    assert listener.hits == []


def test_service_is_refused_before_anything_is_sent_to_a_shared_store(server, listener):
    endpoint = SparqlEndpoint(RemoteStore(server), timeout_s=10, max_rows=10)
    query = f"SELECT ?x WHERE {{ #c\rSERVICE <http://127.0.0.1:{listener.port}/x> {{ ?x ?p ?o }} }}"
    answer = asyncio.run(endpoint.answer(query, accept=None))
    endpoint.close()
    time.sleep(0.2)
    assert listener.hits == []
    assert answer.status == 403
    assert server.split("//")[1] not in answer.body.decode()


def test_errors_name_neither_the_store_url_nor_its_folders(tmp_path, disk_runtime):
    url, process = start_oxigraph(tmp_path / "shared")
    endpoint = SparqlEndpoint(RemoteStore(url), timeout_s=10, max_rows=10)
    process.terminate()
    process.wait(timeout=10)
    answer = asyncio.run(endpoint.answer("ASK {}", accept=None))
    assert answer.status == 503 and url.split("//")[1] not in answer.body.decode()
    local = SparqlEndpoint(disk_runtime.store, timeout_s=10, max_rows=10)
    try:
        refused = asyncio.run(local.answer("SELECT * WHERE { ?s ?p ?o FILTER(?o = <no-such-thing:> }", accept=None))
        assert refused.status == 400 and str(tmp_path) not in refused.body.decode()
    finally:
        local.close()


def test_a_shared_store_that_stops_a_query_at_its_time_limit_is_answered_503(tmp_path):
    url, process = start_oxigraph(tmp_path / "shared", "--timeout-s", "1")
    try:
        store = RemoteStore(url)
        graph = ox.NamedNode("urn:g")
        store.commit(
            add=[
                ox.Quad(ox.NamedNode(f"urn:s{i}"), ox.NamedNode("urn:p"), ox.Literal(str(i)), graph) for i in range(300)
            ]
        )
        endpoint = SparqlEndpoint(store, timeout_s=20, max_rows=10)
        answer = asyncio.run(endpoint.answer(RUNAWAY, accept=None))
        assert answer.status == 503 and "time limit" in answer.body.decode()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_an_update_behind_a_carriage_return_comment_is_refused_as_an_update(live_server):
    response = httpx.get(live_server + "/sparql", params={"query": "#x\rINSERT DATA { <urn:a> <urn:b> <urn:c> }"})
    assert response.status_code == 403 and "read-only" in response.text


def test_what_does_not_parse_is_400_naming_line_and_column(live_server):
    response = httpx.get(live_server + "/sparql", params={"query": "SELECT ?s WHERE {\n  ?s ?p \n"})
    assert response.status_code == 400
    assert re.search(r"line \d+, column \d+", response.text), response.text


@pytest.mark.parametrize("rq", sorted((ROOT / "queries" / "lineage").glob("*.rq")), ids=lambda p: p.name)
def test_shipped_lineage_queries_pass_the_check(rq):
    assert refusal(rq.read_text()) is None


@pytest.mark.parametrize(
    "query",
    [
        "ASK {}",
        "ASK { ?s ?p ?o }",
        "PREFIX wf: <https://w3id.org/wayfinder/ontology#> SELECT (COUNT(?s) AS ?n) WHERE { ?s a wf:Step }",
        "CONSTRUCT { ?s ?p ?o } WHERE { ?s a <https://w3id.org/wayfinder/ontology#Plan> ; ?p ?o }",
        "DESCRIBE <https://w3id.org/wayfinder/ontology#Step>",
        'SELECT * WHERE { ?s ?p "SERVICE" } # INSERT\r\n',
    ],
)
def test_the_query_forms_pass_the_check(query):
    assert refusal(query) is None


# -- workers and their limits --------------------------------------------------


def sparql_workers() -> list[psutil.Process]:
    """Return this test process's live SPARQL worker processes."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "service.audit.sparql_worker" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def test_eight_concurrent_asks_all_answer(disk_runtime):
    with serving(disk_runtime) as url:
        answers: list[httpx.Response] = []

        def ask() -> None:
            answers.append(httpx.get(url + "/sparql", params={"query": "ASK {}"}, timeout=60))

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
    assert all(a.json()["boolean"] is True for a in answers)


def test_runaway_queries_never_start_more_workers_than_slots(disk_runtime):
    runtime = runtime_with(disk_runtime, sparql_max_concurrent=2, sparql_queue_wait_s=0.5, sparql_timeout_s=3)
    with serving(runtime) as url:
        answers: list[httpx.Response] = []
        most = 0

        def ask() -> None:
            answers.append(httpx.get(url + "/sparql", params={"query": RUNAWAY}, timeout=30))

        threads = [threading.Thread(target=ask) for _ in range(5)]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            most = max(most, len(sparql_workers()))
            time.sleep(0.05)
    assert most <= 2
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [503] * 5
    busy = [a for a in answers if "busy" in a.text]
    assert len(busy) == 3 and all(a.headers.get("retry-after") for a in busy)
    assert sum("time limit" in a.text for a in answers) == 2


def test_a_cartesian_order_by_hits_the_memory_cap_and_the_service_keeps_answering(disk_runtime):
    runtime = runtime_with(disk_runtime, sparql_max_memory_mb=300, sparql_timeout_s=5)
    with TestClient(create_app(runtime)) as http:
        response = http.get("/sparql", params={"query": "SELECT * WHERE { ?a ?b ?c . ?d ?e ?f } ORDER BY ?c ?f ?a ?d"})
        assert response.status_code == 503
        assert "memory" in response.text and "Traceback" not in response.text and "/" not in response.text
        after = http.get("/sparql", params={"query": "ASK {}"})
        assert after.status_code == 200 and after.json()["boolean"] is True


def test_an_answer_past_the_byte_cap_is_truncated_and_says_so(disk_runtime):
    runtime = runtime_with(disk_runtime, sparql_max_bytes=4000, sparql_max_rows=10_000)
    with TestClient(create_app(runtime)) as http:
        rows = http.get(
            "/sparql",
            params={"query": "SELECT ?s ?p ?o WHERE { ?s ?p ?o }"},
            headers={"accept": "application/sparql-results+json"},
        )
        assert rows.status_code == 200 and len(rows.content) <= 4000
        assert rows.json()["results"]["bindings"]
        assert "bytes" in rows.headers["x-wayfinder-truncated"]
        graph = http.get("/sparql", params={"query": "CONSTRUCT WHERE { ?s ?p ?o }"}, headers={"accept": "text/turtle"})
        assert graph.status_code == 200 and len(graph.content) <= 4000
        assert "bytes" in graph.headers["x-wayfinder-truncated"]
        big = (
            'SELECT ?x WHERE { BIND(REPLACE(REPLACE(REPLACE(REPLACE("aaaaaaaaaa", "a", "aaaaaaaaaa"), "a", "aaaaaaaaaa"),'
            ' "a", "aaaaaaaaaa"), "a", "aaaaaaaaaa") AS ?x) }'
        )
        one = http.get("/sparql", params={"query": big}, headers={"accept": "text/csv"})
        assert one.status_code == 200 and len(one.content) <= 4000
        assert "bytes" in one.headers["x-wayfinder-truncated"]


def _can_leave_the_network() -> bool:
    code = (
        "import ctypes, sys; c = ctypes.CDLL(None); sys.exit(c.unshare(0x40000000) != 0 and c.unshare(0x50000000) != 0)"
    )
    return Path("/proc/self/ns/net").exists() and subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_a_worker_on_a_snapshot_is_off_the_network_with_its_memory_capped(disk_runtime):
    if not _can_leave_the_network():
        pytest.skip("this platform gives a process no network namespace of its own")
    endpoint = SparqlEndpoint(disk_runtime.store, timeout_s=3, max_rows=10)
    thread = threading.Thread(target=lambda: asyncio.run(endpoint.answer(RUNAWAY, accept=None)))
    thread.start()
    try:
        own = os.readlink("/proc/self/ns/net")
        confined, deadline = None, time.monotonic() + 4
        while confined is None and time.monotonic() < deadline:
            for worker in sparql_workers():
                try:
                    if os.readlink(f"/proc/{worker.pid}/ns/net") != own:
                        confined = worker
                except OSError:
                    continue
            time.sleep(0.05)
        assert confined is not None, "no worker left the service's network namespace"
        assert confined.rlimit(psutil.RLIMIT_AS)[0] == Settings().sparql_max_memory_mb << 20
    finally:
        thread.join(timeout=15)
        endpoint.close()


SERVICE_THAT_DIES = """
import asyncio, sys
import pyoxigraph as ox
from service.audit.sparql import SparqlEndpoint
from service.knowledge.embedded import Store
store = Store(sys.argv[1])
store.commit(add=[ox.Quad(ox.NamedNode(f"urn:s{i}"), ox.NamedNode("urn:p"), ox.Literal(str(i))) for i in range(300)])
endpoint = SparqlEndpoint(store, timeout_s=120, max_rows=10)
asyncio.run(endpoint.answer(sys.argv[2], accept=None))
"""


def test_a_worker_dies_with_its_service(tmp_path):
    service = subprocess.Popen([sys.executable, "-c", SERVICE_THAT_DIES, str(tmp_path / "store"), RUNAWAY], cwd=ROOT)
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 20
        while not workers and time.monotonic() < deadline:
            workers = [
                c
                for c in psutil.Process(service.pid).children()
                if "service.audit.sparql_worker" in " ".join(c.cmdline())
            ]
            time.sleep(0.05)
        assert workers, "the worker did not start"
        time.sleep(1.0)  # the worker is past its start, inside the query
        os.kill(service.pid, signal.SIGKILL)
        service.wait(timeout=5)
        gone_by = time.monotonic() + 5
        while time.monotonic() < gone_by and any(_alive(w) for w in workers):
            time.sleep(0.05)
        assert not any(_alive(w) for w in workers)
    finally:
        for worker in workers:
            if _alive(worker):
                worker.kill()
        if service.poll() is None:
            service.kill()


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- snapshots -------------------------------------------------------------------


def test_removing_commits_are_counted(tmp_path):
    store = Store(tmp_path / "store")
    quad = ox.Quad(ox.NamedNode("urn:a"), ox.NamedNode("urn:b"), ox.NamedNode("urn:c"), ox.NamedNode("urn:g"))
    store.commit(add=[quad])
    assert store.removals == 0
    store.commit(remove=[quad])
    store.commit(drop=[ox.NamedNode("urn:g")])
    assert store.removals == 2


def test_an_erased_user_is_gone_from_sparql_and_from_every_snapshot(disk_runtime):
    runtime = disk_runtime
    user = "erase-me-5f2c9a1e"
    naming = f'SELECT ?s ?p ?o WHERE {{ ?s ?p ?o FILTER(CONTAINS(STR(?s), "{user}") || CONTAINS(STR(?o), "{user}")) }}'
    with TestClient(create_app(runtime)) as http:
        gql = GraphQLClient(http)
        gql.data(
            "mutation($id: ID!) { registerUser(input: {id: $id, consents: [PERSONALIZATION]}) { id } }", {"id": user}
        )
        before = http.get("/sparql", params={"query": naming}, headers={"accept": "application/sparql-results+json"})
        assert before.json()["results"]["bindings"]
        gql.data("mutation($id: ID!) { eraseUser(userId: $id) { erasureId } }", {"id": user})
        after = http.get("/sparql", params={"query": naming}, headers={"accept": "application/sparql-results+json"})
        assert after.status_code == 200 and after.json()["results"]["bindings"] == []
        root = runtime.store.location.with_name(runtime.store.location.name + ".sparql-snapshots")
        snapshots = [p.parent for p in root.rglob("CURRENT")]
        assert len(snapshots) == 1
        for snapshot in snapshots:
            assert not ox.Store.read_only(str(snapshot)).query(
                naming.replace("SELECT ?s ?p ?o", "ASK"), use_default_graph_as_union=True
            )


def test_snapshots_left_by_earlier_runs_are_removed_at_start(tmp_path):
    store = Store(tmp_path / "store")
    root = tmp_path / "store.sparql-snapshots"
    gone = psutil.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    leftover = root / f"{gone.pid}-earlier" / "snapshot-1"
    leftover.mkdir(parents=True)
    (leftover / "CURRENT").write_text("MANIFEST-000001\n")
    living = root / f"{os.getppid()}-elsewhere"
    living.mkdir()
    endpoint = SparqlEndpoint(store, timeout_s=5, max_rows=10)
    try:
        assert not leftover.parent.exists()
        assert living.exists()
        answer = asyncio.run(endpoint.answer("ASK { ?s ?p ?o }", accept=None))
        assert answer.status == 200 and json.loads(answer.body)["boolean"] is False
        assert [p for p in root.iterdir() if p.name.startswith(f"{os.getpid()}-")]
    finally:
        endpoint.close()
    assert not [p for p in root.iterdir() if p.name.startswith(f"{os.getpid()}-")]
