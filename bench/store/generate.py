"""Seeded generator of a synthetic Wayfinder store: ontology, catalog, users, events, consent.

The layout is the service's: users, their consent records and events are built by
``service/synthetic.py`` with the service's own quad builders (those of
``users.register``, ``consent.consent_record`` and ``users.record_events``):

- the ontology (ontology/wayfinder.ttl) in graph ``graph/ontology``;
- a catalog of ~200 steps (prerequisite chains up to 6 deep, role and plan
  targeting, channels) and 60 features in a 3-level hierarchy (6 areas x 3
  sub-areas x 2 features), with roles, industries and 5 nested plans, in graph
  ``graph/catalog/synthetic``;
- per user, graph ``graph/user/ID``: the profile (role, industry, plan, sign-up
  channel, registeredAt, pseudonym) and 10-20 events (StepCompleted, FeatureUsed,
  StepDismissed, Activated, Converted) simulated along the prerequisite graph:
  a step is completed only after its prerequisites, and only steps open to the
  user's role and plan are completed;
- consent records (W3C DPV, each with ``wf:recordedAt``) in graph ``graph/consent``:
  Personalization given by 85% of users (5% of them withdraw it later), Analytics
  by 60%, Marketing by 25%; a purpose not consented to has no record, as after
  ``users.register``. Events of a class with wf:collectedFor are only
  generated when the user's final consent allows them, so the data conforms to
  shapes/privacy.ttl (checked by shacl.py, which reports the violations found).

The size is given in triples (``--triples``: whole users are added until the
total reaches it, the ontology and catalog included), in users (``--users``) or
in SHACL target nodes (``--nodes``: users + events + consent records).

Output: N-Quads (``.nq``, the store layout) and/or N-Triples (``.nt``, the same
triples with the graph names dropped), byte-identical for the same seed, size
and ontology/wayfinder.ttl (which is in the file, so an edit to the ontology
changes the triple count by a few).

    .venv/bin/python -m bench.store.generate --triples 1000000 --format both
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyoxigraph as ox

from bench import lib
from service import synthetic
from service.synthetic import SyntheticConsent, SyntheticEvent, SyntheticUser

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ONTOLOGY_FILE = ROOT / "ontology" / "wayfinder.ttl"
DATA_DIR = HERE / "data"

WF = "https://w3id.org/wayfinder/ontology#"
DPV = "https://w3id.org/dpv#"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
RDFS = "http://www.w3.org/2000/01/rdf-schema#"
XSD = "http://www.w3.org/2001/XMLSchema#"
BASE = "https://w3id.org/wayfinder/"
CATALOG_BASE = BASE + "synthetic/"  # IRIs of catalog entities (last segment = public ID)

# Terms are kept as N-Triples strings: the file writers only join them.
Quad = tuple[str, str, str, str]


def _iri(value: str) -> str:
    return f"<{value}>"


def _wf(name: str) -> str:
    return f"<{WF}{name}>"


A = f"<{RDF}type>"
LABEL = f"<{RDFS}label>"
ONTOLOGY_GRAPH = _iri(BASE + "graph/ontology")
CATALOG_GRAPH = _iri(BASE + "graph/catalog/synthetic")
CONSENT_GRAPH = _iri(BASE + "graph/consent")
XSD_INTEGER = f"<{XSD}integer>"


def _en(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"@en'


def _int(value: int) -> str:
    return f'"{value}"^^{XSD_INTEGER}'


# ---------------------------------------------------------------------------
# Catalog

AREAS = {
    "Data sources": ["Warehouse connectors", "File uploads", "Event tracking"],
    "Modeling": ["Metrics layer", "Joins", "Calculated fields"],
    "Exploration": ["Visual explorer", "SQL editor", "Notebooks"],
    "Dashboards": ["Charts", "Filters", "Layouts"],
    "Sharing": ["Scheduled reports", "Alerts", "Embedding"],
    "Administration": ["Access control", "Single sign-on", "Billing"],
}
LEAF_SUFFIXES = ["essentials", "power tools"]
VERBS = ["Try", "Set up", "Configure", "Learn", "Explore", "Customise", "Automate", "Share", "Review", "Master"]
ROLES = ["analyst", "engineer", "manager", "admin", "marketer", "executive"]
INDUSTRIES = ["retail", "fintech", "healthcare", "saas", "media", "manufacturing", "education", "public-sector"]
PLANS = ["free", "starter", "team", "business", "enterprise"]  # each includes the one before
PLAN_WEIGHTS = [40, 20, 20, 12, 8]
CHANNELS = ["Web", "Mobile", "InApp", "Email"]
SIGNUP_WEIGHTS = [70, 20, 0, 10]  # nobody signs up in-app
MAX_DEPTH = 6  # longest prerequisite chain, in steps


@dataclass
class Step:
    index: int
    iri: str
    label: str
    area: int
    features: list[int]
    prereqs: list[int]
    channels: list[str]
    roles: list[int]
    plan: int | None
    depth: int


@dataclass
class Feature:
    index: int
    iri: str
    label: str
    parent: int | None
    area: int  # index of its top-level area (itself for an area)


@dataclass
class Catalog:
    steps: list[Step] = field(default_factory=list)
    features: list[Feature] = field(default_factory=list)
    dependents: list[list[int]] = field(default_factory=list)
    features_by_area: dict[int, list[int]] = field(default_factory=dict)

    def quads(self) -> Iterator[Quad]:
        g = CATALOG_GRAPH
        for kind, names in (("Role", ROLES), ("Industry", INDUSTRIES)):
            for name in names:
                node = _iri(CATALOG_BASE + name)
                yield node, A, _wf(kind), g
                yield node, LABEL, _en(name.replace("-", " ").capitalize()), g
        for i, name in enumerate(PLANS):
            node = _iri(CATALOG_BASE + name)
            yield node, A, _wf("Plan"), g
            yield node, LABEL, _en(name.capitalize()), g
            if i:
                yield node, _wf("includesPlan"), _iri(CATALOG_BASE + PLANS[i - 1]), g
        for f in self.features:
            yield f.iri, A, _wf("Feature"), g
            yield f.iri, LABEL, _en(f.label), g
            if f.parent is not None:
                yield f.iri, _wf("partOf"), self.features[f.parent].iri, g
        for s in self.steps:
            yield s.iri, A, _wf("Step"), g
            yield s.iri, LABEL, _en(s.label), g
            yield s.iri, _wf("defaultOrder"), _int(10 * (s.index + 1)), g
            for f in s.features:
                yield s.iri, _wf("introduces"), self.features[f].iri, g
            for c in s.channels:
                yield s.iri, _wf("availableOn"), _wf(c), g
            for p in s.prereqs:
                yield s.iri, _wf("requires"), self.steps[p].iri, g
            for r in s.roles:
                yield s.iri, _wf("forRole"), _iri(CATALOG_BASE + ROLES[r]), g
            if s.plan is not None:
                yield s.iri, _wf("requiresPlan"), _iri(CATALOG_BASE + PLANS[s.plan]), g


def build_catalog(rng: random.Random, n_steps: int = 200) -> Catalog:
    cat = Catalog()

    def add_feature(label: str, parent: int | None, area: int | None) -> int:
        index = len(cat.features)
        slug = "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-")
        cat.features.append(
            Feature(index, _iri(CATALOG_BASE + "feature-" + slug), label, parent, index if area is None else area)
        )
        return index

    leaves_by_area: dict[int, list[int]] = {}
    for area_name, subs in AREAS.items():
        area = add_feature(area_name, None, None)
        cat.features_by_area[area] = [area]
        leaves_by_area[area] = []
        for sub_name in subs:
            sub = add_feature(sub_name, area, area)
            cat.features_by_area[area].append(sub)
            for suffix in LEAF_SUFFIXES:
                leaf = add_feature(f"{sub_name} {suffix}", sub, area)
                cat.features_by_area[area].append(leaf)
                leaves_by_area[area].append(leaf)
    areas = list(cat.features_by_area)

    steps_by_area: dict[int, list[int]] = {a: [] for a in areas}
    for i in range(n_steps):
        area = areas[0] if i < 3 else rng.choice(areas)  # the journey opens with data sources
        pool = leaves_by_area[area] if rng.random() < 0.75 else cat.features_by_area[area][:4]
        features = [rng.choice(pool)]
        if rng.random() < 0.1:
            extra = rng.choice(cat.features_by_area[area])
            if extra not in features:
                features.append(extra)
        # Prerequisites: mostly the recent steps of the same area (chains), some cross-area.
        prereqs: list[int] = []
        if i:
            wanted = rng.choices([0, 1, 2], weights=[15, 65, 20])[0]
            same = [j for j in steps_by_area[area][-12:] if cat.steps[j].depth < MAX_DEPTH]
            other = [j for j in range(max(0, i - 40), i) if cat.steps[j].depth < MAX_DEPTH]
            for _ in range(wanted):
                pool = same if same and rng.random() < 0.8 else other
                if pool:
                    j = rng.choice(pool)
                    if j not in prereqs:
                        prereqs.append(j)
        depth = 1 + max((cat.steps[j].depth for j in prereqs), default=0)
        channels = ["Web"] + [c for c, p in (("Mobile", 0.3), ("InApp", 0.5), ("Email", 0.2)) if rng.random() < p]
        roles = sorted(rng.sample(range(len(ROLES)), rng.choice([1, 2]))) if rng.random() < 0.25 else []
        plan = rng.choice([1, 2, 2, 3, 3, 4]) if rng.random() < 0.2 else None
        verb = VERBS[i % len(VERBS)]
        label = f"{verb} {cat.features[features[0]].label.lower()} ({i + 1})"
        cat.steps.append(
            Step(
                i,
                _iri(CATALOG_BASE + f"step-{i + 1:03d}"),
                label,
                area,
                features,
                prereqs,
                channels,
                roles,
                plan,
                depth,
            )
        )
        steps_by_area[area].append(i)
    cat.dependents = [[] for _ in cat.steps]
    for s in cat.steps:
        for p in s.prereqs:
            cat.dependents[p].append(s.index)
    return cat


# ---------------------------------------------------------------------------
# Users, events, consent

EPOCH = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
YEAR_S = 365 * 24 * 3600


@dataclass
class Counts:
    users: int = 0
    events: int = 0
    consents: int = 0
    triples: int = 0

    @property
    def nodes(self) -> int:
        return self.users + self.events + self.consents


EVENT_CLASSES = {
    "done": "StepCompleted",
    "dismissed": "StepDismissed",
    "used": "FeatureUsed",
    "activated": "Activated",
    "converted": "Converted",
}


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def synthetic_user(
    rng: random.Random, cat: Catalog, user_id: str, counts: Counts, n_events: int | None = None
) -> SyntheticUser:
    """One user: profile, consent records and events, drawn along the prerequisite graph."""
    role = rng.randrange(len(ROLES))
    plan = rng.choices(range(len(PLANS)), weights=PLAN_WEIGHTS)[0]
    registered = EPOCH + dt.timedelta(seconds=rng.randrange(YEAR_S))
    user = SyntheticUser(
        id=user_id,
        registered_at=registered,
        role=CATALOG_BASE + ROLES[role],
        industry=CATALOG_BASE + rng.choice(INDUSTRIES),
        plan=CATALOG_BASE + PLANS[plan],
        signup_channel=WF + rng.choices(CHANNELS, weights=SIGNUP_WEIGHTS)[0],
        pseudonym=f"{rng.getrandbits(128):032x}",
    )

    # Consent records as the service writes them: a grant at registration, a later withdrawal.
    # A purpose the user does not consent to has no record (users.register records grants only).
    at = registered + dt.timedelta(seconds=5)
    personalization = rng.random() < 0.85
    records: list[tuple[str, bool, dt.datetime]] = [("Personalization", True, at)] if personalization else []
    analytics = rng.random() < 0.60
    if analytics:
        records.append(("Analytics", True, at))
    if rng.random() < 0.5 and rng.random() < 0.5:
        records.append(("Marketing", True, at))
    if personalization and rng.random() < 0.05:
        records.append(("Personalization", False, at + dt.timedelta(days=rng.randint(20, 60))))
        personalization = False
    user.consents = [SyntheticConsent(_uuid(rng), WF + purpose, granted, when) for purpose, granted, when in records]
    counts.consents += len(records)
    feature_ok = personalization or analytics  # wf:FeatureUsed is collected for both
    milestone_ok = analytics  # wf:Activated and wf:Converted for Analytics only

    # Events along the prerequisite graph.
    open_to_user = [(not s.roles or role in s.roles) and (s.plan is None or s.plan <= plan) for s in cat.steps]
    missing = [len(s.prereqs) for s in cat.steps]
    available = {s.index for s in cat.steps if not s.prereqs and open_to_user[s.index]}
    completed: list[int] = []
    activated = converted = False
    n = n_events if n_events is not None else rng.randint(10, 20)
    at = registered + dt.timedelta(minutes=rng.randint(1, 30))
    for _ in range(n):
        at += dt.timedelta(seconds=rng.randint(60, 2 * 86400))
        kind = rng.choices(["done", "used", "dismissed", "activated", "converted"], weights=[55, 30, 10, 3, 2])[0]
        if kind == "used" and not feature_ok:
            kind = "done"
        if kind == "activated" and (activated or not milestone_ok):
            kind = "done"
        if kind == "converted" and (converted or not milestone_ok or plan == 0):
            kind = "done"
        if kind in ("done", "dismissed") and not available:
            kind = "used" if feature_ok else None
        if kind is None:
            continue
        event_id = _uuid(rng)
        step = feature = None
        if kind in ("done", "dismissed"):
            index = rng.choice(sorted(available)[:5])  # follow the default order, loosely
            available.discard(index)
            step = cat.steps[index].iri[1:-1]
            if kind == "done":
                completed.append(index)
                for d in cat.dependents[index]:
                    missing[d] -= 1
                    if missing[d] == 0 and open_to_user[d]:
                        available.add(d)
        elif kind == "used":
            if completed and rng.random() < 0.8:
                f = rng.choice(cat.steps[rng.choice(completed)].features)
            else:
                f = rng.randrange(len(cat.features))
            feature = cat.features[f].iri[1:-1]
        else:
            activated = activated or kind == "activated"
            converted = converted or kind == "converted"
        user.events.append(SyntheticEvent(event_id, WF + EVENT_CLASSES[kind], at, step=step, feature=feature))
        counts.events += 1
    counts.users += 1
    return user


def user_quads(
    rng: random.Random, cat: Catalog, user_id: str, counts: Counts, n_events: int | None = None
) -> list[Quad]:
    """One user's quads (``service.synthetic``, the service's builders): their graph and the consent graph."""
    out = as_strings(synthetic.user_quads(synthetic_user(rng, cat, user_id, counts, n_events)))
    counts.triples += len(out)
    return out


def as_strings(quads: Iterable[ox.Quad]) -> list[Quad]:
    """Return pyoxigraph quads as N-Triples term strings."""
    return [(str(q.subject), str(q.predicate), str(q.object), str(q.graph_name)) for q in quads]


def ontology_quads() -> list[Quad]:
    """The ontology, in its named graph, serialised by pyoxigraph (blank nodes labelled)."""
    labels: dict[str, str] = {}

    def term(t) -> str:
        if isinstance(t, ox.BlankNode):  # pyoxigraph labels them at random: relabel in order
            return labels.setdefault(t.value, f"_:onto{len(labels) + 1}")
        return str(t)

    return [
        (term(t.subject), str(t.predicate), term(t.object), ONTOLOGY_GRAPH)
        for t in ox.parse(path=str(ONTOLOGY_FILE), format=ox.RdfFormat.TURTLE)
    ]


def generate(
    *,
    seed: int = 42,
    triples: int | None = None,
    users: int | None = None,
    nodes: int | None = None,
    ontology: bool = True,
    counts: Counts | None = None,
) -> Iterator[Quad]:
    """Yield the quads of one synthetic store; stop at the first whole user that reaches the target."""
    if sum(x is not None for x in (triples, users, nodes)) != 1:
        raise ValueError("give exactly one of triples, users, nodes")
    counts = counts if counts is not None else Counts()
    rng = random.Random(seed)
    cat = build_catalog(rng)
    head = (ontology_quads() if ontology else []) + list(cat.quads())
    counts.triples += len(head)
    yield from head
    i = 0
    while True:
        if triples is not None and counts.triples >= triples:
            break
        if users is not None and counts.users >= users:
            break
        if nodes is not None and counts.nodes >= nodes:
            break
        i += 1
        yield from user_quads(rng, cat, f"u{i:07d}", counts)


# ---------------------------------------------------------------------------
# Output


def nquads_lines(quads: Iterable[Quad]) -> Iterator[str]:
    for s, p, o, g in quads:
        yield f"{s} {p} {o} {g} .\n"


def ntriples_lines(quads: Iterable[Quad]) -> Iterator[str]:
    for s, p, o, _ in quads:
        yield f"{s} {p} {o} .\n"


def to_rdflib_term(term: str):
    """Parse one N-Triples term as written by this module (or by pyoxigraph)."""
    import rdflib

    if term[0] == "<":
        return rdflib.URIRef(term[1:-1])
    if term[0] == "_":
        return rdflib.BNode(term[2:])
    end = term.rindex('"')
    lex = term[1:end]
    if "\\" in lex:
        lex = (
            lex.replace("\\\\", "\x00")
            .replace('\\"', '"')
            .replace("\\n", "\n")
            .replace("\\r", "\r")
            .replace("\\t", "\t")
            .replace("\x00", "\\")
        )
    rest = term[end + 1 :]
    if rest.startswith("^^"):
        return rdflib.Literal(lex, datatype=rdflib.URIRef(rest[3:-1]))
    if rest.startswith("@"):
        return rdflib.Literal(lex, lang=rest[1:])
    return rdflib.Literal(lex)


def add_to_rdflib(graph, quads: Iterable[Quad]) -> None:
    """Add quads to an rdflib Graph (graph names dropped), converting repeated terms once."""
    cache: dict[str, object] = {}

    def conv(t: str):
        node = cache.get(t)
        if node is None:
            node = cache[t] = to_rdflib_term(t)
        return node

    add = graph.add
    for s, p, o, _ in quads:
        # Literals and event IRIs are mostly unique: do not let the cache grow with them.
        add(
            (
                conv(s) if not s.startswith(f"<{BASE}event/") else to_rdflib_term(s),
                conv(p),
                conv(o) if o[0] != '"' else to_rdflib_term(o),
            )
        )


def write(path_base: Path, fmt: str, **kwargs) -> tuple[Counts, dict[str, str]]:
    """Write ``path_base``.nq and/or .nt; return the counts and the paths written."""
    path_base.parent.mkdir(parents=True, exist_ok=True)
    counts = Counts()
    quads = list(generate(counts=counts, **kwargs))
    written = {}
    for kind, suffix, lines in (("nquads", ".nq", nquads_lines), ("ntriples", ".nt", ntriples_lines)):
        if fmt in (kind, "both"):
            path = path_base.with_suffix(suffix)
            tmp = path.with_suffix(suffix + ".part")
            with open(tmp, "w", encoding="utf-8", buffering=1 << 20) as f:
                f.writelines(lines(quads))
            os.replace(tmp, path)
            written[kind] = str(path)
    meta = {
        "seed": kwargs.get("seed"),
        "triples": counts.triples,
        "users": counts.users,
        "events": counts.events,
        "consent_records": counts.consents,
        "nodes": counts.nodes,
    }
    path_base.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return counts, written


def ensure(triples: int, seed: int = 42, fmt: str = "both") -> dict[str, str]:
    """Return the paths of the data file(s) for this size and seed, generating them if missing.

    The "meta" entry is a JSON file with the counts (triples, users, events, ...).
    """
    base = DATA_DIR / f"synthetic-{lib.size_label(triples)}-seed{seed}"
    wanted = {"nquads": base.with_suffix(".nq"), "ntriples": base.with_suffix(".nt")}
    if fmt != "both":
        wanted = {fmt: wanted[fmt]}
    wanted["meta"] = base.with_suffix(".json")
    if not all(p.exists() for p in wanted.values()):
        write(base, fmt, seed=seed, triples=triples)
    return {k: str(v) for k, v in wanted.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--triples", type=int, help="stop at the first whole user that reaches this many triples")
    size.add_argument("--users", type=int, help="number of users")
    size.add_argument("--nodes", type=int, help="users + events + consent records")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--format", choices=["nquads", "ntriples", "both"], default="both")
    parser.add_argument(
        "--out", type=Path, help="output path without suffix (default: bench/store/data/synthetic-SIZE-seedS)"
    )
    args = parser.parse_args(argv)
    n = args.triples or args.users or args.nodes
    unit = "" if args.triples else "u" if args.users else "n"
    base = args.out or DATA_DIR / f"synthetic-{lib.size_label(n)}{unit}-seed{args.seed}"
    t0 = time.perf_counter()
    counts, written = write(base, args.format, seed=args.seed, triples=args.triples, users=args.users, nodes=args.nodes)
    elapsed = time.perf_counter() - t0
    cat = build_catalog(random.Random(args.seed))
    print(f"command: {lib.command_line()}")
    print("| what | value |\n|---|---|")
    for k, v in (
        ("triples", counts.triples),
        ("users", counts.users),
        ("events", counts.events),
        ("consent records", counts.consents),
        ("SHACL target nodes (users+events+consents)", counts.nodes),
        ("catalog steps", len(cat.steps)),
        ("catalog features", len(cat.features)),
        ("longest prerequisite chain", max(s.depth for s in cat.steps)),
        ("steps with prerequisites", sum(1 for s in cat.steps if s.prereqs)),
    ):
        print(f"| {k} | {v:,} |")
    for kind, path in written.items():
        print(f"| {kind} file | {os.path.relpath(path, ROOT)} ({os.path.getsize(path) / 1e6:.1f} MB) |")
    print(f"| generation time | {elapsed:.1f} s |")


if __name__ == "__main__":
    main()
