"""Credentials: server keys with principals, per-user app tokens, rotation without restart, rate limits."""

from __future__ import annotations

import os
import time

import jwt
import pytest
from starlette.testclient import TestClient

from service.api.app import create_app
from service.knowledge import vocab
from service.knowledge.embedded import Store
from service.runtime import Runtime
from service.settings import Settings
from tests.conftest import approve_policies

SERVER = "s" * 24  # the product backend's key: any user of the product
OPERATOR = "o" * 24
AUDITOR = "a" * 24
APP_SECRET = "p" * 32  # signs the web app's user tokens; never sent by anyone
KEYS = f"{SERVER}:client:backend,{OPERATOR}:operator:ops-oncall,{AUDITOR}:auditor,{APP_SECRET}:app:web-app"

REGISTER = "mutation($id: ID!) { registerUser(input: {id: $id, consents: [PERSONALIZATION, ANALYTICS]}) { id } }"
NEXT = "query($u: ID!) { nextSteps(userId: $u) { decisionId personalized } }"
EVENT = (
    'mutation($u: ID!) { recordEvent(input: {userId: $u, type: STEP_COMPLETED, stepId: "take-product-tour"}) { id } }'
)
EVENTS = "mutation($inputs: [EventInput!]!) { recordEvents(inputs: $inputs) }"
GRANT = "mutation($u: ID!) { grantConsent(userId: $u, purpose: MARKETING) { granted } }"
WITHDRAW = "mutation($u: ID!) { withdrawConsent(userId: $u, purpose: MARKETING) { granted } }"
USER = "query($u: ID!) { user(id: $u) { id eventCount } }"
ERASE = "mutation($u: ID!) { eraseUser(userId: $u) { erasureId } }"


def app_token(user: str, *, secret: str = APP_SECRET, kid: str = "web-app", ttl: float = 600, **claims) -> str:
    """A user token as the product's backend mints it: HS256 JWT, the user in `sub`, the app key's principal in `kid`."""
    payload = {"sub": user, "iat": int(time.time()), "exp": int(time.time() + ttl), **claims}
    return jwt.encode(payload, secret, algorithm="HS256", headers={"kid": kid})


def make_client(knowledge_quads, tmp_path, keys: str = KEYS, **settings) -> TestClient:
    store = Store(":memory:")
    store.commit(add=knowledge_quads)
    config = Settings(store=":memory:", api_keys=keys, models_dir=tmp_path / "models", **settings)
    runtime = Runtime(settings=config, store=store)
    approve_policies(runtime)
    return TestClient(create_app(runtime))


@pytest.fixture
def http(knowledge_quads, tmp_path):
    with make_client(knowledge_quads, tmp_path) as client:
        for user in ("ann", "bob"):
            assert call(client, SERVER, REGISTER, id=user).status_code == 200
        yield client


def call(http, credential: str | None, query: str, **variables):
    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
    return http.post("/graphql", json={"query": query, "variables": variables}, headers=headers)


def code_of(response) -> str | None:
    errors = response.json().get("errors") or [{}]
    return (errors[0].get("extensions") or {}).get("code")


def test_an_app_token_acts_for_its_own_user(http):
    ann = app_token("ann")
    body = call(http, ann, NEXT, u="ann").json()
    assert body["data"]["nextSteps"]["personalized"] is True
    assert call(http, ann, EVENT, u="ann").json()["data"]["recordEvent"]["id"]
    assert call(http, ann, GRANT, u="ann").json()["data"]["grantConsent"]["granted"] is True
    assert call(http, ann, WITHDRAW, u="ann").json()["data"]["withdrawConsent"]["granted"] is False
    inputs = [{"userId": "ann", "type": "FEATURE_USED", "featureId": "dashboards"}]
    assert call(http, ann, EVENTS, inputs=inputs).json()["data"]["recordEvents"] == 1


def test_an_app_token_cannot_reach_another_user(http):
    ann = app_token("ann")
    runtime = http.app.app.state.runtime
    before = len(runtime.store)
    for query in (NEXT, EVENT, GRANT, WITHDRAW):
        response = call(http, ann, query, u="bob")
        assert response.status_code == 403 and code_of(response) == "FORBIDDEN", response.text
        assert "bob" not in response.text  # the refusal does not echo other users' IDs
    mixed = [{"userId": "ann", "type": "ACTIVATED"}, {"userId": "bob", "type": "ACTIVATED"}]
    assert code_of(call(http, ann, EVENTS, inputs=mixed)) == "FORBIDDEN"
    assert len(runtime.store) == before  # nothing of any refused call was stored


def test_an_app_token_may_do_nothing_else(http):
    ann = app_token("ann")
    for query, variables in (
        (USER, {"u": "ann"}),
        (ERASE, {"u": "ann"}),
        (REGISTER, {"id": "carl"}),
        ("{ steps { id } }", {}),
    ):
        response = call(http, ann, query, **variables)
        assert code_of(response) == "FORBIDDEN", (query, response.text)
    assert call(http, ann, "{ __typename }").status_code == 200
    assert (
        http.get("/sparql", params={"query": "ASK {}"}, headers={"Authorization": f"Bearer {ann}"}).status_code == 403
    )
    assert http.get("/metrics", headers={"Authorization": f"Bearer {ann}"}).status_code == 403


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda: app_token("ann", ttl=-120), id="expired"),
        pytest.param(lambda: app_token("ann", secret="x" * 32), id="wrong-secret"),
        pytest.param(lambda: app_token("ann", kid="someone-else"), id="unknown-kid"),
        pytest.param(lambda: app_token("ann", ttl=400 * 24 * 3600), id="lifetime-too-long"),
        pytest.param(
            lambda: jwt.encode({"sub": "ann", "exp": int(time.time()) + 60}, APP_SECRET, algorithm="HS256"), id="no-kid"
        ),
        pytest.param(
            lambda: jwt.encode(
                {"exp": int(time.time()) + 60}, APP_SECRET, algorithm="HS256", headers={"kid": "web-app"}
            ),
            id="no-subject",
        ),
        pytest.param(
            lambda: jwt.encode(
                {"sub": "ann", "exp": int(time.time()) + 60}, SERVER, algorithm="HS256", headers={"kid": "backend"}
            ),
            id="signed-by-a-server-key",
        ),
        pytest.param(lambda: app_token("ann")[:-3] + "AAA", id="tampered"),
        pytest.param(lambda: APP_SECRET, id="the-signing-secret-itself"),
    ],
)
def test_a_bad_app_token_is_401(http, token):
    response = call(http, token(), NEXT, u="ann")
    assert response.status_code == 401, response.text
    assert APP_SECRET not in response.text


def test_an_unsigned_token_is_refused(http):
    header = jwt.utils.base64url_encode(b'{"alg":"none","kid":"web-app","typ":"JWT"}').decode()
    body = jwt.utils.base64url_encode(f'{{"sub":"ann","exp":{int(time.time()) + 60}}}'.encode()).decode()
    assert call(http, f"{header}.{body}.", NEXT, u="ann").status_code == 401


def test_a_server_key_still_reaches_any_user(http):
    assert call(http, SERVER, USER, u="bob").json()["data"]["user"]["id"] == "bob"
    assert call(http, SERVER, NEXT, u="ann").json()["data"]["nextSteps"]["decisionId"]


def test_an_erasure_record_names_the_principal_that_asked(http):
    runtime = http.app.app.state.runtime
    assert call(http, SERVER, ERASE, u="ann").json()["data"]["eraseUser"]["erasureId"]
    assert call(http, OPERATOR, ERASE, u="bob").json()["data"]["eraseUser"]["erasureId"]
    requested = sorted(
        q.object.value for q in runtime.store.quads(predicate=vocab.REQUESTED_BY, graph=vocab.AUDIT_GRAPH)
    )
    assert requested == ["backend", "ops-oncall"]


def test_keys_without_a_principal_act_as_their_role(http):
    from service.identity.keys import parse_keys

    keys = parse_keys(KEYS)
    assert keys.identify(AUDITOR).principal == "auditor"
    assert keys.identify(SERVER).principal == "backend"
    assert keys.identify(SERVER).role == "client"


def test_the_keys_file_is_reread_when_it_changes(knowledge_quads, tmp_path):
    old, new = "1" * 24, "2" * 24
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"{old}:client:backend\n")
    with make_client(knowledge_quads, tmp_path, keys="", api_keys_file=keys_file, api_keys_reload_s=0) as client:
        assert call(client, old, "{ steps { id } }").status_code == 200
        keys_file.write_text(f"# rotated\n{new}:client:backend\n")
        stat = keys_file.stat()
        os.utime(keys_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
        assert call(client, old, "{ steps { id } }").status_code == 401  # revoked without a restart
        assert call(client, new, "{ steps { id } }").status_code == 200
        keys_file.write_text("not a key entry\n")  # a broken edit keeps the keys in force
        stat = keys_file.stat()
        os.utime(keys_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 4_000_000_000))
        assert call(client, new, "{ steps { id } }").status_code == 200


def test_a_key_can_carry_a_rate_limit(knowledge_quads, tmp_path):
    limited = "r" * 24
    with make_client(knowledge_quads, tmp_path, keys=f"{limited}:client:batch-job:3/min,{SERVER}:client") as client:
        answers = [call(client, limited, "{ steps { id } }") for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert int(answers[-1].headers["retry-after"]) >= 1
        assert call(client, SERVER, "{ steps { id } }").status_code == 200  # other keys are not affected


def test_app_tokens_are_rate_limited_per_user(knowledge_quads, tmp_path):
    keys = f"{SERVER}:client:backend,{APP_SECRET}:app:web-app:2/min"
    with make_client(knowledge_quads, tmp_path, keys=keys) as client:
        for user in ("ann", "bob"):
            call(client, SERVER, REGISTER, id=user)
        ann, bob = app_token("ann"), app_token("bob")
        assert [call(client, ann, NEXT, u="ann").status_code for _ in range(3)] == [200, 200, 429]
        assert call(client, bob, NEXT, u="bob").status_code == 200


def test_a_key_entry_with_a_bad_rate_is_refused():
    from service.errors import InvalidInput
    from service.identity.keys import parse_keys

    with pytest.raises(InvalidInput, match="rate"):
        parse_keys("k" * 20 + ":client:me:fast")


def test_an_app_key_is_as_long_as_its_hash():
    from service.errors import InvalidInput
    from service.identity.keys import parse_keys

    with pytest.raises(InvalidInput, match="32 characters"):
        parse_keys("k" * 24 + ":app:web-app")
    assert parse_keys("k" * 32 + ":app:web-app").signing_keys("web-app")


def test_the_cli_prints_a_token_the_service_accepts(http, monkeypatch):
    from typer.testing import CliRunner

    from service.cli import app as cli

    monkeypatch.setenv("WAYFINDER_API_KEYS", KEYS)
    result = CliRunner().invoke(cli, ["app-token", "ann", "--app", "web-app", "--ttl", "300"])
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert call(http, token, NEXT, u="ann").json()["data"]["nextSteps"]["decisionId"]
    assert call(http, token, NEXT, u="bob").status_code == 403
    refused = CliRunner().invoke(cli, ["app-token", "ann", "--app", "backend"])
    assert refused.exit_code == 2 and "no key of role app" in refused.output


def test_an_approval_is_recorded_for_the_callers_principal(http):
    promote = "mutation($v: String!, $by: String) { promoteModel(version: $v, approvedBy: $by) { version } }"
    someone_else = call(http, OPERATOR, promote, v="0123abcd", by="Grace")
    assert code_of(someone_else) == "FORBIDDEN" and "ops-oncall" in someone_else.json()["errors"][0]["message"]
    # Naming oneself, or nobody, gets past the approver check to the registry (no such version here).
    assert code_of(call(http, OPERATOR, promote, v="0123abcd", by="ops-oncall")) == "NOT_FOUND"
    assert code_of(call(http, OPERATOR, promote, v="0123abcd")) == "NOT_FOUND"


def test_without_keys_an_approval_must_name_who_approves(client):
    promote = "mutation($v: String!) { promoteModel(version: $v) { version } }"
    error = client.error(promote, {"v": "0123abcd"})
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "approvedBy" in error["message"]


def test_a_token_made_without_any_jwt_library_is_accepted(http):
    """A backend in any language can mint tokens: HS256 over base64url JSON, by the RFC 7515 recipe alone."""
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "web-app"}).encode())
    claims = b64(json.dumps({"sub": "ann", "exp": int(time.time()) + 300}).encode())
    signature = b64(hmac.new(APP_SECRET.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest())
    token = f"{header}.{claims}.{signature}"
    assert call(http, token, NEXT, u="ann").json()["data"]["nextSteps"]["decisionId"]
    assert call(http, token, NEXT, u="bob").status_code == 403
