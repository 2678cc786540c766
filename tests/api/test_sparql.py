"""The HTTP side of /sparql: content negotiation and the headers an answer is sent with."""

from __future__ import annotations

from service.api.sparql import accepted_types, headers
from service.audit.sparql import Answer, SparqlEndpoint
from service.knowledge.embedded import Store


def test_accept_headers_are_ranked_by_quality():
    assert accepted_types("text/csv;q=0.5, application/sparql-results+json") == [
        "application/sparql-results+json",
        "text/csv",
    ]
    assert accepted_types(None) == []


def test_headers_say_truncation_and_when_to_try_again():
    endpoint = SparqlEndpoint(Store(":memory:"), timeout_s=1, max_rows=10, max_bytes=1000)
    try:
        assert headers(endpoint, Answer(200, "text/csv", b"", truncated="rows")) == {
            "Vary": "Accept",
            "X-Wayfinder-Truncated": "true; rows capped at 10",
        }
        assert headers(endpoint, Answer(200, "text/csv", b"", truncated="bytes"))["X-Wayfinder-Truncated"] == (
            "true; bytes capped at 1000"
        )
        assert headers(endpoint, Answer(503, "text/plain", b"busy", retry_after_s=1)) == {"Retry-After": "1"}
    finally:
        endpoint.close()
