"""Flag change requests: with approvals required, a change that may widen exposure waits in review for another
principal's approval, an edit replaces it (approvals do not carry over), the kill switch applies at once, and an
auditor reads who proposed and who approved each change over SPARQL."""

from __future__ import annotations

from dataclasses import replace

import pytest

from service.experiments import flags
from service.governance import change_requests
from tests.conftest import approve_policies
from tests.experiments.test_flags import flag
from tests.governance.test_approvals import ANN, BO, CY, call, code_of, serving

FIELDS = "id version enabled rules { variant } pendingChange { kind status proposedBy proposed { version rules { variant } } approvals { by verdict current } }"
CREATE = f"mutation C($input: FlagInput!) {{ createFlag(input: $input) {{ {FIELDS} }} }}"
UPDATE = f"mutation U($input: FlagInput!) {{ updateFlag(input: $input) {{ {FIELDS} }} }}"
ENABLE = f"mutation E($id: ID!, $on: Boolean!) {{ setFlagEnabled(id: $id, enabled: $on) {{ {FIELDS} }} }}"
APPROVE = "mutation A($id: ID!, $ok: Boolean) { approveFlagChange(id: $id, approve: $ok) { status approvals { by } } }"
TARGETED = {"rules": [{"conditions": [{"attribute": "role", "values": ["analyst"]}], "variant": "rules"}]}


@pytest.fixture
def keyed(knowledge_quads, tmp_path):
    http, runtime = serving(knowledge_quads, tmp_path, approvals_required=1)
    approve_policies(runtime)
    return http, runtime


def test_a_new_flag_waits_for_another_principal_and_then_applies(keyed):
    http, runtime = keyed
    proposed = call(http, ANN, CREATE, input=flag(**TARGETED))["data"]["createFlag"]
    assert proposed["version"] == 0 and proposed["pendingChange"]["status"] == "in-review"
    assert flags.find(runtime, "ranking") is None  # nothing serves until approved

    own = call(http, ANN, APPROVE, id="ranking")
    assert code_of(own) == "FORBIDDEN"
    done = call(http, BO, APPROVE, id="ranking")["data"]["approveFlagChange"]
    assert done == {"status": "applied", "approvals": [{"by": "ops-bo"}]}
    applied = flags.find(runtime, "ranking")
    assert applied is not None and applied.version == 1 and applied.created_by == "ops-ann"
    rows = runtime.store.select(runtime.queries["lineage/flag-changes"])
    assert [(r["proposedBy"].value, r["status"].value, r["approvedBy"].value, r["verdict"].value) for r in rows] == [
        ("ops-ann", "applied", "ops-bo", "approved")
    ]


def test_an_edit_replaces_the_proposal_and_its_approvals_do_not_carry_over(keyed):
    http, runtime = keyed
    call(http, ANN, CREATE, input=flag())
    call(http, BO, APPROVE, id="ranking")  # the flag, without rules, applies as version 1
    first = call(http, ANN, UPDATE, input=flag(**TARGETED))["data"]["updateFlag"]
    assert first["version"] == 1 and first["rules"] == [] and first["pendingChange"]["status"] == "in-review"
    wider = {"rules": [{"conditions": [{"attribute": "role", "values": ["analyst", "engineer"]}], "variant": "rules"}]}
    second = call(http, CY, UPDATE, input=flag(**wider))["data"]["updateFlag"]
    pending = second["pendingChange"]
    assert pending["proposedBy"] == "ops-cy" and not [a for a in pending["approvals"] if a["current"]]
    # ann may approve cy's proposal (it is not hers); the applied version is cy's.
    assert call(http, ANN, APPROVE, id="ranking")["data"]["approveFlagChange"]["status"] == "applied"
    applied = flags.find(runtime, "ranking")
    assert applied is not None and applied.version == 2
    assert applied.rules[0].conditions[0].values == ("analyst", "engineer")


def test_a_rejection_ends_the_request_and_the_flag_stays_as_it_was(keyed):
    http, runtime = keyed
    call(http, ANN, CREATE, input=flag())
    call(http, BO, APPROVE, id="ranking")
    call(http, ANN, UPDATE, input=flag(**TARGETED))
    rejected = call(http, BO, APPROVE, id="ranking", ok=False)["data"]["approveFlagChange"]
    assert rejected["status"] == "rejected"
    assert flags.find(runtime, "ranking").rules == ()  # type: ignore[union-attr]
    assert code_of(call(http, CY, APPROVE, id="ranking")) == "NOT_FOUND"  # nothing left in review


def test_the_kill_switch_and_dropping_trailing_rules_apply_at_once(keyed):
    http, runtime = keyed
    call(http, ANN, CREATE, input=flag(**TARGETED))
    call(http, BO, APPROVE, id="ranking")
    off = call(http, ANN, ENABLE, id="ranking", on=False)["data"]["setFlagEnabled"]
    assert off["enabled"] is False and off["version"] == 2  # applied, no approval asked
    back_on = call(http, ANN, ENABLE, id="ranking", on=True)["data"]["setFlagEnabled"]
    assert back_on["enabled"] is False and back_on["pendingChange"]["kind"] == "enable"
    call(http, CY, APPROVE, id="ranking")
    assert flags.find(runtime, "ranking").enabled  # type: ignore[union-attr]
    narrowed = call(http, ANN, UPDATE, input=flag(rules=[]))["data"]["updateFlag"]
    assert narrowed["rules"] == [] and narrowed["version"] == 4


def test_without_keys_changes_apply_as_before(client):
    created = client.data(CREATE, {"input": flag(**TARGETED)})["createFlag"]
    assert created["version"] == 1 and created["pendingChange"] is None


def test_widening_is_judged_conservatively():
    base = flags.Flag("f", "default", (("a", "default@1.2.0"), ("b", "default@1.3.0")), "a")
    rule = flags.Rule((flags.Condition("role", ("analyst",)),), "b")
    ruled = replace(base, rules=(rule, flags.Rule((), "b")))
    assert change_requests.widens(None, base)
    assert change_requests.widens(base, ruled)
    assert not change_requests.widens(ruled, replace(ruled, rules=(rule,)))  # a trailing rule dropped
    assert change_requests.widens(ruled, replace(ruled, rules=(ruled.rules[1],)))  # a leading one: others move
    assert not change_requests.widens(ruled, replace(ruled, enabled=False))
    assert change_requests.widens(replace(ruled, enabled=False), ruled)
    assert change_requests.widens(base, replace(base, default_variant="b"))
