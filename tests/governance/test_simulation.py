"""Governance end to end, small (bench/governance/simulate.py runs it at full size): a candidate policy is
estimated offline, approved by two principals, started, ramped, and rolled back by the plan's automatic actor on
their behalf; the auditor's SPARQL queries list who approved what and why the rollback happened."""

from __future__ import annotations

from bench.governance.simulate import CANDIDATE, CONTROL, Scenario, run


def test_candidate_to_offline_estimate_to_approval_to_ramp_to_rollback():
    # The exploring slates are drawn from each decision's random ID, so every run logs others. At the bench's
    # exploration rate of 0.5 the offline difference's lower bound ranged from -0.04 to +0.10 over 400 logged
    # decisions in five runs, so the plan (margin 0.02) was refused by chance in two; here the first 300 users are
    # served a random slate each (rate 1: more support for the candidate), which gave +0.02 to +0.09 in six runs.
    # The monitor then rolled the treatment back at 250 to 350 experiment users in three runs of (0.7, 0.3).
    outcome = run(
        Scenario(
            logged_users=300,
            experiment_users=500,
            activation=(0.7, 0.2),
            users_per_day=50,
            check_every=50,
            exploration=1.0,
        )
    )
    offline = outcome.offline
    assert offline["decisions"] == 300 and offline["difference"]["low"] > -0.02  # the start's evidence
    assert outcome.started and outcome.ramped_at is not None
    assert outcome.rolled_back_at is not None and outcome.rolled_back_at >= outcome.ramped_at
    approved = {(a["entity"], a["by"]) for a in outcome.approvals if a["verdict"] == "approved"}
    control, candidate = (v.replace("@", "-") for v in (CONTROL, CANDIDATE))
    assert {(control, "ops-bo"), (control, "ops-cy")} <= approved
    assert {("teammates-first", "ops-bo"), ("teammates-first", "ops-cy")} <= approved
    assert not any(a["by"] == "ops-ann" for a in outcome.approvals)  # the author approves nothing of her own
    assert candidate not in {a["entity"] for a in outcome.approvals}  # the approved plan is its approval
    assert {(r["arm"], r["onBehalfOf"], r["agent"]) for r in outcome.rollbacks} == {
        ("treatment", "ops-bo", "guardrail-monitor"),
        ("treatment", "ops-cy", "guardrail-monitor"),
    }
    assert all(r["snapshot"] for r in outcome.rollbacks)  # each rollback uses the analysis that showed harm
