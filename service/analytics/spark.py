"""The KPI and experiment SQL on Spark, over an analytics log exported as Parquet.

When the events outgrow one machine, the same statements that DuckDB runs on the service's log
(``queries/kpi/*.sql``, and the service's own statements around them in
:mod:`service.analytics.kpis` and :mod:`service.experiments.analysis`) run unchanged on Spark SQL
over the Parquet files of :meth:`~service.analytics.log.EventLog.export_parquet`: the files of one
export, or the same tables written by a pipeline, on any file system Spark reads. The KPI SQL is
kept portable for this (``queries/kpi/README.md``): no date functions, no dialect casts, and
values only as ``?`` parameters, which Spark binds itself (``SparkSession.sql(..., args=[...])``).

A :class:`SparkLog` is an :class:`~service.analytics.log.AnalyticsReader`: pass it where the
service passes its own log (``analyse(runtime, experiment, elog=SparkLog(...))``). pyspark and a
Java runtime are needed only here; the service imports this module only when asked to.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from service.analytics.log import DATA_TABLES, epoch_s, read_manifest

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# Spark's column types as numpy's (what DuckDB's fetchnumpy gives for the same columns); any other is an object array.
_NUMPY = {"double": np.float64, "float": np.float64, "bigint": np.int64, "int": np.int64, "boolean": np.bool_}


def local_session(cores: int = 2, *, memory: str = "1g") -> SparkSession:
    """A Spark session on this machine (``local[cores]``), set for small analytic jobs: no web UI, UTC, and few
    shuffle partitions (the default 200 is for clusters). A cluster's session is made by its own configuration."""
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master(f"local[{cores}]")
        .appName("wayfinder-analytics")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(max(2, cores * 2)))
        .config("spark.driver.memory", memory)
        .getOrCreate()
    )


class SparkLog:
    """The analytics log's read side over an export (``folder``), on a Spark session of its own.

    Each data table is a temporary view over its Parquet file; ``analysis_clock`` is a one-row view
    set before each statement. The session is a new one on ``spark``'s context, so its views are its own.
    """

    def __init__(self, spark: SparkSession, folder: Path) -> None:
        folder = Path(folder)
        self.manifest = read_manifest(folder)
        self._spark = spark.newSession()
        self._lock = threading.Lock()  # one statement and its clock at a time, as EventLog does
        for table in DATA_TABLES:
            self._spark.read.parquet(str(folder / f"{table}.parquet")).createOrReplaceTempView(table)

    def flush(self) -> None:
        """Nothing is queued: an export is read as it was written."""

    def set_value_features(self, features: Iterable[str]) -> None:
        """Replace the value-moment features that the KPI SQL reads (the catalog's, copied in by the analysis)."""
        listed = sorted({str(f) for f in features})
        self._spark.createDataFrame([(f,) for f in listed], "feature STRING").createOrReplaceTempView("value_features")

    def query(self, statement: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return [tuple(row) for row in self._frame(statement, params).collect()]

    def query_at(self, now: datetime, statement: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            self._set_clock(now)
            return [tuple(row) for row in self._frame(statement, params).collect()]

    def query_numpy_at(self, now: datetime, statement: str, params: Sequence[object] = ()) -> dict[str, np.ndarray]:
        """As :meth:`query_at`, one numpy array per column (masked where a value is NULL), as DuckDB returns them."""
        with self._lock:
            self._set_clock(now)
            frame = self._frame(statement, params)
            rows = frame.collect()
        columns: dict[str, np.ndarray] = {}
        for i, (name, kind) in enumerate(frame.dtypes):
            values = [row[i] for row in rows]
            dtype = _NUMPY.get(kind, object)
            missing = [v is None for v in values]
            if any(missing):
                filled = [0 if v is None and dtype is not object else v for v in values]
                columns[name] = np.ma.masked_array(np.array(filled, dtype=dtype), mask=missing)
            else:
                columns[name] = np.array(values, dtype=dtype)
        return columns

    def _set_clock(self, now: datetime) -> None:
        now_s = epoch_s(now, "now")
        self._spark.createDataFrame([(now_s,)], "now_s DOUBLE").createOrReplaceTempView("analysis_clock")

    def _frame(self, statement: str, params: Sequence[object]) -> DataFrame:
        return self._spark.sql(statement, args=list(params) or None)
