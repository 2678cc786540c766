"""The per-user reads of nextSteps (consents, profile, events, candidates) read the user's own data only.

Their parameters are written into the query text as typed terms
(``service/knowledge/queries.py``), so that the plan starts from the user: the cost
must follow the user's data, not the store's, and the answers must not change,
on the embedded store and on a shared one.
"""

from __future__ import annotations

import time

import pyoxigraph as ox

from service.clock import datetime_literal, now
from service.decisions.candidates import candidate_steps
from service.decisions.consent import consent_record, consents
from service.decisions.users import EventReport, Registration, events, profile, record_events, register
from service.knowledge import vocab
from service.knowledge.shared import RemoteStore
from service.runtime import Runtime
from service.settings import Settings

DEMO = "https://w3id.org/wayfinder/demo/"


# -- the reads answer for the user alone ----------------------------------------


def other_users(runtime: Runtime, count: int, *, events_each: int) -> None:
    """Add users in the service's layout, straight into the store: each completed or dismissed every step."""
    steps = [ox.NamedNode(step.iri) for step in runtime.catalog.steps]
    at = datetime_literal(now())
    quads: list[ox.Quad] = []
    for i in range(count):
        user, graph = vocab.user_iri(f"other-{i}"), vocab.user_graph(f"other-{i}")
        quads += [
            ox.Quad(user, vocab.RDF_TYPE, vocab.USER, graph),
            ox.Quad(user, vocab.HAS_ROLE, ox.NamedNode(DEMO + "analyst"), graph),
            ox.Quad(user, vocab.HAS_PLAN, ox.NamedNode(DEMO + "enterprise"), graph),
            ox.Quad(user, vocab.PSEUDONYM, ox.Literal(f"p{i}"), graph),
        ]
        quads += consent_record(user, vocab.PERSONALIZATION, granted=i % 2 == 0, at=now())[1]
        for j in range(events_each):
            event = ox.NamedNode(f"{vocab.EVENT_BASE}other-{i}-{j}")
            kind = vocab.STEP_DISMISSED if j % 4 == 0 else vocab.STEP_COMPLETED
            quads += [
                ox.Quad(event, vocab.RDF_TYPE, kind, graph),
                ox.Quad(event, vocab.BY_USER, user, graph),
                ox.Quad(event, vocab.ABOUT_STEP, steps[j % len(steps)], graph),
                ox.Quad(event, vocab.OCCURRED_AT, at, graph),
            ]
    runtime.store.commit(add=quads)


def reads(runtime: Runtime, user_id: str) -> dict:
    """Everything nextSteps reads about one user, in comparable form."""
    user = vocab.user_iri(user_id)
    return {
        "consents": [(c.purpose, c.granted) for c in consents(runtime, user_id)],
        "profile": profile(runtime, user_id),
        "events": [(e.type, e.step, e.feature) for e in events(runtime, user_id)],
        "candidates": {
            code: sorted(candidate_steps(runtime, user, iri)) for code, iri in runtime.knowledge.codes.channels.items()
        },
    }


def register_ana(runtime: Runtime) -> None:
    register(
        runtime,
        Registration(
            id="ana",
            role="engineer",
            plan="free",
            industry="retail",
            signup_channel="WEB",
            consents=["PERSONALIZATION", "ANALYTICS"],
        ),
    )
    register(runtime, Registration(id="ana2", role="admin", plan="enterprise", consents=["MARKETING"]))
    record_events(
        runtime,
        [
            EventReport("ana", "STEP_COMPLETED", step_id="explore-sample-data"),
            EventReport("ana", "STEP_DISMISSED", step_id="take-product-tour"),
            EventReport("ana", "FEATURE_USED", feature_id="charts"),
            EventReport("ana2", "STEP_COMPLETED", step_id="build-first-chart"),
        ],
    )


def test_a_users_reads_do_not_change_when_other_users_fill_the_store(runtime):
    register_ana(runtime)
    alone = reads(runtime, "ana")
    other_users(runtime, 50, events_each=40)
    assert reads(runtime, "ana") == alone
    assert sorted(alone["consents"]) == [("ANALYTICS", True), ("PERSONALIZATION", True)]
    assert alone["profile"].role == DEMO + "engineer" and alone["profile"].plan == DEMO + "free"
    assert alone["events"] == [
        ("STEP_COMPLETED", DEMO + "explore-sample-data", None),
        ("STEP_DISMISSED", DEMO + "take-product-tour", None),
        ("FEATURE_USED", None, DEMO + "charts"),
    ]
    assert DEMO + "build-first-chart" in alone["candidates"]["WEB"]
    assert DEMO + "take-product-tour" not in alone["candidates"]["WEB"]


def test_the_cost_of_a_users_reads_does_not_follow_the_store(runtime):
    """2,000 other users with 31 step events each. With ?user substituted and FILTER NOT EXISTS (before
    sparql_terms), these reads took about 2 s here; starting from the user, they stay near 1 ms."""
    register_ana(runtime)

    def fastest_of_five() -> float:
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            reads(runtime, "ana")
            best = min(best, time.perf_counter() - started)
        return best

    alone = fastest_of_five()
    other_users(runtime, 2000, events_each=31)
    crowded = fastest_of_five()
    assert crowded < 5 * alone + 0.020, (alone, crowded)


# -- the same answers on a shared store ------------------------------------------


def test_the_reads_answer_the_same_on_a_shared_store(runtime, server, tmp_path):  # noqa: F811
    register_ana(runtime)
    other_users(runtime, 20, events_each=31)
    shared = Runtime(settings=Settings(store=server, models_dir=tmp_path / "models"))
    assert isinstance(shared.store, RemoteStore)
    shared.store.commit(add=list(runtime.store.quads()))
    for user_id in ("ana", "ana2", "other-3"):
        assert reads(shared, user_id) == reads(runtime, user_id)
