"""The guardrail monitor: analyse every running experiment, store the snapshot, roll back arms shown harmful.

One run (:func:`check`) analyses each running experiment (:mod:`service.experiments.analysis`),
stores the analysis as a chained ``wf:AnalysisSnapshot`` record (its moments, method,
parameters and verdicts, enough to recompute it), and rolls back every arm whose
one-sided sequential guardrail test shows harm beyond its threshold. The rollback is a
``wf:Rollback`` change record that uses the snapshot, names the monitor as the agent
and, as whom it acted for, the principals who approved the plan (its guardrails are part
of what they approved), or the experiment's creator where nobody approved it. The monitor only ever takes exposure
away (it rolls arms back; it never starts, ramps or reweights), and running it in several
processes at once is safe: an arm rolled back already is left as it is.

A rollback is announced by a log line, the ``wayfinder_experiment_rollbacks_total`` metric
and, when ``WAYFINDER_GUARDRAIL_WEBHOOK_URL`` is set, a JSON POST to it.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from datetime import datetime

import httpx
import pyoxigraph as ox

from service.clock import datetime_literal, now
from service.experiments.analysis import Analysis, analyse
from service.experiments.registry import RUNNING, STOPPED, Experiment, experiments, roll_back
from service.governance import approvals
from service.knowledge import vocab
from service.metrics import GUARDRAIL_STATE, ROLLBACKS
from service.runtime import Runtime
from service.schedule import every

MONITOR_AGENT = vocab.BASE + "agent/guardrail-monitor"
log = logging.getLogger("wayfinder.experiments")


def check(runtime: Runtime, *, at: datetime | None = None) -> list[Experiment]:
    """Run the monitor once; return every experiment that is running, stopped or has a rolled-back arm."""
    for experiment in experiments(runtime):
        if experiment.status == RUNNING:
            monitor(runtime, experiment, at=at)
    return [e for e in experiments(runtime) if e.status in (RUNNING, STOPPED) or any(arm.rolled_back for arm in e.arms)]


def on_behalf_of(runtime: Runtime, experiment: Experiment) -> list[str]:
    """Whom an automatic rollback acts for: the principals who approved the experiment's plan (its guardrails
    included), or, where none did (a service without keys), its creator."""
    approved = [a.by for a in approvals.of(runtime, experiment.iri) if a.verdict == approvals.APPROVED]
    return list(dict.fromkeys(approved)) or [experiment.created_by]


def monitor(runtime: Runtime, experiment: Experiment, *, at: datetime | None = None) -> Analysis:
    """Analyse one running experiment, store the snapshot and roll back the arms it shows harmful."""
    analysis = analyse(runtime, experiment.id, at=at)
    snapshot = store_snapshot(runtime, analysis)
    rolled = {a.name for a in experiment.arms if a.rolled_back}
    for verdict in analysis.guardrails:
        GUARDRAIL_STATE.labels(experiment.id, verdict.arm, verdict.kpi).set(1 if verdict.state == "harm" else 0)
    for verdict in analysis.harmed():
        if verdict.arm in rolled:
            continue
        behalf = on_behalf_of(runtime, experiment)
        roll_back(
            runtime,
            experiment.id,
            verdict.arm,
            by=behalf[0],
            on_behalf_of=behalf[1:],
            evidence=snapshot,
            agent=MONITOR_AGENT,
        )
        rolled.add(verdict.arm)
        ROLLBACKS.labels(experiment.id, verdict.arm).inc()
        notice = {
            "event": "guardrail rollback",
            "experiment": experiment.id,
            "arm": verdict.arm,
            "kpi": verdict.kpi,
            "estimate": verdict.estimate,
            "bound": verdict.bound,
            "threshold": verdict.threshold,
            "method": verdict.method,
            "snapshot": snapshot,
        }
        log.warning("guardrail rollback", extra=notice)
        if runtime.settings.guardrail_webhook_url:
            _post(runtime.settings.guardrail_webhook_url, notice)
    return analysis


def store_snapshot(runtime: Runtime, analysis: Analysis) -> str:
    """Append the analysis as a chained snapshot record; return its IRI."""
    node = ox.NamedNode(vocab.ANALYSIS_BASE + str(uuid.uuid4()))
    T, L = ox.Triple, ox.Literal
    content = json.dumps(analysis.snapshot(), sort_keys=True, separators=(",", ":"), allow_nan=False)
    runtime.trail.append(
        node,
        [
            T(node, vocab.RDF_TYPE, vocab.ANALYSIS_SNAPSHOT),
            T(node, vocab.RDF_TYPE, vocab.PROV_ENTITY),
            T(node, vocab.PROV_GENERATED_AT, datetime_literal(now())),
            T(node, vocab.PROV_WAS_DERIVED_FROM, ox.NamedNode(analysis.experiment.iri)),
            T(node, vocab.ANALYSIS, L(content)),
        ],
    )
    return node.value


def _post(url: str, notice: dict) -> None:
    """POST the notice in the background; a failing receiver is logged, never raised."""

    def send() -> None:
        try:
            httpx.post(url, json=notice, timeout=5.0).raise_for_status()
        except httpx.HTTPError as exc:
            log.error("guardrail webhook failed", extra={"error": type(exc).__name__})

    threading.Thread(target=send, name="wayfinder-guardrail-webhook", daemon=True).start()


async def monitor_periodically(runtime: Runtime, interval_s: float) -> None:
    """Run the monitor every ``interval_s`` seconds, the first time one interval from now, until cancelled."""
    await every(interval_s, lambda: check(runtime), name="guardrail monitor", log=log)
