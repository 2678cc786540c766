"""The five KPIs of one experiment on an analytics log exported as Parquet: DuckDB and Spark (``local[2]``) on the
same files, and the service's own DuckDB log, timed side by side, with their cells compared.

    .venv/bin/python -m bench.experiments.spark_kpis --log /tmp/wf-bench-store.analytics.duckdb \\
        --experiment bench-console --out bench/experiments/results/spark-kpis.json

``--log`` is an analytics log file (``<store>.analytics.duckdb``), opened by this process alone; the
export goes to a temporary folder. Each engine runs ``kpis.cells`` (every KPI in one statement,
grouped by arm and covariate cell: what ``experimentResults`` runs) ``--repeats`` times after
one first run; the Spark session's start is timed apart.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench import lib
from service.analytics.kpis import KPI_DIR, cells, read_kpis
from service.analytics.log import open_log, open_parquet


def timed(run, repeats: int) -> dict:
    started = time.perf_counter()
    first = run()
    first_s = time.perf_counter() - started
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return {"first_s": first_s, "median_s": statistics.median(times), "times_s": times, "result": first}


def same_cells(a: dict, b: dict) -> bool:
    def rows(c):
        return sorted(
            (int(c.arm[i]), tuple(c.covariates[i]), int(c.n[i]), c.total[i], c.total_sq[i]) for i in range(len(c.n))
        )

    for name in a:
        x, y = rows(a[name]), rows(b[name])
        if [r[:3] for r in x] != [r[:3] for r in y]:
            return False
        if not np.allclose([r[3:] for r in x], [r[3:] for r in y], rtol=1e-12, atol=1e-9):
            return False
    return a.keys() == b.keys()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/experiments/results/spark-kpis.json"))
    args = parser.parse_args(argv)
    from service.analytics.spark import SparkLog, local_session

    kpis = list(read_kpis(KPI_DIR).values())
    now = datetime.now(UTC)
    folder = Path(tempfile.mkdtemp(prefix="wf-spark-kpis-")) / "export"
    out: dict = {}
    try:
        with open_log(args.log) as live:
            arms = sorted(
                str(a)
                for (a,) in live.query("SELECT DISTINCT arm FROM exposures WHERE experiment = ?", [args.experiment])
            )
            started = time.perf_counter()
            counts = live.export_parquet(folder)
            out["export"] = {"seconds": time.perf_counter() - started, "rows": counts, "bytes": lib.dir_bytes(folder)}
            engines = {
                "service log (DuckDB file)": timed(
                    lambda: cells(live, kpis, args.experiment, now=now, arms=arms), args.repeats
                )
            }
        with open_parquet(folder) as duck:
            engines["DuckDB over the export"] = timed(
                lambda: cells(duck, kpis, args.experiment, now=now, arms=arms), args.repeats
            )
        started = time.perf_counter()
        session = local_session(2, memory="4g")
        on_spark = SparkLog(session, folder)
        out["spark_session_start_s"] = time.perf_counter() - started
        engines["Spark local[2] over the export"] = timed(
            lambda: cells(on_spark, kpis, args.experiment, now=now, arms=arms), args.repeats
        )
        session.stop()
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)
    reference = engines["service log (DuckDB file)"]["result"]
    out["engines"] = {
        name: {k: v for k, v in got.items() if k != "result"}
        | {"same_cells_as_the_service_log": same_cells(reference, got["result"])}
        for name, got in engines.items()
    }
    lines = [
        f"Export: {out['export']['seconds']:.1f} s, {out['export']['bytes'] / 1e6:.0f} MB of Parquet "
        f"({', '.join(f'{n:,} {t}' for t, n in counts.items())}); Spark session start {out['spark_session_start_s']:.1f} s.",
        "",
        "| engine | first run s | median of the next s | same cells as the service log |",
        "|---|---|---|---|",
    ]
    for name, got in out["engines"].items():
        lines.append(
            f"| {name} | {got['first_s']:.2f} | {got['median_s']:.2f} | {'yes' if got['same_cells_as_the_service_log'] else 'NO'} |"
        )
    text = "\n".join(lines)
    print(text)
    lib.write_result(
        args.out.parent, args.out.stem, {"experiment": args.experiment, "log": str(args.log), **out}, markdown=text
    )


if __name__ == "__main__":
    main()
