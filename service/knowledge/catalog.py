"""An in-memory view of the catalog, read from the store after every knowledge load.

The catalog is small and changes rarely; requests resolve public IDs, titles and
graph paths (prerequisites, feature areas) from this view instead of the store.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

import pyoxigraph as ox

from service.errors import NotFound
from service.knowledge import vocab
from service.knowledge.content import ContentInfo, ServedContent, Texts, lookup, serve
from service.knowledge.store import GraphStore, bound, value


@dataclass
class Entity:
    iri: str
    id: str
    kind: str
    title: str


@dataclass
class StepInfo(Entity):
    order: int = 1_000_000
    channels: list[str] = field(default_factory=list)
    introduces: list[str] = field(default_factory=list)
    requires: list[str] = field(default_factory=list)
    required_by: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    plans: list[str] = field(default_factory=list)
    impact: list[str] = field(default_factory=list)  # its wf:impactArea values: a high-impact step when any
    depth: int = 0
    contents: dict[str | None, ContentInfo] = field(default_factory=dict)  # by channel IRI; None: every channel
    labels: dict[str, str] = field(default_factory=dict)  # language tag ("" for none) -> rdfs:label, title's first
    comments: dict[str, str] = field(default_factory=dict)  # language tag -> rdfs:comment


@dataclass
class Catalog:
    entities: dict[str, Entity] = field(default_factory=dict)
    by_id: dict[str, dict[str, Entity]] = field(default_factory=lambda: defaultdict(dict))
    parents: dict[str, list[str]] = field(default_factory=dict)
    includes: dict[str, list[str]] = field(default_factory=dict)
    channels: dict[str, str] = field(default_factory=dict)  # API code -> channel IRI (the ontology's wf:channelCode)
    default_language: str | None = None  # wf:defaultLanguage: where content falls back to
    value_moments: set[str] = field(default_factory=set)  # features marked wf:valueMoment true
    senders: dict[str, str] = field(default_factory=dict)  # channel IRI -> the purpose its sender's messages need
    # Every entity's labels by language tag (lower-cased; "" for none), where it has any in a language of its own.
    labels: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def steps(self) -> list[StepInfo]:
        steps = [s for s in self.by_id["Step"].values() if isinstance(s, StepInfo)]
        return sorted(steps, key=lambda s: (s.order, s.id))

    @property
    def high_impact(self) -> list[str]:
        """The IRIs of the steps the catalog marks with an impact area, in catalog order."""
        return [s.iri for s in self.steps if s.impact]

    def step(self, iri: str) -> StepInfo:
        return self.entities[iri]  # type: ignore[return-value]

    def title(self, iri: str) -> str:
        entity = self.entities.get(iri)
        return entity.title if entity else vocab.local_id(iri)

    def title_in(self, iri: str, locale: str | None) -> str:
        """The entity's label in a locale, by RFC 4647 lookup down to the catalog's default language; its title
        where it has no label in any of those."""
        labels = self.labels.get(iri)
        if locale is None or not labels:
            return self.title(iri)
        tag = lookup(labels, locale, self.default_language or "")
        return labels[tag] if tag is not None else self.title(iri)

    def resolve(self, kind: str, entity_id: str, *, field_name: str) -> str:
        """Return the IRI of the catalog entity of this kind with this ID."""
        entity = self.by_id[kind].get(entity_id)
        if entity is None:
            known = ", ".join(sorted(self.by_id[kind])[:12])
            raise NotFound(
                f"{field_name}: no {kind.lower()} with ID {entity_id!r} in the catalog (known: {known})",
                details=[{"field": field_name, "reason": f"unknown {kind.lower()}"}],
            )
        return entity.iri

    def areas(self, feature_iri: str) -> list[str]:
        """Return the feature areas above a feature, nearest first."""
        seen: list[str] = []
        frontier = list(self.parents.get(feature_iri, []))
        while frontier:
            parent = frontier.pop(0)
            if parent not in seen:
                seen.append(parent)
                frontier.extend(self.parents.get(parent, []))
        return seen

    def plans_included(self, plan_iri: str) -> list[str]:
        """Return the plan and every plan it includes, transitively."""
        seen, frontier = [plan_iri], [plan_iri]
        while frontier:
            for lower in self.includes.get(frontier.pop(), []):
                if lower not in seen:
                    seen.append(lower)
                    frontier.append(lower)
        return seen

    def reached_value(self, used_features: list[str]) -> bool:
        """Return whether any of these used features is a value moment: the user has reached first value."""
        return any(f in self.value_moments for f in used_features)

    def under(self, feature_iri: str, area_iri: str) -> bool:
        return feature_iri == area_iri or area_iri in self.areas(feature_iri)

    def content(self, step_iri: str, channel_iri: str, locale: str | None) -> ServedContent | None:
        """Return what a step shows on a channel for a locale (``service.knowledge.content``); None where the
        step is not on that channel. ``locale`` is a well-formed tag (``content.parse_locale``) or None."""
        step = self.step(step_iri)
        if channel_iri not in step.channels:
            return None
        return serve(
            step.contents,
            channel=channel_iri,
            locale=locale,
            default=self.default_language or "",
            labels=step.labels,
            comments=step.comments,
        )

    def channel_code(self, channel_iri: str) -> str:
        """Return the API code of a channel."""
        return next(code for code, iri in self.channels.items() if iri == channel_iri)


def read_catalog(store: GraphStore, queries: Mapping[str, str], *, channels: Mapping[str, str]) -> Catalog:
    """Build the catalog view from the store's ontology, catalog and entailment graphs.

    ``channels`` maps the API code of each channel to its IRI; a step keeps only those channels.
    """
    catalog = Catalog(channels=dict(channels))
    known_channels = set(channels.values())
    labels: dict[str, tuple[int, str]] = {}
    kinds: dict[str, str] = {}
    all_labels: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    for row in store.select(queries["catalog-entities"]):
        iri, kind = bound(row, "entity").value, vocab.local_id(bound(row, "class").value)
        kinds.setdefault(iri, kind)
        label = row["label"]
        if isinstance(label, ox.Literal):
            rank = 0 if label.language in (None, "en") else 1
            all_labels[iri].append((rank, label.value, label.language or ""))
            if iri not in labels or (rank, label.value) < labels[iri]:
                labels[iri] = (rank, label.value)
    for iri, kind in kinds.items():
        cls = StepInfo if kind == "Step" else Entity
        entity = cls(iri=iri, id=vocab.local_id(iri), kind=kind, title=labels.get(iri, (0, vocab.local_id(iri)))[1])
        catalog.entities[iri] = entity
        catalog.by_id[kind][entity.id] = entity
    for row in store.select(queries["catalog-language"]):
        catalog.default_language = bound(row, "language").value
    catalog.value_moments = {bound(row, "feature").value for row in store.select(queries["catalog-value-moments"])}
    catalog.senders = {
        bound(row, "channel").value: bound(row, "purpose").value for row in store.select(queries["catalog-senders"])
    }
    for iri, found in all_labels.items():
        if any(tag for _, _, tag in found):
            catalog.labels[iri] = {tag.lower(): text for _, text, tag in sorted(found, reverse=True)}
    for step in catalog.by_id["Step"].values():
        if isinstance(step, StepInfo):
            for _, text, tag in sorted(all_labels[step.iri]):  # the title's label first
                step.labels.setdefault(tag, text)
    for row in store.select(queries["catalog-step-comments"]):
        comment = row["comment"]
        subject = catalog.entities.get(bound(row, "step").value)
        if isinstance(subject, StepInfo) and isinstance(comment, ox.Literal):
            subject.comments.setdefault(comment.language or "", comment.value)
    _read_contents(catalog, store, queries)
    for row in store.select(queries["catalog-steps"]):
        step = catalog.step(bound(row, "step").value)
        order, channel, impact = value(row, "order"), value(row, "channel"), value(row, "impact")
        if impact is not None and impact not in step.impact:
            step.impact.append(impact)
        if order is not None:
            step.order = int(order)
        if channel in known_channels and channel not in step.channels:
            step.channels.append(channel)
    for row in store.select(queries["catalog-links"]):
        s, link, o = bound(row, "s").value, bound(row, "link").value, bound(row, "o").value
        subject = catalog.entities.get(s)
        if link == "partOf":
            catalog.parents.setdefault(s, []).append(o)
        elif link == "includesPlan":
            catalog.includes.setdefault(s, []).append(o)
        elif isinstance(subject, StepInfo):
            target = {
                "requires": subject.requires,
                "introduces": subject.introduces,
                "forRole": subject.roles,
                "requiresPlan": subject.plans,
            }.get(link)
            if target is not None and o not in target:
                target.append(o)
    steps = [s for s in catalog.by_id["Step"].values() if isinstance(s, StepInfo)]  # in the order read
    for step in steps:
        for pre in step.requires:
            if isinstance(catalog.entities.get(pre), StepInfo):
                catalog.step(pre).required_by.append(step.iri)
    for step in steps:
        step.depth = _depth(catalog, step.iri, set())
    return catalog


def _read_contents(catalog: Catalog, store: GraphStore, queries: Mapping[str, str]) -> None:
    """Attach each step's contents (texts by language) to the catalog view."""
    parts: dict[str, dict[str, dict[str, str]]] = defaultdict(lambda: defaultdict(dict))  # content -> lang -> texts
    for row in store.select(queries["catalog-content"]):
        step = catalog.entities.get(bound(row, "step").value)
        text = row["text"]
        if not isinstance(step, StepInfo) or not isinstance(text, ox.Literal) or not text.language:
            continue
        iri = bound(row, "content").value
        channel = value(row, "channel")
        info = step.contents.setdefault(channel, ContentInfo(iri=iri, channel=channel))
        if info.iri != iri:  # two contents for one channel: the shapes refuse it; keep the first
            continue
        info.link, info.media = value(row, "link"), value(row, "media")
        parts[iri][text.language].setdefault(bound(row, "property").value, text.value)
    for step in catalog.by_id["Step"].values():
        if isinstance(step, StepInfo):
            for info in step.contents.values():
                info.texts = {
                    tag: Texts(t["headline"], t["body"], t["ctaLabel"])
                    for tag, t in parts[info.iri].items()
                    if {"headline", "body", "ctaLabel"} <= t.keys()  # a half-translated language is never served
                }


def _depth(catalog: Catalog, iri: str, visiting: set[str]) -> int:
    """Return the length of the longest prerequisite chain below a step."""
    if iri in visiting:  # shapes refuse cycles; stay finite anyway
        return 0
    step = catalog.entities.get(iri)
    if not isinstance(step, StepInfo) or not step.requires:
        return 0
    visiting.add(iri)
    depth = 1 + max(_depth(catalog, pre, visiting) for pre in step.requires)
    visiting.discard(iri)
    return depth
