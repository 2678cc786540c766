"""Export a Wayfinder store to a PyG ``HeteroData`` graph: catalog, consented users, their events.

A handful of SELECT queries (``queries/export/``) over the union of the named graphs,
never one per user. Only users whose current ANALYTICS consent record gives consent are
exported: the record that holds by the consent rule the service applies too,
``queries/service/consent-current.rq``. ``wf:partOf``, ``wf:requires`` and
``wf:includesPlan`` are transitive in the ontology, so their closure is exported.

:func:`export_log` reads the users' part from the analytics log instead (``queries/export/log-*.sql``,
on DuckDB or, over a Parquet export, on Spark): the same data, with users keyed by pseudonym.
Both order users by what is known of them (:func:`canonical_order`), so both give the same tensors.
The service trains on that one (``service.models.training.training_export``); benches and
``wayfinder evaluate`` export worlds from the graph.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyoxigraph as ox
import torch
import torch_geometric.transforms as T
from torch_geometric.data import HeteroData

from embeddings.queries import query, select, select_bound, sql
from service.knowledge import vocab

NODE_TYPES = ("user", "step", "feature", "role", "industry", "plan")
CATALOG_TYPES = ("step", "feature", "role", "industry", "plan")
CLASSES = {
    "step": vocab.STEP,
    "feature": vocab.FEATURE,
    "role": vocab.ROLE,
    "industry": vocab.INDUSTRY,
    "plan": vocab.PLAN,
}
# Relation name (as queries/export/catalog-links.rq names it) -> (source type, target type).
CATALOG_RELATIONS = {
    "introduces": ("step", "feature"),
    "partOf": ("feature", "feature"),
    "requires": ("step", "step"),
    "forRole": ("step", "role"),
    "requiresPlan": ("step", "plan"),
    "includesPlan": ("plan", "plan"),
}
USER_RELATIONS = {
    "hasRole": ("user", "role"),
    "hasIndustry": ("user", "industry"),
    "hasPlan": ("user", "plan"),
    "used": ("user", "feature"),
    "completed": ("user", "step"),
    "dismissed": ("user", "step"),
}
EVENT_RELATIONS = {
    vocab.STEP_COMPLETED.value: "completed",
    vocab.STEP_DISMISSED.value: "dismissed",
    vocab.FEATURE_USED.value: "used",
}


@dataclass
class Export:
    """The graph, and the IRI -> node index map of every node type."""

    data: HeteroData
    index: dict[str, dict[str, int]]
    consent_records: list[str] = field(default_factory=list)  # the granting records the export relied on

    def iris(self, node_type: str) -> list[str]:
        """Return the IRIs of a node type in index order."""
        return sorted(self.index[node_type], key=self.index[node_type].__getitem__)


def snapshot_hash(export: Export) -> str:
    """Return a SHA-256 of what training reads: node IRIs, every edge and every outcome label."""
    digest = hashlib.sha256()
    for kind in NODE_TYPES:
        digest.update(json.dumps([kind, export.iris(kind)]).encode())
    for edge_type in sorted(export.data.edge_types):
        digest.update(json.dumps(edge_type).encode())
        digest.update(export.data[edge_type].edge_index.numpy().tobytes())
    for name in ("y", "converted"):
        digest.update(export.data["user"][name].numpy().tobytes())
    return digest.hexdigest()


def consented_users(store: Any, *, purpose: ox.NamedNode = vocab.ANALYTICS) -> set[str]:
    """Return the users whose current consent record for the purpose gives consent."""
    return set(consent_records(store, purpose=purpose))


def consent_records(store: Any, *, purpose: ox.NamedNode = vocab.ANALYTICS) -> dict[str, str]:
    """Return, per user whose current consent record for the purpose gives consent, that record's IRI."""
    rows = select_bound(store, query("service/consent-current"), "user", "purpose", "record", "status")
    return {
        user: record for user, of, record, status in rows if of == purpose.value and status == vocab.CONSENT_GIVEN.value
    }


def _edges(pairs: set[tuple[int, int]]) -> torch.Tensor:
    if not pairs:
        return torch.empty((2, 0), dtype=torch.long)
    return torch.tensor(sorted(pairs), dtype=torch.long).t().contiguous()


@dataclass
class UserRows:
    """What an export reads about users, wherever it reads it: keys are user IRIs (the graph) or pseudonyms (the log)."""

    profiles: list[tuple[str, str | None, str | None, str | None]]  # user, role, industry, plan (IRIs)
    consent_records: dict[str, str]  # user -> the record that gives the purpose's consent now
    step_events: list[tuple[str, str, str]]  # user, event class IRI, step IRI
    feature_uses: list[tuple[str, str, float]]  # user, feature IRI, a time it was used (epoch seconds)
    outcomes: list[tuple[str, str]]  # user, outcome class IRI (wf:Activated, wf:Converted)


def export_graph(store: Any, *, purpose: ox.NamedNode = vocab.ANALYTICS, reverse: bool = True) -> Export:
    """Export the catalog and every user with an active consent for the purpose as a ``HeteroData``."""
    rows = UserRows(
        profiles=[
            (user, role, industry, plan)
            for user, role, industry, plan in select(
                store, query("export/profiles"), "user", "role", "industry", "plan"
            )
            if user is not None
        ],
        consent_records=consent_records(store, purpose=purpose),
        step_events=[
            (user, kind, about)
            for user, kind, about in select_bound(store, query("export/step-events"), "user", "type", "about")
        ],
        feature_uses=[
            (user, about, datetime.fromisoformat(at).timestamp())
            for user, _, about, at in select_bound(store, query("export/feature-events"), "user", "type", "about", "at")
        ],
        outcomes=[(user, kind) for user, kind in select_bound(store, query("export/outcomes"), "user", "type")],
    )
    return assemble(store, catalog_nodes(store), rows, reverse=reverse)


def catalog_nodes(store: Any) -> dict[str, set[str]]:
    """Return the IRIs of the catalog's nodes, per node type (step, feature, role, industry, plan)."""
    kinds = {cls.value: kind for kind, cls in CLASSES.items()}
    found: dict[str, set[str]] = {kind: set() for kind in CATALOG_TYPES}
    for node, cls in select_bound(store, query("export/catalog-nodes"), "node", "class"):
        found[kinds[cls]].add(node)
    return found


def export_log(
    store: Any,
    log: Any,
    *,
    event_codes: Mapping[str, str],
    purpose: ox.NamedNode = vocab.ANALYTICS,
    reverse: bool = True,
) -> Export:
    """Export the catalog (the store's graph) and the users of the analytics log (``queries/export/log-*.sql``).

    ``log`` is anything that runs the log's SQL with ``?`` parameters (``query(statement, params)``): the
    service's DuckDB log, or a Parquet export of it on Spark (``service.analytics.spark.SparkLog``).
    ``event_codes`` maps the log's event type codes to their classes (``Codes.events``). The log names
    users by pseudonym only, so the users of this export are keyed by pseudonym, and names catalog
    terms by local ID, which are mapped back to the catalog's IRIs. Otherwise it holds what
    :func:`export_graph` holds for the same store: the log keeps a user's events under their consent now.
    """
    classes = {cls: code for code, cls in event_codes.items()}
    wanted = (vocab.STEP_COMPLETED, vocab.STEP_DISMISSED, vocab.FEATURE_USED, vocab.ACTIVATED, vocab.CONVERTED)
    missing = [c.value for c in wanted if c.value not in classes]
    if missing:
        raise ValueError(f"event_codes: no code for {', '.join(missing)}")
    code = {c: classes[c.value] for c in wanted}
    of_code = {classes[c.value]: c.value for c in wanted}
    catalog = catalog_nodes(store)
    terms: dict[str, dict[str, str]] = {kind: {} for kind in CATALOG_TYPES}
    for kind, nodes in catalog.items():
        for node in sorted(nodes):
            local = vocab.local_id(node)
            if terms[kind].setdefault(local, node) != node:
                raise ValueError(f"two {kind}s have the local ID {local!r}: the log cannot tell them apart")
    term = lambda kind, local: terms[kind].get(local) if local is not None else None  # noqa: E731
    users = log.query(sql("export/log-users"), [vocab.local_id(purpose.value)])
    steps = log.query(sql("export/log-step-events"), [code[vocab.STEP_COMPLETED], code[vocab.STEP_DISMISSED]])
    uses = log.query(sql("export/log-feature-events"), [code[vocab.FEATURE_USED]])
    outcomes = log.query(sql("export/log-outcomes"), [code[vocab.ACTIVATED], code[vocab.CONVERTED]])
    rows = UserRows(
        profiles=[(s, term("role", r), term("industry", i), term("plan", p)) for s, r, i, p, _ in users],
        consent_records={s: record for s, *_, record in users},
        step_events=[(s, of_code[t], step) for s, t, local in steps if (step := term("step", local)) is not None],
        feature_uses=[(s, f, float(at)) for s, local, at in uses if (f := term("feature", local)) is not None],
        outcomes=[(s, of_code[t]) for s, t in outcomes],
    )
    return assemble(store, catalog, rows, reverse=reverse)


def canonical_order(profiles: list[tuple[str, str | None, str | None, str | None]], rows: UserRows) -> list[str]:
    """The users in an order set by what is known of them, not by their keys: by profile, events (with
    first-use times to the millisecond) and outcomes, keys breaking ties only between users the export
    cannot tell apart. So the graph's export (users keyed by IRI) and the log's (by pseudonym, drawn at
    random) of the same data hold the same tensors, and a training on them is the same training."""
    known: dict[str, list[tuple[str, ...]]] = {user: [] for user, *_ in profiles}
    for user, kind, about in rows.step_events:
        if user in known:
            known[user].append(("event", kind, about))
    for user, about, seconds in rows.feature_uses:
        if user in known:
            known[user].append(("used", about, f"{round(seconds * 1000):020d}"))
    for user, kind in rows.outcomes:
        if user in known:
            known[user].append(("outcome", kind))
    profile = {user: tuple(value or "" for value in values) for user, *values in profiles}
    return sorted(known, key=lambda user: (profile[user], sorted(set(known[user])), user))


def assemble(store: Any, catalog: dict[str, set[str]], rows: UserRows, *, reverse: bool = True) -> Export:
    """Build the export: the catalog's nodes (``catalog_nodes``) and links from the store's graph, the users
    (those with a profile row and a granting record) from ``rows``."""
    profiles = [p for p in rows.profiles if p[0] in rows.consent_records]
    keys = {kind: sorted(catalog.get(kind, ())) for kind in CATALOG_TYPES}
    keys["user"] = canonical_order(profiles, rows)
    index = {kind: {key: i for i, key in enumerate(keys[kind])} for kind in NODE_TYPES}

    data = HeteroData()
    for kind in NODE_TYPES:
        data[kind].num_nodes = len(index[kind])
    pairs: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for rel, s, o in select_bound(store, query("export/catalog-links"), "rel", "s", "o"):
        src, dst = CATALOG_RELATIONS[rel]
        if s in index[src] and o in index[dst] and s != o:
            pairs[rel].add((index[src][s], index[dst][o]))
    users = index["user"]
    for user, role, industry, plan in profiles:
        for rel, value in (("hasRole", role), ("hasIndustry", industry), ("hasPlan", plan)):
            dst = USER_RELATIONS[rel][1]
            if value in index[dst]:
                pairs[rel].add((users[user], index[dst][value]))
    for user, kind, about in rows.step_events:
        rel = EVENT_RELATIONS[kind]
        if user in users and about in index["step"]:
            pairs[rel].add((users[user], index["step"][about]))
    first_used: dict[tuple[int, int], float] = {}
    for user, about, seconds in rows.feature_uses:
        if user in users and about in index["feature"]:
            pair = (users[user], index["feature"][about])
            pairs["used"].add(pair)
            first_used[pair] = min(seconds, first_used.get(pair, seconds))
    outcomes: dict[str, set[str]] = defaultdict(set)
    for user, kind in rows.outcomes:
        if user in users:
            outcomes[kind].add(user)
    for rel, (src, dst) in CATALOG_RELATIONS.items():
        data[src, rel, dst].edge_index = _edges(pairs[rel])
    for rel, (src, dst) in USER_RELATIONS.items():
        data[src, rel, dst].edge_index = _edges(pairs[rel])
    # When each user first used each feature (seconds, the service's clock): the order of a user's first
    # events, read by the usage objective only (embeddings/train.py), so not part of snapshot_hash.
    data["user", "used", "feature"].first_at = torch.tensor(
        [first_used[pair] for pair in sorted(pairs["used"])], dtype=torch.float64
    )

    user_iris = sorted(users, key=users.__getitem__)
    data["user"].y = torch.tensor([u in outcomes[vocab.ACTIVATED.value] for u in user_iris], dtype=torch.float)
    data["user"].converted = torch.tensor([u in outcomes[vocab.CONVERTED.value] for u in user_iris], dtype=torch.float)
    order = {step: at for step, at in select_bound(store, query("export/default-order"), "step", "order")}
    steps = sorted(index["step"], key=index["step"].__getitem__)
    data["step"].default_order = torch.tensor([float(order.get(s, "nan")) for s in steps], dtype=torch.float)
    if reverse:
        data = T.ToUndirected(merge=False)(data)
    return Export(data=data, index=index, consent_records=sorted(rows.consent_records[u] for u in users))
