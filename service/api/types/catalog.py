"""GraphQL types of the catalog: channels, features, steps."""

from __future__ import annotations

from enum import Enum

import strawberry
from strawberry.types import Info

from service.knowledge.catalog import Catalog, StepInfo
from service.runtime import Runtime


@strawberry.enum
class Channel(Enum):
    WEB = "WEB"
    MOBILE = "MOBILE"
    IN_APP = "IN_APP"
    EMAIL = "EMAIL"


def runtime_of(info: Info) -> Runtime:
    return info.context["runtime"]


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
