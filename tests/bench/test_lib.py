"""The benches' shared helpers: one percentile (nearest rank), one result writer, one machine block."""

from __future__ import annotations

import importlib
import json
import random
import statistics
import sys
import types

import numpy as np
import pytest

from bench import lib
from tests.paths import ROOT

BENCH = ROOT / "bench"
SCRIPTS = sorted(p for p in BENCH.rglob("*.py") if "lib" not in p.relative_to(BENCH).parts)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 99, 100, 101, 200, 1000, 2000])
@pytest.mark.parametrize("q", [0, 0.1, 1, 10, 25, 50, 75, 90, 95, 99, 99.9, 100])
def test_percentile_is_nearest_rank_as_numpys_inverted_cdf(n, q):
    values = [random.Random(n).lognormvariate(0, 1) for _ in range(n)]
    assert lib.percentile(values, q) == np.percentile(values, q, method="inverted_cdf")


def test_p99_of_100_values_is_the_99th_not_the_largest():
    values = random.Random(1).sample(range(1, 101), 100)  # 1..100, shuffled: any order is fine
    assert lib.percentile(values, 99) == 99
    assert lib.percentile(values, 100) == 100
    assert lib.percentile(values, 0) == 1
    assert lib.percentile(values, 90) == 90
    assert lib.percentile(range(1, 1001), 99.9) == 999


@pytest.mark.parametrize("n", range(1, 40))
def test_p50_is_the_low_median(n):
    values = [random.Random(n).random() for _ in range(n)]
    assert lib.percentile(values, 50) == statistics.median_low(values)


def test_percentiles_are_measured_values_never_interpolated():
    values = [1.0, 2.0, 3.0, 4.0]
    interpolated = statistics.quantiles(values, n=4, method="inclusive")  # numpy's default, linear
    assert interpolated == [1.75, 2.5, 3.25]
    assert [lib.percentile(values, q) for q in (25, 50, 75)] == [1.0, 2.0, 3.0]


def test_percentile_refuses_no_values_and_a_rank_outside_0_to_100():
    with pytest.raises(ValueError):
        lib.percentile([], 50)
    with pytest.raises(ValueError):
        lib.percentile([1.0], 101)


def test_summary_is_in_milliseconds_with_the_same_percentiles():
    seconds = [i / 1000 for i in range(1, 101)]
    summary = lib.summary_ms(seconds)
    assert summary["n"] == 100
    assert (summary["p50_ms"], summary["p90_ms"], summary["p99_ms"], summary["max_ms"]) == (50.0, 90.0, 99.0, 100.0)
    assert summary["mean_ms"] == 50.5
    assert "samples_ms" not in summary
    assert lib.summary_ms([0.002, 0.001])["samples_ms"] == [2.0, 1.0]  # few samples: all kept, in order
    assert lib.summary_ms([])["n"] == 0


def test_result_files_hold_the_command_and_the_machine(tmp_path):
    path = lib.write_result(
        tmp_path / "results",
        "figure-1k",
        {"p99_ms": 4.2},
        markdown=lib.table(["what", "p99 ms"], [("nextSteps", 4.2)]),
        command=".venv/bin/python -m bench.next_steps.latency --demo",
    )
    assert path == tmp_path / "results" / "figure-1k.json"
    written = json.loads(path.read_text())
    assert written["name"] == "figure-1k" and written["p99_ms"] == 4.2
    assert written["command"] == ".venv/bin/python -m bench.next_steps.latency --demo"
    env = written["environment"]
    assert env["machine"]["cpus"] >= 1 and env["machine"]["mem_total_gb"] > 0 and env["python"]
    assert {"pyoxigraph", "torch"} <= set(env["versions"]) and env["versions"]["pyoxigraph"]
    markdown = path.with_suffix(".md").read_text()
    assert "```sh\n.venv/bin/python -m bench.next_steps.latency --demo\n```" in markdown
    assert "| nextSteps | 4.2 |" in markdown
    assert f"{env['machine']['cpus']} CPUs" in markdown


def test_without_markdown_only_the_json_is_written(tmp_path):
    lib.write_result(tmp_path, "only-json", {"x": 1}, command="cmd")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["only-json.json"]


def test_the_command_is_a_module_run_from_the_repository_root(monkeypatch):
    main = types.ModuleType("__main__")
    main.__spec__ = importlib.util.find_spec("bench.lib.machine")
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr(sys, "argv", [str(BENCH / "lib" / "machine.py"), "--store", "/tmp/a b"])
    monkeypatch.setattr(sys, "executable", str(ROOT / ".venv" / "bin" / "python"))
    assert lib.command_line() == ".venv/bin/python -m bench.lib.machine --store '/tmp/a b'"


def test_sizes_are_labelled_in_thousands_and_millions():
    assert [lib.size_label(n) for n in (6, 1000, 1500, 100_000, 2_000_000)] == ["6", "1k", "1500", "100k", "2M"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_bench_runs_as_a_module_without_setting_up_the_path(script):
    assert "sys.path" not in script.read_text()
    module = ".".join(script.relative_to(ROOT).with_suffix("").parts)
    importlib.import_module(module)  # its imports resolve from the repository root
