"""The console over starlette's TestClient: signing in with each role's key, what each role may open, the
decision search against the auditors' own lineage query, refusals that name the field, a tampered record
shown broken, and the session's bounds (GraphQL takes it only beside the console header)."""

from __future__ import annotations

import re

import pyoxigraph as ox
import pytest
from starlette.testclient import TestClient

from service.api.app import create_app
from service.console import session, views
from service.identity.keys import parse_keys
from service.knowledge import vocab
from service.knowledge.store import bound
from tests.console.conftest import AUDITOR_KEY, CLIENT_KEY, EXPERIMENT, KEYS, OPERATOR_KEY, SECOND_OPERATOR_KEY


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


def test_a_preview_shows_each_channel_and_records_nothing(app, console_runtime):
    sign_in(app, AUDITOR_KEY)
    decisions = vocab.DECISION
    before = len(list(console_runtime.store.quads(predicate=vocab.RDF_TYPE, object=decisions)))
    quads = len(console_runtime.store)
    page = app.get("/console/preview?user=sim-11&locale=pt-BR")
    assert page.status_code == 200
    channels = re.findall(r'<section class="channel" data-channel="(\w+)"', page.text)
    assert set(channels) == set(console_runtime.knowledge.codes.channels)
    assert re.search(r'<li data-step="[^"]+"><strong>', page.text)  # something would be shown on some channel
    assert len(list(console_runtime.store.quads(predicate=vocab.RDF_TYPE, object=decisions))) == before
    assert len(console_runtime.store) == quads  # nothing at all was written
    assert app.get("/console/preview?user=nobody-here").status_code == 400
    refused = app.get("/console/preview?user=bad%20id%20!")
    assert refused.status_code == 400 and 'role="alert">user: ' in refused.text


def test_a_made_up_profile_is_previewed_as_the_same_user_registered_would_be_and_nothing_is_written(
    app, console_runtime
):
    sign_in(app, AUDITOR_KEY)
    options = views.profile_options(console_runtime)
    role, plan = options["role"][-1][0], options["plan"][-1][0]
    quads = len(console_runtime.store)
    query = f"madeUp=1&role={role}&plan={plan}&signupChannel=WEB&consents=PERSONALIZATION&consents=ANALYTICS"
    page = app.get(f"/console/preview?{query}")
    assert page.status_code == 200 and 'data-made-up="true"' in page.text
    assert set(re.findall(r'data-channel="(\w+)"', page.text)) == set(console_runtime.knowledge.codes.channels)
    assert len(console_runtime.store) == quads  # not registered, nothing decided
    # The same profile registered for real: each channel has the same candidates with the same scores.
    made_up = views.preview_made_up(
        console_runtime,
        views.MadeUp(role=role, plan=plan, signup_channel="WEB", consents=("PERSONALIZATION", "ANALYTICS")),
        locale=None,
    )
    registered = app.post(
        "/graphql",
        json={
            "query": "mutation($input: RegisterUserInput!) { registerUser(input: $input) { id } }",
            "variables": {
                "input": {
                    "id": "twin",
                    "role": role,
                    "plan": plan,
                    "signupChannel": "WEB",
                    "consents": ["PERSONALIZATION", "ANALYTICS"],
                }
            },
        },
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
    )
    assert registered.json()["data"]["registerUser"]["id"] == "twin"
    twin = {c.channel: c for c in views.preview(console_runtime, "twin", locale=None)}
    compared = 0
    for channel in made_up:
        real = twin[channel.channel]
        assert (channel.recommendation is None) == (real.recommendation is None), channel.channel
        if channel.recommendation is None or real.recommendation is None:
            assert channel.refused == real.refused
            continue
        ours = {c.step: round(c.score, 9) for c in channel.recommendation.candidates}
        theirs = {c.step: round(c.score, 9) for c in real.recommendation.candidates}
        assert ours == theirs, channel.channel
        assert channel.recommendation.personalized and real.recommendation.personalized
        compared += bool(ours)
    assert compared >= 1
    # A bad field is refused naming it, and nothing is written.
    quads = len(console_runtime.store)
    refused = app.get("/console/preview?madeUp=1&role=no-such-role")
    assert refused.status_code == 400 and "input.role" in refused.text
    refused = app.get("/console/preview?madeUp=1&consents=NOT_A_PURPOSE")
    assert refused.status_code == 400 and "input.consents[0]" in refused.text
    refused = app.get("/console/preview?madeUp=1&timeZone=Mars/Olympus")
    assert refused.status_code == 400 and "input.timeZone" in refused.text
    assert len(console_runtime.store) == quads


def test_the_consent_page_counts_the_records_and_shows_a_users_history(app, console_runtime):
    api_headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    withdrawn = app.post(
        "/graphql",
        json={"query": 'mutation { withdrawConsent(userId: "sim-12", purpose: ANALYTICS) { granted } }'},
        headers=api_headers,
    )
    assert withdrawn.json()["data"]["withdrawConsent"]["granted"] is False
    sign_in(app, AUDITOR_KEY)
    page = app.get("/console/consent?user=sim-12")
    assert page.status_code == 200
    cells = re.findall(r'<td data-purpose="(\w+)" data-granted="(\d+)" data-withdrawn="(\d+)">', page.text)
    granted = sum(int(g) for p, g, _ in cells if p == "Personalization")
    withdrawals = sum(int(w) for p, _, w in cells if p == "Analytics")
    assert granted == 300 and withdrawals == 1  # every simulated user granted it; one withdrawal, just now
    # The page counts from the analytics log; the auditors' SPARQL over the consent graph gives the same counts.
    over_sparql = {
        (
            bound(r, "day").value,
            vocab.local_id(bound(r, "purpose").value),
            "granted" if bound(r, "status").value == vocab.CONSENT_GIVEN.value else "withdrawn",
        ): int(bound(r, "records").value)
        for r in console_runtime.store.select(console_runtime.queries["console/consent-by-day"])
    }
    assert views.consent(console_runtime).counts == over_sparql
    history = re.findall(r'<tr data-purpose="(\w+)" data-granted="(true|false)">', page.text)
    assert sorted(history[:2]) == [("Analytics", "true"), ("Personalization", "true")]  # at signup, one instant
    assert history[2:] == [("Analytics", "false")]
    assert app.get("/console/consent?user=bad%20id").status_code == 400
    app.post("/console/logout")
    sign_in(app, OPERATOR_KEY)
    assert app.get("/console/consent").status_code == 403  # consent histories are the auditors'


def test_models_are_promoted_and_rolled_back_under_the_approval_rules(app):
    train = app.post(
        "/graphql",
        json={"query": "mutation { trainModel(seed: 0, epochs: 40, members: 1) { version status } }"},
        headers={"authorization": f"Bearer {OPERATOR_KEY}"},
    ).json()["data"]["trainModel"]
    assert train["status"] == "candidate"
    sign_in(app, AUDITOR_KEY)
    listed = app.get("/console/models")
    assert f'data-version="{train["version"]}" data-status="candidate"' in listed.text
    assert "Promote</button>" not in listed.text  # an auditor neither promotes nor rolls back
    assert app.post("/console/models/promote", data={"version": train["version"]}).status_code == 403
    assert app.post("/console/models/rollback").status_code == 403
    # ... but gives the second role's approval, recorded for the auditor's own principal and role.
    assert 'data-action="approve"' in listed.text
    approved = app.post("/console/models/approve", data={"version": train["version"]})
    assert approved.status_code == 200
    assert 'data-verdict="approved" data-by="audrey" data-role="auditor"' in approved.text
    again = app.post("/console/models/approve", data={"version": train["version"]})
    assert again.status_code == 400 and "has approved" in again.text  # one verdict per principal and content
    named = app.post("/console/models/reject", data={"version": train["version"], "approvedBy": "olga"})
    assert named.status_code == 403  # with keys, an approval is the caller's own
    assert app.post("/console/models/retrain", data={"version": train["version"]}).status_code == 404
    app.post("/console/logout")

    sign_in(app, OPERATOR_KEY)  # who trained it may not approve it
    refused = app.post("/console/models/promote", data={"version": train["version"]})
    assert refused.status_code == 403 and "another principal approves it" in refused.text
    refused = app.post("/console/models/approve", data={"version": train["version"]})
    assert refused.status_code == 403 and "another principal approves it" in refused.text
    app.post("/console/logout")
    sign_in(app, SECOND_OPERATOR_KEY)
    promoted = app.post("/console/models/promote", data={"version": train["version"]})
    assert promoted.status_code == 200 and f'data-version="{train["version"]}" data-status="active"' in promoted.text
    models = app.post(
        "/graphql",
        json={"query": "{ models { version status approvedBy } }"},
        headers={"authorization": f"Bearer {AUDITOR_KEY}"},
    ).json()["data"]["models"]
    assert {"version": train["version"], "status": "active", "approvedBy": "omar"} in models
    verdicts = re.findall(r'data-verdict="(\w+)" data-by="(\w+)" data-role="(\w+)"', promoted.text)
    assert verdicts == [("approved", "audrey", "auditor"), ("approved", "omar", "operator")]
    nothing_before = app.post("/console/models/rollback")  # the first version to serve superseded none
    assert nothing_before.status_code == 400 and 'role="alert"' in nothing_before.text
    assert f'data-version="{train["version"]}" data-status="active"' in nothing_before.text


def test_the_journeys_page_draws_the_catalog_with_the_segments_rates_from_the_log(app, console_runtime):
    client = {"authorization": f"Bearer {CLIENT_KEY}"}
    done = [(f"sim-{i}", "take-product-tour") for i in range(0, 40, 4)] + [("sim-8", "invite-teammates")]
    answer = app.post(
        "/graphql",
        json={
            "query": "mutation E($inputs: [EventInput!]!) { recordEvents(inputs: $inputs) }",
            "variables": {"inputs": [{"userId": u, "type": "STEP_COMPLETED", "stepId": s} for u, s in done]},
        },
        headers=client,
    ).json()
    assert answer["data"]["recordEvents"] == len(done), answer
    sign_in(app, OPERATOR_KEY)
    everyone = app.get("/console/journeys")
    assert everyone.status_code == 200
    users_n = int(re.search(r'data-users="(\d+)"', everyone.text).group(1))
    assert users_n == 300
    rows = dict(re.findall(r'<tr data-step="([\w-]+)" data-completers="(\d+)"', everyone.text))
    assert rows["take-product-tour"] == "10" and rows["invite-teammates"] == "1"
    drawn = re.findall(r'<g class="step" data-iri="([^"]+)" data-completion="([^"]+)"', everyone.text)
    assert {iri.rsplit("/", 1)[-1] for iri, _ in drawn} == {s.id for s in console_runtime.catalog.steps}
    tour = next(float(c) for iri, c in drawn if iri.endswith("/take-product-tour"))
    assert tour == pytest.approx(10 / 300)
    arrows = re.findall(r'data-from="([^"]+)" data-to="([^"]+)"', everyone.text)
    expected = {(r, s.iri) for s in console_runtime.catalog.steps for r in s.requires}
    assert set(arrows) == expected and expected
    # the simulation gave users the roles analyst, engineer, manager, admin in turn: sim-0, 4, 8, ... are analysts
    analysts = app.get("/console/journeys?role=analyst")
    assert re.search(r'data-users="(\d+)"', analysts.text).group(1) == "75"
    assert (
        dict(re.findall(r'<tr data-step="([\w-]+)" data-completers="(\d+)"', analysts.text))["take-product-tour"]
        == "10"
    )
    refused = app.get("/console/journeys?plan=platinum")
    assert refused.status_code == 400 and 'role="alert">plan: ' in refused.text


def test_the_experiment_funnel_counts_what_the_kpis_count(app):
    sign_in(app, OPERATOR_KEY)
    page = app.get(f"/console/experiments/{EXPERIMENT}").text
    stages = {
        (arm, stage): int(users)
        for arm, row in re.findall(r'<tr data-arm="(\w+)"><td>\w+</td>(.*?)</tr>', page)
        for stage, users in re.findall(r'data-stage="(\w+)" data-users="(\d+)"', row)
    }
    results = app.post(
        "/graphql",
        json={
            "query": f'{{ experimentResults(id: "{EXPERIMENT}") {{ arms {{ name users kpis {{ kpi units estimate }} }} }} }}'
        },
        headers={"authorization": f"Bearer {OPERATOR_KEY}"},
    ).json()["data"]["experimentResults"]
    for arm in results["arms"]:
        assert stages[(arm["name"], "exposed")] == arm["users"]
        for kpi in arm["kpis"]:
            if (arm["name"], kpi["kpi"]) in stages:
                assert stages[(arm["name"], kpi["kpi"])] == round(kpi["estimate"] * kpi["units"]), kpi
    assert stages[("control", "activation")] > stages[("treatment", "activation")] > 0
    assert 'data-chart="time_to_first_value"' in page


def test_a_decision_a_flag_chose_draws_the_flag_with_its_variant(client):
    variants = [
        {"name": "hybrid", "policyVersion": "default@1.2.0"},
        {"name": "rules", "policyVersion": "default@1.3.0"},
    ]
    managers = [{"conditions": [{"attribute": "role", "values": ["manager"]}], "variant": "rules"}]
    flag = {"id": "ranking", "policy": "default", "variants": variants, "defaultVariant": "hybrid", "rules": managers}
    client.data("mutation C($input: FlagInput!) { createFlag(input: $input) { id } }", {"input": flag})
    client.data('mutation { registerUser(input: {id: "flo", role: "manager", consents: [PERSONALIZATION]}) { id } }')
    rec = client.data('{ nextSteps(userId: "flo") { decisionId policyVersion } }')["nextSteps"]
    assert rec["policyVersion"] == "default@1.3.0"
    page = client.http.get(f"/console/decisions/{rec['decisionId']}").text
    flags = re.findall(r'data-kind="flag" data-iri="([^"]+)" data-label="ranking" data-detail="([^"]+)"', page)
    assert flags and flags[0][0].endswith("/ranking") and flags[0][1].startswith("variant rules, TARGETING_MATCH")
    assert 'data-kind="policy" data-iri="default@1.3.0"' in page
