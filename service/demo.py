"""The demo: the shipped catalog and policies plus a handful of users with histories."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from service.decisions import subjects, users
from service.runtime import Runtime


def knowledge_files(runtime: Runtime) -> list[Path]:
    """Return the shipped catalog and policy files, in load order."""
    ontology = runtime.settings.ontology_dir
    return sorted((ontology / "catalog").glob("*.ttl")) + sorted((ontology / "policies").glob("*.ttl"))


def load_demo(runtime: Runtime) -> dict[str, int]:
    """Load the demo into an empty store; return what was added (nothing when users exist)."""
    runtime.ensure_ontology()
    runtime.load(knowledge_files(runtime))
    added = {"users": 0, "events": 0}
    data = json.loads((runtime.settings.demo_dir / "users.json").read_text())
    for entry in data["users"]:
        if subjects.exists(runtime, entry["id"]):
            continue
        users.register(
            runtime,
            users.Registration(
                id=entry["id"],
                role=entry.get("role"),
                industry=entry.get("industry"),
                plan=entry.get("plan"),
                signup_channel=entry.get("signupChannel"),
                consents=entry.get("consents", []),
                at=datetime.fromisoformat(entry["at"]) if entry.get("at") else None,
            ),
        )
        reports = [
            users.EventReport(
                user_id=entry["id"],
                type=e["type"],
                step_id=e.get("stepId"),
                feature_id=e.get("featureId"),
                at=datetime.fromisoformat(e["at"]) if e.get("at") else None,
            )
            for e in entry.get("events", [])
        ]
        users.record_events(runtime, reports)
        added["users"] += 1
        added["events"] += len(reports)
    runtime.store.flush()
    return added
