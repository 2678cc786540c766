"""Tracing (OpenTelemetry) and structured logs.

Traces are off by default: ``WAYFINDER_OTEL_EXPORTER=console`` prints spans,
``otlp`` sends them to an OTLP collector (needs the
``opentelemetry-exporter-otlp`` package). Without a provider the tracer is
OpenTelemetry's no-op, which costs next to nothing per span.
"""

from __future__ import annotations

import json
import logging
import sys

from opentelemetry import trace

tracer = trace.get_tracer("wayfinder")


def configure_tracing(exporter: str) -> None:
    """Install a tracer provider exporting to ``exporter`` (none, console or otlp)."""
    if exporter == "none":
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if exporter == "console":
        span_exporter = ConsoleSpanExporter()
    elif exporter == "otlp":
        # An optional extra (opentelemetry-exporter-otlp-proto-http), installed only where traces go to OTLP.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found, unused-ignore]
            OTLPSpanExporter,
        )

        span_exporter = OTLPSpanExporter()
    else:
        raise ValueError(f"unknown trace exporter {exporter!r}: none, console or otlp")
    provider = TracerProvider(resource=Resource.create({"service.name": "wayfinder"}))
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(provider)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the ``extra`` fields a record carries (decision_id, ...)."""

    RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None)))

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in self.RESERVED and not k.startswith("_")})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class WithoutQueryStrings(logging.Filter):
    """Drops the query string from access log lines: ``/sparql?query=...`` can name users."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0] + "?…", *args[3:])
        return True


def configure_logging(fmt: str, level: str = "INFO") -> None:
    access = logging.getLogger("uvicorn.access")  # (client, method, path with query, version, status)
    if not any(isinstance(f, WithoutQueryStrings) for f in access.filters):
        access.addFilter(WithoutQueryStrings())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger("wayfinder")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
