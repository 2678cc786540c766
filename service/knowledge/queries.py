"""Query parameters written into SPARQL text as typed terms, for the per-user reads.

pyoxigraph plans a query before it applies ``substitutions``, so a bound ``?user``
cannot steer the join order: a per-user query costs time in proportion to every
user's data. A VALUES clause at the top (what the shared store's ``bind`` adds)
does not reach into a MINUS block, which is evaluated on its own: there ``?user``
would stand for every user, and the answers would be wrong. Written into the
text, the user's IRI and graph are constants that the planner starts from, in
every block, on the embedded and on the shared store alike.

Only typed terms are written, in the N-Triples form pyoxigraph gives them (IRIs
validated, literals escaped), so no caller text reaches a query unescaped.
"""

from __future__ import annotations

import re
from functools import lru_cache

import pyoxigraph as ox

# IRIs, strings and comments are copied as they are; only variables outside them
# are candidates for replacement. Enough of SPARQL's lexer for the shipped queries.
_TOKEN = re.compile(
    r"""(?P<iri><[^<>"{}|^`\\\x00-\x20]*>)
      | (?P<string>'''(?:[^'\\]|\\.|'(?!''))*'''|\"\"\"(?:[^"\\]|\\.|"(?!""))*\"\"\"
                   |'(?:[^'\\\n\r]|\\.)*'|"(?:[^"\\\n\r]|\\.)*")
      | (?P<comment>\#[^\n\r]*)
      | [?$](?P<variable>[\w\u00b7\u0300-\u036f\u203f\u2040]+)""",
    re.VERBOSE,
)


@lru_cache(maxsize=128)
def _pieces(query: str) -> tuple[tuple[str, str, str], ...]:
    """Split a query, once per text, into (text up to a variable, the variable as written, its name)."""
    pieces: list[tuple[str, str, str]] = []
    start = 0
    for match in _TOKEN.finditer(query):
        if match.group("variable") is not None:
            pieces.append((query[start : match.start()], match.group(0), match.group("variable")))
            start = match.end()
    pieces.append((query[start:], "", ""))
    return tuple(pieces)


def inline(query: str, /, **terms: ox.NamedNode | ox.Literal) -> str:
    """Return the query with every ``?name`` (or ``$name``) of ``terms`` replaced by that term.

    A parameter must not be projected by the query (``SELECT ?user`` would become
    invalid), and each must occur in it: a misspelt name fails here, not silently.
    """
    written: dict[str, str] = {}
    for name, term in terms.items():
        if not isinstance(term, (ox.NamedNode, ox.Literal)):
            raise TypeError(f"?{name}: only IRIs and literals can be written into a query, not {term!r}")
        written[name] = str(term)
    pieces = _pieces(query)
    missing = set(written) - {name for _, _, name in pieces}
    if missing:
        raise ValueError(f"the query has no variable {', '.join('?' + n for n in sorted(missing))}")
    return "".join(text + written.get(name, variable) for text, variable, name in pieces)
