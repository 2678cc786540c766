"""The committed GraphQL schema (schema.graphql) is what the code serves, and keeps the contract."""

from __future__ import annotations

from service.api.schema import build_schema
from tests.paths import ROOT

SCHEMA = ROOT / "schema.graphql"

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
        "schema.graphql is stale: regenerate it with `make schema` and review the API change"
    )


def _fields(sdl: str) -> dict[str, object]:
    """Return the root fields of an SDL text (Query and Mutation), by name."""
    from graphql import ObjectTypeDefinitionNode, parse

    fields: dict[str, object] = {}
    for definition in parse(sdl).definitions:
        if isinstance(definition, ObjectTypeDefinitionNode) and definition.name.value in ("Query", "Mutation"):
            fields.update({f.name.value: f for f in definition.fields})
    return fields


def test_the_contract_fields_are_all_there():
    """Each contract field is served with its arguments, types and defaults; arguments added since are optional."""
    from graphql import NonNullTypeNode, print_ast

    served = _fields(SCHEMA.read_text())
    promised = _fields("type Query { " + " ".join(CONTRACT) + " }")
    for name, field in promised.items():
        assert name in served, name
        have = served[name]
        assert print_ast(have.type) == print_ast(field.type), name
        args = {a.name.value: a for a in have.arguments or ()}
        for arg in field.arguments or ():
            assert arg.name.value in args, (name, arg.name.value)
            got = args.pop(arg.name.value)
            assert print_ast(got.type) == print_ast(arg.type), (name, arg.name.value)
            want = print_ast(arg.default_value) if arg.default_value else None
            assert (print_ast(got.default_value) if got.default_value else None) == want, (name, arg.name.value)
        for extra in args.values():  # added arguments must not break a client that leaves them out
            assert not isinstance(extra.type, NonNullTypeNode) or extra.default_value is not None, (
                name,
                extra.name.value,
            )


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
