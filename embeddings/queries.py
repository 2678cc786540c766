"""The shipped SPARQL the library runs, read from the repository's ``queries/`` folder, and how it runs them.

The library binds no parameter: it runs the queries as written, over a pyoxigraph store
(the union of its graphs) or a service store (``service.knowledge.store.GraphStore``,
embedded or shared), and reads the columns it names.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, cast

import pyoxigraph as ox

ROOT = Path(__file__).resolve().parents[1]
QUERIES = ROOT / "queries"


@cache
def query(name: str) -> str:
    """Return the text of ``queries/NAME.rq``, e.g. ``export/nodes`` or ``service/consent-current``."""
    return (QUERIES / f"{name}.rq").read_text(encoding="utf-8")


@cache
def sql(name: str) -> str:
    """Return the text of ``queries/NAME.sql``, e.g. ``export/log-users``: SQL for the analytics log."""
    return (QUERIES / f"{name}.sql").read_text(encoding="utf-8")


def select(store: Any, text: str, *names: str) -> list[tuple[str | None, ...]]:
    """Return, per row of a SELECT, the values (IRI or lexical form) of the named columns; None where unbound."""
    if isinstance(store, ox.Store):
        solutions = store.query(text, use_default_graph_as_union=True)
        assert isinstance(solutions, ox.QuerySolutions), "a SELECT query"
        return [tuple(_value(row[n]) for n in names) for row in solutions]
    return [tuple(_value(row[n]) for n in names) for row in store.select(text)]


def select_bound(store: Any, text: str, *names: str) -> list[tuple[str, ...]]:
    """Return :func:`select`'s rows where the query binds every named column (a row that does not is a bug)."""
    rows = select(store, text, *names)
    for row in rows:
        if None in row:
            raise ValueError(f"a row leaves ?{names[row.index(None)]} unbound: {text.splitlines()[0]}")
    return cast(list[tuple[str, ...]], rows)  # checked above: no None left


def _value(term: ox.NamedNode | ox.BlankNode | ox.Literal | None) -> str | None:
    return term.value if term is not None else None
