"""The shipped SPARQL queries, each a :class:`Query` that knows its parameters and binds them one way.

A ``.rq`` file declares its parameters in its header, one comment line each::

    # param ?user: IRI - the user's IRI
    # param ?cutoff: xsd:dateTime - records before it expire
    # param ?purpose: IRI, optional - one purpose, or every purpose when unbound

:meth:`Query.bind` checks the terms against that list (every name declared, every
required one given, IRIs where an IRI is declared, literals of the declared
datatype) and writes them into the text as typed terms, in the N-Triples form
pyoxigraph gives them (IRIs validated, literals escaped), so no caller text
reaches a query unescaped. It is the only way the service binds parameters, on
the embedded and on the shared store alike.

Why written into the text: pyoxigraph plans a query before it applies
``substitutions``, so a bound ``?user`` cannot steer the join order, and a VALUES
clause at the top does not reach into a MINUS block, which is evaluated on its
own. Written into the text, the user's IRI is a constant the planner starts
from, in every block. A parameter the query also projects (``SELECT ?decision``)
is projected as ``(<iri> AS ?decision)``, so the answer keeps its column.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pyoxigraph as ox

from service.knowledge import vocab

# IRIs, strings and comments are copied as they are; only variables outside them are
# candidates for replacement, and only a few keywords, braces and parentheses are tracked,
# to know whether a variable is projected or a bare GROUP BY / ORDER BY condition. Enough of SPARQL's lexer for the shipped queries.
_TOKEN = re.compile(
    r"""(?P<iri><[^<>"{}|^`\\\x00-\x20]*>)
      | (?P<string>'''(?:[^'\\]|\\.|'(?!''))*'''|\"\"\"(?:[^"\\]|\\.|"(?!""))*\"\"\"
                   |'(?:[^'\\\n\r]|\\.)*'|"(?:[^"\\\n\r]|\\.)*")
      | (?P<comment>\#[^\n\r]*)
      | (?P<keyword>(?<![:\w])(?:SELECT|WHERE|AS|GROUP|ORDER|HAVING|LIMIT|OFFSET|VALUES)(?![:\w]))
      | (?P<punct>[{}()])
      | [?$](?P<variable>[\w\u00b7\u0300-\u036f\u203f\u2040]+)""",
    re.VERBOSE | re.IGNORECASE,
)
_PARAM = re.compile(
    r"^\#\s*param\s+\?(?P<name>\w+)\s*:\s*(?P<kind>IRI|[A-Za-z][\w-]*:[\w-]+)(?P<optional>\s*,\s*optional)?\b",
    re.IGNORECASE,
)
_PREFIXES = {"xsd": vocab.XSD_NS, "rdf": vocab.RDF_NS}


@dataclass(frozen=True)
class _Occurrence:
    before: str  # the text up to the variable
    written: str  # the variable as written, with its ? or $
    name: str
    projected: bool  # in a SELECT clause, outside any expression
    alias: bool  # right after AS: the name an expression is bound to
    modifier: bool  # a bare condition of GROUP BY or ORDER BY


@lru_cache(maxsize=256)
def _occurrences(text: str) -> tuple[tuple[_Occurrence, ...], str]:
    """Split a query, once per text, at its variables; return them and the text after the last one."""
    found: list[_Occurrence] = []
    start, depth = 0, 0
    select_depth: int | None = None  # the parenthesis depth of the SELECT clause being read
    modifier_depth: int | None = None  # the same, for a GROUP BY or ORDER BY clause
    after_as = False
    for match in _TOKEN.finditer(text):
        keyword, punct, name = match.group("keyword"), match.group("punct"), match.group("variable")
        if match.group("comment") is not None:
            continue
        if keyword is not None:
            word = keyword.upper()
            if word == "SELECT":
                select_depth = depth
            elif word in ("GROUP", "ORDER"):
                modifier_depth = depth
            elif word in ("WHERE", "HAVING", "LIMIT", "OFFSET", "VALUES"):
                select_depth = modifier_depth = None
            after_as = word == "AS"
            continue
        if punct is not None:
            if punct in "{}":
                select_depth = modifier_depth = None
            else:
                depth += 1 if punct == "(" else -1
            after_as = False
            continue
        if name is not None:
            found.append(
                _Occurrence(
                    text[start : match.start()],
                    match.group(0),
                    name,
                    projected=select_depth == depth,
                    alias=after_as,
                    modifier=modifier_depth == depth,
                )
            )
            start = match.end()
        after_as = False
    return tuple(found), text[start:]


def inline(text: str, /, **terms: ox.NamedNode | ox.Literal) -> str:
    """Return ``text`` with every ``?name`` (or ``$name``) of ``terms`` replaced by that term.

    Each name must occur in the query: a misspelt one fails here, not silently.
    """
    written: dict[str, str] = {}
    for name, term in terms.items():
        if not isinstance(term, (ox.NamedNode, ox.Literal)):
            raise TypeError(f"?{name}: only IRIs and literals can be written into a query, not {term!r}")
        written[name] = str(term)
    found, rest = _occurrences(text)
    missing = set(written) - {o.name for o in found}
    if missing:
        raise ValueError(f"the query has no variable {', '.join('?' + n for n in sorted(missing))}")
    parts = []
    for o in found:
        term_text = written.get(o.name)
        if term_text is None:
            parts.append(o.before + o.written)
        elif o.alias:
            raise ValueError(
                f"?{o.name} is the name an expression is bound to (AS ?{o.name}); it cannot be a parameter"
            )
        elif o.projected:
            parts.append(f"{o.before}({term_text} AS {o.written})")
        elif o.modifier:
            parts.append(f"{o.before}({term_text})")
        else:
            parts.append(o.before + term_text)
    return "".join(parts) + rest


@dataclass(frozen=True)
class Parameter:
    name: str
    kind: str  # "IRI", "ANY" (an IRI or a literal), or the IRI of a literal's datatype
    optional: bool = False

    def check(self, term: object) -> ox.NamedNode | ox.Literal:
        if self.kind == "ANY" and isinstance(term, (ox.NamedNode, ox.Literal)):
            return term
        if self.kind in ("IRI", "ANY"):
            if not isinstance(term, ox.NamedNode):
                raise TypeError(f"?{self.name}: an IRI is expected, not {term!r}")
            return term
        if not isinstance(term, ox.Literal) or term.datatype.value != self.kind:
            raise TypeError(f"?{self.name}: a literal of type <{self.kind}> is expected, not {term!r}")
        return term


class Query(str):
    """The text of a SPARQL query (it is a ``str``), with the parameters it declares."""

    name: str
    parameters: Mapping[str, Parameter]

    def __new__(cls, text: str, *, name: str = "", parameters: Mapping[str, Parameter] | None = None) -> Query:
        query = super().__new__(cls, text)
        query.name = name
        query.parameters = dict(parameters if parameters is not None else _declared(text, name))
        return query

    @classmethod
    def load(cls, path: Path, name: str | None = None) -> Query:
        return cls(path.read_text(), name=name or path.stem)

    def bind(self, **terms: ox.NamedNode | ox.Literal | None) -> str:
        """Return the text to run: the given terms written in; a None leaves an optional parameter unbound."""
        unknown = sorted(set(terms) - set(self.parameters))
        if unknown:
            raise ValueError(f"{self.name or 'the query'} has no parameter {', '.join('?' + n for n in unknown)}")
        given = {name: self.parameters[name].check(term) for name, term in terms.items() if term is not None}
        missing = sorted(n for n, p in self.parameters.items() if not p.optional and n not in given)
        if missing:
            raise ValueError(f"{self.name or 'the query'} needs {', '.join('?' + n for n in missing)}")
        return inline(str(self), **given)


def _declared(text: str, name: str) -> dict[str, Parameter]:
    parameters: dict[str, Parameter] = {}
    for line in text.splitlines():
        match = _PARAM.match(line.strip())
        if match is None:
            continue
        kind = match.group("kind")
        if kind.upper() == "IRI":
            kind = "IRI"
        else:
            prefix, _, local = kind.partition(":")
            if prefix not in _PREFIXES:
                raise ValueError(f"{name}: parameter ?{match.group('name')} has an unknown type prefix {prefix!r}")
            kind = _PREFIXES[prefix] + local
        parameters[match.group("name")] = Parameter(match.group("name"), kind, bool(match.group("optional")))
    return parameters


class Queries(Mapping[str, Query]):
    """Every ``.rq`` file of a folder's sub-folders: ``service/NAME.rq`` as NAME, ``DIR/NAME.rq`` as DIR/NAME."""

    def __init__(self, root: Path) -> None:
        self._queries: dict[str, Query] = {}
        for path in sorted(root.glob("*/*.rq")):
            key = path.stem if path.parent.name == "service" else f"{path.parent.name}/{path.stem}"
            self._queries[key] = Query.load(path, key)

    def __getitem__(self, name: str) -> Query:
        return self._queries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._queries)

    def __len__(self) -> int:
        return len(self._queries)
