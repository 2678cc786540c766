"""Step content per channel and locale: the catalog's texts, a requested locale, and what a step is shown with.

A step's content (``wf:StepContent``, shapes in ``shapes/catalog.ttl``) has a headline, a
body and a call-to-action label in one or more languages, and an optional deep link and
media; a content with ``wf:onChannel`` is for that channel, one without it for every
other channel of the step. A requested locale is matched by RFC 4647 lookup (section
3.4): the tag, then the tag with its last subtag removed (and a single-letter subtag
left at the end with it), down to the primary language, then the catalog's default
language (``wf:defaultLanguage``). A step without content is shown with its
``rdfs:label`` as headline and call to action and its ``rdfs:comment`` in the same
language (or nothing) as body, looked up the same way.

What a step was shown with is recorded with its decision as a content version: the
SHA-256 of the served texts as canonical JSON.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property

from service.errors import InvalidInput

MAX_LOCALE = 35  # RFC 5646 section 4.4.1: 35 characters hold any tag up to a language, script, region and variant


@dataclass(frozen=True)
class Texts:
    headline: str
    body: str
    cta_label: str


@dataclass
class ContentInfo:
    """One ``wf:StepContent`` of the catalog: its texts by language tag (as written), link and media."""

    iri: str
    channel: str | None = None
    texts: dict[str, Texts] = field(default_factory=dict)
    link: str | None = None
    media: str | None = None


@dataclass(frozen=True)
class ServedContent:
    """What a step is shown with on a channel: the texts of one locale, the link and media, and where they came from."""

    locale: str
    headline: str
    body: str
    cta_label: str
    link: str | None
    media: str | None
    source: str | None  # the content's IRI; None where the step's label was shown

    @cached_property
    def version(self) -> str:
        """Return the SHA-256 of what was shown (not of where it came from)."""
        shown = {k: v for k, v in asdict(self).items() if k != "source"}
        return hashlib.sha256(json.dumps(shown, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def parse_locale(text: str | None, *, field_name: str = "locale") -> str | None:
    """Return a well-formed BCP 47 tag as given (None for none); refuse anything else, naming the field.

    Well-formed by RFC 5646's syntax: subtags of 1 to 8 letters or digits joined by hyphens,
    the first a 2 to 8 letter language (or ``i``/``x`` for a grandfathered or private-use tag).
    """
    if text is None:
        return None
    if not text or len(text) > MAX_LOCALE:
        raise InvalidInput(field_name, f"a BCP 47 language tag of 1 to {MAX_LOCALE} characters, e.g. 'pt-BR'")
    subtags = text.split("-")
    first = subtags[0]
    if not all(1 <= len(s) <= 8 and s.isascii() and s.isalnum() for s in subtags) or not (
        (2 <= len(first) <= 8 and first.isalpha()) or first.lower() in ("i", "x")
    ):
        raise InvalidInput(
            field_name, f"{text!r} is not a well-formed BCP 47 language tag (e.g. 'pt-BR', 'de', 'zh-Hant-TW')"
        )
    return text


def lookup_chain(locale: str | None, default: str) -> list[str]:
    """Return the tags RFC 4647 lookup tries for a locale, lower-cased, most specific first, ending at the default."""
    chain: list[str] = []
    if locale:
        subtags = locale.lower().split("-")
        while subtags:
            chain.append("-".join(subtags))
            subtags.pop()
            if len(subtags) >= 2 and len(subtags[-1]) == 1:  # a singleton ('x', 'u', ...) goes with what follows it
                subtags.pop()
    for tag in (default.lower(), ""):
        if tag not in chain:
            chain.append(tag)
    return chain


def lookup(available: Iterable[str], locale: str | None, default: str) -> str | None:
    """Return the available tag that lookup finds for the locale (a key of ``available``), or None when none matches."""
    by_lower: dict[str, str] = {}
    for tag in available:
        by_lower.setdefault(tag.lower(), tag)
    return next((by_lower[t] for t in lookup_chain(locale, default) if t in by_lower), None)


def canonical_case(tag: str) -> str:
    """Return a tag in the case RFC 5646 (section 2.1.1) recommends: ``pt-BR``, ``zh-Hant-TW``, ``de-CH-1996``.

    The store keeps language tags lower-cased, so the served locale is written back this way.
    """
    out: list[str] = []
    after_singleton = False
    for i, sub in enumerate(tag.split("-")):
        if i == 0 or after_singleton or len(sub) == 1:
            out.append(sub.lower())
            after_singleton = after_singleton or (i > 0 and len(sub) == 1)
        elif len(sub) == 2 and sub.isalpha():
            out.append(sub.upper())
        elif len(sub) == 4 and sub.isalpha():
            out.append(sub.title())
        else:
            out.append(sub.lower())
    return "-".join(out)


def serve(
    contents: Mapping[str | None, ContentInfo],
    *,
    channel: str,
    locale: str | None,
    default: str,
    labels: Mapping[str, str],
    comments: Mapping[str, str],
) -> ServedContent:
    """Return what a step shows on a channel: its content for that channel, else for every channel, else its label.

    ``contents`` maps a channel IRI (None: every channel) to the step's content; ``labels`` and
    ``comments`` map a language tag ("" for none) to its ``rdfs:label`` and ``rdfs:comment``.
    """
    content = contents.get(channel) or contents.get(None)
    if content is not None:
        tag = lookup(content.texts, locale, default)
        if tag is not None:  # the shapes guarantee the default language; stay total anyway
            texts = content.texts[tag]
            return ServedContent(
                canonical_case(tag),
                texts.headline,
                texts.body,
                texts.cta_label,
                content.link,
                content.media,
                content.iri,
            )
    tag = lookup(labels, locale, default) or next(iter(labels), "")
    title = labels.get(tag, "")
    return ServedContent(canonical_case(tag or default), title, comments.get(tag, ""), title, None, None, None)
