"""The HTTP side of /sparql: the SPARQL 1.1 Protocol request, content negotiation, and the answer's headers.

What a query comes to (a result, a refusal, a stop at a limit) is decided by
``service.audit.sparql.SparqlEndpoint``; this module reads the request and writes the response.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from service.audit.sparql import Answer, SparqlEndpoint


async def sparql_response(endpoint: SparqlEndpoint, request: Request) -> Response:
    """Answer one Protocol request (GET or POST) with the endpoint's answer, or why the request is refused."""
    query, problem = await sparql_query_of(request)
    if problem:
        return PlainTextResponse(problem[1], status_code=problem[0])
    answer = await endpoint.answer(query, accept=accepted_types(request.headers.get("accept")))
    return Response(
        answer.body, status_code=answer.status, media_type=answer.media_type, headers=headers(endpoint, answer)
    )


def headers(endpoint: SparqlEndpoint, answer: Answer) -> dict[str, str]:
    """Return the headers of an answer: Vary on results, the truncation, and when to try again."""
    found: dict[str, str] = {}
    if answer.status == 200:
        found["Vary"] = "Accept"
    if answer.truncated == "bytes":
        found["X-Wayfinder-Truncated"] = f"true; bytes capped at {endpoint.max_bytes}"
    elif answer.truncated:
        found["X-Wayfinder-Truncated"] = f"true; rows capped at {endpoint.max_rows}"
    if answer.retry_after_s is not None:
        found["Retry-After"] = str(answer.retry_after_s)
    return found


def accepted_types(accept: str | None) -> list[str]:
    """Return the media types of an Accept header, most preferred first."""
    if not accept:
        return []
    ranked = []
    for i, part in enumerate(accept.split(",")):
        media, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if media and q > 0:
            ranked.append((-q, i, media.lower()))
    return [media for _, _, media in sorted(ranked)]


async def sparql_query_of(request: Request) -> tuple[str, tuple[int, str] | None]:
    """Return the query of a SPARQL 1.1 Protocol request, or an HTTP status and reason."""
    if request.method == "GET":
        if "update" in request.query_params:
            return "", (403, "updates are refused: this endpoint is read-only")
        query = request.query_params.get("query")
    else:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/sparql-update":
            return "", (403, "updates are refused: this endpoint is read-only")
        if kind == "application/sparql-query":
            query = (await request.body()).decode("utf-8", errors="replace")
        elif kind == "application/x-www-form-urlencoded":
            form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
            if "update" in form:
                return "", (403, "updates are refused: this endpoint is read-only")
            query = form.get("query", [None])[0]
        else:
            return "", (415, "send the query as application/sparql-query or application/x-www-form-urlencoded")
    if not query or not isinstance(query, str):
        return "", (400, "missing the 'query' parameter")
    return query, None
