"""The KPI files parse, stay portable, and compute exactly what their definitions say.

Small hand-built worlds pin the window edges; a seeded random world of 500 users is
checked unit by unit against a plain-Python reading of the definitions (the oracle
below), which works on datetimes and shares nothing with the SQL.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from service.analytics.kpis import KPI_DIR, Kpi, arm_counts, parse_kpi, read_kpi, read_kpis, units
from service.analytics.kpis import cells as kpi_cells
from service.analytics.log import EventLog, EventRow, ExposureRow, SubjectRow, open_log
from service.errors import InvalidInput, SyntaxProblem
from tests.paths import ROOT

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
EXP = "onboarding-order"
KPIS = {"activation", "time_to_first_value", "conversion", "retention_7d", "retention_30d"}


@pytest.fixture(scope="module")
def kpis() -> dict[str, Kpi]:
    return read_kpis(ROOT / "queries" / "kpi")


@pytest.fixture
def log():
    with open_log(None) as opened:
        yield opened


_counter = iter(range(10**9))


def ev(subject: str, kind: str, recorded: datetime, *, feature: str | None = None, occurred: datetime | None = None):
    return EventRow(f"ev{next(_counter)}", subject, kind, occurred or recorded, recorded, feature=feature)


def values(log: EventLog, kpi: Kpi, *, now: datetime, closed_only: bool = False) -> dict[str, float | None]:
    return {u.subject: u.value for u in units(log, kpi, EXP, now=now, closed_only=closed_only)}


# -- the files -----------------------------------------------------------------------


def test_every_shipped_kpi_parses(kpis):
    assert set(kpis) == KPIS
    assert KPI_DIR == ROOT / "queries" / "kpi"
    expected = {
        "activation": ("share", True, 14),
        "conversion": ("share", True, 30),
        "time_to_first_value": ("hours", False, 30),
        "retention_7d": ("share", True, 14),
        "retention_30d": ("share", True, 60),
    }
    for name, kpi in kpis.items():
        assert kpi.name == name
        assert (kpi.unit, kpi.higher_is_better, kpi.window_days) == expected[name]
        assert kpi.measures.endswith(".")
        code = "\n".join(line for line in kpi.sql.splitlines() if not line.startswith("--"))
        assert code.lstrip().startswith("SELECT\n")
        assert "-- kpi:" not in kpi.sql  # the header is parsed, not carried


FORBIDDEN = [
    r"date_diff",
    r"datediff",
    r"epoch\s*\(",
    r"\binterval\b",
    r"\bqualify\b",
    r"\bfilter\s*\(",
    r"::",
    r"\$",
    r"\?",
    r"\bdate_(add|sub|part|trunc)\b",
    r"\bstrftime\b",
    r"\bto_timestamp\b",
]


@pytest.mark.parametrize("name", sorted(KPIS))
def test_the_sql_uses_no_dialect_feature(name):
    text = (ROOT / "queries" / "kpi" / f"{name}.sql").read_text()
    code = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
    for token in FORBIDDEN:
        assert not re.search(token, code, flags=re.IGNORECASE), f"{name}.sql uses {token}"
    assert ";" not in code


GOOD = """-- kpi: sample
-- measures: Something.
-- unit: share
-- higher_is_better: true
-- window_days: 14
SELECT experiment, arm, subject, 1.0 AS value, TRUE AS window_closed FROM exposures
"""


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (GOOD.replace("-- unit: share\n", ""), "lacks unit"),
        (GOOD.replace("-- unit: share", "-- units: share"), "unknown header key 'units'"),
        (GOOD.replace("-- unit: share", "-- unit: dollars"), "'dollars' is not one of"),
        (GOOD.replace("true", "yes"), "neither true nor false"),
        (GOOD.replace("14", "two weeks"), "not a whole number"),
        (GOOD.replace("14", "0"), "not a whole number"),
        (GOOD.replace("-- kpi: sample", "-- kpi: other"), "not the file's name"),
        (GOOD.replace("-- measures: Something.", "-- measures:"), "empty"),
        (GOOD + "-- kpi: sample\n", None),  # after the header: a plain comment
        (GOOD.replace("-- window_days: 14", "-- window_days: 14\n-- window_days: 14"), "given twice"),
        (GOOD.split("SELECT")[0], "no SELECT"),
        (GOOD.replace("SELECT", "DELETE FROM events; SELECT"), "no SELECT"),
        (GOOD.replace("FROM exposures", "FROM exposures WHERE bucket = ?"), "? parameters"),
        (GOOD.replace("1.0 AS value", "date_diff('day', 1, 2) AS value"), "date_diff"),
        (GOOD.replace("1.0 AS value", "1::DOUBLE AS value"), ":: casts"),
        (GOOD.replace("FROM exposures", "FROM exposures; SELECT 1"), "more than one statement"),
        (GOOD.replace("FROM exposures", "FROM exposures QUALIFY 1 = 1"), "QUALIFY"),
    ],
)
def test_a_broken_file_is_refused_naming_it(tmp_path, text, words):
    path = tmp_path / "sample.sql"
    path.write_text(text)
    if words is None:
        assert read_kpi(path).name == "sample"
        return
    with pytest.raises(SyntaxProblem) as raised:
        read_kpis(tmp_path)
    assert raised.value.source == str(path)
    assert str(path) in raised.value.message
    assert words in raised.value.message


def test_a_trailing_semicolon_and_comments_in_the_body_are_fine(tmp_path, log):
    path = tmp_path / "sample.sql"
    path.write_text(GOOD.rstrip() + " -- every unit\n;\n")
    kpi = read_kpi(path)
    log.add_exposures([ExposureRow(EXP, "a", "p1", 1, T0)])
    assert [u.value for u in units(log, kpi, EXP, now=T0)] == [1.0]


# -- hand-built worlds ------------------------------------------------------------------


def test_activation_counts_from_the_exposure_for_14_days(log, kpis):
    exposed = T0 + 2 * DAY
    subjects = ["before", "at", "inside", "last-second", "at-14-days", "none", "other-type"]
    log.add_subjects([SubjectRow(s, T0) for s in subjects])
    log.add_exposures([ExposureRow(EXP, "control", s, 1, exposed) for s in subjects])
    log.add_events(
        [
            ev("before", "ACTIVATED", exposed - SECOND),
            ev("at", "ACTIVATED", exposed),
            ev("inside", "ACTIVATED", exposed + 3 * DAY, occurred=exposed - 30 * DAY),  # the client's claim is ignored
            ev("last-second", "ACTIVATED", exposed + 14 * DAY - SECOND),
            ev("at-14-days", "ACTIVATED", exposed + 14 * DAY),
            ev("other-type", "CONVERTED", exposed + DAY),
        ]
    )
    now = exposed + 20 * DAY
    assert values(log, kpis["activation"], now=now) == {
        "before": 0.0,
        "at": 1.0,
        "inside": 1.0,
        "last-second": 1.0,
        "at-14-days": 0.0,
        "none": 0.0,
        "other-type": 0.0,
    }


def test_closed_only_keeps_the_units_whose_window_has_ended(log, kpis):
    log.add_exposures(
        [
            ExposureRow(EXP, "control", "early", 1, T0),
            ExposureRow(EXP, "treatment", "late", 2, T0 + DAY),
            ExposureRow(EXP, "treatment", "future", 3, T0 + 30 * DAY),
            ExposureRow("another", "treatment", "early", 3, T0),
        ]
    )
    log.add_events([ev("late", "ACTIVATED", T0 + 2 * DAY), ev("late", "ACTIVATED", T0 + 13 * DAY)])
    activation = kpis["activation"]
    now = T0 + 14 * DAY  # early's window has just closed, late's has a day to go
    assert [(u.subject, u.window_closed) for u in units(log, activation, EXP, now=now)] == [
        ("early", True),
        ("late", False),
    ]
    assert values(log, activation, now=now, closed_only=True) == {"early": 0.0}
    assert values(log, activation, now=now - SECOND, closed_only=True) == {}
    assert values(log, activation, now=now + DAY, closed_only=True) == {"early": 0.0, "late": 1.0}
    # As of a moment, what was recorded later does not count.
    assert values(log, activation, now=T0 + DAY + 3600 * SECOND) == {"early": 0.0, "late": 0.0}
    assert arm_counts(log, EXP) == {"control": 1, "treatment": 2}
    assert arm_counts(log, EXP, now=now) == {"control": 1, "treatment": 1}
    assert arm_counts(log, "nothing") == {}


def test_conversion_counts_from_the_exposure_for_30_days(log, kpis):
    exposed = T0
    subjects = ["before", "at", "last-second", "at-30-days"]
    log.add_exposures([ExposureRow(EXP, "a", s, 1, exposed) for s in subjects])
    log.add_events(
        [
            ev("before", "CONVERTED", exposed - SECOND),
            ev("at", "CONVERTED", exposed),
            ev("last-second", "CONVERTED", exposed + 30 * DAY - SECOND),
            ev("at-30-days", "CONVERTED", exposed + 30 * DAY),
        ]
    )
    conversion = kpis["conversion"]
    now = exposed + 31 * DAY
    assert values(log, conversion, now=now) == {"before": 0.0, "at": 1.0, "last-second": 1.0, "at-30-days": 0.0}
    assert values(log, conversion, now=exposed + 30 * DAY - SECOND, closed_only=True) == {}
    assert len(values(log, conversion, now=exposed + 30 * DAY, closed_only=True)) == 4


def test_time_to_first_value_picks_the_first_value_moment(log, kpis):
    registered = T0
    log.set_value_features(["share-report", "invite-team"])
    subjects = ["first", "none", "late", "pre-exposure", "only-other"]
    log.add_subjects([SubjectRow(s, registered) for s in subjects])
    log.add_exposures([ExposureRow(EXP, "a", s, 1, registered + DAY) for s in subjects])
    log.add_events(
        [
            ev("first", "FEATURE_USED", registered + 1 * 3600 * SECOND, feature="export-csv"),  # not a value moment
            ev("first", "FEATURE_USED", registered + 50 * 3600 * SECOND, feature="share-report"),
            ev("first", "FEATURE_USED", registered + 30 * 3600 * SECOND, feature="invite-team"),  # written later
            ev("first", "STEP_COMPLETED", registered + 2 * 3600 * SECOND, feature="share-report"),  # not a use
            ev("late", "FEATURE_USED", registered + 30 * DAY, feature="share-report"),  # past 30 days
            ev("pre-exposure", "FEATURE_USED", registered + 1800 * SECOND, feature="invite-team"),
            ev("only-other", "FEATURE_USED", registered + 3600 * SECOND, feature="export-csv"),
        ]
    )
    ttfv = kpis["time_to_first_value"]
    now = registered + 40 * DAY
    assert values(log, ttfv, now=now) == {
        "first": pytest.approx(30.0),
        "none": None,
        "late": None,
        "pre-exposure": pytest.approx(0.5),
        "only-other": None,
    }
    # Before the invite-team use was recorded, the first value moment known is none.
    assert values(log, ttfv, now=registered + 29 * 3600 * SECOND)["first"] is None
    assert values(log, ttfv, now=registered + 30 * DAY - SECOND, closed_only=True) == {}


@pytest.mark.parametrize(("name", "start", "end"), [("retention_7d", 7, 14), ("retention_30d", 30, 60)])
def test_retention_counts_a_session_in_its_window_after_signup(log, kpis, name, start, end):
    registered = T0
    offsets = {
        "before": start * DAY - SECOND,
        "from": start * DAY,
        "last-second": end * DAY - SECOND,
        "at-end": end * DAY,
    }
    log.add_subjects([SubjectRow(s, registered) for s in [*offsets, "none"]])
    log.add_exposures([ExposureRow(EXP, "a", s, 1, registered) for s in [*offsets, "none", "unregistered"]])
    log.add_events([ev(s, "SESSION_STARTED", registered + offset) for s, offset in offsets.items()])
    log.add_events([ev("none", "FEATURE_USED", registered + start * DAY)])
    kpi = kpis[name]
    assert kpi.window_days == end
    assert values(log, kpi, now=registered + end * DAY) == {
        "before": 0.0,
        "from": 1.0,
        "last-second": 1.0,
        "at-end": 0.0,
        "none": 0.0,
        "unregistered": None,
    }
    assert values(log, kpi, now=registered + end * DAY - SECOND, closed_only=True) == {}
    closed = values(log, kpi, now=registered + end * DAY, closed_only=True)
    assert set(closed) == {*offsets, "none"}


def test_an_erased_user_counts_zero_for_events_and_not_at_all_for_signup_kpis(log, kpis):
    log.set_value_features(["share-report"])
    log.add_subjects([SubjectRow("kept", T0), SubjectRow("gone", T0)])
    log.add_exposures([ExposureRow(EXP, "a", s, 1, T0) for s in ("kept", "gone")])
    for s in ("kept", "gone"):
        log.add_events(
            [
                ev(s, "ACTIVATED", T0 + DAY),
                ev(s, "CONVERTED", T0 + DAY),
                ev(s, "FEATURE_USED", T0 + DAY, feature="share-report"),
                ev(s, "SESSION_STARTED", T0 + 8 * DAY),
                ev(s, "SESSION_STARTED", T0 + 31 * DAY),
            ]
        )
    log.erase_subject("gone")
    now = T0 + 61 * DAY
    got = {name: values(log, kpi, now=now) for name, kpi in kpis.items()}
    assert got == {
        "activation": {"kept": 1.0, "gone": 0.0},
        "conversion": {"kept": 1.0, "gone": 0.0},
        "time_to_first_value": {"kept": pytest.approx(24.0), "gone": None},
        "retention_7d": {"kept": 1.0, "gone": None},
        "retention_30d": {"kept": 1.0, "gone": None},
    }
    assert [u.subject for u in units(log, kpis["retention_7d"], EXP, now=now, closed_only=True)] == ["kept"]


def test_units_carry_the_signup_covariates(log, kpis):
    log.add_subjects([SubjectRow("p1", T0, "admin", "saas", "free", "WEB"), SubjectRow("p2", T0, plan="team")])
    log.add_exposures([ExposureRow(EXP, "b", s, 1, T0) for s in ("p1", "p2", "p3")])
    got = units(log, kpis["activation"], EXP, now=T0 + DAY)
    assert [(u.arm, u.subject, u.covariates) for u in got] == [
        ("b", "p1", {"role": "admin", "industry": "saas", "plan": "free", "signup_channel": "WEB"}),
        ("b", "p2", {"role": None, "industry": None, "plan": "team", "signup_channel": None}),
        ("b", "p3", {"role": None, "industry": None, "plan": None, "signup_channel": None}),
    ]
    with pytest.raises(InvalidInput):
        units(log, kpis["activation"], EXP, now=datetime(2025, 3, 1))
    with pytest.raises(InvalidInput):
        units(log, kpis["activation"], "", now=T0)


def test_an_experiment_id_is_a_parameter_never_sql(log, kpis):
    log.add_exposures([ExposureRow(EXP, "a", "p1", 1, T0)])
    assert units(log, kpis["activation"], "x' OR '1' = '1", now=T0) == []


def test_cells_sum_the_counted_units_per_arm_and_covariates(log, kpis):
    log.set_value_features(["share-report"])
    log.add_subjects(
        [
            SubjectRow("p1", T0, "admin", "saas", "free", "WEB"),
            SubjectRow("p2", T0, "analyst", "saas", "team", "WEB"),
            SubjectRow("p3", T0, "admin", None, "free", "WEB"),
            SubjectRow("p4", T0, "analyst", "saas", "team", "WEB"),
        ]
    )
    exposed = [("p1", "t"), ("p2", "c"), ("p3", "t"), ("p4", "c")]
    log.add_exposures([ExposureRow(EXP, arm, s, 1, T0) for s, arm in exposed])
    log.add_events(
        [
            ev("p2", "FEATURE_USED", T0 + 7200 * SECOND, feature="share-report"),
            ev("p4", "FEATURE_USED", T0 + 3600 * SECOND, feature="share-report"),
            ev("p3", "FEATURE_USED", T0 + 3600 * SECOND, feature="share-report"),
        ]
    )
    got = kpi_cells(log, [kpis["time_to_first_value"], kpis["activation"]], EXP, now=T0 + DAY, arms=["c", "t"])
    assert set(got) == {"time_to_first_value", "activation"}
    ttv = got["time_to_first_value"]
    # p1 has not reached value (does not count); p2 and p4 share a cell (2 h and 1 h); p3 is alone.
    assert ttv.arms == ("c", "t")
    order = np.argsort(ttv.arm, kind="stable")
    assert ttv.arm[order].tolist() == [0, 1]
    assert ttv.n[order].tolist() == [2, 1]
    assert ttv.total[order].tolist() == [3.0, 1.0] and ttv.total_sq[order].tolist() == [5.0, 1.0]
    # One level dropped per covariate among the counted units: role (admin) analyst; industry (NULL) saas;
    # plan (free) team; channel has one level only.
    assert ttv.covariate_names == ("role=analyst", "industry=saas", "plan=team")
    np.testing.assert_array_equal(ttv.covariates[order], [[1, 1, 1], [0, 0, 0]])
    activation = got["activation"]  # every unit counts (0 without an activation): three cells
    assert sorted(activation.n.tolist()) == [1, 1, 2] and activation.total.sum() == 0.0
    assert kpi_cells(log, [kpis["activation"]], EXP, now=T0 + DAY)["activation"].arms == ("c", "t")
    with pytest.raises(InvalidInput, match="arms"):
        kpi_cells(log, [kpis["activation"]], EXP, now=T0 + DAY, arms=["c"])
    empty = kpi_cells(log, [kpis["activation"]], "nothing", now=T0)["activation"]
    assert empty.arm.shape == (0,) and empty.n.shape == (0,) and empty.covariates.shape[0] == 0
    assert kpi_cells(log, [], EXP, now=T0) == {}


# -- the oracle ---------------------------------------------------------------------------

ROLES = ["admin", "analyst", "engineer", None]
INDUSTRIES = ["saas", "retail", None]
PLANS = ["free", "team", "enterprise"]
CHANNELS = ["WEB", "MOBILE", None]
TYPES = [
    "ACTIVATED",
    "CONVERTED",
    "FEATURE_USED",
    "FEATURE_USED",
    "SESSION_STARTED",
    "SESSION_STARTED",
    "STEP_COMPLETED",
    "STEP_DISMISSED",
    "SUPPORT_CONTACTED",
    "REPORT_EXPORTED",
]
FEATURES = ["f1", "f2", "f3", "f4", "f5"]
VALUE_FEATURES = {"f1", "f3"}


@dataclass
class World:
    subjects: dict[str, SubjectRow] = field(default_factory=dict)
    events: list[EventRow] = field(default_factory=list)
    exposures: list[ExposureRow] = field(default_factory=list)
    erased: set[str] = field(default_factory=set)
    withdrawn: dict[str, list[str]] = field(default_factory=dict)

    def kept_events(self) -> list[EventRow]:
        seen: set[str] = set()
        kept = []
        for e in self.events:
            if e.event in seen or e.subject in self.erased or e.type in self.withdrawn.get(e.subject, []):
                continue
            seen.add(e.event)
            kept.append(e)
        return kept

    def first_exposures(self, experiment: str) -> dict[str, ExposureRow]:
        first: dict[str, ExposureRow] = {}
        for x in self.exposures:
            if x.experiment == experiment and (x.subject not in first or x.exposed_at < first[x.subject].exposed_at):
                first[x.subject] = x
        return first


def random_world(seed: int, size: int = 500) -> World:
    rng = random.Random(seed)
    world = World()
    for i in range(size):
        subject = f"ps-{i:04d}"
        registered = T0 - 70 * DAY + timedelta(seconds=rng.randrange(0, 100 * 86400))
        if rng.random() < 0.95:  # the rest are exposed before their signup reached the log
            covariates = (rng.choice(ROLES), rng.choice(INDUSTRIES), rng.choice(PLANS), rng.choice(CHANNELS))
            world.subjects[subject] = SubjectRow(subject, registered, *covariates)
        experiments = [e for e, p in (("exp-a", 0.85), ("exp-b", 0.3)) if rng.random() < p]
        exposures = []
        for experiment in experiments:
            for _ in range(rng.choice([1, 1, 1, 2, 3])):  # later decisions repeat the exposure
                exposed = registered + timedelta(seconds=rng.choice([0, rng.randrange(0, 12 * 86400)]))
                exposures.append(exposed)
                world.exposures.append(
                    ExposureRow(experiment, rng.choice(["control", "treatment", "t2"]), subject, i, exposed)
                )
        anchors = [registered + k * DAY for k in (0, 7, 14, 30, 60)] + [
            x + k * DAY for x in exposures for k in (0, 14, 30)
        ]
        for _ in range(rng.randrange(0, 16)):
            if anchors and rng.random() < 0.35:  # on a window's edge, or a second either side
                recorded = rng.choice(anchors) + rng.choice([-1, 0, 0, 1]) * SECOND
            else:
                recorded = registered + timedelta(seconds=rng.randrange(-86400, 75 * 86400))
            kind = rng.choice(TYPES)
            occurred = recorded - timedelta(seconds=rng.randrange(-3600, 40 * 86400))  # a client's claim
            feature = rng.choice(FEATURES) if kind == "FEATURE_USED" or rng.random() < 0.1 else None
            world.events.append(EventRow(f"ev-{len(world.events)}", subject, kind, occurred, recorded, feature=feature))
        if world.events and rng.random() < 0.05:
            world.events.append(world.events[rng.randrange(len(world.events))])  # a replayed append
    names = sorted(world.subjects)
    world.erased = set(rng.sample(names, 15))
    world.withdrawn = {s: ["FEATURE_USED", "SESSION_STARTED"] for s in rng.sample(names, 15)}
    return world


def load(world: World) -> EventLog:
    log = open_log(None)
    log.set_value_features(sorted(VALUE_FEATURES))
    rows = list(world.subjects.values())
    log.add_subjects(rows[: len(rows) // 2])
    log.add_subjects(rows[len(rows) // 2 :])
    half = len(world.events) // 2
    log.add_events(world.events[:half])
    log.add_events(world.events[half - 20 :])  # an overlap, as after a crash
    for i in range(0, len(world.exposures), 97):
        log.add_exposures(world.exposures[i : i + 97])
    for subject in world.erased:
        log.erase_subject(subject)
    for subject, types in world.withdrawn.items():
        log.remove_subject_events(subject, types)
    return log


def oracle(world: World, kpi: str, experiment: str, now: datetime) -> dict[str, tuple[str, float | None, bool]]:
    """Each unit's (arm, value, window closed), read from the definitions in queries/kpi/README.md."""
    events: dict[str, list[EventRow]] = {}
    for e in world.kept_events():
        if e.recorded_at <= now:
            events.setdefault(e.subject, []).append(e)
    result = {}
    for subject, x in world.first_exposures(experiment).items():
        if x.exposed_at > now:
            continue
        mine = events.get(subject, [])
        signup = world.subjects.get(subject) if subject not in world.erased else None
        value: float | None
        if kpi in ("activation", "conversion"):
            kind, days = ("ACTIVATED", 14) if kpi == "activation" else ("CONVERTED", 30)
            end = x.exposed_at + days * DAY
            value = float(any(e.type == kind and x.exposed_at <= e.recorded_at < end for e in mine))
            closed = now >= end
        elif signup is None:
            value, closed = None, False
        elif kpi == "time_to_first_value":
            start, end = signup.registered_at, signup.registered_at + 30 * DAY
            uses = [
                e.recorded_at
                for e in mine
                if e.type == "FEATURE_USED" and e.feature in VALUE_FEATURES and start <= e.recorded_at < end
            ]
            value = (min(uses) - start).total_seconds() / 3600 if uses else None
            closed = now >= end
        else:
            first, last = (7, 14) if kpi == "retention_7d" else (30, 60)
            start, end = signup.registered_at + first * DAY, signup.registered_at + last * DAY
            value = float(any(e.type == "SESSION_STARTED" and start <= e.recorded_at < end for e in mine))
            closed = now >= signup.registered_at + last * DAY
        result[subject] = (x.arm, value, closed)
    return result


@pytest.fixture(scope="module")
def world_and_log():
    world = random_world(20250301)
    log = load(world)
    yield world, log
    log.close()


@pytest.mark.parametrize("name", sorted(KPIS))
@pytest.mark.parametrize("experiment", ["exp-a", "exp-b"])
def test_every_kpi_agrees_with_the_oracle_on_a_random_world(world_and_log, kpis, name, experiment):
    world, log = world_and_log
    checked = 0
    signup = world.subjects[min(world.subjects)].registered_at
    exposed = min(x.exposed_at for x in world.first_exposures(experiment).values())
    edges = [signup + 14 * DAY, signup + 60 * DAY, exposed, exposed + 30 * DAY]  # windows that end at now exactly
    for now in (T0 - 20 * DAY, T0 + 5 * DAY, T0 + 90 * DAY, *edges):
        expected = oracle(world, name, experiment, now)
        got = {u.subject: (u.arm, u.value, u.window_closed) for u in units(log, kpis[name], experiment, now=now)}
        assert got.keys() == expected.keys()
        for subject, (arm, value, closed) in expected.items():
            assert got[subject] == (arm, pytest.approx(value, abs=1e-9), closed), subject
        closed_units = units(log, kpis[name], experiment, now=now, closed_only=True)
        assert [u.subject for u in closed_units] == sorted(s for s, (_, _, c) in expected.items() if c)
        checked += len(expected)
    assert checked > 150  # the world is not trivially empty for this experiment


@pytest.mark.parametrize("experiment", ["exp-a", "exp-b"])
def test_the_cells_sum_to_what_the_units_sum_to(world_and_log, kpis, experiment):
    """All KPIs in one statement, summed per cell, give each arm's count, sums and covariate sums exactly as the
    units read one KPI at a time and summed in Python do."""
    _, log = world_and_log
    now = T0 + 5 * DAY
    closed = {name: replace(kpi, closed_windows_only=name == "retention_7d") for name, kpi in kpis.items()}
    got = kpi_cells(log, list(closed.values()), experiment, now=now)
    for name, kpi in closed.items():
        summed = got[name]
        counted = [
            u for u in units(log, kpi, experiment, now=now, closed_only=kpi.closed_windows_only) if u.value is not None
        ]
        assert counted, name
        for index, arm in enumerate(summed.arms):
            mine = [u for u in counted if u.arm == arm]
            own = summed.of_arm(index)
            assert int(own.n.sum()) == len(mine), (name, arm)
            assert own.total.sum() == pytest.approx(sum(u.value for u in mine), abs=1e-6)
            assert own.total_sq.sum() == pytest.approx(sum(u.value**2 for u in mine), rel=1e-12)
            for column, label in enumerate(summed.covariate_names):
                covariate, level = label.split("=", 1)
                having = [u for u in mine if (getattr(u, covariate) or "NULL") == level]
                assert own.n @ own.covariates[:, column] == len(having), (name, arm, label)
                assert own.total @ own.covariates[:, column] == pytest.approx(sum(u.value for u in having), abs=1e-6)


def test_the_random_world_reaches_every_case(world_and_log, kpis):
    """The oracle comparison means something: both values, NULLs and both window states occur."""
    world, log = world_and_log
    now = T0 + 5 * DAY
    for name in KPIS:
        got = oracle(world, name, "exp-a", now)
        values_seen = {v for _, v, _ in got.values()}
        assert {c for _, _, c in got.values()} == {True, False}, name
        if name == "time_to_first_value":
            assert None in values_seen and len(values_seen) > 10
        else:
            assert {0.0, 1.0} <= values_seen, name
    assert log.counts()["subjects"] == len(world.subjects) - len(world.erased)


def test_a_kpi_may_count_only_closed_windows(tmp_path):
    text = (KPI_DIR / "activation.sql").read_text()
    closed = text.replace("-- window_days: 14\n", "-- window_days: 14\n-- windows: closed\n", 1)
    assert closed != text
    assert parse_kpi(closed, "closed.sql", "activation").closed_windows_only
    assert not parse_kpi(text, "activation.sql", "activation").closed_windows_only
    with pytest.raises(SyntaxProblem, match="neither open nor closed"):
        parse_kpi(closed.replace("windows: closed", "windows: sometimes"), "bad.sql", "activation")
