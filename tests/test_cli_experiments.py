"""`wayfinder experiment`, as an operator runs it: a store folder with the demo knowledge, a real runtime."""

from __future__ import annotations

import gc
import json

import pytest
from typer.testing import CliRunner

from service.cli import app
from service.decisions import decide, users
from service.runtime import Runtime
from service.settings import Settings

SPEC = {
    "id": "rules-vs-hybrid",
    "arms": [
        {"name": "control", "policyVersion": "default@1.2.0", "weight": 1},
        {"name": "rules-only", "policyVersion": "default@1.3.0", "weight": 1},
    ],
    "guardrails": [{"kpi": "activation", "maxRelativeDrop": 0.05, "detectableDrop": 0.3}],
    "coverage": 1,
}


def run(*args):
    """Invoke a command as a new process would find the store: no runtime of an earlier command holds it open."""
    gc.collect()
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def store(disk_runtime) -> str:
    """A store folder holding the demo knowledge and no experiments; closed, as a command finds it."""
    disk_runtime.close()
    return disk_runtime.settings.store


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(SPEC))
    return path


def created(store, spec_file, by="ana") -> None:
    result = run("experiment", "create", str(spec_file), "--by", by, "--store", store)
    assert result.exit_code == 0, result.output


def serve_users(store: str, tmp_path, count: int) -> set[str]:
    """Register users and decide for each in process, over the same store folder; return the arms served."""
    runtime = Runtime(settings=Settings(store=store, models_dir=tmp_path / "models"))
    try:
        variants = set()
        for i in range(count):
            users.register(runtime, users.Registration(id=f"u{i}", role="analyst", consents=["ANALYTICS"]))
            variants.add(decide.next_steps(runtime, f"u{i}").variant)
        return variants
    finally:
        runtime.close()  # an embedded store opens in one place at a time


def test_create_from_a_file_and_list_it(store, spec_file):
    result = run("experiment", "create", str(spec_file), "--by", "ana", "--store", store)
    assert result.exit_code == 0, result.output
    assert "rules-vs-hybrid is draft" in result.output
    listed = run("experiment", "list", "--store", store)
    assert listed.exit_code == 0, listed.output
    for shown in ("rules-vs-hybrid", "draft", "control=default@1.2.0 0.5 active", "rules-only=default@1.3.0"):
        assert shown in listed.output
    assert "activation max drop 0.05, detectable 0.3" in listed.output, listed.output
    assert "ana" in listed.output
    again = run("experiment", "create", str(spec_file), "--by", "ana", "--store", store)
    assert again.exit_code == 2 and "exists" in again.output


MALFORMED = [
    ('{"id": "x", "arms": [', "experiment.json:1"),
    (json.dumps({k: v for k, v in SPEC.items() if k != "arms"}), "input.arms: missing"),
    (
        json.dumps({**SPEC, "arms": [SPEC["arms"][0], {"name": "b", "weight": 1}]}),
        "input.arms[1].policyVersion: missing",
    ),
    (json.dumps({**SPEC, "arms": [SPEC["arms"][0], {**SPEC["arms"][1], "weight": "1"}]}), "input.arms[1].weight"),
    (json.dumps({**SPEC, "guardrails": [{"kpi": "activation", "max_drop": 0.1}]}), "input.guardrails[0].max_drop"),
    (json.dumps({**SPEC, "coverage": True}), "input.coverage: a number"),
    (
        json.dumps({**SPEC, "guardrails": [{"kpi": "activation", "maxRelativeDrop": 0.1, "detectableDrop": "big"}]}),
        "input.guardrails[0].detectableDrop: a number",
    ),
    (json.dumps([SPEC]), "input: an object"),
    (json.dumps({**SPEC, "coverage": 2}), "input.coverage: a share"),  # the flow's own check
]


def test_a_malformed_file_names_the_field_and_creates_nothing(store, tmp_path):
    path = tmp_path / "experiment.json"
    for text, named in MALFORMED:
        path.write_text(text)
        result = run("experiment", "create", str(path), "--by", "ana", "--store", store)
        assert result.exit_code == 2, (text, result.output)
        assert named in result.output, (text, result.output)
    missing = run("experiment", "create", str(tmp_path / "none.json"), "--by", "ana", "--store", store)
    assert missing.exit_code == 2 and "cannot read" in missing.output
    assert "0 experiment(s)" in run("experiment", "list", "--store", store).output


def test_the_creator_may_not_approve_another_approves_then_it_starts_ramps_and_reweights(store, spec_file):
    created(store, spec_file, by="ana")
    own = run("experiment", "approve", "rules-vs-hybrid", "--by", "ana", "--store", store)
    assert own.exit_code == 2 and "four eyes" in own.output
    approved = run("experiment", "approve", "rules-vs-hybrid", "--by", "bo", "--store", store)
    assert approved.exit_code == 0 and "approved by bo" in approved.output
    started = run("experiment", "start", "rules-vs-hybrid", "--by", "ana", "--store", store)
    assert started.exit_code == 0 and "rules-vs-hybrid is running" in started.output
    ramped = run("experiment", "ramp", "rules-vs-hybrid", "0.25", "--by", "ana", "--store", store)
    assert ramped.exit_code == 0 and "coverage 0.25" in ramped.output
    reweighted = run("experiment", "reweight", "rules-vs-hybrid", "3", "1", "--by", "ana", "--store", store)
    assert reweighted.exit_code == 0 and "control=default@1.2.0 0.75" in reweighted.output
    wrong = run("experiment", "reweight", "rules-vs-hybrid", "1", "--by", "ana", "--store", store)
    assert wrong.exit_code == 2 and "one weight per arm" in wrong.output
    listed = run("experiment", "list", "--store", store).output
    assert "running" in listed and "0.25" in listed and "bo" in listed
    missing = run("experiment", "start", "no-such", "--by", "ana", "--store", store)
    assert missing.exit_code == 2 and "no experiment 'no-such'" in missing.output
    nobody = run("experiment", "stop", "rules-vs-hybrid", "--by", " ", "--store", store)
    assert nobody.exit_code == 2 and "--by" in nobody.output


def test_results_monitor_and_stop_with_a_few_users(store, spec_file, tmp_path):
    created(store, spec_file)
    assert run("experiment", "start", "rules-vs-hybrid", "--by", "ana", "--store", store).exit_code == 0
    assert serve_users(store, tmp_path, 8) <= {"control", "rules-only"}
    shown = run("experiment", "results", "rules-vs-hybrid", "--store", store)
    assert shown.exit_code == 0, shown.output
    for text in ("activation", "estimate [lower, upper]", "lift [lower, upper]", "SRM p-value", "guardrails"):
        assert text in shown.output
    snapshot = json.loads(run("experiment", "results", "rules-vs-hybrid", "--json", "--store", store).stdout)
    assert snapshot["experiment"] == "rules-vs-hybrid"
    assert sum(r["users"] for r in snapshot["results"]) == 8
    assert {g["kpi"] for g in snapshot["guardrails"]} == {"activation"}
    # The same analysis on an export of the analytics log, read by DuckDB from its Parquet files.
    exported = run("analytics", "export", str(tmp_path / "export"), "--store", store)
    assert exported.exit_code == 0 and "8 subjects" in exported.output, exported.output
    assert run("analytics", "export", str(tmp_path / "export"), "--store", store).exit_code == 2  # never overwritten
    on_export = run(
        "experiment", "results", "rules-vs-hybrid", "--json", "--export", str(tmp_path / "export"), "--store", store
    )
    assert on_export.exit_code == 0, on_export.output
    assert json.loads(on_export.stdout)["moments"] == snapshot["moments"]
    alone = run("experiment", "results", "rules-vs-hybrid", "--spark-master", "local[1]", "--store", store)
    assert alone.exit_code == 2 and "--spark-master: needs --export" in alone.output
    down = run("experiment", "ramp", "rules-vs-hybrid", "0.5", "--by", "ana", "--store", store)
    assert down.exit_code == 0 and "coverage 0.5" in down.output  # lowering is always allowed
    up = run("experiment", "ramp", "rules-vs-hybrid", "1", "--by", "ana", "--store", store)
    assert up.exit_code == 2 and "coverage stays at 0.5" in up.output  # 8 users cannot show a 30% drop
    monitored = run("experiment", "monitor", "--store", store)
    assert monitored.exit_code == 0, monitored.output
    assert "rules-vs-hybrid" in monitored.output and "running" in monitored.output
    assert "control active" in monitored.output
    assert run("experiment", "stop", "rules-vs-hybrid", "--by", "ana", "--store", store).exit_code == 0
    after = run("experiment", "monitor", "--store", store)
    assert after.exit_code == 0 and "stopped" in after.output
    again = run("experiment", "stop", "rules-vs-hybrid", "--by", "ana", "--store", store)
    assert again.exit_code == 2 and "stopped already" in again.output


FLAG = {
    "id": "ranking",
    "policy": "default",
    "variants": [
        {"name": "hybrid", "policyVersion": "default@1.2.0"},
        {"name": "rules", "policyVersion": "default@1.3.0"},
    ],
    "defaultVariant": "hybrid",
    "rules": [{"conditions": [{"attribute": "role", "values": ["analyst"]}], "variant": "rules"}],
}


def test_flag_commands_create_list_evaluate_and_switch_a_flag(store, tmp_path):
    path = tmp_path / "flag.json"
    path.write_text(json.dumps(FLAG))
    result = run("flag", "create", str(path), "--by", "ana", "--store", store)
    assert result.exit_code == 0 and "ranking v1 pins default: on" in result.output, result.output
    listed = run("flag", "list", "--store", store)
    assert "role in analyst: rules" in listed.output and "1 flag(s)" in listed.output
    serve_users(store, tmp_path, 1)
    evaluated = run("flag", "evaluate", "ranking", "u0", "--store", store)
    assert "TARGETING_MATCH" in evaluated.output and "default@1.3.0" in evaluated.output, evaluated.output
    off = run("flag", "off", "ranking", "--by", "bo", "--store", store)
    assert off.exit_code == 0 and "v2" in off.output and "off (kill switch)" in off.output
    assert "DISABLED" in run("flag", "evaluate", "ranking", "u0", "--store", store).output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**FLAG, "id": "other", "defaultVariant": 3}))
    refused = run("flag", "create", str(bad), "--by", "ana", "--store", store)
    assert refused.exit_code == 2 and "input.defaultVariant" in refused.output
    assert run("flag", "evaluate", "nope", "u0", "--store", store).output.count("FLAG_NOT_FOUND") == 1
