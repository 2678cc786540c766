"""The committed GraphQL schema (schema.graphql) is what the code serves, and keeps the contract."""

from __future__ import annotations

from pathlib import Path

from service.api.schema import build_schema

SCHEMA = Path(__file__).resolve().parents[1] / "schema.graphql"

CONTRACT = [
    "nextSteps(userId: ID!, channel: Channel! = WEB, limit: Int! = 5): Recommendation!",
    "user(id: ID!): User",
    "steps: [Step!]!",
    "decision(id: ID!): Decision",
    "registerUser(input: RegisterUserInput!): User!",
    "recordEvent(input: EventInput!): Event!",
    "recordEvents(inputs: [EventInput!]!): Int!",
    "grantConsent(userId: ID!, purpose: Purpose!): Consent!",
    "withdrawConsent(userId: ID!, purpose: Purpose!): Consent!",
    "eraseUser(userId: ID!): ErasureReceipt!",
]


def test_committed_schema_matches_the_code():
    assert SCHEMA.read_text() == build_schema().as_str() + "\n", (
        "schema.graphql is stale: regenerate it with `make schema` and review the API change")


def test_the_contract_fields_are_all_there():
    text = SCHEMA.read_text()
    for line in CONTRACT:
        assert line in text, line


def test_a_repeated_query_is_validated_once(client):
    """The limits' rules are built once, so strawberry's validation cache hits on a repeated document."""
    from strawberry.extensions.validation_cache import _get_validate_cache

    cache = _get_validate_cache(256)
    query = "{ steps { id title requires { id } } __typename }"
    client.data(query)
    before = cache.cache_info()
    for _ in range(3):
        client.data(query)
    after = cache.cache_info()
    assert after.hits - before.hits == 3 and after.misses == before.misses
