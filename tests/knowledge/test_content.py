"""Step content: BCP 47 tags, RFC 4647 lookup, what a step is shown with, and content refused at load."""

from __future__ import annotations

import pytest

from service.errors import InvalidInput, RefusedWrite
from service.knowledge.content import ContentInfo, Texts, canonical_case, lookup, lookup_chain, parse_locale, serve
from service.runtime import Runtime
from service.settings import Settings

WEB, EMAIL = "https://w3id.org/wayfinder/ontology#Web", "https://w3id.org/wayfinder/ontology#Email"

CATALOG = """
@prefix wf:   <https://w3id.org/wayfinder/ontology#> .
@prefix ex:   <https://example.org/catalog/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix xsd:  <http://www.w3.org/2001/XMLSchema#> .

ex:catalog a wf:Catalog ; wf:defaultLanguage "en"^^xsd:language .
ex:reports a wf:Feature ; rdfs:label "Reports"@en .
ex:report a wf:Step ; rdfs:label "Build a report"@en ; wf:introduces ex:reports ;
    wf:availableOn wf:Web, wf:Email ; wf:hasContent ex:report-content, ex:report-email .
ex:report-content a wf:StepContent ;
    wf:headline "Build your first report"@en, "Crie seu primeiro relatório"@pt-BR ;
    wf:body "Pick a metric."@en, "Escolha uma métrica."@pt-BR ;
    wf:ctaLabel "Start"@en, "Começar"@pt-BR ;
    wf:deepLink "https://app.example.org/reports/new"^^xsd:anyURI .
ex:report-email a wf:StepContent ; wf:onChannel wf:Email ;
    wf:headline "Your first report"@en ; wf:body "One click away."@en ; wf:ctaLabel "Open"@en .
ex:plain a wf:Step ; rdfs:label "Plain step"@en, "Passo simples"@pt ; rdfs:comment "No content here."@en ;
    wf:introduces ex:reports ; wf:availableOn wf:Web .
"""


def test_lookup_truncates_the_tag_as_rfc_4647_section_3_4_does():
    # The RFC's own example: a singleton left at the end goes with the subtag after it.
    assert lookup_chain("zh-Hant-CN-x-private1-private2", "en") == [
        "zh-hant-cn-x-private1-private2",
        "zh-hant-cn-x-private1",
        "zh-hant-cn",
        "zh-hant",
        "zh",
        "en",
        "",
    ]
    assert lookup_chain(None, "de") == ["de", ""]
    assert lookup(["en", "pt-BR"], "PT-br", "en") == "pt-BR"  # case-insensitive, returned as written
    assert lookup(["en", "pt-BR"], "pt", "en") == "en"  # lookup never widens a range: pt does not find pt-BR
    assert lookup(["en", "pt"], "pt-BR", "en") == "pt"
    assert lookup(["fr"], "de", "en") is None


def test_a_served_locale_is_written_in_the_case_rfc_5646_recommends():
    assert [canonical_case(t) for t in ("pt-br", "zh-hant-tw", "de-ch-1996", "en", "en-a-bbb-x-ab", "es-419")] == [
        "pt-BR",
        "zh-Hant-TW",
        "de-CH-1996",
        "en",
        "en-a-bbb-x-ab",
        "es-419",
    ]


@pytest.mark.parametrize("tag", ["", "pt_BR", "p", "pt--BR", "en-ÄÖ", "123", "en-toolongsubtag", "a" * 36])
def test_a_malformed_locale_is_refused_naming_the_field(tag):
    with pytest.raises(InvalidInput) as refused:
        parse_locale(tag)
    assert refused.value.field == "locale"


@pytest.mark.parametrize("tag", ["en", "pt-BR", "zh-Hant-TW", "de-CH-1996", "x-private", "sr-Latn-RS"])
def test_a_well_formed_locale_is_kept_as_given(tag):
    assert parse_locale(tag) == tag


def test_channel_content_comes_first_then_content_for_every_channel_then_the_label():
    contents = {
        None: ContentInfo("c", texts={"en": Texts("H", "B", "C"), "pt-BR": Texts("Hp", "Bp", "Cp")}, link="l"),
        EMAIL: ContentInfo("e", channel=EMAIL, texts={"en": Texts("He", "Be", "Ce")}),
    }
    shown = serve(contents, channel=WEB, locale="pt-BR", default="en", labels={"en": "L"}, comments={})
    assert (shown.locale, shown.headline, shown.link, shown.source) == ("pt-BR", "Hp", "l", "c")
    shown = serve(contents, channel=EMAIL, locale="pt-BR", default="en", labels={"en": "L"}, comments={})
    assert (shown.locale, shown.headline, shown.source) == ("en", "He", "e")  # e-mail content has English only
    label = serve({}, channel=WEB, locale="pt", default="en", labels={"en": "L", "pt": "Lp"}, comments={"en": "D"})
    assert (label.locale, label.headline, label.cta_label, label.body, label.source) == ("pt", "Lp", "Lp", "", None)
    assert serve({}, channel=WEB, locale=None, default="en", labels={"en": "L"}, comments={"en": "D"}).body == "D"


def test_a_content_version_changes_with_what_is_shown_and_only_with_it():
    a = ContentInfo("a", texts={"en": Texts("H", "B", "C")})
    b = ContentInfo("b", texts={"en": Texts("H", "B", "C")})
    c = ContentInfo("a", texts={"en": Texts("H", "B!", "C")})
    served = [serve({None: x}, channel=WEB, locale=None, default="en", labels={}, comments={}) for x in (a, b, c)]
    assert served[0].version == served[1].version  # the same texts from another node: the same thing shown
    assert served[0].version != served[2].version
    assert len(served[0].version) == 64


def loaded(tmp_path, text: str) -> Runtime:
    path = tmp_path / "catalog.ttl"
    path.write_text(text)
    runtime = Runtime(settings=Settings(store=":memory:"))
    runtime.ensure_ontology()
    runtime.load([path])
    return runtime


def test_the_catalog_view_serves_each_channel_and_locale(tmp_path):
    catalog = loaded(tmp_path, CATALOG).catalog
    report, plain = "https://example.org/catalog/report", "https://example.org/catalog/plain"
    assert catalog.default_language == "en"
    assert catalog.content(report, WEB, "pt-BR").headline == "Crie seu primeiro relatório"
    assert catalog.content(report, WEB, "pt-PT").locale == "en"
    assert catalog.content(report, EMAIL, None).headline == "Your first report"
    assert catalog.content(plain, EMAIL, None) is None  # not on that channel
    shown = catalog.content(plain, WEB, "pt-BR")
    assert (shown.headline, shown.locale, shown.body) == ("Passo simples", "pt", "")
    assert catalog.content(plain, WEB, None).body == "No content here."


def test_content_without_the_default_language_is_refused_at_load_and_nothing_is_stored(tmp_path):
    broken = CATALOG.replace(
        '"Your first report"@en ; wf:body "One click away."@en ; wf:ctaLabel "Open"@en',
        ('"Seu primeiro relatório"@pt ; wf:body "A um clique."@pt ; wf:ctaLabel "Abrir"@pt'),
    )
    runtime = Runtime(settings=Settings(store=":memory:"))
    runtime.ensure_ontology()
    before = len(runtime.store)
    path = tmp_path / "catalog.ttl"
    path.write_text(broken)
    with pytest.raises(RefusedWrite) as refused:
        runtime.load([path])
    assert {v.shape.rsplit("#", 1)[1] for v in refused.value.violations} == {"StepContentDefaultLanguageShape"}
    assert refused.value.violations[0].focus == "https://example.org/catalog/report-email"
    assert len(runtime.store) == before
