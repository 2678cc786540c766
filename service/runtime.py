"""The objects one running service shares: settings, store, validator, queries."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from . import knowledge
from .settings import Settings, get_settings
from .store import Store
from .validation import Validator


@dataclass
class Runtime:
    settings: Settings = field(default_factory=get_settings)
    store: Store | None = None

    def __post_init__(self) -> None:
        if self.store is None:
            self.store = Store(self.settings.store)

    @cached_property
    def validator(self) -> Validator:
        return Validator(self.settings.shapes_dir)

    @property
    def ontology_file(self) -> Path:
        return self.settings.ontology_dir / "wayfinder.ttl"

    def ensure_ontology(self) -> bool:
        return knowledge.ensure_ontology(self.store, ontology_file=self.ontology_file, validator=self.validator)

    def query_text(self, name: str) -> str:
        """Return the text of a shipped query, ``queries/NAME.rq``."""
        return (self.settings.queries_dir / f"{name}.rq").read_text()
