"""The shared store: any SPARQL 1.1 server (an ``oxigraph serve`` process) over HTTP.

Several service processes, on one machine or many, share one store this way.
Reads use the SPARQL 1.1 Protocol (``/query``, union default graph) and the
Graph Store Protocol (``/store``); every commit is one SPARQL update (``/update``),
which the server applies as one transaction.

What differs from the embedded store: a validation reads the neighbourhood and
the commit follows in a second request, so another process may write in
between (the embedded store serialises both under one lock). Parameters are
written into the query text, as on the embedded store (``Query.bind``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import pyoxigraph as ox

from service.errors import StoreUnavailable, SyntaxProblem
from service.knowledge.queries import Parameter, Query
from service.knowledge.store import Row, bound, rows, update_text

_TERM_VARIABLES = ("s", "p", "o", "g")
# The quads of a pattern: any of the four may be fixed (a Literal only as the object).
_QUADS = Query(
    "SELECT ?s ?p ?o ?g WHERE { GRAPH ?g { ?s ?p ?o } }",
    name="quads",
    parameters={
        "s": Parameter("s", "IRI", optional=True),
        "p": Parameter("p", "IRI", optional=True),
        "o": Parameter("o", "ANY", optional=True),
        "g": Parameter("g", "IRI", optional=True),
    },
)
_HAS_GRAPH = Query("ASK WHERE { GRAPH ?g { ?s ?p ?o } }", name="has-graph", parameters={"g": Parameter("g", "IRI")})
# What a caller is told of an outage; the server's address and answer go to the log only.
UNAVAILABLE = "the store is unavailable; the request changed nothing"
UNCERTAIN = "the store did not confirm the write in time; it may have been stored or not"
# Failures before any byte of the request reached the server: nothing can have changed.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

log = logging.getLogger("wayfinder.store")


class RemoteStore:
    """A store behind a SPARQL 1.1 server, with the interface of :class:`service.knowledge.embedded.Store`."""

    location = None

    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.removals = 0
        self.commits = 0
        self.sole_writer = False  # other processes write to the same server
        self.http = httpx.Client(timeout=timeout_s)
        self.write_lock = threading.RLock()
        try:
            self.http.get(self.url + "/query", params={"query": "ASK {}"}).raise_for_status()
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"cannot reach the SPARQL server at {self.url}: {exc}") from exc

    # -- reads -------------------------------------------------------------

    def query(self, query: str, /, *, timeout_s: float | None = None):
        """Return the result of a query text (parameters written in by ``Query.bind``), within the store's time
        limit or, for a bulk read, ``timeout_s``."""
        text = query
        try:
            response = self.http.post(
                self.url + "/query",
                params={"union-default-graph": ""},
                content=text.encode(),
                headers={
                    "content-type": "application/sparql-query",
                    "accept": "application/sparql-results+json, application/n-triples",
                },
                timeout=self.http.timeout if timeout_s is None else httpx.Timeout(timeout_s),
            )
        except httpx.HTTPError as exc:
            raise self._unavailable("query", exc) from exc
        if response.status_code == 400:
            raise SyntaxProblem("query", response.text)
        if response.status_code != 200:
            raise self._refused("query", response)
        kind = response.headers.get("content-type", "").split(";")[0]
        if kind == "application/n-triples":
            return [q.triple for q in ox.parse(response.content, format=ox.RdfFormat.N_TRIPLES)]
        return ox.parse_query_results(response.content, format=ox.QueryResultsFormat.JSON)

    def select(self, query: str, /, *, timeout_s: float | None = None) -> list[Row]:
        return rows(self.query(query, timeout_s=timeout_s))

    def ask(self, query: str, /) -> bool:
        return bool(self.query(query))

    def quads(self, *, subject=None, predicate=None, object=None, graph=None) -> Iterator[ox.Quad]:
        fixed = dict(zip(_TERM_VARIABLES, (subject, predicate, object, graph), strict=True))
        given = {k: v for k, v in fixed.items() if v is not None}
        for row in self.select(_QUADS.bind(**given)):
            s, p, o, g = (bound(row, name) for name in _TERM_VARIABLES)
            if isinstance(s, ox.Literal) or not isinstance(p, ox.NamedNode) or isinstance(g, ox.Literal):
                raise TypeError(f"the server answered a quad pattern with a row that is no quad: {row}")
            yield ox.Quad(s, p, o, g)

    def graph(self, name: ox.NamedNode) -> list[ox.Quad]:
        try:
            response = self.http.get(
                self.url + "/store", params={"graph": name.value}, headers={"accept": "application/n-triples"}
            )
        except httpx.HTTPError as exc:
            raise self._unavailable("graph read", exc) from exc
        if response.status_code == 404:
            return []
        if response.status_code != 200:
            raise self._refused("graph read", response)
        return [
            ox.Quad(q.subject, q.predicate, q.object, name)
            for q in ox.parse(response.content, format=ox.RdfFormat.N_TRIPLES)
        ]

    def has_graph(self, name: ox.NamedNode) -> bool:
        return self.ask(_HAS_GRAPH.bind(g=name))

    def named_graphs(self) -> list[ox.NamedNode]:
        rows = self.select("SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s ?p ?o } }")
        return [row["g"] for row in rows if isinstance(row["g"], ox.NamedNode)]

    def __len__(self) -> int:
        return int(bound(self.select("SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } }")[0], "n").value)

    # -- writes ------------------------------------------------------------

    def commit(
        self, *, add: Iterable[ox.Quad] = (), remove: Iterable[ox.Quad] = (), drop: Iterable[ox.NamedNode] = ()
    ) -> None:
        """Apply drops, removals and additions as one SPARQL update: one transaction on the server."""
        remove, drop = list(remove), list(drop)
        text = update_text(list(add), remove, drop)
        if not text:
            return
        try:
            response = self.http.post(
                self.url + "/update", content=text.encode(), headers={"content-type": "application/sparql-update"}
            )
        except httpx.HTTPError as exc:
            raise self._unavailable("update", exc, sent=not isinstance(exc, _NOT_SENT)) from exc
        if response.status_code not in (200, 204):
            raise self._refused("update", response)
        if remove or drop:
            self.removals += 1
        self.commits += 1

    def bulk_load(self, source: Path | bytes, *, format: ox.RdfFormat) -> None:
        """Add a file's (or a text's) quads to the server's dataset (Graph Store Protocol POST), unchecked."""
        try:
            with contextlib.ExitStack() as stack:
                data = source if isinstance(source, bytes) else stack.enter_context(source.open("rb"))
                response = self.http.post(
                    self.url + "/store", content=data, headers={"content-type": format.media_type}, timeout=None
                )
        except httpx.HTTPError as exc:
            raise self._unavailable("bulk load", exc, sent=True) from exc
        if response.status_code not in (200, 201, 204):
            raise self._refused("bulk load", response)

    def _unavailable(self, what: str, exc: httpx.HTTPError, *, sent: bool = False) -> StoreUnavailable:
        """Return the error for a request the server did not answer; log the cause, with the address."""
        log.warning("the SPARQL server at %s failed a %s: %s: %s", self.url, what, type(exc).__name__, exc)
        return StoreUnavailable(UNCERTAIN if sent else UNAVAILABLE)

    def _refused(self, what: str, response: httpx.Response) -> StoreUnavailable:
        """Return the error for a request the server refused; log its status, with the address."""
        # Not its text: the server may quote the request, and so the user IRIs in it.
        log.warning("the SPARQL server at %s refused a %s (%s)", self.url, what, response.status_code)
        return StoreUnavailable(UNAVAILABLE)

    def replace_graph(self, name: ox.NamedNode, triples) -> None:
        self.commit(add=[ox.Quad(t.subject, t.predicate, t.object, name) for t in triples], drop=[name])

    def flush(self) -> None:
        """Nothing to flush here: the server persists each update."""

    def close(self) -> None:
        self.http.close()

    def backup(self, target) -> None:
        raise StoreUnavailable(
            "back up a shared store on its server: `oxigraph backup --location DIR --destination DIR`"
        )
