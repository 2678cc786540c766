"""Exposure: what follows a user's first decision in an experiment (counted, and logged for analysis)."""

from __future__ import annotations

from datetime import datetime

from service.analytics import feed
from service.experiments.assignment import Assignment
from service.metrics import ASSIGNMENTS
from service.runtime import Runtime


def exposed(runtime: Runtime, assignment: Assignment, pseudonym: str, at: datetime) -> None:
    """Count a first exposure, whose decision record was just stored."""
    ASSIGNMENTS.labels(assignment.experiment.id, assignment.arm.name).inc()
    feed.exposed(runtime, assignment.experiment.id, assignment.arm.name, pseudonym, assignment.bucket, at)
