"""Runs one read-only SPARQL query in its own process, so that it can be stopped.

pyoxigraph cannot interrupt a query, so the endpoint runs each auditor query
here, on a snapshot of the store, and kills the process when the time limit
passes. The request is one JSON line on stdin; the answer on stdout is one JSON
header line (status, media type, truncated) followed by the body.

This module imports only the standard library and pyoxigraph: it starts fast.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import urllib.error
import urllib.request
from xml.sax.saxutils import escape, quoteattr

import pyoxigraph as ox

SELECT_TYPES = {
    "application/sparql-results+json": "json",
    "application/json": "json",
    "application/sparql-results+xml": "xml",
    "application/xml": "xml",
    "text/csv": "csv",
    "text/tab-separated-values": "tsv",
}
GRAPH_TYPES = {
    "text/turtle": ox.RdfFormat.TURTLE,
    "application/n-triples": ox.RdfFormat.N_TRIPLES,
    "application/rdf+xml": ox.RdfFormat.RDF_XML,
    "application/ld+json": ox.RdfFormat.JSON_LD,
}


def choose(accepted: list[str], offered: dict, default: str) -> str | None:
    """Return the first accepted media type we offer (accepted is in preference order)."""
    for media in accepted:
        if media in ("*/*", "application/*", "text/*") or not media:
            return default
        if media in offered:
            return media
    return None if accepted else default


def remote_query(url: str, query: str):
    """Run the query on a shared store's SPARQL server; return a pyoxigraph-like result."""
    request = urllib.request.Request(
        url.rstrip("/") + "/query?union-default-graph", data=query.encode(), method="POST",
        headers={"content-type": "application/sparql-query",
                 "accept": "application/sparql-results+json, application/n-triples"})
    try:
        with urllib.request.urlopen(request) as response:
            kind = response.headers.get("content-type", "").split(";")[0]
            body = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 400:
            raise SyntaxError(exc.read().decode(errors="replace")) from exc
        raise OSError(f"the SPARQL server answered {exc.code}") from exc
    if kind == "application/n-triples":
        return [q.triple for q in ox.parse(body, format=ox.RdfFormat.N_TRIPLES)]
    return ox.parse_query_results(body, format=ox.QueryResultsFormat.JSON)


def run(request: dict) -> tuple[dict, bytes]:
    try:
        if request.get("remote"):
            result = remote_query(request["remote"], request["query"])
        else:
            if request.get("snapshot"):
                store = ox.Store.read_only(request["snapshot"])
            else:
                store = ox.Store()
                store.load(request["nquads"].encode(), format=ox.RdfFormat.N_QUADS)
            result = store.query(request["query"], use_default_graph_as_union=request.get("union", True))
    except SyntaxError as exc:
        return {"status": 400, "error": f"query syntax: {exc}"}, b""
    except OSError as exc:
        return {"status": 400, "error": f"query failed: {exc}"}, b""
    accepted = request.get("accept", [])
    cap = request["max_rows"]
    if isinstance(result, ox.QueryBoolean):
        media = choose(accepted, SELECT_TYPES, "application/sparql-results+json")
        if media is None or SELECT_TYPES[media] in ("csv", "tsv"):
            return _not_acceptable(accepted, "application/sparql-results+json or +xml")
        return {"status": 200, "media_type": media}, _boolean(bool(result), SELECT_TYPES[media])
    if isinstance(result, (ox.QueryTriples, list)):
        media = choose(accepted, GRAPH_TYPES, "text/turtle")
        if media is None:
            return _not_acceptable(accepted, ", ".join(GRAPH_TYPES))
        triples = []
        for triple in result:
            if len(triples) == cap:
                return {"status": 200, "media_type": media, "truncated": True}, ox.serialize(triples, format=GRAPH_TYPES[media])
            triples.append(triple)
        return {"status": 200, "media_type": media}, ox.serialize(triples, format=GRAPH_TYPES[media]) or b""
    media = choose(accepted, SELECT_TYPES, "application/sparql-results+json")
    if media is None:
        return _not_acceptable(accepted, ", ".join(SELECT_TYPES))
    names = [v.value for v in result.variables]
    rows, truncated = [], False
    for solution in result:
        if len(rows) == cap:
            truncated = True
            break
        rows.append([solution[n] for n in names])
    body = {"json": _json, "xml": _xml, "csv": _csv, "tsv": _tsv}[SELECT_TYPES[media]](names, rows)
    return {"status": 200, "media_type": media, "truncated": truncated}, body


def _not_acceptable(accepted: list[str], offered: str) -> tuple[dict, bytes]:
    return {"status": 406, "error": f"cannot answer in {', '.join(accepted)}; this result is offered as {offered}"}, b""


def _term_json(term) -> dict:
    if isinstance(term, ox.NamedNode):
        return {"type": "uri", "value": term.value}
    if isinstance(term, ox.BlankNode):
        return {"type": "bnode", "value": term.value}
    out = {"type": "literal", "value": term.value}
    if term.language:
        out["xml:lang"] = term.language
    elif term.datatype.value != "http://www.w3.org/2001/XMLSchema#string":
        out["datatype"] = term.datatype.value
    return out


def _json(names, rows) -> bytes:
    bindings = [{n: _term_json(t) for n, t in zip(names, row) if t is not None} for row in rows]
    return json.dumps({"head": {"vars": names}, "results": {"bindings": bindings}}).encode()


def _boolean(value: bool, kind: str) -> bytes:
    if kind == "json":
        return json.dumps({"head": {}, "boolean": value}).encode()
    return (f'<?xml version="1.0"?><sparql xmlns="http://www.w3.org/2005/sparql-results#"><head/>'
            f"<boolean>{'true' if value else 'false'}</boolean></sparql>").encode()


def _xml(names, rows) -> bytes:
    out = ['<?xml version="1.0"?>', '<sparql xmlns="http://www.w3.org/2005/sparql-results#">', "<head>"]
    out += [f"<variable name={quoteattr(n)}/>" for n in names]
    out += ["</head>", "<results>"]
    for row in rows:
        out.append("<result>")
        for name, term in zip(names, row):
            if term is None:
                continue
            if isinstance(term, ox.NamedNode):
                value = f"<uri>{escape(term.value)}</uri>"
            elif isinstance(term, ox.BlankNode):
                value = f"<bnode>{escape(term.value)}</bnode>"
            elif term.language:
                value = f"<literal xml:lang={quoteattr(term.language)}>{escape(term.value)}</literal>"
            else:
                value = f"<literal datatype={quoteattr(term.datatype.value)}>{escape(term.value)}</literal>"
            out.append(f"<binding name={quoteattr(name)}>{value}</binding>")
        out.append("</result>")
    out += ["</results>", "</sparql>"]
    return "\n".join(out).encode()


def _csv(names, rows) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(names)
    for row in rows:
        writer.writerow(["" if t is None else ("_:" + t.value if isinstance(t, ox.BlankNode) else t.value) for t in row])
    return buffer.getvalue().encode()


def _tsv(names, rows) -> bytes:
    lines = ["\t".join("?" + n for n in names)]
    lines += ["\t".join("" if t is None else str(t) for t in row) for row in rows]
    return ("\n".join(lines) + "\n").encode()


def main() -> None:
    request = json.loads(sys.stdin.buffer.readline())
    header, body = run(request)
    sys.stdout.buffer.write(json.dumps(header).encode() + b"\n" + body)
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
