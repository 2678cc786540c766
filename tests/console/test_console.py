"""The console over starlette's TestClient: signing in with each role's key, what each role may open, the
decision search against the auditors' own lineage query, refusals that name the field, a tampered record
shown broken, and the session's bounds (GraphQL takes it only beside the console header)."""

from __future__ import annotations

import re

import pyoxigraph as ox
import pytest
from starlette.testclient import TestClient

from service.api.app import create_app
from service.console import session
from service.identity.keys import parse_keys
from service.knowledge import vocab
from tests.console.conftest import AUDITOR_KEY, CLIENT_KEY, EXPERIMENT, KEYS, OPERATOR_KEY


@pytest.fixture
def app(console_runtime):
    with TestClient(create_app(console_runtime), base_url="http://testserver") as http:
        yield http


def sign_in(http: TestClient, key: str) -> None:
    response = http.post("/console/login", data={"key": key, "next": ""}, follow_redirects=False)
    assert response.status_code == 303, response.text
    assert "wayfinder_console" in http.cookies


def decision_ids(html: str) -> list[str]:
    return re.findall(r'data-decision="([0-9a-f-]{36})"', html)


def test_nothing_is_usable_before_signing_in(app):
    page = app.get("/console/decisions?user=sim-1", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/console/login?next=")
    assert "%2Fconsole%2Fdecisions%3Fuser%3Dsim-1" in page.headers["location"]  # back to the page after signing in
    assert app.get("/console/experiments", follow_redirects=False).status_code == 303
    assert app.post("/console/logout", follow_redirects=False).status_code == 401
    login = app.get("/console/login")
    assert login.status_code == 200 and 'type="password"' in login.text
    assert app.get("/console/static/console.css").status_code == 200  # the sign-in page's own styles


def test_a_key_signs_in_and_the_page_follows_its_role(app):
    assert app.post("/console/login", data={"key": "not-a-key-at-all-000"}).status_code == 401
    refused = app.post("/console/login", data={"key": CLIENT_KEY})
    assert refused.status_code == 401 and "this key has the role client" in refused.text
    assert "wayfinder_console" not in app.cookies

    sign_in(app, AUDITOR_KEY)
    cookie = app.cookies["wayfinder_console"]
    assert AUDITOR_KEY not in cookie  # the session names the key's principal, never its secret
    page = app.get("/console/decisions")
    assert page.status_code == 200 and "audrey (auditor)" in page.text and decision_ids(page.text)
    forbidden = app.get("/console/experiments")
    assert forbidden.status_code == 403 and "needs the role operator" in forbidden.text

    app.post("/console/logout")
    assert "wayfinder_console" not in app.cookies
    assert app.get("/console/decisions", follow_redirects=False).status_code == 303

    sign_in(app, OPERATOR_KEY)
    assert app.get("/console/experiments").status_code == 200
    assert app.get(f"/console/experiments/{EXPERIMENT}").status_code == 200


def test_after_signing_in_it_goes_back_to_the_page_asked_for_and_never_to_another_site(app):
    back = app.post("/console/login", data={"key": AUDITOR_KEY, "next": "/console/decisions?user=sim-3"})
    assert back.status_code == 200 and str(back.url).endswith("/console/decisions?user=sim-3")
    app.cookies.clear()
    away = app.post(
        "/console/login", data={"key": AUDITOR_KEY, "next": "https://elsewhere.example/"}, follow_redirects=False
    )
    assert away.headers["location"] == "/console/"
    app.cookies.clear()
    other = app.post("/console/login", data={"key": AUDITOR_KEY}, headers={"origin": "https://elsewhere.example"})
    assert other.status_code == 403 and "wayfinder_console" not in app.cookies


def test_a_session_is_signed_by_its_key_and_ends_with_it():
    keys = parse_keys(KEYS)
    auditor = keys.identify(AUDITOR_KEY)
    assert auditor is not None
    cookie = session.issue(auditor, now=1000.0, ttl_s=60)
    assert session.key_of(cookie, keys, now=1001.0) == auditor
    assert session.key_of(cookie, keys, now=1061.0) is None  # expired
    payload, _, signature = cookie.partition(".")
    forged = payload.replace(payload[5], "A" if payload[5] != "A" else "B", 1) + "." + signature
    assert session.key_of(forged, keys, now=1001.0) is None
    without = parse_keys(f"{OPERATOR_KEY}:operator:olga")
    assert session.key_of(cookie, without, now=1001.0) is None  # the key was removed: so is the session
    renamed = parse_keys(f"{AUDITOR_KEY}:operator:audrey")
    assert session.key_of(cookie, renamed, now=1001.0) is None  # the key now grants another role


def test_graphql_takes_the_session_only_beside_the_console_header(app):
    sign_in(app, AUDITOR_KEY)
    query = {"query": "{ steps { id } }"}
    assert app.post("/graphql", json=query).status_code == 401  # a cookie alone, as a form of another site sends
    answered = app.post("/graphql", json=query, headers={"x-wayfinder-console": "1"})
    assert answered.status_code == 200 and answered.json()["data"]["steps"]


def test_the_search_finds_what_the_lineage_query_finds_and_refuses_bad_fields_by_name(app, console_runtime):
    sign_in(app, AUDITOR_KEY)
    user = "sim-7"
    lineage = console_runtime.store.select(
        console_runtime.queries["lineage/decisions-for-user"].bind(user=vocab.user_iri(user))
    )
    expected = {vocab.local_id(r["decision"].value) for r in lineage}
    assert expected
    assert set(decision_ids(app.get(f"/console/decisions?user={user}").text)) == expected
    pseudonym = next(
        q.object.value for q in console_runtime.store.quads(subject=vocab.user_iri(user), predicate=vocab.PSEUDONYM)
    )
    assert set(decision_ids(app.get(f"/console/decisions?user={pseudonym}").text)) == expected

    treatment = decision_ids(app.get("/console/decisions?arm=treatment").text)
    control = decision_ids(app.get("/console/decisions?arm=control").text)
    assert treatment and control and not set(treatment) & set(control)
    everything = decision_ids(app.get("/console/decisions").text)
    assert len(everything) == 50  # the newest 50
    window = app.get("/console/decisions?start=2026-11-05T00:00&end=2026-11-06T00:00").text
    times = re.findall(r'<tr data-decision="[^"]+">\s*<td>.*?</td><td>([^<]+)</td>', window)
    assert len(times) == len(decision_ids(window)) > 0
    assert all("2026-11-05T00:00:00" <= at < "2026-11-06T00:00:00" for at in times), times
    assert not decision_ids(app.get("/console/decisions?start=2030-01-01").text)
    assert decision_ids(app.get("/console/decisions?policy=default@1.3.0").text)

    for query, field in (("start=yesterday", "start"), ("policy=default@9.9.9", "policy"), ("model=v-none", "model")):
        refused = app.get(f"/console/decisions?{query}")
        assert refused.status_code == 400 and re.search(rf'role="alert">{field}: ', refused.text), refused.text


def test_a_decision_page_shows_a_tampered_record_as_broken(app, console_runtime):
    sign_in(app, AUDITOR_KEY)
    decision_id = decision_ids(app.get("/console/decisions?user=sim-4").text)[0]
    page = app.get(f"/console/decisions/{decision_id}")
    assert page.status_code == 200 and 'data-ok="true"' in page.text and "intact" in page.text
    record = ox.NamedNode(vocab.DECISION_BASE + decision_id)
    console_runtime.store.commit(
        add=[ox.Quad(record, vocab.PERSONALIZED, ox.Literal("false", datatype=vocab.XSD_BOOLEAN), vocab.AUDIT_GRAPH)]
    )
    tampered = app.get(f"/console/decisions/{decision_id}")
    assert 'data-ok="false"' in tampered.text and "does NOT match its content" in tampered.text
    assert app.get("/console/decisions/not-a-uuid").status_code == 400
    assert app.get("/console/decisions/00000000-0000-4000-8000-000000000000").status_code == 404


def test_an_open_service_opens_the_console_without_signing_in(runtime):
    with TestClient(create_app(runtime)) as http:
        page = http.get("/console/decisions")
        assert page.status_code == 200 and "open (open)" in page.text and "Sign out" not in page.text
        assert http.get("/console/login", follow_redirects=False).status_code == 303


def test_the_session_cookie_is_http_only_and_same_site_strict(app):
    response = app.post("/console/login", data={"key": OPERATOR_KEY}, follow_redirects=False)
    header = response.headers["set-cookie"]
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/" in header
    max_age = int(re.search(r"Max-Age=(\d+)", header).group(1))
    assert 0 < max_age <= 8 * 3600
