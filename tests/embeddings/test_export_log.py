"""The training export read from the analytics log (``export_log``) holds what the graph export holds.

A synthetic world is loaded into a store; the service's log is rebuilt from it. Both exports must have the
same catalog, the same users (the graph's user IRIs mapped to the log's pseudonyms), the same edges, the
same outcomes, the same first-use times and the same consent records, in the same tensors (users are ordered
by what is known of them, not by key). The same on Spark over a Parquet
export of the log, where pyspark and Java are installed.
"""

from __future__ import annotations

import importlib.util
import shutil

import pyoxigraph as ox
import pytest
import torch

from embeddings.export import Export, export_graph, export_log, snapshot_hash
from embeddings.world import generate_world
from service.analytics import feed
from service.decisions import consent
from service.knowledge import vocab
from service.runtime import Runtime
from service.settings import Settings
from service.synthetic import write_world

SIZES = {"n_steps": 12, "n_features": 16, "n_areas": 3, "n_roles": 3, "n_industries": 3}


@pytest.fixture(scope="module")
def world_runtime(tmp_path_factory):
    world = generate_world(seed=21, n_users=250, **SIZES)
    catalog, users = write_world(world, tmp_path_factory.mktemp("world"))
    runtime = Runtime(settings=Settings(store=":memory:"))
    runtime.ensure_ontology()
    runtime.load([catalog])
    runtime.store.bulk_load(users, format=ox.RdfFormat.N_QUADS)
    yield runtime, world
    runtime.close()


def pseudonyms(runtime: Runtime) -> dict[str, str]:
    return {q.subject.value: q.object.value for q in runtime.store.quads(predicate=vocab.PSEUDONYM)}


def keyed(export: Export, rename: dict[str, str] | None = None) -> dict:
    """Every part of an export keyed by node keys instead of indices (users renamed where ``rename`` says)."""
    names = {kind: export.iris(kind) for kind in export.index}
    if rename is not None:
        names["user"] = [rename[u] for u in names["user"]]
    data = export.data
    edges = {}
    for src, rel, dst in data.edge_types:
        pairs = data[src, rel, dst].edge_index.t().tolist()
        edges[src, rel, dst] = sorted((names[src][a], names[dst][b]) for a, b in pairs)
    used = data["user", "used", "feature"]
    first = {
        (names["user"][a], names["feature"][b]): float(t)
        for (a, b), t in zip(used.edge_index.t().tolist(), used.first_at.tolist(), strict=True)
    }
    users = names["user"]
    return {
        "catalog": {k: sorted(v) for k, v in names.items() if k != "user"},
        "users": sorted(users),
        "edges": edges,
        "activated": sorted(u for u, y in zip(users, data["user"].y.tolist(), strict=True) if y),
        "converted": sorted(u for u, y in zip(users, data["user"].converted.tolist(), strict=True) if y),
        "first_used": first,
        "consent_records": sorted(export.consent_records),
        "default_order": data["step"].default_order.tolist(),
    }


def same(a: dict, b: dict) -> None:
    assert a["users"] and a["users"] == b["users"]
    for key in ("catalog", "edges", "activated", "converted", "consent_records"):
        assert a[key] == b[key], key
    assert a["first_used"].keys() == b["first_used"].keys()
    assert all(abs(a["first_used"][k] - b["first_used"][k]) < 1e-3 for k in a["first_used"])
    assert torch.allclose(torch.tensor(a["default_order"]), torch.tensor(b["default_order"]), equal_nan=True)


def test_the_log_export_holds_what_the_graph_export_holds(world_runtime):
    runtime, _ = world_runtime
    graph = export_graph(runtime.store)
    log = export_log(runtime.store, feed.for_analysis(runtime), event_codes=runtime.knowledge.codes.events)
    expected = keyed(graph, pseudonyms(runtime))
    assert len(expected["users"]) > 100 and expected["activated"] and expected["edges"]["user", "used", "feature"]
    same(keyed(log), expected)
    # users ordered by what is known of them, not by key: the same tensors, user for user
    assert [pseudonyms(runtime)[u] for u in graph.iris("user")] == log.iris("user")
    for edge_type in graph.data.edge_types:
        assert torch.equal(graph.data[edge_type].edge_index, log.data[edge_type].edge_index), edge_type
    for name in ("y", "converted"):
        assert torch.equal(graph.data["user"][name], log.data["user"][name])
    assert snapshot_hash(log) != snapshot_hash(graph)  # the same data, its users named by pseudonym


def test_a_withdrawal_takes_the_user_out_of_both_exports(world_runtime):
    runtime, _ = world_runtime
    before = export_graph(runtime.store)
    user = before.iris("user")[0]
    consent.set_consent(runtime, vocab.local_id(user), "ANALYTICS", granted=False)
    try:
        graph = export_graph(runtime.store)
        log = export_log(runtime.store, feed.for_analysis(runtime), event_codes=runtime.knowledge.codes.events)
        assert user not in graph.index["user"] and pseudonyms(runtime)[user] not in log.index["user"]
        same(keyed(log), keyed(graph, pseudonyms(runtime)))
    finally:
        consent.set_consent(runtime, vocab.local_id(user), "ANALYTICS", granted=True)


def test_event_codes_must_name_every_class_the_export_reads(world_runtime):
    runtime, _ = world_runtime
    codes = dict(runtime.knowledge.codes.events)
    codes.pop(next(c for c, iri in codes.items() if iri == vocab.CONVERTED.value))
    with pytest.raises(ValueError, match="Converted"):
        export_log(runtime.store, feed.for_analysis(runtime), event_codes=codes)


@pytest.mark.skipif(
    importlib.util.find_spec("pyspark") is None or shutil.which("java") is None,
    reason="Spark needs pyspark (`make install`) and a Java runtime (.ci/run installs default-jre-headless)",
)
@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
def test_the_log_export_on_spark_equals_the_one_on_duckdb(world_runtime, tmp_path):
    from service.analytics.log import open_parquet
    from service.analytics.spark import SparkLog, local_session

    runtime, _ = world_runtime
    folder = tmp_path / "log"
    feed.for_analysis(runtime).export_parquet(folder)
    codes = runtime.knowledge.codes.events
    duck = open_parquet(folder)
    session = local_session(2)
    try:
        on_duckdb = export_log(runtime.store, duck, event_codes=codes)
        on_spark = export_log(runtime.store, SparkLog(session, folder), event_codes=codes)
    finally:
        session.stop()
        duck.close()
    same(keyed(on_spark), keyed(on_duckdb))
    assert snapshot_hash(on_spark) == snapshot_hash(on_duckdb)
