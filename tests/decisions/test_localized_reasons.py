"""Reasons in the decision's locale: a version's translated templates (RFC 4647 lookup, else its plain words), with
the catalog's entities named in the language of the words picked, for ranking and hold-back reasons alike."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.decisions import users
from service.decisions.decide import next_steps
from service.knowledge.policies import active_version
from service.knowledge.templates import Named, Wording


def test_a_wording_picks_its_translation_by_lookup_and_names_entities_in_that_language():
    wording = Wording("Needed before {unlocked}", {"pt-br": "Necessário antes de {unlocked}"})
    names = {("urn:s", None): "the tour", ("urn:s", "pt-br"): "o tour"}

    def namer(iri: str, language: str | None) -> str:
        return names[(iri, language)]

    assert wording.say("pt-BR", namer, unlocked=Named("urn:s")) == "Necessário antes de o tour"
    assert wording.say("pt-BR-x-lisbon", namer, unlocked=Named("urn:s")) == "Necessário antes de o tour"
    # lookup truncates the request, never widens it: pt and pt-PT find no pt-BR words, and get the plain ones
    for locale in ("pt", "pt-PT", "fr", None):
        assert wording.say(locale, namer, unlocked=Named("urn:s")) == "Needed before the tour"


@pytest.fixture
def worded(runtime):
    """The demo's 1.8.0 (reasons in Brazilian Portuguese) made the active version."""
    version = next(v for v in runtime.knowledge.policies.values() if v.label == "default@1.8.0")
    for v in runtime.knowledge.policies.values():
        if v.policy == version.policy:
            v.status = "active" if v is version else "retired"
    assert active_version(runtime.knowledge.policies, "default") is version
    users.register(runtime, users.Registration(id="ana", role="analyst", plan="team", at=datetime.now(UTC)))
    return runtime


def test_ranking_reasons_are_in_the_locale_with_the_steps_named_in_it(worded):
    portuguese = next_steps(worded, "ana", limit=5, locale="pt-BR")
    english = next_steps(worded, "ana", limit=5, locale="en-GB")
    assert [s.step for s in portuguese.steps] == [s.step for s in english.steps]  # the words change, not the ranking
    said = [r for s in portuguese.steps for r in s.reasons]
    assert any(r.startswith("Necessário antes de ") for r in said), said
    assert any(r == "Próxima etapa da jornada recomendada" or r.startswith("Apresenta ") for r in said), said
    unlock = next(r for r in said if r.startswith("Necessário antes de "))
    assert unlock.removeprefix("Necessário antes de ") in {
        labels["pt-br"] for labels in worded.catalog.labels.values() if "pt-br" in labels
    }
    english_said = [r for s in english.steps for r in s.reasons]
    assert any(r.startswith("Needed before ") for r in english_said)
    assert not any("Necessário" in r or "Apresenta" in r for r in english_said)
    # a locale the version has no words for: the plain words, and the steps by their titles
    assert [s.reasons for s in next_steps(worded, "ana", limit=5, locale="fr").steps] == [
        s.reasons for s in english.steps
    ]


def test_hold_back_reasons_are_in_the_locale_too(worded):
    first = next_steps(worded, "ana", limit=3)
    top = first.steps[0].step.rsplit("/", 1)[-1]
    users.record_events(worded, [users.EventReport("ana", "STEP_SNOOZED", step_id=top, channel="MOBILE")])
    (hold,) = next_steps(worded, "ana", limit=3, locale="pt-BR").held_back
    assert hold.reason.startswith("Adiada: você pediu para ver depois (MOBILE), até "), hold.reason
    (plain,) = next_steps(worded, "ana", limit=3).held_back
    assert plain.reason.startswith("Held back: snoozed on MOBILE until ")
