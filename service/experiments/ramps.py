"""Ramps: widen an experiment's exposure only when the evidence so far could have shown the harm it guards against.

Raising the coverage (1% -> 5% -> 25% -> 50%) is allowed only when, for every guardrail
and every arm still serving its own version, the users exposed so far give a one-sided
test at the analysis's alpha 80% power to detect the guardrail's ``detectable_drop``
(:func:`service.experiments.statistics.mde`, on the guardrail KPI's moments). Time alone
never advances a ramp. The analysis the decision rests on is stored as a snapshot, and
the ramp record uses it. Lowering the coverage is always allowed.
"""

from __future__ import annotations

from service.errors import Conflict
from service.experiments import statistics as st
from service.experiments.analysis import ALPHA, analyse
from service.experiments.monitor import store_snapshot
from service.experiments.registry import RUNNING, Experiment, require
from service.experiments.registry import ramp as record_ramp
from service.runtime import Runtime

POWER = 0.8


def ramp(runtime: Runtime, experiment_id: str, coverage: float, *, by: str) -> Experiment:
    """Change the coverage; widening a running, guarded experiment needs evidence that could detect its harms."""
    current = require(runtime, experiment_id)
    if coverage <= current.coverage or current.status != RUNNING or not current.guardrails:
        return record_ramp(runtime, experiment_id, coverage, by=by)
    analysis = analyse(runtime, experiment_id)
    control = current.control.name
    for guardrail in current.guardrails:
        moments = analysis.moments[guardrail.kpi]
        for arm in current.arms[1:]:
            if arm.rolled_back:
                continue
            detectable = st.mde(
                st.Moments.from_dict(moments[control]),
                st.Moments.from_dict(moments[arm.name]),
                alpha=ALPHA,
                power=POWER,
            )
            if not detectable <= guardrail.detectable_drop:
                shown = "no drop at all yet" if detectable == float("inf") else f"a drop of {detectable:.0%} or more"
                raise Conflict(
                    f"coverage stays at {current.coverage:g}: with the users exposed so far ({moments[control]['n']} "
                    f"in {control}, {moments[arm.name]['n']} in {arm.name}) the {guardrail.kpi} guardrail detects "
                    f"{shown} with {POWER:.0%} power, not the {guardrail.detectable_drop:.0%} it names; "
                    "ramp once it can",
                    details=[{"field": "coverage", "reason": "evidence too weak to widen exposure"}],
                )
    return record_ramp(runtime, experiment_id, coverage, by=by, evidence=store_snapshot(runtime, analysis))
