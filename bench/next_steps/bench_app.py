"""App factory for the HTTP benchmark: the service's own app over the store named by WF_BENCH_STORE.

It does what ``wayfinder serve`` and ``service.api.asgi.create`` do before serving
(JSON logs at INFO, tracing as configured, off by default), so the server pays the
same per-request costs as in production:

    WF_BENCH_STORE=/tmp/wf-bench-store .venv/bin/python -m uvicorn --factory bench.next_steps.bench_app:create \
        --loop uvloop --http httptools --workers 1 --log-level warning
"""

from __future__ import annotations

import os

from service.api.app import create_app
from service.runtime import Runtime
from service.settings import Settings


def create():
    settings = Settings(store=os.environ["WF_BENCH_STORE"])
    try:
        from service.telemetry import configure_logging, configure_tracing

        configure_logging(settings.log_format)
        configure_tracing(settings.otel_exporter)
    except ImportError:  # older service versions: no telemetry module
        pass
    return create_app(Runtime(settings=settings))
