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

from service.analytics.log import COVARIATES, EventLog, epoch_s
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
class UnitArrays:
    """A KPI's units as arrays for fast analysis, in subject order.

    ``arm`` indexes ``arms``; ``value`` is NaN where the unit does not count; ``covariates``
    is a one-hot matrix with one column per level of each covariate except its first level
    in sorted order (missing, if any, sorts first), named in ``covariate_names`` as
    ``role=admin``, ``plan=NULL``.
    """

    arms: tuple[str, ...]
    subjects: tuple[str, ...]
    arm: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    covariate_names: tuple[str, ...]
    covariates: npt.NDArray[np.float64]

    @property
    def counted(self) -> npt.NDArray[np.bool_]:
        """True for the units that count (value not NaN)."""
        return ~np.isnan(self.value)


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


def _unit_rows(log: EventLog, kpi: Kpi, experiment: str, now: datetime, closed_only: bool) -> list[tuple[Any, ...]]:
    _experiment(experiment)
    epoch_s(now, "now")
    statement = (
        "SELECT k.arm, k.subject, CAST(k.value AS DOUBLE), CAST(k.window_closed AS BOOLEAN),"
        " s.role, s.industry, s.plan, s.signup_channel\n"
        f"FROM (\n{kpi.sql}\n) k\nLEFT JOIN subjects s ON s.subject = k.subject\n"
        "WHERE k.experiment = ?" + (" AND k.window_closed" if closed_only else "") + "\nORDER BY k.subject"
    )
    return log.query_at(now, statement, [experiment])


def units(log: EventLog, kpi: Kpi, experiment: str, *, now: datetime, closed_only: bool = False) -> list[Unit]:
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


def arm_counts(log: EventLog, experiment: str, *, now: datetime | None = None) -> dict[str, int]:
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


def unit_arrays(
    log: EventLog,
    kpi: Kpi,
    experiment: str,
    *,
    now: datetime,
    closed_only: bool = False,
    arms: Sequence[str] | None = None,
) -> UnitArrays:
    """Return the KPI's units as arrays (see :class:`UnitArrays`); ``arms`` fixes the arm order (sorted otherwise).

    The rows come back from DuckDB as numpy columns and are coded with numpy: at 100,000 units a
    row-by-row path took about 0.6 s per KPI, mostly building Python tuples.
    """
    _experiment(experiment)
    missing = "\x00"  # a missing covariate sorts before every level, as None sorts first
    statement = (
        "SELECT k.arm, k.subject, CAST(k.value AS DOUBLE) AS value, "
        + ", ".join(f"COALESCE(s.{c}, '{missing}') AS {c}" for c in COVARIATES)
        + f"\nFROM (\n{kpi.sql}\n) k\nLEFT JOIN subjects s ON s.subject = k.subject\n"
        "WHERE k.experiment = ?" + (" AND k.window_closed" if closed_only else "") + "\nORDER BY k.subject"
    )
    columns = log.query_numpy_at(now, statement, [experiment])
    count = len(columns["subject"])
    found, arm_codes = np.unique(columns["arm"].astype(str), return_inverse=True) if count else (np.array([]), None)
    arm_names = tuple(arms) if arms is not None else tuple(str(a) for a in found)
    unknown = set(found.tolist()) - set(arm_names)
    if unknown:
        raise InvalidInput("arms", f"units were exposed to arms not listed: {', '.join(sorted(unknown))}")
    remap = np.array([arm_names.index(str(a)) for a in found], dtype=np.int64)
    names: list[str] = []
    blocks: list[npt.NDArray[np.float64]] = []
    for covariate in COVARIATES:
        levels, codes = np.unique(columns[covariate].astype(str), return_inverse=True)
        # One level per covariate is left out (the first), so the columns are not collinear with an intercept.
        blocks.append((codes[:, None] == np.arange(1, len(levels))[None, :]).astype(np.float64))
        names.extend(f"{covariate}={'NULL' if level == missing else level}" for level in levels[1:])
    value = np.ma.filled(np.ma.asarray(columns["value"], dtype=np.float64), np.nan)
    return UnitArrays(
        arms=arm_names,
        subjects=tuple(columns["subject"].tolist()),
        arm=remap[arm_codes] if count else np.zeros(0, dtype=np.int64),
        value=value.reshape(count),
        covariate_names=tuple(names),
        covariates=np.hstack(blocks) if blocks else np.zeros((count, 0)),
    )
