"""GraphQL types of the catalog: channels, features, steps."""

from __future__ import annotations

from enum import Enum

import strawberry
from strawberry.types import Info

from service.knowledge.catalog import Catalog, StepInfo
from service.knowledge.content import ServedContent, parse_locale
from service.runtime import Runtime


@strawberry.enum
class Channel(Enum):
    WEB = "WEB"
    MOBILE = "MOBILE"
    IN_APP = "IN_APP"
    EMAIL = "EMAIL"


def runtime_of(info: Info) -> Runtime:
    return info.context["runtime"]


@strawberry.type(description="What a step shows on a channel, in the locale that RFC 4647 lookup found")
class StepContent:
    locale: str = strawberry.field(
        description="The BCP 47 tag of the texts served (the catalog's default language at the end of the chain)"
    )
    headline: str
    body: str
    cta_label: str
    link: str | None
    media: str | None = strawberry.field(description="An image or video shown with the content")
    version: str = strawberry.field(description="SHA-256 of what is shown: the content version a decision records")


def content_of(served: ServedContent | None) -> StepContent | None:
    if served is None:
        return None
    return StepContent(
        locale=served.locale,
        headline=served.headline,
        body=served.body,
        cta_label=served.cta_label,
        link=served.link,
        media=served.media,
        version=served.version,
    )


@strawberry.type
class Feature:
    id: strawberry.ID
    title: str


@strawberry.type
class Step:
    id: strawberry.ID
    title: str
    channels: list[Channel]
    iri: strawberry.Private[str]

    @strawberry.field
    def introduces(self, info: Info) -> list[Feature]:
        catalog = runtime_of(info).catalog
        return [feature_of(catalog, iri) for iri in catalog.step(self.iri).introduces if iri in catalog.entities]

    @strawberry.field(
        description="What the step shows on a channel for a locale (a BCP 47 tag; lookup falls back to the catalog's "
        "default language); null only where the step is not on that channel; a step without content shows its label"
    )
    def content(self, info: Info, channel: Channel, locale: str | None = None) -> StepContent | None:
        catalog = runtime_of(info).catalog
        tag = parse_locale(locale)
        return content_of(catalog.content(self.iri, catalog.channels[channel.value], tag))

    @strawberry.field
    def requires(self, info: Info) -> list[Step]:
        catalog = runtime_of(info).catalog
        return [
            step_of(catalog, catalog.step(iri)) for iri in catalog.step(self.iri).requires if iri in catalog.entities
        ]


def step_of(catalog: Catalog, step: StepInfo) -> Step:
    return Step(
        id=strawberry.ID(step.id),
        title=step.title,
        channels=[Channel(catalog.channel_code(c)) for c in step.channels],
        iri=step.iri,
    )


def feature_of(catalog: Catalog, iri: str) -> Feature:
    entity = catalog.entities[iri]
    return Feature(id=strawberry.ID(entity.id), title=entity.title)
