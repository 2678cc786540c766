"""Reason templates: words with named placeholders in braces, checked against those their kind offers.

Ranking reasons (policy versions, ``wf:reasonTemplate``) and hold-back reasons (pacing
policies, ``wf:holdBackTemplate``) are both such templates; each kind is a property of the
ontology with its ``wf:placeholder`` names.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping

from service.errors import SyntaxProblem
from service.knowledge import vocab
from service.knowledge.store import Row, bound, value


def read_templates(
    rows: Iterable[Row], *, owner: str, placeholders: Mapping[str, set[str]], missing: str, owner_kind: str
) -> dict[str, dict[str, str]]:
    """Return each owner's templates by kind from rows of ``?owner ?kind ?template``; SyntaxProblem for a
    missing one (``missing`` says what to do), two of one kind, or one that names what its kind does not offer."""
    templates: dict[str, dict[str, str]] = {}
    for row in rows:
        iri, kind, text = bound(row, owner).value, vocab.local_id(bound(row, "kind").value), value(row, "template")
        if text is None:
            raise SyntaxProblem(iri, f"no wf:{kind} {missing}")
        if kind in templates.setdefault(iri, {}):
            raise SyntaxProblem(iri, f"two wf:{kind} templates: {owner_kind} states one of each kind")
        templates[iri][kind] = checked_template(text, placeholders.get(kind, set()), kind=kind, source=iri)
    return templates


def checked_template(text: str, offered: set[str], *, kind: str, source: str) -> str:
    """Return a reason template that names only placeholders its kind offers, as ``{name}``; raise SyntaxProblem otherwise."""
    names = ", ".join("{" + name + "}" for name in sorted(offered)) or "no placeholder"
    try:
        fields = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise SyntaxProblem(
            source, f"the wf:{kind} template {text!r} does not parse ({exc}); write {{{{ and }}}} for a literal brace"
        ) from exc
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in offered or spec or conversion:
            written = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise SyntaxProblem(
                source,
                f"the wf:{kind} template {text!r} uses {written}, which a wf:{kind} does not offer; it offers {names}",
            )
    return text
