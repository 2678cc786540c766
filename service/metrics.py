"""Prometheus metrics, all prefixed ``wayfinder_``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUEST_SECONDS = Histogram(
    "wayfinder_request_seconds",
    "Time to answer a request, by GraphQL operation or route",
    ["operation"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DECISIONS = Counter(
    "wayfinder_decisions_total",
    "Next-steps decisions",
    ["policy_version", "variant", "personalized"],
)
CANDIDATES = Histogram(
    "wayfinder_candidate_set_size",
    "Eligible steps per decision",
    buckets=(0, 1, 2, 5, 10, 20, 50, 100, 200),
)
REFUSED_WRITES = Counter(
    "wayfinder_refused_writes_total",
    "Writes refused, by violated constraint or error code",
    ["constraint"],
)
MODEL_SERVED = Gauge(
    "wayfinder_model_version_served",
    "1 for the model version that serves, 0 for others",
    ["version"],
)
STORE_QUADS = Gauge("wayfinder_store_quads", "Quads in the store, counted at scrape time (cached for a minute)")
ASSIGNMENTS = Counter(
    "wayfinder_experiment_assignments_total",
    "First exposures of users to an experiment, by experiment and arm",
    ["experiment", "arm"],
)
GUARDRAIL_STATE = Gauge(
    "wayfinder_guardrail_state",
    "1 while a guardrail shows harm for an arm (the arm is then rolled back), 0 otherwise",
    ["experiment", "arm", "kpi"],
)
MODEL_PSI = Gauge(
    "wayfinder_model_psi",
    "Population stability index of a model version's input (subject: its name) or score (subject: score) against "
    "its training profile, at the latest health check",
    ["version", "subject"],
)
MODEL_CALIBRATION_ERROR = Gauge(
    "wayfinder_model_calibration_error",
    "Expected calibration error of a model version's top-ranked score against observed activation, by decile, "
    "at the latest health check that had outcomes",
    ["version"],
)
MODEL_HEALTH_BREACHES = Gauge(
    "wayfinder_model_health_breaches",
    "Health figures of a model version past a governance limit at its latest health check (0: within them)",
    ["version"],
)
ROLLBACKS = Counter(
    "wayfinder_experiment_rollbacks_total",
    "Arms rolled back by the guardrail monitor",
    ["experiment", "arm"],
)
DELIVERY_ATTEMPTS = Counter(
    "wayfinder_delivery_attempts_total",
    "Webhook calls to senders, by channel and what came of them (delivered, retry, dead_lettered)",
    ["channel", "outcome"],
)
DELIVERIES_CANCELLED = Counter(
    "wayfinder_deliveries_cancelled_total",
    "Outbox messages cancelled before they were sent (user erased, consent withdrawn, sender gone)",
    ["channel"],
)
