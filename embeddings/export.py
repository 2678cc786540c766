"""Export a Wayfinder store to a PyG ``HeteroData`` graph: catalog, consented users, their events.

A handful of SELECT queries over the union of the named graphs, never one per user.
Only users whose latest ANALYTICS consent record gives consent are exported, "latest" in
the order the service recorded the records (``service.clock.consent_order``, as in
``service.decisions.consent``). ``wf:partOf``, ``wf:requires`` and ``wf:includesPlan`` are
transitive in the ontology, so their closure is exported.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field

import pyoxigraph as ox
import torch
import torch_geometric.transforms as T
from torch_geometric.data import HeteroData

from service.clock import consent_order, parse_datetime
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
# Relation name -> (source type, target type, SPARQL pattern over ?s and ?o).
CATALOG_RELATIONS = {
    "introduces": ("step", "feature", "?s wf:introduces ?o"),
    "partOf": ("feature", "feature", "?s wf:partOf+ ?o"),
    "requires": ("step", "step", "?s wf:requires+ ?o"),
    "forRole": ("step", "role", "?s wf:forRole ?o"),
    "requiresPlan": ("step", "plan", "?s wf:requiresPlan ?o"),
    "includesPlan": ("plan", "plan", "?s wf:includesPlan+ ?o"),
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

PREFIXES = f"PREFIX wf: <{vocab.WF_NS}>\nPREFIX dpv: <{vocab.DPV_NS}>\nPREFIX rdf: <{vocab.RDF_NS}>\n"

NODES_QUERY = (
    PREFIXES
    + """
SELECT ?node ?class WHERE {
  VALUES ?class { wf:Step wf:Feature wf:Role wf:Industry wf:Plan }
  ?node a ?class .
  FILTER isIRI(?node)
}"""
)

ORDER_QUERY = PREFIXES + "SELECT ?step ?order WHERE { ?step a wf:Step ; wf:defaultOrder ?order }"

LINKS_QUERY = (
    PREFIXES
    + "SELECT ?rel ?s ?o WHERE {\n"
    + "\n  UNION\n".join(
        f'  {{ {pattern} BIND("{name}" AS ?rel) }}' for name, (_, _, pattern) in CATALOG_RELATIONS.items()
    )
    + "\n}"
)

# Ordered as queries/service/consent-records.rq: by wf:recordedAt, the service's clock; a record written
# before the service kept it by its dpv:isIndicatedAtTime, so that older stores keep their meaning.
CONSENT_QUERY = (
    PREFIXES
    + """
SELECT ?user ?record ?status ?orderedAt WHERE {
  ?record a dpv:ConsentRecord ;
          dpv:hasDataSubject ?user ;
          dpv:hasPurpose <{purpose}> ;
          dpv:hasConsentStatus ?status ;
          dpv:isIndicatedAtTime ?at .
  OPTIONAL { ?record wf:recordedAt ?recordedAt }
  BIND (COALESCE(?recordedAt, ?at) AS ?orderedAt)
}"""
)

PROFILES_QUERY = (
    PREFIXES
    + """
SELECT ?user ?role ?industry ?plan WHERE {
  ?user a wf:User .
  OPTIONAL { ?user wf:hasRole ?role }
  OPTIONAL { ?user wf:hasIndustry ?industry }
  OPTIONAL { ?user wf:hasPlan ?plan }
}"""
)

STEP_EVENTS_QUERY = (
    PREFIXES
    + """
SELECT ?user ?type ?about WHERE {
  VALUES ?type { wf:StepCompleted wf:StepDismissed }
  ?event a ?type ; wf:byUser ?user ; wf:aboutStep ?about .
}"""
)

FEATURE_EVENTS_QUERY = (
    PREFIXES
    + """
SELECT ?user ?type ?about WHERE {
  VALUES ?type { wf:FeatureUsed }
  ?event a ?type ; wf:byUser ?user ; wf:aboutFeature ?about .
}"""
)

OUTCOMES_QUERY = (
    PREFIXES
    + """
SELECT DISTINCT ?user ?type WHERE {
  VALUES ?type { wf:Activated wf:Converted }
  ?event a ?type ; wf:byUser ?user .
}"""
)


@dataclass
class Export:
    """The graph, and the IRI -> node index map of every node type."""

    data: HeteroData
    index: dict[str, dict[str, int]]
    consent_records: list[str] = field(default_factory=list)  # the granting records the export relied on

    def iris(self, node_type: str) -> list[str]:
        """Return the IRIs of a node type in index order."""
        return sorted(self.index[node_type], key=self.index[node_type].__getitem__)


def _select(store, query: str) -> list[tuple]:
    """Rows of a SELECT as tuples of term values, from pyoxigraph or a service store (shared mode)."""
    if isinstance(store, ox.Store):
        rows = (tuple(row) for row in store.query(query, use_default_graph_as_union=True))
    else:
        rows = (tuple(row.values()) for row in store.select(query))
    return [tuple(term.value if term is not None else None for term in row) for row in rows]


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


def consented_users(store: ox.Store, *, purpose: ox.NamedNode = vocab.ANALYTICS) -> set[str]:
    """Return the users whose latest consent record for the purpose gives consent."""
    return set(consent_records(store, purpose=purpose))


def consent_records(store: ox.Store, *, purpose: ox.NamedNode = vocab.ANALYTICS) -> dict[str, str]:
    """Return, per user whose latest consent record for the purpose gives consent, that record's IRI."""
    latest: dict[str, tuple[tuple, str, bool]] = {}
    for user, record, status, ordered_at in _select(store, CONSENT_QUERY.replace("{purpose}", purpose.value)):
        granted = status == vocab.CONSENT_GIVEN.value
        key = consent_order(parse_datetime(ordered_at), granted=granted, record=record)
        if user not in latest or key > latest[user][0]:
            latest[user] = (key, record, granted)
    return {user: record for user, (_, record, granted) in latest.items() if granted}


def _edges(pairs: set[tuple[int, int]]) -> torch.Tensor:
    if not pairs:
        return torch.empty((2, 0), dtype=torch.long)
    return torch.tensor(sorted(pairs), dtype=torch.long).t().contiguous()


def export_graph(store: ox.Store, *, purpose: ox.NamedNode = vocab.ANALYTICS, reverse: bool = True) -> Export:
    """Export the catalog and every user with an active consent for the purpose as a ``HeteroData``."""
    store = getattr(store, "oxigraph", store)  # also accept service.knowledge.embedded.Store
    kinds = {cls.value: kind for kind, cls in CLASSES.items()}
    found: dict[str, set[str]] = defaultdict(set)
    for node, cls in _select(store, NODES_QUERY):
        found[kinds[cls]].add(node)
    consented = consent_records(store, purpose=purpose)
    profiles = [row for row in _select(store, PROFILES_QUERY) if row[0] in consented]
    found["user"] = {row[0] for row in profiles}
    index = {kind: {iri: i for i, iri in enumerate(sorted(found[kind]))} for kind in NODE_TYPES}

    data = HeteroData()
    for kind in NODE_TYPES:
        data[kind].num_nodes = len(index[kind])
    pairs: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for rel, s, o in _select(store, LINKS_QUERY):
        src, dst, _ = CATALOG_RELATIONS[rel]
        if s in index[src] and o in index[dst] and s != o:
            pairs[rel].add((index[src][s], index[dst][o]))
    users = index["user"]
    for user, role, industry, plan in profiles:
        for rel, value in (("hasRole", role), ("hasIndustry", industry), ("hasPlan", plan)):
            dst = USER_RELATIONS[rel][1]
            if value in index[dst]:
                pairs[rel].add((users[user], index[dst][value]))
    for query in (STEP_EVENTS_QUERY, FEATURE_EVENTS_QUERY):
        for user, kind, about in _select(store, query):
            rel = EVENT_RELATIONS[kind]
            dst = USER_RELATIONS[rel][1]
            if user in users and about in index[dst]:
                pairs[rel].add((users[user], index[dst][about]))
    outcomes: dict[str, set[str]] = defaultdict(set)
    for user, kind in _select(store, OUTCOMES_QUERY):
        if user in users:
            outcomes[kind].add(user)
    for rel, (src, dst, _) in CATALOG_RELATIONS.items():
        data[src, rel, dst].edge_index = _edges(pairs[rel])
    for rel, (src, dst) in USER_RELATIONS.items():
        data[src, rel, dst].edge_index = _edges(pairs[rel])

    user_iris = sorted(users, key=users.__getitem__)
    data["user"].y = torch.tensor([u in outcomes[vocab.ACTIVATED.value] for u in user_iris], dtype=torch.float)
    data["user"].converted = torch.tensor([u in outcomes[vocab.CONVERTED.value] for u in user_iris], dtype=torch.float)
    order = dict(_select(store, ORDER_QUERY))
    steps = sorted(index["step"], key=index["step"].__getitem__)
    data["step"].default_order = torch.tensor([float(order.get(s, "nan")) for s in steps], dtype=torch.float)
    if reverse:
        data = T.ToUndirected(merge=False)(data)
    return Export(data=data, index=index, consent_records=sorted(consented[u] for u in users))
