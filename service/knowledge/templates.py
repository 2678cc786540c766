"""Reason templates: words with named placeholders in braces, checked against those their kind offers.

Ranking reasons (policy versions, ``wf:reasonTemplate``), hold-back reasons (pacing
policies, ``wf:holdBackTemplate``) and feedback-pressure reasons (``wf:feedbackTemplate``)
are all such templates; each kind is a property of the ontology with its
``wf:placeholder`` names.

Each kind has one plain string (no language tag), and may have translations, one per
language tag: ``wf:unlockReason "Needed before {unlocked}", "Necessário antes de
{unlocked}"@pt-BR``. A decision's reasons are in its requested locale, found by RFC 4647
lookup among the translations (``pt-BR``, then ``pt``), falling back to the plain string.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import pyoxigraph as ox

from service.errors import SyntaxProblem
from service.knowledge import vocab
from service.knowledge.content import lookup
from service.knowledge.store import Row, bound


@dataclass(frozen=True)
class Named:
    """A placeholder's value that is a catalog entity, named in the language of the template that names it."""

    iri: str


Namer = Callable[[str, str | None], str]  # (entity IRI, language tag or None for its title) -> its name


@dataclass(frozen=True)
class Wording:
    """One kind of reason's words: the plain template and its translations (lower-cased language tag -> template)."""

    plain: str
    translations: Mapping[str, str] = field(default_factory=dict)

    def language(self, locale: str | None) -> str | None:
        """The tag of the translation RFC 4647 lookup finds for a locale; None where the plain words serve."""
        if locale is None or not self.translations:
            return None
        return lookup(self.translations, locale, "") or None

    def text(self, locale: str | None = None) -> str:
        """The template for a locale: its translation by RFC 4647 lookup, or the plain one."""
        tag = self.language(locale)
        return self.translations[tag] if tag else self.plain

    def say(self, locale: str | None = None, /, namer: Namer | None = None, **values: object) -> str:
        """The reason in the locale, placeholders filled; an entity (:class:`Named`) is named by ``namer`` in the
        language of the words picked (a translation's, or None for the plain words), so that a reason never mixes
        two languages where the catalog has both."""
        language = self.language(locale)
        text = self.translations[language] if language else self.plain
        filled = {
            k: (namer(v.iri, language) if namer else v.iri) if isinstance(v, Named) else str(v)
            for k, v in values.items()
        }
        return text.format_map(filled)


def read_templates(
    rows: Iterable[Row], *, owner: str, placeholders: Mapping[str, set[str]], missing: str, owner_kind: str
) -> dict[str, dict[str, Wording]]:
    """Return each owner's wording by kind from rows of ``?owner ?kind ?template``; SyntaxProblem for a kind
    without a plain template (``missing`` says what to do), two plain ones or two in one language, or one that
    names what its kind does not offer."""
    plain: dict[str, dict[str, str]] = {}
    translated: dict[str, dict[str, dict[str, str]]] = {}
    for row in rows:
        iri, kind, term = bound(row, owner).value, vocab.local_id(bound(row, "kind").value), row["template"]
        plain.setdefault(iri, {})
        translated.setdefault(iri, {}).setdefault(kind, {})
        if term is None:
            continue
        if not isinstance(term, ox.Literal):
            raise SyntaxProblem(iri, f"wf:{kind} is not text: a template is a string")
        text = checked_template(term.value, placeholders.get(kind, set()), kind=kind, source=iri)
        if term.language:
            if term.language in translated[iri][kind]:
                raise SyntaxProblem(iri, f"two wf:{kind} templates in {term.language}: one per language")
            translated[iri][kind][term.language] = text
        elif kind in plain[iri]:
            raise SyntaxProblem(iri, f"two wf:{kind} templates: {owner_kind} states one of each kind")
        else:
            plain[iri][kind] = text
    wordings: dict[str, dict[str, Wording]] = {}
    for iri, kinds in translated.items():
        wordings[iri] = {}
        for kind, translations in kinds.items():
            if kind not in plain[iri] and not translations:
                raise SyntaxProblem(iri, f"no wf:{kind} {missing}")
            if kind not in plain[iri]:
                raise SyntaxProblem(iri, f"no plain wf:{kind} {missing}: translations carry a language tag")
            wordings[iri][kind] = Wording(plain[iri][kind], translations)
    return wordings


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
