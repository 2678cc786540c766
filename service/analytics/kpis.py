"""Experiment KPIs: read their definitions from ``queries/kpi/*.sql`` and compute per-unit values on the analytics log.

A KPI file is a header of ``-- key: value`` lines (``kpi``, ``measures``, ``unit``,
``higher_is_better``, ``window_days``, and optionally ``windows: closed`` to count only
units whose window has ended; by default ``open``, a unit counts with what has arrived)
followed by one SELECT in a portable SQL subset
(DuckDB and Spark SQL run it unchanged). The SELECT reads the log's tables and its
one-row ``analysis_clock`` and returns one row per exposed unit: ``experiment, arm,
subject, value, window_closed``. The runner sets the clock, wraps the SELECT to join
the unit's covariates and keep one experiment, and runs both under the log's lock.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.analytics.log import COVARIATES, AnalyticsReader, epoch_s
from service.errors import InvalidInput, SyntaxProblem

KPI_DIR = Path(__file__).resolve().parents[2] / "queries" / "kpi"
HEADER_KEYS = ("kpi", "measures", "unit", "higher_is_better", "window_days")
OPTIONAL_KEYS = ("windows",)  # open (the default: a unit whose window is still open counts with what arrived) or closed
KPI_UNITS = ("share", "hours")

# Dialect features the KPI SQL must not use, so that other engines run it unchanged; `?`, `$`
# and `;` would also break the runner, which adds its own parameter and wraps the SELECT.
NON_PORTABLE = {
    r"\bdate_?diff\b": "date_diff",
    r"\bdate_?(add|sub|part|trunc)\b": "date functions",
    r"\bepoch\w*\s*\(": "epoch()",
    r"\binterval\b": "interval literals",
    r"\bqualify\b": "QUALIFY",
    r"\bfilter\s*\(": "FILTER clauses",
    r"::": ":: casts",
    r"\$": "$ parameters",
    r"\?": "? parameters",
    r";": "more than one statement",
}

_HEADER_LINE = re.compile(r"^--\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*(.*?)\s*$")
_COMMENT = re.compile(r"--[^\n]*")


@dataclass(frozen=True)
class Kpi:
    """One KPI: its name (the file stem), what it measures, its unit, direction, window length and SELECT."""

    name: str
    measures: str
    unit: str
    higher_is_better: bool
    window_days: int
    sql: str
    closed_windows_only: bool = False  # header `windows: closed`: only units whose window has ended count


@dataclass(frozen=True)
class Unit:
    """One exposed unit's KPI value (None: the unit does not count) and its signup covariates (None when absent)."""

    arm: str
    subject: str
    value: float | None
    window_closed: bool
    role: str | None
    industry: str | None
    plan: str | None
    signup_channel: str | None

    @property
    def covariates(self) -> dict[str, str | None]:
        return {name: getattr(self, name) for name in COVARIATES}


@dataclass(frozen=True)
class KpiCells:
    """A KPI's counted units (value not NULL) summed per cell: one cell per arm and combination of covariate levels.

    ``arm`` indexes ``arms``; ``n``, ``total`` and ``total_sq`` are each cell's unit count, sum
    and sum of squares of the value; ``covariates`` is the cells' one-hot rows, one column per
    level of each covariate except its first level in sorted order (missing, if any, sorts
    first), named in ``covariate_names`` as ``role=admin``, ``plan=NULL``. Every unit of a cell
    has the same covariate row, so the per-arm sums a regression on the covariates needs
    (``sum x``, ``sum x x^T``, ``sum x y``) follow from the cells exactly.
    """

    kpi: str
    arms: tuple[str, ...]
    arm: npt.NDArray[np.int64]
    n: npt.NDArray[np.int64]
    total: npt.NDArray[np.float64]
    total_sq: npt.NDArray[np.float64]
    covariate_names: tuple[str, ...]
    covariates: npt.NDArray[np.float64]

    def of_arm(self, index: int) -> KpiCells:
        """The cells of one arm (by its index in ``arms``), with the same covariate columns."""
        keep = self.arm == index
        return KpiCells(
            self.kpi,
            self.arms,
            self.arm[keep],
            self.n[keep],
            self.total[keep],
            self.total_sq[keep],
            self.covariate_names,
            self.covariates[keep],
        )


def parse_kpi(text: str, source: str, name: str) -> Kpi:
    """Parse one KPI file's text; ``name`` is the file stem the header's ``kpi`` must equal."""
    lines = text.splitlines()
    header: dict[str, tuple[str, int]] = {}
    body_start = len(lines)
    for number, line in enumerate(lines, start=1):
        match = _HEADER_LINE.match(line.strip())
        if not match:
            body_start = number - 1
            break
        key, value = match.group(1), match.group(2)
        if key not in HEADER_KEYS + OPTIONAL_KEYS:
            raise SyntaxProblem(
                source,
                f"unknown header key {key!r}; the keys are {', '.join(HEADER_KEYS + OPTIONAL_KEYS)}",
                line=number,
            )
        if key in header:
            raise SyntaxProblem(source, f"header key {key!r} given twice", line=number)
        header[key] = (value, number)
    missing = [key for key in HEADER_KEYS if key not in header]
    if missing:
        raise SyntaxProblem(source, f"the header lacks {', '.join(missing)} (as `-- key: value` lines at the top)")

    def bad(key: str, reason: str) -> SyntaxProblem:
        return SyntaxProblem(source, f"header key {key!r}: {reason}", line=header[key][1])

    if header["kpi"][0] != name:
        raise bad("kpi", f"{header['kpi'][0]!r} is not the file's name {name!r}")
    if not header["measures"][0]:
        raise bad("measures", "empty; say in one sentence what the KPI measures")
    unit = header["unit"][0]
    if unit not in KPI_UNITS:
        raise bad("unit", f"{unit!r} is not one of {', '.join(KPI_UNITS)}")
    higher = header["higher_is_better"][0].lower()
    if higher not in ("true", "false"):
        raise bad("higher_is_better", f"{header['higher_is_better'][0]!r} is neither true nor false")
    window = header["window_days"][0]
    if not re.fullmatch(r"[1-9][0-9]{0,4}", window):
        raise bad("window_days", f"{window!r} is not a whole number of days from 1 to 99999")

    windows = header.get("windows", ("open", 0))[0]
    if windows not in ("open", "closed"):
        raise bad("windows", f"{windows!r} is neither open nor closed")

    body = "\n".join(lines[body_start:]).strip()
    body = re.sub(r";\s*\Z", "", body).rstrip()
    code = _COMMENT.sub("", body)
    if not re.match(r"\s*select\b", code, flags=re.IGNORECASE):
        raise SyntaxProblem(source, "no SELECT after the header", line=body_start + 1)
    for pattern, what in NON_PORTABLE.items():
        found = re.search(pattern, code, flags=re.IGNORECASE)
        if found:
            raise SyntaxProblem(source, f"{what} ({found.group(0).strip()!r}) is not in the portable SQL subset")
    return Kpi(
        name=name,
        measures=header["measures"][0],
        unit=unit,
        higher_is_better=higher == "true",
        window_days=int(window),
        sql=body,
        closed_windows_only=windows == "closed",
    )


def read_kpi(path: Path) -> Kpi:
    """Read one KPI file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SyntaxProblem(str(path), f"cannot read the KPI file: {e}") from e
    return parse_kpi(text, str(path), path.stem)


def read_kpis(directory: Path = KPI_DIR) -> dict[str, Kpi]:
    """Read every ``*.sql`` KPI file of ``directory``, by name."""
    return {path.stem: read_kpi(path) for path in sorted(directory.glob("*.sql"))}


def _experiment(experiment: str) -> str:
    if not isinstance(experiment, str) or not experiment:
        raise InvalidInput("experiment", "expected a non-empty experiment ID")
    return experiment


def _unit_rows(
    log: AnalyticsReader, kpi: Kpi, experiment: str, now: datetime, closed_only: bool
) -> list[tuple[Any, ...]]:
    _experiment(experiment)
    epoch_s(now, "now")
    statement = (
        "SELECT k.arm, k.subject, CAST(k.value AS DOUBLE), CAST(k.window_closed AS BOOLEAN),"
        " s.role, s.industry, s.plan, s.signup_channel\n"
        f"FROM (\n{kpi.sql}\n) k\nLEFT JOIN subjects s ON s.subject = k.subject\n"
        "WHERE k.experiment = ?" + (" AND k.window_closed" if closed_only else "") + "\nORDER BY k.subject"
    )
    return log.query_at(now, statement, [experiment])


def units(log: AnalyticsReader, kpi: Kpi, experiment: str, *, now: datetime, closed_only: bool = False) -> list[Unit]:
    """Return the KPI's value for each unit exposed to ``experiment`` as of ``now``, in subject order.

    ``closed_only`` keeps the units whose KPI window has ended by ``now``.
    """
    return [
        Unit(
            arm=arm,
            subject=subject,
            value=None if value is None else float(value),
            window_closed=bool(closed),
            role=role,
            industry=industry,
            plan=plan,
            signup_channel=channel,
        )
        for arm, subject, value, closed, role, industry, plan, channel in _unit_rows(
            log, kpi, experiment, now, closed_only
        )
    ]


def arm_counts(log: AnalyticsReader, experiment: str, *, now: datetime | None = None) -> dict[str, int]:
    """Return the number of units exposed to ``experiment`` per arm (exposed at or before ``now`` when given)."""
    _experiment(experiment)
    if now is None:
        rows = log.query(
            "SELECT arm, count(*) FROM exposures WHERE experiment = ? GROUP BY arm ORDER BY arm", [experiment]
        )
    else:
        rows = log.query(
            "SELECT arm, count(*) FROM exposures WHERE experiment = ? AND exposed_s <= ? GROUP BY arm ORDER BY arm",
            [experiment, epoch_s(now, "now")],
        )
    return {str(arm): int(n) for arm, n in rows}


_MISSING = "\x00"  # a missing covariate's level: it sorts before every level, as None sorts first


def cells(
    log: AnalyticsReader,
    kpis: Sequence[Kpi],
    experiment: str,
    *,
    now: datetime,
    arms: Sequence[str] | None = None,
) -> dict[str, KpiCells]:
    """Return each KPI's counted units summed per arm and covariate cell (see :class:`KpiCells`), by KPI name.

    One statement runs every KPI (their SELECTs side by side under UNION ALL, each grouped by arm
    and the covariates, a KPI whose header says ``windows: closed`` keeping only closed windows),
    so DuckDB plans them together and only a few hundred rows come back, however many units
    there are: at 100,000 units and 2M events the five shipped KPIs took 0.26 s so, against
    0.58 s one by one and 1.2 s more to fetch and code 100,000 rows per KPI.
    ``arms`` fixes the arm order (sorted otherwise); a unit in an arm not listed is refused.
    """
    _experiment(experiment)
    listed = list(kpis)
    if not listed:
        return {}
    covariates = ", ".join(f"COALESCE(s.{c}, '{_MISSING}') AS {c}" for c in COVARIATES)
    parts = [
        f"SELECT {i} AS kpi, k.arm, {covariates}, count(*) AS n, sum(CAST(k.value AS DOUBLE)) AS total,"
        " sum(CAST(k.value AS DOUBLE) * CAST(k.value AS DOUBLE)) AS total_sq\n"
        f"FROM (\n{kpi.sql}\n) k\nLEFT JOIN subjects s ON s.subject = k.subject\n"
        "WHERE k.experiment = ? AND k.value IS NOT NULL"
        + (" AND k.window_closed" if kpi.closed_windows_only else "")
        + "\nGROUP BY k.arm, "
        + ", ".join(f"s.{c}" for c in COVARIATES)
        for i, kpi in enumerate(listed)
    ]
    statement = "\nUNION ALL\n".join(f"SELECT * FROM (\n{part}\n)" for part in parts)
    columns = log.query_numpy_at(now, statement, [experiment] * len(listed))
    which = np.asarray(columns["kpi"], dtype=np.int64)
    found = sorted({str(a) for a in columns["arm"].tolist()})
    arm_names = tuple(arms) if arms is not None else tuple(found)
    unknown = set(found) - set(arm_names)
    if unknown:
        raise InvalidInput("arms", f"units were exposed to arms not listed: {', '.join(sorted(unknown))}")
    arm_index = np.array([arm_names.index(str(a)) for a in columns["arm"].tolist()], dtype=np.int64)
    out: dict[str, KpiCells] = {}
    for i, kpi in enumerate(listed):
        rows = which == i
        names: list[str] = []
        blocks: list[npt.NDArray[np.float64]] = []
        for covariate in COVARIATES:
            levels, codes = np.unique(columns[covariate][rows].astype(str), return_inverse=True)
            # One level per covariate is left out (the first), so the columns are not collinear with an intercept.
            blocks.append((codes.reshape(-1)[:, None] == np.arange(1, len(levels))[None, :]).astype(np.float64))
            names.extend(f"{covariate}={'NULL' if level == _MISSING else level}" for level in levels[1:])
        count = int(rows.sum())
        out[kpi.name] = KpiCells(
            kpi=kpi.name,
            arms=arm_names,
            arm=arm_index[rows],
            n=np.asarray(columns["n"], dtype=np.int64)[rows],
            total=np.asarray(columns["total"], dtype=np.float64)[rows],
            total_sq=np.asarray(columns["total_sq"], dtype=np.float64)[rows],
            covariate_names=tuple(names),
            covariates=np.hstack(blocks) if names else np.zeros((count, 0)),
        )
    return out
