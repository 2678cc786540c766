"""The embedded store: named graphs read as one union, commits applied whole, removals counted."""

from __future__ import annotations

import pyoxigraph as ox
import pytest

from service.errors import SyntaxProblem
from service.knowledge.embedded import Store, open_store
from service.knowledge.store import GraphStore

EX = "http://example.org/"
A, B = ox.NamedNode(EX + "graph/a"), ox.NamedNode(EX + "graph/b")


def quad(s: str, o: str, graph: ox.NamedNode) -> ox.Quad:
    return ox.Quad(ox.NamedNode(EX + s), ox.NamedNode(EX + "p"), ox.NamedNode(EX + o), graph)


def test_a_query_walks_across_named_graphs_as_one_default_graph():
    store = Store(":memory:")
    store.commit(add=[quad("x", "y", A), quad("y", "z", B)])
    rows = store.select(f"SELECT ?end WHERE {{ <{EX}x> <{EX}p>/<{EX}p> ?end }}")
    assert rows == [{"end": ox.NamedNode(EX + "z")}]
    assert store.ask(f"ASK {{ <{EX}y> <{EX}p> <{EX}z> }}") and len(store) == 2


def test_only_commits_that_remove_or_drop_are_counted_as_removals():
    store = Store(":memory:")
    store.commit(add=[quad("x", "y", A), quad("y", "z", B)])
    assert store.removals == 0
    store.commit(remove=[quad("x", "y", A)])
    store.commit(drop=[B])
    assert store.removals == 2 and len(store) == 0
    store.replace_graph(A, [quad("n", "m", A).triple])
    assert store.graph(A) == [quad("n", "m", A)] and store.removals == 3


def test_a_commit_with_a_bad_update_changes_nothing():
    store = Store(":memory:")
    store.commit(add=[quad("x", "y", A)])
    with pytest.raises(SyntaxProblem):
        store.query("SELECT WHERE {")
    before = list(store.quads())
    with pytest.raises(Exception):  # noqa: B017 - pyoxigraph's error for a literal subject
        store.commit(
            add=[quad("n", "m", A)], remove=[ox.Quad(ox.Literal("x"), ox.NamedNode(EX + "p"), ox.Literal("y"), A)]
        )
    assert list(store.quads()) == before


def test_on_disk_a_store_flushes_reopens_and_closes_once(tmp_path):
    store = Store(tmp_path / "s", flush_each_commit=True)
    store.commit(add=[quad("x", "y", A)])
    assert store.flushes == 1
    store.close()
    store.close()  # harmless the second time
    again = Store(tmp_path / "s")
    assert again.has_graph(A) and again.named_graphs() == [A]
    again.close()


def test_open_store_gives_the_embedded_store_for_a_folder_and_both_implement_the_protocol(tmp_path):
    store = open_store(str(tmp_path / "s"))
    assert isinstance(store, Store) and isinstance(store, GraphStore) and store.url is None
    assert store.location == tmp_path / "s"
    assert open_store(":memory:").location is None
    store.close()
