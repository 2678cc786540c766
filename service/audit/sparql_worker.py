"""Runs read-only SPARQL queries in a process of its own, so that a runaway one can be stopped.

pyoxigraph cannot interrupt a query, so the endpoint runs auditor queries in
worker processes, on a snapshot of the store (or against the shared store's
server), and kills a worker when a query runs past the time limit. A worker is
warm: it serves one query after another (the endpoint keeps a pool of them), so
a query costs neither a Python start nor the parser's import. Each request is one
JSON line on stdin; each answer on stdout is one JSON header line (status, media
type, truncated, the body's ``length`` in bytes) followed by exactly that many
bytes of body. The store a request names (a snapshot folder, or a version of an
in-memory store sent as N-Quads) stays open for the next request that names it.

Before it reads anything the worker confines itself:

- it dies with the service (``PR_SET_PDEATHSIG``), and exits at once if the
  service is already gone;
- its address space is capped (``RLIMIT_AS``, ``max_memory_mb``); each query's
  CPU time and wall-clock time are capped too (the soft ``RLIMIT_CPU`` raised to
  the CPU time used so far plus the limit, and an alarm, each a little past the
  time limit the service enforces, for when the service cannot): past either the
  process dies, and the endpoint starts another;
- reading a local snapshot it leaves the network: it moves into a network
  namespace of its own where the platform allows (Linux, with the privilege to
  create one), and carries on without that elsewhere.

Then it checks the query with a real SPARQL parser (rdflib's grammar), not a
pattern: an update or LOAD is refused (403), a SERVICE anywhere in the query is
refused (403), and what does not parse is refused (400, with line and column).
The text checked is the text run: line ends are normalised to LF and
``\\uXXXX`` escapes expanded first, so the parser and the store engine read the
same characters (a CR ends a comment for one engine and not for another).

Answers are capped at ``max_rows`` rows and ``max_bytes`` bytes. Past either cap
the answer is truncated, not refused: it holds the rows (or triples) that fit,
and the header says which cap cut it (``truncated``: ``rows`` or ``bytes``).

This module imports only the standard library and pyoxigraph at start; rdflib's
parser is imported when a query is checked.
"""

from __future__ import annotations

import csv
import ctypes
import io
import json
import math
import os
import re
import resource
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
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
MEMORY = "the query used too much memory (the limit is {mb} MB); narrow it or add a LIMIT"
READ_ONLY = "{what} is refused: this endpoint is read-only (SPARQL queries only)"
NO_SERVICE = "SERVICE is refused: this endpoint queries only its own store"

_PR_SET_PDEATHSIG = 1
_M_ARENA_MAX = -8
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_ESCAPE = re.compile(r"\\u([0-9A-Fa-f]{4})|\\U([0-9A-Fa-f]{8})")
_LINE_END = re.compile(r"\r\n?")
_UPDATE_WORDS = {
    "Modify": "DELETE/INSERT",
    "Load": "LOAD",
    "Clear": "CLEAR",
    "Drop": "DROP",
    "Create": "CREATE",
    "Add": "ADD",
    "Move": "MOVE",
    "Copy": "COPY",
    "InsertData": "INSERT DATA",
    "DeleteData": "DELETE DATA",
    "DeleteWhere": "DELETE WHERE",
}


@dataclass(frozen=True)
class Refusal:
    """Why a query is not run: 403 for what this endpoint never runs, 400 for what does not parse."""

    status: int
    reason: str


# -- the check -------------------------------------------------------------------


def canonical(query: str) -> str:
    """Return the query with line ends normalised to LF and code point escapes expanded (SPARQL 1.1, 19.2)."""

    def expand(match: re.Match[str]) -> str:
        code = int(match.group(1) or match.group(2), 16)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            return match.group(0)  # left as written: the parser refuses it
        return chr(code)

    return _LINE_END.sub("\n", _ESCAPE.sub(expand, query))


def refusal_of(text: str) -> Refusal | None:
    """Return why a canonical query text is refused (update, SERVICE, syntax), or None when it may run."""
    from pyparsing import ParseBaseException
    from rdflib.plugins.sparql import parser

    try:
        tree = parser.Query.parse_string(text, parse_all=True)
    except ParseBaseException as exc:
        update = _update_operation(text)
        if update:
            return Refusal(403, READ_ONLY.format(what=update))
        near = exc.line[max(exc.col - 1, 0) :][:30].strip()
        return Refusal(
            400, f"query syntax: line {exc.lineno}, column {exc.col}: {exc.msg}" + (f", near {near!r}" if near else "")
        )
    except RecursionError:
        return Refusal(400, "query syntax: the query nests too deeply to be checked")
    if "ServiceGraphPattern" in _node_names(tree):
        return Refusal(403, NO_SERVICE)
    return None


def _update_operation(text: str) -> str | None:
    """Return the first operation of a text that parses as a SPARQL update, or None."""
    from pyparsing import ParseBaseException
    from rdflib.plugins.sparql import parser
    from rdflib.plugins.sparql.parserutils import CompValue

    try:
        update = parser.UpdateUnit.parse_string(text, parse_all=True)[0]
    except (ParseBaseException, RecursionError):
        return None
    operations = [op for op in (update.get("request") or []) if isinstance(op, CompValue)]
    return _UPDATE_WORDS.get(operations[0].name, operations[0].name.upper()) if operations else None


def _node_names(tree: Any) -> set[str]:
    """Return the names of every grammar production in a parse tree."""
    from pyparsing import ParseResults
    from rdflib.plugins.sparql.parserutils import CompValue

    names, stack = set(), [tree]
    while stack:  # a loop, not recursion: a deep query must not exhaust the stack here
        node = stack.pop()
        if isinstance(node, CompValue):
            names.add(node.name)
            stack.extend(node.values())
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, (ParseResults, list, tuple)):
            stack.extend(node)
    return names


# -- confinement -------------------------------------------------------------------


def _libc() -> Any | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def die_with(parent: int) -> None:
    """Have the kernel kill this process when the service dies; exit now if it already has."""
    libc = _libc()
    prctl = getattr(libc, "prctl", None)
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def confine(*, memory_mb: int, offline: bool) -> None:
    """Cap this process's memory and, when offline, take it off the network where the platform allows."""
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is not None:
        # Each glibc malloc arena reserves 64 MB of address space, which RLIMIT_AS counts.
        mallopt(_M_ARENA_MAX, 1)
    _limit(resource.RLIMIT_AS, memory_mb << 20)
    _limit(resource.RLIMIT_CORE, 0)
    unshare = getattr(libc, "unshare", None) if libc is not None else None
    if offline and unshare is not None and unshare(_CLONE_NEWNET) != 0:
        unshare(_CLONE_NEWUSER | _CLONE_NEWNET)  # without privilege: a user namespace lends it; failing that, none


def limit_time(time_s: float) -> None:
    """Let the next query use ``time_s`` (plus a little) of CPU and wall-clock time, past which the process dies."""
    seconds = math.ceil(time_s)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = math.ceil(usage.ru_utime + usage.ru_stime)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = used + seconds + 1
    if hard == resource.RLIM_INFINITY or soft <= hard:
        try:
            resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
        except (ValueError, OSError):
            pass  # a platform without this limit: the alarm and the service's own time limit still hold
    signal.alarm(seconds + 2)  # the default action ends the process, without needing Python code to run


def _limit(kind: int, value: int) -> None:
    _, hard = resource.getrlimit(kind)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    try:
        resource.setrlimit(kind, (value, value if hard == resource.RLIM_INFINITY else hard))
    except (ValueError, OSError):
        pass  # a platform without this limit: the service's own time limit still holds


# -- the query -------------------------------------------------------------------


def choose(accepted: list[str], offered: dict, default: str) -> str | None:
    """Return the first accepted media type we offer (accepted is in preference order)."""
    for media in accepted:
        if media in ("*/*", "application/*", "text/*") or not media:
            return default
        if media in offered:
            return media
    return None if accepted else default


class RemoteFailure(Exception):
    """The shared store's server failed or did not answer in time."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def remote_query(url: str, query: str, *, timeout_s: float) -> Any:
    """Run the query on a shared store's SPARQL server; return a pyoxigraph-like result."""
    request = urllib.request.Request(
        url.rstrip("/") + "/query?union-default-graph",
        data=query.encode(),
        method="POST",
        headers={
            "content-type": "application/sparql-query",
            "accept": "application/sparql-results+json, application/n-triples",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            kind = response.headers.get("content-type", "").split(";")[0]
            body = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 400:
            raise SyntaxError(exc.read().decode(errors="replace")) from exc
        raise RemoteFailure(502, f"the store answered {exc.code}") from exc
    except TimeoutError as exc:
        raise RemoteFailure(503, f"query stopped at the time limit of {timeout_s:g} s") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise RemoteFailure(503, f"query stopped at the time limit of {timeout_s:g} s") from exc
        raise RemoteFailure(503, "the store cannot be reached") from exc
    try:  # read it all here: a server that stops a query at its time limit ends the body with a message
        if kind == "application/n-triples":
            return [q.triple for q in ox.parse(body, format=ox.RdfFormat.N_TRIPLES)]
        results = ox.parse_query_results(body, format=ox.QueryResultsFormat.JSON)
        if isinstance(results, ox.QueryBoolean):
            return results
        return Solutions([v.value for v in results.variables], [[s[v] for v in results.variables] for s in results])
    except (SyntaxError, ValueError) as exc:
        raise RemoteFailure(
            503, "the store cut its answer short (its server may have stopped the query at its time limit)"
        ) from exc


@dataclass(frozen=True)
class Solutions:
    """The solutions of a SELECT query, read in full."""

    names: list[str]
    rows: list[list]


class Opened:
    """The store the last request read, kept open for the next one that names it."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.store: ox.Store | None = None

    def store_for(self, request: dict) -> ox.Store:
        """The store a request names: a snapshot folder, or a version of an in-memory store (its N-Quads sent once)."""
        if request.get("snapshot"):
            key: tuple = ("snapshot", request["snapshot"])
        else:
            key = ("version", request.get("version"))
        if key != self.key or self.store is None:
            self.store, self.key = None, None  # the old one closes before the new one opens
            if key[0] == "snapshot":
                store = ox.Store.read_only(request["snapshot"])
            else:
                if "nquads" not in request:
                    raise OSError("the request names a store version this worker does not hold")
                store = ox.Store()
                store.load(request["nquads"].encode(), format=ox.RdfFormat.N_QUADS)
            self.store, self.key = store, key
        return self.store


def run(request: dict, opened: Opened | None = None) -> tuple[dict, bytes]:
    """Return the answer header and body of one request: checked, run, serialised within the caps."""
    text = canonical(request["query"])
    refused = refusal_of(text)
    if refused:
        return {"status": refused.status, "error": refused.reason}, b""
    try:
        if request.get("remote"):
            result = remote_query(request["remote"], text, timeout_s=request["timeout_s"])
        else:
            store = (opened or Opened()).store_for(request)
            result = store.query(text, use_default_graph_as_union=request.get("union", True))
    except SyntaxError as exc:
        return {"status": 400, "error": f"query syntax: {exc}"}, b""
    except RemoteFailure as exc:
        return {"status": exc.status, "error": exc.reason}, b""
    except OSError as exc:
        return {"status": 500, "error": f"query failed: {exc}"}, b""
    return answer(
        result, accepted=request.get("accept", []), max_rows=request["max_rows"], max_bytes=request["max_bytes"]
    )


def answer(result: Any, *, accepted: list[str], max_rows: int, max_bytes: int) -> tuple[dict, bytes]:
    """Return the header and body of a query result in the accepted format, within the row and byte caps."""
    if isinstance(result, ox.QueryBoolean):
        media = choose(accepted, SELECT_TYPES, "application/sparql-results+json")
        if media is None or SELECT_TYPES[media] in ("csv", "tsv"):
            return _not_acceptable(accepted, "application/sparql-results+json or +xml")
        return {"status": 200, "media_type": media}, _boolean(bool(result), SELECT_TYPES[media])
    if isinstance(result, (ox.QueryTriples, list)):
        media = choose(accepted, GRAPH_TYPES, "text/turtle")
        if media is None:
            return _not_acceptable(accepted, ", ".join(GRAPH_TYPES))
        body, truncated = _graph_body(result, GRAPH_TYPES[media], max_rows=max_rows, max_bytes=max_bytes)
        return {"status": 200, "media_type": media, "truncated": truncated}, body
    media = choose(accepted, SELECT_TYPES, "application/sparql-results+json")
    if media is None:
        return _not_acceptable(accepted, ", ".join(SELECT_TYPES))
    if isinstance(result, Solutions):
        names, rows = result.names, iter(result.rows)
    else:
        names = [v.value for v in result.variables]
        rows = ([solution[n] for n in names] for solution in result)
    body, truncated = _rows_body(SELECT_TYPES[media], names, rows, max_rows=max_rows, max_bytes=max_bytes)
    return {"status": 200, "media_type": media, "truncated": truncated}, body


def _rows_body(
    kind: str, names: list[str], rows: Iterable[list], *, max_rows: int, max_bytes: int
) -> tuple[bytes, str | None]:
    """Return the serialised rows that fit the caps, and which cap cut them (None: all fit)."""
    head, encode, separator, tail = _FORMATS[kind](names)
    parts, size, count = [head], len(head) + len(tail), 0
    truncated = None
    for row in rows:
        if count == max_rows:
            truncated = "rows"
            break
        chunk = (separator if count else b"") + encode(row)
        if size + len(chunk) > max_bytes:
            truncated = "bytes"
            break
        parts.append(chunk)
        size += len(chunk)
        count += 1
    parts.append(tail)
    return b"".join(parts), truncated


def _graph_body(
    triples: Iterable[ox.Triple], syntax: ox.RdfFormat, *, max_rows: int, max_bytes: int
) -> tuple[bytes, str | None]:
    """Return the triples that fit the caps in an RDF syntax, and which cap cut them (None: all fit)."""
    kept: list[ox.Triple] = []
    size, truncated = 0, None
    for triple in triples:
        if len(kept) == max_rows:
            truncated = "rows"
            break
        size += len(str(triple)) + 3  # its N-Triples line; the other syntaxes are about as long or shorter
        if size > max_bytes:
            truncated = "bytes"
            break
        kept.append(triple)
    body = ox.serialize(kept, format=syntax) or b""
    while len(body) > max_bytes and kept:  # a verbose syntax (RDF/XML) may still overrun: halve until it fits
        kept, truncated = kept[: len(kept) // 2], "bytes"
        body = ox.serialize(kept, format=syntax) or b""
    return body, truncated


def _not_acceptable(accepted: list[str], offered: str) -> tuple[dict, bytes]:
    return {"status": 406, "error": f"cannot answer in {', '.join(accepted)}; this result is offered as {offered}"}, b""


def _term_json(term: Any) -> dict:
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


Format = tuple[bytes, Callable[[list], bytes], bytes, bytes]


def _json(names: list[str]) -> Format:
    head = b'{"head": {"vars": ' + json.dumps(names).encode() + b'}, "results": {"bindings": ['

    def encode(row: list) -> bytes:
        return json.dumps({n: _term_json(t) for n, t in zip(names, row, strict=True) if t is not None}).encode()

    return head, encode, b", ", b"]}}"


def _boolean(value: bool, kind: str) -> bytes:
    if kind == "json":
        return json.dumps({"head": {}, "boolean": value}).encode()
    return (
        f'<?xml version="1.0"?><sparql xmlns="http://www.w3.org/2005/sparql-results#"><head/>'
        f"<boolean>{'true' if value else 'false'}</boolean></sparql>"
    ).encode()


def _xml(names: list[str]) -> Format:
    lines = ['<?xml version="1.0"?>', '<sparql xmlns="http://www.w3.org/2005/sparql-results#">', "<head>"]
    lines += [f"<variable name={quoteattr(n)}/>" for n in names]
    lines += ["</head>", "<results>"]

    def encode(row: list) -> bytes:
        out = ["<result>"]
        for name, term in zip(names, row, strict=True):
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
        return ("\n" + "\n".join(out)).encode()

    return "\n".join(lines).encode(), encode, b"", b"\n</results>\n</sparql>"


def _csv(names: list[str]) -> Format:
    def line(values: list[str]) -> bytes:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\r\n").writerow(values)
        return buffer.getvalue().encode()

    def encode(row: list) -> bytes:
        return line(["" if t is None else ("_:" + t.value if isinstance(t, ox.BlankNode) else t.value) for t in row])

    return line(names), encode, b"", b""


def _tsv(names: list[str]) -> Format:
    def encode(row: list) -> bytes:
        return ("\t".join("" if t is None else str(t) for t in row) + "\n").encode()

    return ("\t".join("?" + n for n in names) + "\n").encode(), encode, b"", b""


_FORMATS: dict[str, Callable[[list[str]], Format]] = {"json": _json, "xml": _xml, "csv": _csv, "tsv": _tsv}


def main() -> None:
    if len(sys.argv) > 1:
        die_with(int(sys.argv[1]))
    sys.setrecursionlimit(20_000)  # the parser recurses once per nesting level of the query
    opened, confined = Opened(), False
    for line in sys.stdin.buffer:
        request = json.loads(line)
        if not confined:  # one endpoint, one mode: a worker for a local store stays off the network
            confine(memory_mb=request["max_memory_mb"], offline=not request.get("remote"))
            confined = True
        limit_time(request["timeout_s"])
        try:
            header, body = run(request, opened)
        except MemoryError:
            opened = Opened()
            header, body = {"status": 503, "error": MEMORY.format(mb=request["max_memory_mb"])}, b""
        signal.alarm(0)
        header["length"] = len(body)
        header["max_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        sys.stdout.buffer.write(json.dumps(header).encode() + b"\n" + body)
        sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
