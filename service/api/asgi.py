"""App factory for uvicorn's worker processes (``wayfinder serve --workers N``): settings from the environment."""

from __future__ import annotations

from starlette.types import ASGIApp

from service.api.app import create_app
from service.runtime import Runtime
from service.settings import Settings
from service.telemetry import configure_logging, configure_tracing


def create() -> ASGIApp:
    settings = Settings()
    configure_logging(settings.log_format)
    configure_tracing(settings.otel_exporter)
    return create_app(Runtime(settings=settings))
