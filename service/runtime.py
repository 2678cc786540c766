"""The objects one running service shares: settings, store, validator, queries, and
views of the knowledge (catalog, policies, API codes) refreshed after each load."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pyoxigraph as ox
import rdflib

from service.analytics.log import EventLog, open_log
from service.analytics.segments import SharedLog
from service.audit.chain import AuditTrail
from service.audit.sealed import Sealed
from service.knowledge import files as knowledge
from service.knowledge import history, migrations
from service.knowledge.catalog import Catalog, read_catalog
from service.knowledge.embedded import open_store
from service.knowledge.policies import PolicyVersion, read_policies
from service.knowledge.queries import Queries
from service.knowledge.store import GraphStore, bound
from service.knowledge.terms import to_rdflib_graph
from service.knowledge.validation import Validator
from service.settings import Settings, get_settings


@dataclass
class Codes:
    """API codes of purposes, event types and channels, read from the ontology."""

    purposes: dict[str, str] = field(default_factory=dict)  # code -> purpose IRI
    channels: dict[str, str] = field(default_factory=dict)  # code -> channel IRI
    events: dict[str, str] = field(default_factory=dict)  # code -> event class IRI
    collected_for: dict[str, list[str]] = field(default_factory=dict)  # event code -> purpose codes

    def purpose_code(self, iri: str) -> str:
        return next(code for code, value in self.purposes.items() if value == iri)


@dataclass
class Knowledge:
    catalog: Catalog
    policies: dict[str, PolicyVersion]
    codes: Codes
    graph: rdflib.Graph
    # The current version of each catalog and policy graph (graph IRI -> version IRI), which decisions name.
    versions: dict[str, str] = field(default_factory=dict)


class Runtime:
    """Shared state of a running service; cheap views are rebuilt after knowledge changes."""

    def __init__(self, settings: Settings | None = None, store: GraphStore | None = None) -> None:
        self.settings = settings or get_settings()
        self.store = (
            store
            if store is not None
            else open_store(
                self.settings.store,
                flush_each_commit=self.settings.flush_each_commit,
                timeout_s=self.settings.store_timeout_s,
            )
        )
        self._knowledge: Knowledge | None = None
        self._revision: str | None = None  # the knowledge revision the cached knowledge was read at
        self._checked = 0.0
        self._lock = threading.Lock()

    @cached_property
    def validator(self) -> Validator:
        return Validator(self.settings.shapes_dir, queries_dir=self.settings.queries_dir / "validation")

    @cached_property
    def trail(self) -> AuditTrail:
        anchors = None
        if self.store.location is not None:
            anchors = self.store.location.with_name(self.store.location.name + ".anchors.jsonl")
        return AuditTrail(
            self.store,
            self.queries["audit-head"],
            chain=self.chain,
            anchor_file=anchors,
            checkpoint_every=self.settings.audit_checkpoint_every,
        )

    @cached_property
    def sealed(self) -> Sealed | None:
        """The sealed audit segments: ``sealed_dir``, or the folder beside an embedded store; None for neither."""
        if self.settings.sealed_dir is not None:
            return Sealed(self.settings.sealed_dir)
        if self.store.location is not None:
            return Sealed(self.store.location.with_name(self.store.location.name + ".sealed"))
        return None

    @cached_property
    def log(self) -> EventLog:
        """The analytics log beside an embedded store's folder; on a shared store, the segments in
        ``analytics_dir`` when it is set (in memory otherwise). Catch it up through
        ``service.analytics.feed.log`` before reading it."""
        if self.store.url is not None and self.settings.analytics_dir is not None:
            return SharedLog(self.settings.analytics_dir, self.chain)
        path = None
        if self.store.location is not None and self.store.url is None:
            path = self.store.location.with_name(self.store.location.name + ".analytics.duckdb")
        return open_log(path)

    def close(self) -> None:
        """Close the analytics log (if it was opened) and the store."""
        if "log" in self.__dict__:
            self.log.close()
        self.store.close()

    @cached_property
    def chain(self) -> str:
        """This process's audit chain: 'main' on an embedded store (one writer), one per process on a shared one."""
        if self.store.url is None:
            return self.settings.instance or "main"
        return self.settings.instance or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    @cached_property
    def queries(self) -> Queries:
        """Shipped queries: ``queries/service/NAME.rq`` as NAME, ``queries/DIR/NAME.rq`` as DIR/NAME."""
        return Queries(self.settings.queries_dir)

    @property
    def ontology_file(self) -> Path:
        return self.settings.ontology_dir / "wayfinder.ttl"

    def ensure_ontology(self) -> bool:
        migrations.check(self.store)  # a store of another layout is refused before anything reads it
        loaded = knowledge.ensure_ontology(self.store, ontology_file=self.ontology_file, validator=self.validator)
        if loaded:
            self.knowledge_changed()
        return loaded

    def load(
        self, paths: list[Path], *, graph: str | None = None, by: str = knowledge.LOCAL_OPERATOR
    ) -> knowledge.LoadReport:
        """Validate and load knowledge files (``by`` names who loads them), then refresh the views."""
        report = knowledge.load_files(paths, store=self.store, validator=self.validator, graph=graph, by=by)
        self.knowledge_changed()
        return report

    def knowledge_changed(self) -> None:
        with self._lock:
            self._knowledge = None

    # How often a process checks whether another one changed the knowledge (a load, a policy approval).
    KNOWLEDGE_CHECK_S = 1.0

    @property
    def knowledge(self) -> Knowledge:
        current = self._knowledge
        if current is not None and time.monotonic() - self._checked >= self.KNOWLEDGE_CHECK_S:
            self._checked = time.monotonic()
            if knowledge.revision(self.store) != self._revision:
                current = None
        if current is None:
            with self._lock:
                revision = knowledge.revision(self.store)
                if self._knowledge is None or revision != self._revision:
                    self._knowledge = self._read_knowledge()
                    self._revision = revision
                    self._checked = time.monotonic()
                current = self._knowledge
        return current

    def _read_knowledge(self) -> Knowledge:
        codes = Codes()
        for row in self.store.select(self.queries["vocabulary-codes"]):
            code, term = bound(row, "code").value, bound(row, "term").value
            if bound(row, "kind").value == "purpose":
                codes.purposes[code] = term
            elif bound(row, "kind").value == "channel":
                codes.channels[code] = term
            else:
                codes.events[code] = term
                codes.collected_for.setdefault(code, [])
                if row["collectedFor"] is not None:
                    codes.collected_for[code].append(row["collectedFor"].value)
        for code, purposes in codes.collected_for.items():
            codes.collected_for[code] = sorted(codes.purpose_code(p) for p in purposes)
        graph = rdflib.Graph()
        for name in knowledge.knowledge_graphs(self.store):
            to_rdflib_graph(self.store.graph(name), graph)
        from service.governance import approvals

        policies = approvals.serving_policies(
            self, read_policies(self.store, self.queries), needed=self.approvals_needed
        )
        return Knowledge(
            catalog=read_catalog(self.store, self.queries, channels=codes.channels),
            policies=policies,
            codes=codes,
            graph=graph,
            versions=history.current(self.store),
        )

    @property
    def approvals_needed(self) -> int:
        """Approvals a policy version needs before it serves: the quorum with API keys, none without."""
        from service.identity.keys import parse_keys

        keys = parse_keys(self.settings.api_keys, self.settings.api_keys_file)
        return self.settings.approvals_required if keys.enabled else 0

    @property
    def catalog(self) -> Catalog:
        return self.knowledge.catalog


def term(iri: str) -> ox.NamedNode:
    return ox.NamedNode(iri)
