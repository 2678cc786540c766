"""The parsed-document cache of the GraphQL endpoint, with syntax errors left to strawberry's error handling."""

from __future__ import annotations

from graphql import GraphQLError
from strawberry.extensions import ParserCache


class ReportingParserCache(ParserCache):
    """strawberry's ParserCache, but a document that does not parse is left to strawberry to parse again.

    ParserCache parses in ``on_parse``, outside strawberry's error handling: a syntax error (or the
    token limit) escapes the operation hooks, so ErrorCodes never sees it and the error goes out
    without ``extensions.code``. Leaving ``graphql_document`` unset makes strawberry parse inside its
    own try, and the error becomes a result that ErrorCodes processes like any other.
    """

    def on_parse(self):
        context = self.execution_context
        try:
            context.graphql_document = self.cached_parse_document(context.query, **context.parse_options)
        except GraphQLError:
            context.graphql_document = None
        yield
