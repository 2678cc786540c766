"""Pacing as policy data: snoozes, cool-downs, frequency caps, quiet hours and session budgets, across channels.

Each test runs real decisions over a real store under a simulated clock, with a policy file that states its
pacing, and reads back what the decision record says was held back and why.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyoxigraph as ox
import pytest

from service.clock import SimulatedClock, use_clock
from service.decisions import decide, users
from service.decisions.rederive import rederive
from service.errors import InvalidInput, SyntaxProblem
from service.knowledge import vocab
from service.knowledge.policies import read_policies

DEMO = "https://w3id.org/wayfinder/demo/"
# The hold-back reasons, the same in both pacings of PACED.
WORDS = """wf:snoozedReason "snoozed on {channel} until {until}" ;
    wf:shownElsewhereReason "shown on {channel}, until {until}" ;
    wf:dismissalCoolDownReason "cool-down after dismissal on {channel}, until {until}" ;
    wf:stepCapReason "{step}: shown {count} times in {window} (at most {max}), until {until}" ;
    wf:userCapReason "{count} prompts in {window} on {channels} (at most {max}), until {until}" ;
    wf:sessionBudgetReason "{count} prompts this session (at most {max})" ;
    wf:quietHoursReason "quiet hours for {channel}, {from} to {to} ({timeZone}), until {until}" ."""
PACED = """
@prefix wf:   <https://w3id.org/wayfinder/ontology#> .
@prefix pol:  <https://w3id.org/wayfinder/policy/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix xsd:  <http://www.w3.org/2001/XMLSchema#> .

pol:paced a wf:Policy ; rdfs:label "Paced"@en .
pol:paced-1.0.0 a wf:PolicyVersion ;
    wf:versionOf pol:paced ; wf:version "1.0.0" ; wf:status "active" ;
    wf:approvedBy "Test team" ; wf:approvedAt "2026-12-01T09:00:00Z"^^xsd:dateTime ;
    wf:pacing pol:test-pacing .
pol:budgeted a wf:Policy ; rdfs:label "Budgeted"@en .
pol:budgeted-1.0.0 a wf:PolicyVersion ;
    wf:versionOf pol:budgeted ; wf:version "1.0.0" ; wf:status "active" ;
    wf:approvedBy "Test team" ; wf:approvedAt "2026-12-01T09:00:00Z"^^xsd:dateTime ;
    wf:pacing pol:budget-pacing .

pol:test-pacing a wf:PacingPolicy ;
    wf:snoozeDuration "PT4H"^^xsd:dayTimeDuration ;
    wf:showCoolDown "PT2H"^^xsd:dayTimeDuration ;
    wf:dismissalCoolDown "PT6H"^^xsd:dayTimeDuration ;
    wf:defaultTimeZone "UTC" ;
    wf:hasFrequencyCap pol:messages-a-day, pol:step-emails-a-week ;
    wf:hasQuietHours pol:nights ;
    WORDS
pol:messages-a-day a wf:FrequencyCap ;
    wf:maxShown 3 ; wf:capWindow "P1D"^^xsd:dayTimeDuration ; wf:capScope wf:PerUser ;
    wf:capChannel wf:Email, wf:Mobile .
pol:step-emails-a-week a wf:FrequencyCap ;
    wf:maxShown 2 ; wf:capWindow "P7D"^^xsd:dayTimeDuration ; wf:capScope wf:PerStep ; wf:capChannel wf:Email .
pol:nights a wf:QuietHours ;
    wf:quietChannel wf:Email, wf:Mobile ;
    wf:quietFrom "21:00:00"^^xsd:time ; wf:quietUntil "08:00:00"^^xsd:time .

pol:budget-pacing a wf:PacingPolicy ;
    wf:snoozeDuration "P1D"^^xsd:dayTimeDuration ;
    wf:sessionBudget 3 ;
    wf:defaultTimeZone "UTC" ;
    WORDS
""".replace("WORDS", WORDS)
START = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)  # 10:00 UTC: outside the quiet hours


@pytest.fixture
def paced(runtime, tmp_path):
    path = tmp_path / "paced.ttl"
    path.write_text(PACED)
    runtime.load([path])
    return runtime


@pytest.fixture
def clock():
    with use_clock(SimulatedClock(START)) as simulated:
        yield simulated


def register(runtime, user: str, **extra) -> None:
    users.register(runtime, users.Registration(id=user, role="analyst", industry="retail", plan="team", **extra))


def decide_for(runtime, user: str, channel: str = "WEB", limit: int = 5, policy: str = "paced"):
    return decide.next_steps(runtime, user, channel=channel, limit=limit, policy_id=policy)


def steps(rec) -> list[str]:
    return [s.step.removeprefix(DEMO) for s in rec.steps]


def event(runtime, user: str, kind: str, step: str | None = None, channel: str | None = None) -> None:
    users.record_events(runtime, [users.EventReport(user, kind, step_id=step, channel=channel)])


def recorded(runtime, decision_id: str) -> dict:
    """What the decision record says of pacing: its wf:heldBack array and wf:pacedLimit, and what it used."""
    record = ox.NamedNode(vocab.DECISION_BASE + decision_id)
    quads = list(runtime.store.quads(subject=record, graph=vocab.AUDIT_GRAPH))
    held = next((json.loads(q.object.value) for q in quads if q.predicate == vocab.HELD_BACK), [])
    limit = next((int(q.object.value) for q in quads if q.predicate == vocab.PACED_LIMIT), None)
    used = [q.object.value for q in quads if q.predicate == vocab.PROV_USED]
    return {"held": held, "limit": limit, "used": used}


def test_a_snooze_on_one_channel_holds_the_step_back_on_every_channel_until_it_ends(paced, clock):
    register(paced, "ana")
    first = steps(decide_for(paced, "ana"))[0]
    assert first == "take-product-tour"  # on WEB, MOBILE and IN_APP
    event(paced, "ana", "STEP_SNOOZED", step=first, channel="MOBILE")
    snoozed_at = clock()
    for channel in ("WEB", "IN_APP", "MOBILE"):
        rec = decide_for(paced, "ana", channel=channel)
        assert first not in steps(rec), channel
        (hold,) = [h for h in rec.held_back if h.step == DEMO + first]
        assert hold.reason.startswith("snoozed on MOBILE until ")
        assert abs(hold.until - (snoozed_at + timedelta(hours=4))) < timedelta(seconds=1)
    trail = recorded(paced, rec.decision_id)
    assert trail["held"][0]["step"] == DEMO + first and trail["held"][0]["reason"] == hold.reason
    snooze = [e for e in trail["used"] if e.startswith(vocab.EVENT_BASE)]
    assert snooze, "the record names the snooze it held the step back for"
    clock.advance(hours=4, minutes=1)
    assert steps(decide_for(paced, "ana"))[0] == first


def test_a_step_shown_on_one_channel_waits_its_cool_down_before_another_shows_it(paced, clock):
    register(paced, "bo")
    web = decide_for(paced, "bo", channel="WEB", limit=10)
    assert "take-product-tour" in steps(web)
    in_app = decide_for(paced, "bo", channel="IN_APP", limit=10)
    assert "take-product-tour" not in steps(in_app)
    (hold,) = [h for h in in_app.held_back if h.step == DEMO + "take-product-tour"]
    assert hold.reason.startswith("shown on WEB, until ")
    assert vocab.DECISION_BASE + web.decision_id in recorded(paced, in_app.decision_id)["used"]
    # the same channel may show it again at once: a page shows its checklist on every visit
    assert "take-product-tour" in steps(decide_for(paced, "bo", channel="WEB", limit=10))
    clock.advance(hours=2, minutes=1)
    assert "take-product-tour" in steps(decide_for(paced, "bo", channel="IN_APP", limit=10))


def test_after_a_dismissal_every_channel_rests_and_the_dismissed_step_is_gone_for_good(paced, clock):
    register(paced, "cy")
    event(paced, "cy", "STEP_DISMISSED", step="take-product-tour", channel="MOBILE")
    for channel in ("WEB", "EMAIL"):
        rec = decide_for(paced, "cy", channel=channel)
        assert rec.steps == []
        (hold,) = rec.held_back
        assert hold.step is None and hold.reason.startswith("cool-down after dismissal on MOBILE, until ")
        assert recorded(paced, rec.decision_id)["limit"] == 0
    clock.advance(hours=6, minutes=1)
    rec = decide_for(paced, "cy")
    assert rec.steps and "take-product-tour" not in steps(rec) and rec.held_back == []


def test_a_per_user_cap_counts_every_step_shown_on_its_channels(paced, clock):
    register(paced, "di")
    first = decide_for(paced, "di", channel="EMAIL", limit=2)
    assert len(first.steps) == 2
    partial = decide_for(paced, "di", channel="EMAIL", limit=2)
    assert len(partial.steps) == 1  # 2 of 3 spent today: one more
    (hold,) = [h for h in partial.held_back if h.step is None]
    assert hold.reason.startswith("2 prompts in 1d on EMAIL, MOBILE (at most 3), until 2026-12-03T10:00Z")
    assert recorded(paced, partial.decision_id)["limit"] == 1
    full = decide_for(paced, "di", channel="MOBILE", limit=2)  # the cap counts e-mail and push together
    assert full.steps == [] and full.held_back[0].reason.startswith("3 prompts in 1d on EMAIL, MOBILE (at most 3)")
    web = decide_for(paced, "di", channel="WEB", limit=5)  # the web is not capped (its cool-down still holds)
    assert web.steps and all(h.step is not None and h.reason.startswith("shown on ") for h in web.held_back)
    clock.advance(days=1, minutes=1)
    assert len(decide_for(paced, "di", channel="EMAIL", limit=2).steps) == 2


def test_a_per_step_cap_holds_back_a_step_shown_too_often(paced, clock):
    register(paced, "ed")
    shown = []
    for _ in range(3):
        shown.append(steps(decide_for(paced, "ed", channel="EMAIL", limit=1)))
        clock.advance(days=1)
    assert shown[0] == shown[1] and shown[2] != shown[0]
    rec = decide_for(paced, "ed", channel="EMAIL", limit=3)
    held = {h.step.removeprefix(DEMO): h.reason for h in rec.held_back if h.step}
    assert ": shown 2 times in 7d (at most 2), until 2026-12-09T10:00Z" in held[shown[0][0]]
    assert shown[0][0] not in steps(rec)


def test_quiet_hours_follow_the_users_time_zone_and_only_their_channels(paced, clock):
    register(paced, "fu", time_zone="Asia/Tokyo")  # UTC+9
    register(paced, "gi")  # the pacing's default zone, UTC
    clock.advance(hours=3)  # 13:00 UTC: 22:00 in Tokyo
    tokyo = decide_for(paced, "fu", channel="EMAIL")
    assert tokyo.steps == []
    (hold,) = tokyo.held_back
    assert hold.reason.startswith("quiet hours for EMAIL, 21:00 to 08:00 (Asia/Tokyo), until 2026-12-02T23:00Z")
    assert hold.until == datetime(2026, 12, 2, 23, 0, tzinfo=UTC)
    assert decide_for(paced, "fu", channel="WEB").steps  # quiet hours are for e-mail and push
    assert decide_for(paced, "gi", channel="EMAIL").steps  # 13:00 in UTC
    clock.advance(hours=10)  # 23:00 UTC: 08:00 in Tokyo, night in UTC
    assert decide_for(paced, "fu", channel="EMAIL").steps
    assert decide_for(paced, "gi", channel="EMAIL").steps == []


def test_a_session_budget_limits_new_steps_per_session_and_a_new_session_resets_it(paced, clock):
    register(paced, "ha", consents=["ANALYTICS"])  # session starts are collected for analytics
    first = decide_for(paced, "ha", policy="budgeted", limit=5)
    assert len(first.steps) == 3
    held = [h for h in first.held_back if h.step]
    assert held and all(h.reason == "0 prompts this session (at most 3)" and h.until is None for h in held)
    again = decide_for(paced, "ha", policy="budgeted", limit=5)
    assert steps(again) == steps(first)  # the steps already shown this session keep showing
    assert all(h.reason == "3 prompts this session (at most 3)" for h in again.held_back)
    event(paced, "ha", "STEP_COMPLETED", step=steps(first)[0])
    after = decide_for(paced, "ha", policy="budgeted", limit=5)
    assert len(after.steps) == 2  # one done: the budget is spent on the three already shown
    event(paced, "ha", "SESSION_STARTED")
    assert len(decide_for(paced, "ha", policy="budgeted", limit=5).steps) == 3


def test_a_paced_decision_reads_back_and_rederives(paced, clock):
    register(paced, "io")
    decide_for(paced, "io", channel="EMAIL", limit=2)
    rec = decide_for(paced, "io", channel="EMAIL", limit=2)
    assert len(rec.steps) == 1
    read = decide.read_decision(paced, rec.decision_id)
    assert [h.reason for h in read.held_back] == [h.reason for h in rec.held_back]
    again = rederive(paced, rec.decision_id)
    assert again.matches, again.differences


def test_every_shipped_version_but_the_paced_ones_is_paced_by_the_default(runtime):
    versions = {v.label: v for v in runtime.knowledge.policies.values()}
    assert versions["default@1.7.0"].pacing.iri.endswith("policy/paced")
    assert versions["default@1.8.0"].pacing.iri.endswith("policy/paced-worded")  # the same, with translations
    paced_ones = ("default@1.7.0", "default@1.8.0")
    assert {v.pacing.iri for label, v in versions.items() if label not in paced_ones} == {vocab.WF_NS + "DefaultPacing"}
    for label in paced_ones:
        paced = versions[label].pacing
        assert paced.snooze == timedelta(days=1) and paced.session_budget == 8 and len(paced.caps) == 2


def test_the_default_pacing_snoozes_for_a_day_and_holds_nothing_else(runtime, clock):
    register(runtime, "jo")
    top = steps(decide.next_steps(runtime, "jo"))[0]
    event(runtime, "jo", "STEP_SNOOZED", step=top)
    rec = decide.next_steps(runtime, "jo")
    assert top not in steps(rec) and rec.held_back[0].reason.startswith("Held back: snoozed on a channel not reported")
    clock.advance(days=1, minutes=1)
    assert steps(decide.next_steps(runtime, "jo"))[0] == top


def test_bad_time_zones_and_channels_are_refused_and_store_nothing(runtime):
    before = len(runtime.store)
    with pytest.raises(InvalidInput) as refused:
        register(runtime, "ku", time_zone="Mars/Olympus_Mons")
    assert refused.value.field == "input.timeZone" and "IANA" in str(refused.value)
    with pytest.raises(InvalidInput) as refused:
        register(runtime, "ku", time_zone="../../etc/passwd")
    assert len(runtime.store) == before
    register(runtime, "ku")
    stored = len(runtime.store)
    with pytest.raises(InvalidInput) as refused:
        event(runtime, "ku", "STEP_SNOOZED", step="take-product-tour", channel="FAX")
    assert refused.value.field == "inputs[0].channel"
    with pytest.raises(InvalidInput) as refused:
        event(runtime, "ku", "STEP_SNOOZED")
    assert refused.value.field == "inputs[0].stepId"
    assert len(runtime.store) == stored


def test_a_pacing_with_a_time_zone_the_database_lacks_is_refused_at_load(runtime, tmp_path):
    path = tmp_path / "bad.ttl"
    path.write_text(
        PACED.replace(
            'wf:defaultTimeZone "UTC" ;\n    wf:hasFrequencyCap',
            'wf:defaultTimeZone "Mars/Olympus_Mons" ;\n    wf:hasFrequencyCap',
        )
    )
    runtime.load([path])  # the shapes check the form of the name; the IANA database is checked when read
    with pytest.raises(SyntaxProblem, match="Mars/Olympus_Mons"):
        read_policies(runtime.store, runtime.queries)


def test_quiet_hours_end_at_local_time_across_a_daylight_saving_change(paced):
    """Lisbon moves from UTC+0 to UTC+1 at 01:00 UTC on 2026-03-29: 08:00 there that morning is 07:00 UTC."""
    from service.decisions.holdback import History, hold_back
    from service.decisions.ranking import Scored

    pacing = next(v.pacing for v in paced.knowledge.policies.values() if v.label == "paced@1.0.0")
    email = paced.knowledge.codes.channels["EMAIL"]
    codes = {iri: code for code, iri in paced.knowledge.codes.channels.items()}
    ranked = [Scored(DEMO + "learn-data-sources", 1.0, 1.0, None)]
    for at, quiet in (
        (datetime(2026, 3, 28, 22, 30, tzinfo=UTC), datetime(2026, 3, 29, 7, 0, tzinfo=UTC)),  # 22:30 local
        (datetime(2026, 3, 29, 6, 30, tzinfo=UTC), datetime(2026, 3, 29, 7, 0, tzinfo=UTC)),  # 07:30 local
        (datetime(2026, 3, 29, 7, 0, tzinfo=UTC), None),  # 08:00 local: over
        (datetime(2026, 3, 29, 19, 59, tzinfo=UTC), None),  # 20:59 local
        (datetime(2026, 3, 29, 20, 0, tzinfo=UTC), datetime(2026, 3, 30, 7, 0, tzinfo=UTC)),  # 21:00 local
    ):
        held = hold_back(
            pacing,
            ranked,
            limit=1,
            channel=email,
            at=at,
            history=History(time_zone="Europe/Lisbon"),
            channel_codes=codes,
        )
        assert (held.holds[0].until if held.holds else None) == quiet, at
        assert held.limit == (0 if quiet else 1)


def test_concurrent_decisions_for_one_user_never_pass_a_cap_together(paced, clock):
    """Eight threads ask for one e-mail step each at once; the cap of 3 a day lets exactly 3 through."""
    from concurrent.futures import ThreadPoolExecutor

    register(paced, "lu")
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: decide_for(paced, "lu", channel="EMAIL", limit=1), range(8)))
    assert sum(len(r.steps) for r in results) == 3
    assert sum(1 for r in results if r.steps == [] and r.held_back and r.held_back[0].step is None) == 5
