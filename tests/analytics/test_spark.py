"""The KPI and experiment SQL on Spark (``local[2]``) and on DuckDB over the same exported Parquet files.

Both engines read one export of a log; the service's own log (DuckDB, where the rows were written) is the third
reading. Every KPI's units, the per-arm cells and the exposures per arm must agree: equal counts and subjects, values
within 1e-9. Then a whole experiment analysis (levels, lifts, intervals, p-values, SRM) run on Spark equals the one
the service runs on its own log.
"""

from __future__ import annotations

import importlib.util
import math
import shutil
from datetime import timedelta

import numpy as np
import pytest

from service.analytics import feed
from service.analytics.kpis import arm_counts, cells, read_kpis, units
from service.analytics.log import open_parquet
from service.experiments.analysis import analyse
from tests.analytics.test_kpis import DAY, T0, load, random_world
from tests.experiments.test_analysis import population, start
from tests.paths import ROOT

if importlib.util.find_spec("pyspark") is None:
    pytest.skip("pyspark is not installed: `make install` installs it", allow_module_level=True)
if shutil.which("java") is None:
    pytest.skip("Spark needs a Java runtime: .ci/run installs Debian's default-jre-headless", allow_module_level=True)

from service.analytics.spark import SparkLog, local_session  # noqa: E402 - only where pyspark is installed

KPIS = read_kpis(ROOT / "queries" / "kpi")
pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")


@pytest.fixture(scope="module")
def spark():
    session = local_session(2)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def three_readings(spark, tmp_path_factory):
    """A random world's log (the one the rows were written to), and one export of it read by DuckDB and by Spark."""
    live = load(random_world(20251204, size=400))
    folder = tmp_path_factory.mktemp("export") / "log"
    counts = live.export_parquet(folder)
    duck = open_parquet(folder)
    yield live, duck, SparkLog(spark, folder), counts
    live.close()
    duck.close()


def same_units(a, b):
    assert [(u.subject, u.arm, u.window_closed, u.role, u.plan) for u in a] == [
        (u.subject, u.arm, u.window_closed, u.role, u.plan) for u in b
    ]
    for x, y in zip(a, b, strict=True):
        assert (x.value is None) == (y.value is None), x.subject
        if x.value is not None:
            assert math.isclose(x.value, y.value, rel_tol=0, abs_tol=1e-9), x.subject


def test_the_export_holds_every_row_of_the_log(three_readings):
    live, duck, on_spark, counts = three_readings
    for table, n in counts.items():
        assert live.query(f"SELECT count(*) FROM {table}")[0][0] == n
        assert duck.query(f"SELECT count(*) FROM {table}")[0][0] == n
        assert on_spark.query(f"SELECT count(*) FROM {table}")[0][0] == n
    assert counts["events"] > 2_000 and counts["exposures"] > 300


@pytest.mark.parametrize("experiment", ["exp-a", "exp-b"])
def test_every_kpi_gives_the_same_units_on_spark_and_on_duckdb(three_readings, experiment):
    live, duck, on_spark, _ = three_readings
    checked = 0
    for now in (T0 + 5 * DAY, T0 + 90 * DAY):
        for kpi in KPIS.values():
            expected = units(live, kpi, experiment, now=now)
            same_units(units(duck, kpi, experiment, now=now), expected)
            same_units(units(on_spark, kpi, experiment, now=now), expected)
            checked += sum(u.value is not None for u in expected)
    closed = units(on_spark, KPIS["retention_7d"], experiment, now=T0 + 5 * DAY, closed_only=True)
    same_units(closed, units(live, KPIS["retention_7d"], experiment, now=T0 + 5 * DAY, closed_only=True))
    assert 0 < len(closed) < len(units(live, KPIS["retention_7d"], experiment, now=T0 + 5 * DAY))
    assert checked > 500
    for reading in (duck, on_spark):
        assert arm_counts(reading, experiment, now=T0) == arm_counts(live, experiment, now=T0)
        assert arm_counts(reading, experiment) == arm_counts(live, experiment)


@pytest.mark.parametrize("experiment", ["exp-a", "exp-b"])
def test_the_cells_an_analysis_sums_are_the_same_on_spark(three_readings, experiment):
    live, _, on_spark, _ = three_readings
    now = T0 + 40 * DAY
    expected = cells(live, list(KPIS.values()), experiment, now=now, arms=["control", "treatment", "t2"])
    got = cells(on_spark, list(KPIS.values()), experiment, now=now, arms=["control", "treatment", "t2"])
    assert got.keys() == expected.keys()
    for name, mine in expected.items():
        theirs = got[name]
        assert theirs.covariate_names == mine.covariate_names
        a, b = cell_rows(mine), cell_rows(theirs)
        assert [r[:3] for r in a] == [r[:3] for r in b], name
        # Sums of squared hours reach 1e7: the engines add in different orders, so the tolerance is relative there.
        assert np.allclose([r[3:] for r in a], [r[3:] for r in b], rtol=1e-12, atol=1e-9), name


def cell_rows(summed):
    """The cells as (arm, covariates, n, total, total of squares), sorted: rows come back in no fixed order."""
    keyed = [
        (int(summed.arm[i]), tuple(summed.covariates[i]), int(summed.n[i]), summed.total[i], summed.total_sq[i])
        for i in range(len(summed.n))
    ]
    return sorted(keyed, key=lambda row: row[:2])


def test_an_experiment_analysed_on_spark_equals_the_service_analysis(runtime, spark, tmp_path):
    start(runtime)
    population(runtime, 60, np.random.default_rng(11))
    at = T0 + timedelta(days=3650)  # after every window: each KPI counts
    own = analyse(runtime, "analysis-test", at=at).snapshot()
    folder = tmp_path / "export"
    feed.for_analysis(runtime).export_parquet(folder)
    theirs = analyse(runtime, "analysis-test", at=at, elog=SparkLog(spark, folder)).snapshot()
    assert_close(theirs, own)
    # Arms are drawn by the hash of a random pseudonym: the 60 users split unevenly from run to run.
    assert sum(r["users"] for r in own["results"]) == 60 and min(r["users"] for r in own["results"]) >= 10


def assert_close(got, expected, path="snapshot"):
    if isinstance(expected, dict):
        assert isinstance(got, dict) and got.keys() == expected.keys(), path
        for key, value in expected.items():
            assert_close(got[key], value, f"{path}.{key}")
    elif isinstance(expected, list | tuple):
        assert isinstance(got, list | tuple) and len(got) == len(expected), path
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert_close(g, e, f"{path}[{i}]")
    elif isinstance(expected, float) and not isinstance(expected, bool):
        assert isinstance(got, float) and math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-9), path
    else:
        assert got == expected, path
