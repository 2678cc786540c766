"""The `wayfinder` command line, as an operator or auditor runs it: a store folder, a real runtime."""

from __future__ import annotations

import gc
import json

import pytest
from typer.testing import CliRunner

from service.cli import app
from tests.audit.test_chain import setup_users
from tests.paths import FIXTURES, ROOT


def run(*args, **kwargs):
    """Invoke a command as a new process would find the store: no runtime of an earlier command holds it open."""
    gc.collect()
    return CliRunner().invoke(*args, **kwargs)


@pytest.fixture
def store_with_decisions(disk_runtime):
    """A store folder holding the demo knowledge, users and three decisions; closed, as a command finds it."""
    decisions = setup_users(disk_runtime)
    disk_runtime.store.close()
    return disk_runtime.settings.store, decisions


def test_query_binds_a_parameter_and_prints_json(store_with_decisions):
    store, decisions = store_with_decisions
    decision = "https://w3id.org/wayfinder/decision/" + decisions[0].decision_id
    query = "PREFIX wf: <https://w3id.org/wayfinder/ontology#> SELECT ?limit WHERE { ?d wf:requestedLimit ?limit }"
    result = run(app, ["query", query, "--store", store, "--param", f"d={decision}", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"limit": "5"}]


def test_a_shipped_query_file_takes_only_the_parameters_it_declares(store_with_decisions):
    store, _ = store_with_decisions
    rq = str(ROOT / "queries" / "lineage" / "decisions-for-user.rq")
    ok = run(app, ["query", rq, "--store", store, "--param", "user=https://w3id.org/wayfinder/user/ana", "-f", "csv"])
    assert ok.exit_code == 0, ok.output
    assert len(ok.stdout.strip().splitlines()) == 1 + 2  # the header, and ana's two decisions
    wrong = run(app, ["query", rq, "--store", store, "--param", "usr=https://w3id.org/wayfinder/user/ana"])
    assert wrong.exit_code == 2 and "--param" in wrong.output and "?usr" in wrong.output
    literal = run(app, ["query", rq, "--store", store, "--param", 'user="ana"'])
    assert literal.exit_code == 2 and "an IRI is expected" in literal.output


def test_audit_query_runs_a_lineage_query_by_name_and_names_the_shipped_ones(store_with_decisions):
    store, decisions = store_with_decisions
    decision = "https://w3id.org/wayfinder/decision/" + decisions[1].decision_id
    result = run(app, ["audit", "query", "why-decision", "--store", store, "-p", f"decision={decision}", "-f", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows and {row["decision"] for row in rows} == {decision}
    unknown = run(app, ["audit", "query", "why-not", "--store", store])
    assert unknown.exit_code == 2 and "why-decision" in unknown.output


def test_audit_decision_prints_the_lineage_and_refuses_a_malformed_id(store_with_decisions):
    store, decisions = store_with_decisions
    shown = run(app, ["audit", "decision", decisions[0].decision_id, "--store", store])
    assert shown.exit_code == 0, shown.output
    assert "consent read" in shown.output and "returned, in rank order" in shown.output
    missing = run(app, ["audit", "decision", "00000000-0000-4000-8000-000000000000", "--store", store])
    assert missing.exit_code == 2 and "no decision" in missing.output
    malformed = run(app, ["audit", "decision", "not a <decision>", "--store", store])
    assert malformed.exit_code == 2 and "decision ID" in malformed.output


def test_validate_reports_violations_of_a_file_and_passes_the_shipped_catalog():
    shipped = run(app, ["validate", str(ROOT / "ontology" / "catalog")])
    assert shipped.exit_code == 0, shipped.output
    broken = run(app, ["validate", str(FIXTURES / "dangling.ttl")])
    assert broken.exit_code == 1 and "violation" in broken.output


def test_an_invalid_load_stores_nothing(tmp_path):
    store = str(tmp_path / "store")
    assert run(app, ["load", str(ROOT / "ontology" / "catalog"), "--store", store]).exit_code == 0
    count = "SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } }"
    before = run(app, ["query", count, "--store", store, "-f", "csv"]).stdout
    refused = run(app, ["load", str(FIXTURES / "cycle.ttl"), "--store", store])
    assert refused.exit_code == 1
    assert run(app, ["query", count, "--store", store, "-f", "csv"]).stdout == before


def test_backup_copies_the_analytics_log_and_the_restored_store_needs_no_rebuild(disk_runtime, tmp_path, monkeypatch):
    from service.analytics import feed
    from service.runtime import Runtime
    from service.settings import Settings

    setup_users(disk_runtime)
    before = feed.log(disk_runtime).counts()
    assert before["subjects"] > 0 and before["events"] > 0
    disk_runtime.close()
    target = tmp_path / "restored"
    result = run(app, ["backup", str(target), "--store", disk_runtime.settings.store])
    assert result.exit_code == 0, result.output
    assert "analytics log" in result.stdout
    assert target.with_name("restored.analytics.duckdb").exists()
    rebuilds = []
    monkeypatch.setattr(feed, "rebuild", lambda *a: rebuilds.append(a))
    gc.collect()
    restored = Runtime(settings=Settings(store=str(target), models_dir=tmp_path / "models"))
    assert feed.log(restored).counts() == before and rebuilds == []
    restored.close()
    again = run(app, ["backup", str(target), "--store", disk_runtime.settings.store])
    assert again.exit_code == 2 and "exists already" in again.output
