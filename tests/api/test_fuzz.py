"""Fuzzing the GraphQL API with bad input (hypothesis, through starlette's TestClient).

Every argument of every query and mutation gets arbitrary JSON values, invalid enum
names, out-of-range numbers and times, SPARQL-injection attempts, odd unicode and very
long strings, as variables and as literals in the document; whole request bodies are
fuzzed too. Whatever comes in, the API must:

* never answer 5xx, nor leak a Python stack trace, an exception name or SPARQL text;
* give every GraphQL error an ``extensions.code``, and never INTERNAL: bad input is the
  caller's error, not the service's;
* store nothing for a refused request (``len(runtime.store)`` unchanged; only a
  successful ``nextSteps`` or mutation may write);
* let no injection attempt change what the API answers about the data it holds.

The default run is short (``WAYFINDER_FUZZ_EXAMPLES``, default 75 examples per test).
A long run is a benchmark: ``bench/fuzz/run.sh`` (``HYPOTHESIS_PROFILE=long``, 2,000 per test).
"""

from __future__ import annotations

import json
import os
import re
import string
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.graphql_client import REGISTER
from tests.paths import ROOT

try:  # optional: schema-driven cases from the committed SDL (pip install schemathesis)
    import schemathesis
except ImportError:
    schemathesis = None

SDL = ROOT / "schema.graphql"

ROOT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")  # subjects.ID_PATTERN, matched whole
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "")
EXAMPLES = int(os.environ.get("WAYFINDER_FUZZ_EXAMPLES", 2000 if PROFILE == "long" else 75))
# The fixtures (one app over one store per test function) are shared by a test's examples on purpose:
# the store fills up as the fuzzing goes, and every example checks its own before/after.
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

CODES = {
    "BAD_USER_INPUT",
    "NOT_FOUND",
    "CONFLICT",
    "CONSTRAINT_VIOLATION",
    "CONSENT_REQUIRED",
    "NOT_ENOUGH_DATA",
    "FORBIDDEN",
    "GRAPHQL_VALIDATION_FAILED",
    "GRAPHQL_PARSE_FAILED",
    "BAD_REQUEST",
    "QUERY_TOO_COMPLEX",
}
# Text that must never reach a client unless the client sent it: internals, stack traces, SPARQL.
LEAKS = (
    "Traceback",
    'File "',
    "site-packages",
    "pyoxigraph",
    "oxigraph",
    "SELECT",
    "PREFIX",
    "WHERE {",
    "OPTIONAL {",
    "GRAPH ?",
    "ValueError",
    "KeyError",
    "TypeError",
    "AttributeError",
    "OverflowError",
    "IndexError",
    "RuntimeError",
    "AssertionError",
    "UnicodeEncodeError",
    "UnicodeDecodeError",
    "RecursionError",
    "ZeroDivisionError",
    "NameError",
    "StopIteration",
    "NotImplementedError",
)

# ---------------------------------------------------------------------------------------------
# Values

INJECTIONS = [
    "u1> } ; DROP ALL ; #",
    '" } UNION { ?s ?p ?o } #',
    "<http://x>",
    "u1> <http://x> <http://y> . } #",
    "u1> ?p ?o } INSERT DATA { <http://x> <http://y> <http://z> } #",
    "' OR '1'='1",
    '"; DELETE WHERE { ?s ?p ?o } #',
    "u1\n",
    "u1\r\n",
    "u1\n} #",
    "u1\x00",
    "u1 ",
    " u1",
    "u1\t",
    "U1",
    "ｕ１",
    "u1\u202e",
    "u\u03011",
    "u1\u200b",
    "😀",
    "u1%3E",
    "u1#x",
    "u1/../../user/u2",
    "../u1",
    "u1?x=1",
    "https://w3id.org/wayfinder/user/u1",
    "_:b0",
    "?s",
    "$user",
    "\\u003e",
    "{",
    "}",
    "VALUES ?user { <http://x> }",
    "*",
    ".*",
    "a" * 129,
    "",
]
PREFIXES = ["", "u1", "explore-sample-data", "analyst", "charts", "8a5e0b3c-0000-4000-8000-000000000000"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=8,
)
injection = st.one_of(
    st.sampled_from(INJECTIONS),
    st.builds(str.__add__, st.sampled_from(PREFIXES), st.sampled_from(INJECTIONS)),
    st.builds(
        lambda text, n: text * n, st.sampled_from(["a", "é", "😀", "u1>", '"', "\\", "-"]), st.integers(129, 20_000)
    ),
)
strings = st.one_of(st.text(max_size=60), injection, st.from_regex(ROOT_ID, fullmatch=True))


WRONG_ENUMS = [
    "",
    "web",
    "Web",
    "FAX",
    "ANALYTICS",
    "WEB ",
    "WEB\n",
    "STEP_COMPLETED",
    "null",
    "true",
    "1",
    "__typename",
]
bad_value = st.one_of(
    junk,
    strings,
    injection,
    st.sampled_from(WRONG_ENUMS),
    st.lists(st.sampled_from(WRONG_ENUMS), max_size=3),
    st.from_regex(r"[_A-Za-z][_0-9A-Za-z]{0,12}", fullmatch=True),
)


def arg(plausible: st.SearchStrategy) -> st.SearchStrategy:
    """A bad value for one argument: sometimes still a plausible one, else junk or a hostile string."""
    return st.one_of(plausible, bad_value)


@st.composite
def corrupted(draw, plausible: st.SearchStrategy, keys: list[str]):
    """A plausible input object with one field replaced, added or dropped; or junk instead of the object."""
    value = draw(plausible)
    how = draw(st.sampled_from(["replace", "replace", "add", "drop", "junk"]))
    if how == "junk":
        return draw(junk)
    if how == "drop" and value:
        value.pop(draw(st.sampled_from(sorted(value))))
        return value
    others = [*keys, "extra", "user_id", "__typename"]
    key = draw(st.sampled_from(sorted(value) if how == "replace" and value else others))
    value[key] = draw(bad_times if key == "at" and draw(st.booleans()) else bad_value)
    return value


offsets = st.builds(lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-(23 * 60 + 59), 23 * 60 + 59))
# Well-formed times, out-of-range ones included (year 1 at UTC+14 is before year 1 in UTC).
times = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59), timezones=offsets).map(
        datetime.isoformat
    ),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(datetime.isoformat),
    st.sampled_from(["2026-11-20T10:00:00Z", "2026-11-20", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]),
)
bad_times = st.sampled_from(
    [
        "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "24:00",
        "now",
        "",
        "1e9",
        "2026-11-20T25:00:00Z",
        "2026-11-20T10:00:00+25:00",
        "-2026-11-20T10:00:00Z",
    ]
)


class Catalog:
    """Names of the demo catalog, for plausible values (read once from a runtime)."""

    steps: list[str] = []
    features: list[str] = []
    roles: list[str] = []
    industries: list[str] = []
    plans: list[str] = []

    @classmethod
    def load(cls, runtime) -> None:
        if not cls.steps:
            by_id = runtime.catalog.by_id
            cls.steps, cls.features = sorted(by_id["Step"]), sorted(by_id["Feature"])
            cls.roles, cls.industries = sorted(by_id["Role"]), sorted(by_id["Industry"])
            cls.plans = sorted(by_id["Plan"])


def ids(*known: str) -> st.SearchStrategy:
    return st.one_of(st.sampled_from(list(known)), st.sampled_from(list(known)), st.from_regex(ROOT_ID, fullmatch=True))


def users_() -> st.SearchStrategy:
    return ids("u1", "u1", "u2", "ghost")


CHANNELS = ["WEB", "MOBILE", "IN_APP", "EMAIL"]
PURPOSES = ["PERSONALIZATION", "ANALYTICS", "MARKETING"]
EVENT_TYPES = ["STEP_COMPLETED", "STEP_DISMISSED", "FEATURE_USED", "ACTIVATED", "CONVERTED"]
EVENT_FIELDS = ["userId", "type", "stepId", "featureId", "at"]
REGISTRATION_FIELDS = ["id", "role", "industry", "plan", "signupChannel", "consents", "at"]


def event_input() -> st.SearchStrategy:
    return st.fixed_dictionaries(
        {"userId": users_(), "type": st.sampled_from(EVENT_TYPES)},
        optional={"stepId": ids(*Catalog.steps), "featureId": ids(*Catalog.features), "at": times},
    )


def registration_input() -> st.SearchStrategy:
    return st.fixed_dictionaries(
        {"id": users_()},
        optional={
            "role": ids(*Catalog.roles),
            "industry": ids(*Catalog.industries),
            "plan": ids(*Catalog.plans),
            "signupChannel": st.sampled_from(CHANNELS),
            "consents": st.lists(st.sampled_from(PURPOSES), max_size=4),
            "at": times,
        },
    )


@st.composite
def bad_event_list(draw):
    events = draw(st.lists(event_input(), max_size=4))
    if events and draw(st.booleans()):
        events[draw(st.integers(0, len(events) - 1))] = draw(corrupted(event_input(), EVENT_FIELDS))
        return events
    return draw(st.one_of(junk, st.lists(corrupted(event_input(), EVENT_FIELDS), max_size=3)))


def simple(plausible):
    """The (plausible, bad) strategy factories of a scalar argument."""
    return plausible, lambda: arg(plausible())


def decision_ids() -> st.SearchStrategy:
    return st.one_of(st.uuids().map(str), st.just("8a5e0b3c-0000-4000-8000-000000000000"))


def bad_decision_ids() -> st.SearchStrategy:
    return st.one_of(
        bad_value,
        st.uuids().map(lambda u: str(u).upper()),
        st.uuids().map(lambda u: "{" + str(u) + "}"),
        st.uuids().map(lambda u: u.hex),
        st.uuids().map(lambda u: f"urn:uuid:{u}"),
        st.uuids().map(lambda u: f"{u}\n"),
    )


# Every root field: (query or mutation, argument -> (GraphQL type, plausible, bad), selection).
OPERATIONS = {
    "nextSteps": (
        "query",
        {
            "userId": ("ID!", *simple(users_)),
            "channel": ("Channel!", *simple(lambda: st.sampled_from(CHANNELS))),
            "limit": (
                "Int!",
                lambda: st.integers(1, 50),
                lambda: st.one_of(st.integers(-3, 60), st.integers(), bad_value),
            ),
        },
        "{ decisionId personalized steps { rank score reasons step { id } } }",
    ),
    "user": (
        "query",
        {"id": ("ID!", *simple(users_))},
        "{ id role industry plan eventCount consents { purpose granted affectedDecisions } completedSteps { id } }",
    ),
    "steps": ("query", {}, "{ id channels }"),
    "decision": (
        "query",
        {"id": ("ID!", decision_ids, bad_decision_ids)},
        "{ id channel personalized steps { rank step { id } } }",
    ),
    "registerUser": (
        "mutation",
        {
            "input": (
                "RegisterUserInput!",
                registration_input,
                lambda: corrupted(registration_input(), REGISTRATION_FIELDS),
            )
        },
        "{ id role industry plan }",
    ),
    "recordEvent": (
        "mutation",
        {"input": ("EventInput!", event_input, lambda: corrupted(event_input(), EVENT_FIELDS))},
        "{ id userId type stepId featureId at }",
    ),
    "recordEvents": (
        "mutation",
        {"inputs": ("[EventInput!]!", lambda: st.lists(event_input(), max_size=4), bad_event_list)},
        "",
    ),
    "grantConsent": (
        "mutation",
        {"userId": ("ID!", *simple(users_)), "purpose": ("Purpose!", *simple(lambda: st.sampled_from(PURPOSES)))},
        "{ purpose granted }",
    ),
    "withdrawConsent": (
        "mutation",
        {"userId": ("ID!", *simple(users_)), "purpose": ("Purpose!", *simple(lambda: st.sampled_from(PURPOSES)))},
        "{ purpose granted }",
    ),
    "eraseUser": ("mutation", {"userId": ("ID!", *simple(users_))}, "{ userId triplesRemoved decisionsKept }"),
}
ENUM_TYPES = {"Channel!", "Purpose!"}
ENUM_FIELDS = {"type", "signupChannel", "consents"}

# ---------------------------------------------------------------------------------------------
# Checks


def strings_in(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (str(k), *strings_in(v))]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in strings_in(v)]
    return []


def check(response, sent) -> dict | None:
    """Assert the invariants of any response; return the JSON body when there is one."""
    assert response.status_code < 500, (response.status_code, response.text[:2000])
    sent_text = "\n".join(strings_in(sent)).lower()
    body = None
    if "json" in response.headers.get("content-type", "") and response.content:
        body = response.json()
    texts = [response.text, *strings_in(body)]
    for leak in LEAKS:
        if leak.lower() not in sent_text:
            assert not any(leak in text for text in texts), (leak, response.text[:2000])
    if body is None:
        assert 400 <= response.status_code < 500 or response.headers.get("content-type", "").startswith("text/html"), (
            response.status_code,
            response.text[:500],
        )
        return None
    assert isinstance(body, dict), body
    if "errors" in body:
        assert isinstance(body["errors"], list) and body["errors"], body
        for error in body["errors"]:
            assert isinstance(error.get("message"), str) and error["message"], error
            code = (error.get("extensions") or {}).get("code")
            assert code, f"an error without extensions.code: {error}"
            assert code != "INTERNAL", (
                f"bad input gave an internal error (an unhandled exception): {error}\nsent: {sent!r}"[:3000]
            )
            assert code in CODES, error
    else:
        assert body.get("data") is not None, body
    return body


def outcome(response, body) -> str:
    """What happened, for hypothesis' statistics (--hypothesis-show-statistics)."""
    if body is None:
        return f"HTTP {response.status_code}"
    if body.get("errors"):
        return body["errors"][0]["extensions"]["code"]
    return "ok"


def refused(body: dict | None, root: str | None = None) -> bool:
    """True when nothing of the operation was done: no JSON at all, or errors and no data for the root."""
    if body is None:
        return True
    data = body.get("data")
    if not body.get("errors"):
        return False
    if data is None:
        return True
    return root is not None and data.get(root) is None


def send(call, *args, **kwargs):
    """Make a TestClient request; an exception out of the app is what a real server answers with a 500."""
    try:
        return call(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - TestClient re-raises whatever escaped the app
        pytest.fail(f"the app raised {type(exc).__name__}: {exc} (a real server answers HTTP 500)")


def post(client, payload: dict):
    return send(client.http.post, "/graphql", json=payload)


def ensure_u1(client) -> None:
    """The user most plausible values name: registered, consenting, with one completed step."""
    if client.data('{ user(id: "u1") { id } }')["user"] is None:
        client.data(
            REGISTER,
            {
                "input": {
                    "id": "u1",
                    "role": "analyst",
                    "industry": "retail",
                    "plan": "team",
                    "signupChannel": "WEB",
                    "consents": ["PERSONALIZATION", "ANALYTICS"],
                }
            },
        )


def expect_store(runtime, before: int, kind: str, root: str, body) -> None:
    after = len(runtime.store)
    if refused(body, root) or (kind == "query" and root != "nextSteps"):
        assert after == before, (
            f"{root}: the store changed ({before} -> {after}) for a request that "
            f"{'was refused' if refused(body, root) else 'only reads'}: {body}"
        )


# ---------------------------------------------------------------------------------------------
# Literals, for arguments written into the document


def literal(value, *, enum_value: bool = False) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text if re.fullmatch(r"-?\d+(\.\d+)?(e[+-]?\d+)?", text) else json.dumps(text)
    if isinstance(value, str):
        if enum_value and re.fullmatch(r"[_A-Za-z][_0-9A-Za-z]*", value) and value not in ("true", "false", "null"):
            return value
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(literal(v, enum_value=enum_value) for v in value) + "]"
    if isinstance(value, dict):
        fields = [
            f"{k}: {literal(v, enum_value=k in ENUM_FIELDS)}"
            for k, v in value.items()
            if re.fullmatch(r"[_A-Za-z][_0-9A-Za-z]*", k)
        ]
        return "{" + ", ".join(fields) + "}"
    raise TypeError(value)


def operation(data, root: str, *, inline: bool) -> tuple[str, dict, dict]:
    """Draw a request for a root field; return the document, the variables and the payload."""
    kind, args, selection = OPERATIONS[root]
    mode = data.draw(st.sampled_from(["one bad", "one bad", "one bad", "all plausible", "all bad"]), label="mode")
    target = data.draw(st.sampled_from(sorted(args)), label="bad argument") if args and mode == "one bad" else None
    values = {
        name: data.draw(bad() if mode == "all bad" or name == target else plausible(), label=name)
        for name, (_, plausible, bad) in args.items()
    }
    if inline:
        written = ", ".join(
            f"{name}: {literal(value, enum_value=args[name][0] in ENUM_TYPES)}" for name, value in values.items()
        )
        document = f"{kind} {{ {root}{f'({written})' if written else ''} {selection} }}"
        variables = {}
    else:
        declared = ", ".join(f"${name}: {gql_type}" for name, (gql_type, *_) in args.items())
        used = ", ".join(f"{name}: ${name}" for name in args)
        declared, used = f"({declared})" if declared else "", f"({used})" if used else ""
        document = f"{kind} Fuzz{declared} {{ {root}{used} {selection} }}"
        variables = dict(values)
        if variables and data.draw(st.integers(0, 9), label="drop a variable") == 0:
            variables.pop(data.draw(st.sampled_from(sorted(variables)), label="dropped"))
        if data.draw(st.integers(0, 9), label="extra variable") == 0:
            variables[data.draw(st.text(max_size=8), label="extra name")] = data.draw(junk, label="extra value")
    return document, variables, {"query": document, "variables": variables}


# ---------------------------------------------------------------------------------------------
# The properties


@pytest.mark.parametrize("inline", [False, True], ids=["variables", "literals"])
@FUZZ
@given(data=st.data())
def test_bad_values_in_every_argument_are_refused_cleanly(client, runtime, inline, data):
    Catalog.load(runtime)
    ensure_u1(client)
    root = data.draw(st.sampled_from(sorted(OPERATIONS)), label="root field")
    document, variables, payload = operation(data, root, inline=inline)
    before = len(runtime.store)
    response = post(client, payload)
    body = check(response, payload)
    event(f"{root}: {outcome(response, body)}")
    expect_store(runtime, before, OPERATIONS[root][0], root, body)


INJECTION_TARGETS = [
    ("user", "id"),
    ("nextSteps", "userId"),
    ("decision", "id"),
    ("grantConsent", "userId"),
    ("withdrawConsent", "userId"),
    ("eraseUser", "userId"),
    ("registerUser", "input.id"),
    ("registerUser", "input.role"),
    ("registerUser", "input.industry"),
    ("registerUser", "input.plan"),
    ("recordEvent", "input.userId"),
    ("recordEvent", "input.stepId"),
    ("recordEvent", "input.featureId"),
    ("recordEvents", "inputs.userId"),
    ("recordEvents", "inputs.stepId"),
]
# Valid arguments around the one under attack, so that the payload alone decides the answer.
VALID_ARGUMENTS = {
    "user": {"id": "u1"},
    "nextSteps": {"userId": "u1"},
    "decision": {"id": "8a5e0b3c-0000-4000-8000-000000000000"},
    "grantConsent": {"userId": "u1", "purpose": "MARKETING"},
    "withdrawConsent": {"userId": "u1", "purpose": "MARKETING"},
    "eraseUser": {"userId": "u1"},
    "registerUser": {"input": {"id": "fresh-user", "role": "analyst", "industry": "retail", "plan": "team"}},
    "recordEvent": {"input": {"userId": "u1", "type": "STEP_COMPLETED", "stepId": "build-first-chart"}},
    "recordEvents": {"inputs": [{"userId": "u1", "type": "STEP_COMPLETED", "stepId": "build-first-chart"}]},
}
SNAPSHOT = (
    '{ user(id: "u1") { id role industry plan eventCount consents { purpose granted at } '
    "completedSteps { id } } steps { id title channels requires { id } introduces { id } } }"
)


def with_u1_history(client) -> dict:
    """Register u1 with one completed step, if needed; return what the API says about u1 and the catalog."""
    ensure_u1(client)
    if not client.data('{ user(id: "u1") { eventCount } }')["user"]["eventCount"]:
        client.data(
            'mutation { recordEvent(input: {userId: "u1", type: STEP_COMPLETED, '
            'stepId: "explore-sample-data"}) { id } }'
        )
    return client.data(SNAPSHOT)


def injection_request(root: str, path: str, payload: str, *, inline: bool) -> dict:
    values = json.loads(json.dumps(VALID_ARGUMENTS[root]))
    head, _, leaf = path.partition(".")
    if root == "recordEvent" and leaf == "featureId":
        values["input"] = {"userId": "u1", "type": "FEATURE_USED", "featureId": payload}
    elif root == "recordEvents":
        values["inputs"][0][leaf] = payload
    elif leaf:
        values[head][leaf] = payload
    else:
        values[head] = payload
    kind, args, selection = OPERATIONS[root]
    if inline:
        written = ", ".join(
            f"{name}: {literal(value, enum_value=args[name][0] in ENUM_TYPES)}" for name, value in values.items()
        )
        return {"query": f"{kind} {{ {root}({written}) {selection} }}"}
    declared = ", ".join(f"${name}: {args[name][0]}" for name in values)
    used = ", ".join(f"{name}: ${name}" for name in values)
    return {"query": f"{kind} Injected({declared}) {{ {root}({used}) {selection} }}", "variables": values}


def assert_injection_refused(client, runtime, root: str, path: str, payload: str, *, inline: bool) -> str:
    """The payload is refused as bad input (or as naming nothing), and nothing is stored."""
    before = len(runtime.store)
    request = injection_request(root, path, payload, inline=inline)
    body = check(post(client, request), request)
    where = f"{root}.{path} = {payload[:200]!r} ({'literal' if inline else 'variable'})"
    assert body is not None and body.get("errors"), f"{where} was not refused: {body}"
    codes = {e["extensions"]["code"] for e in body["errors"]}
    assert codes <= {"BAD_USER_INPUT", "NOT_FOUND"}, (where, body["errors"])
    assert (body.get("data") or {}).get(root) is None, (where, body)
    assert len(runtime.store) == before, f"{where} changed the store"
    return "/".join(sorted(codes))


def payloads() -> list[str]:
    """The fixed payloads, alone and after a valid ID, and long runs; none of them a well-formed ID."""
    long = ["a" * 129, "a" * 20_000, "é" * 200, "😀" * 500, "u1>" * 1000, '"' * 300, "\\" * 300]
    found = [*INJECTIONS, *(p + i for p in PREFIXES[1:4] for i in INJECTIONS[:8]), *long]
    return [p for p in dict.fromkeys(found) if not ROOT_ID.fullmatch(p)]


@pytest.mark.parametrize("root, path", INJECTION_TARGETS, ids=[f"{r}.{p}" for r, p in INJECTION_TARGETS])
def test_every_injection_payload_in_every_string_argument_changes_no_result(client, runtime, root, path):
    baseline = with_u1_history(client)
    for i, payload in enumerate(payloads()):  # as a variable and as a literal, in turn
        assert_injection_refused(client, runtime, root, path, payload, inline=bool(i % 2))
    assert client.data(SNAPSHOT) == baseline, f"injections into {root}.{path} changed what the API answers"


@FUZZ
@given(data=st.data())
def test_random_injection_in_any_string_argument_changes_no_result(client, runtime, data):
    baseline = with_u1_history(client)
    payload = data.draw(
        st.one_of(injection, st.text(max_size=60)).filter(lambda s: not ROOT_ID.fullmatch(s)), label="payload"
    )
    root, path = data.draw(st.sampled_from(INJECTION_TARGETS), label="argument")
    inline = data.draw(st.booleans(), label="inline")
    codes = assert_injection_refused(client, runtime, root, path, payload, inline=inline)
    event(f"{root}.{path}: {codes}")
    assert client.data(SNAPSHOT) == baseline, f"{root}.{path} = {payload!r} changed what the API answers"


def request_bodies() -> st.SearchStrategy:
    valid = [
        "{ steps { id } }",
        'query { user(id: "u1") { id eventCount } }',
        "query Q($u: ID!) { user(id: $u) { id } }",
        'query { nextSteps(userId: "u1", limit: 2) { decisionId } }',
        'mutation { registerUser(input: {id: "body-user", consents: [ANALYTICS]}) { id } }',
        'mutation { grantConsent(userId: "u1", purpose: MARKETING) { granted } }',
        "{ __typename }",
        "{ __schema { types { name } } }",
        "query A { steps { id } } query B { __typename }",
        "subscription { steps { id } }",
        "fragment F on Step { id ...F } { steps { ...F } }",
    ]
    documents = st.one_of(
        st.sampled_from(valid),
        st.text(alphabet=string.printable, max_size=80),
        st.text(alphabet='{}()[]$:!@."#,=|&.\\ \nquerymutationfragmentonsteps', max_size=80),
        st.builds(
            lambda doc, at, cut, insert: doc[:at] + insert + doc[at + cut :],
            st.sampled_from(valid),
            st.integers(0, 60),
            st.integers(0, 5),
            st.text(max_size=5),
        ),
        st.builds(lambda n: "{ " + "steps { requires { " * n + "id" + " } }" * n + " }", st.integers(5, 40)),
        st.builds(lambda n: "{ " + " ".join(f"a{i}: steps {{ id }}" for i in range(n)) + " }", st.integers(10, 60)),
        st.builds(lambda n: "{ steps { " + "id " * n + "} }", st.integers(100, 3000)),
    )
    variables = st.dictionaries(st.sampled_from(["u", "id", "input", "inputs", "p"]), junk)
    payloads = st.one_of(
        st.fixed_dictionaries(
            {"query": documents},
            optional={
                "variables": variables,
                "operationName": st.sampled_from(["A", "B", "Q", "", "Nope"]),
                "extensions": st.dictionaries(st.text(max_size=8), junk),
            },
        ),
        st.fixed_dictionaries(
            {},
            optional={
                "query": st.one_of(documents, junk),
                "variables": st.one_of(variables, junk),
                "operationName": junk,
                "extensions": junk,
            },
        ),
    )
    return st.one_of(payloads, payloads, junk, st.lists(payloads, max_size=3))


@FUZZ
@given(data=st.data())
def test_random_request_bodies_are_refused_cleanly(client, runtime, data):
    ensure_u1(client)
    how = data.draw(st.sampled_from(["json", "raw", "get", "method"]), label="how")
    before = len(runtime.store)
    accept = data.draw(
        st.sampled_from(
            [
                None,
                "application/json",
                "application/graphql-response+json",
                "*/*",
                "text/html",
                "application/xml",
                "application/graphql-response+json;q=0.9, */*",
            ]
        ),
        label="accept",
    )
    headers = {"accept": accept} if accept else {}
    if how == "json":
        payload = data.draw(request_bodies(), label="body")
        response = send(client.http.post, "/graphql", json=payload, headers=headers)
        sent = payload
    elif how == "raw":
        text = data.draw(
            st.one_of(
                request_bodies().map(lambda p: json.dumps(p)),
                st.text(st.characters(exclude_categories=()), max_size=40).map(
                    lambda s: json.dumps({"query": "query Q($u: ID!) { user(id: $u) { id } }", "variables": {"u": s}})
                ),
                st.text(max_size=100),
            ),
            label="raw",
        )
        truncate = data.draw(st.booleans(), label="truncate")
        cut = data.draw(st.integers(0, len(text)), label="cut") if truncate else len(text)
        content = text[:cut].encode("utf-8", "surrogatepass")
        if data.draw(st.booleans(), label="latin-1"):
            content = text[:cut].encode("latin-1", "replace")
        ctype = data.draw(
            st.sampled_from(
                [
                    None,
                    "application/json",
                    "application/json; charset=utf-16",
                    "application/graphql",
                    "text/plain",
                    "application/x-www-form-urlencoded",
                    "multipart/form-data; boundary=x",
                    "application/graphql-response+json",
                ]
            ),
            label="content-type",
        )
        if ctype:
            headers["content-type"] = ctype
        response = send(client.http.post, "/graphql", content=content, headers=headers)
        sent = text
    elif how == "get":
        names = st.sampled_from(["query", "variables", "operationName", "extensions", "x"])
        values = st.one_of(st.text(max_size=60), request_bodies().map(json.dumps))
        params = data.draw(st.dictionaries(names, values, max_size=4), label="params")
        response = send(client.http.get, "/graphql", params=params, headers=headers)
        sent = params
    else:
        method = data.draw(st.sampled_from(["PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]), label="method")
        response = send(client.http.request, method, "/graphql", json={"query": "{ steps { id } }"}, headers=headers)
        sent = method
    body = check(response, sent)
    event(f"{how}: {outcome(response, body)}")
    if refused(body):
        assert len(runtime.store) == before, f"a refused request changed the store: {sent!r} -> {body}"


# ---------------------------------------------------------------------------------------------
# Inputs the fuzzer found, kept as plain examples


@pytest.mark.parametrize(
    "document",
    [
        "{",
        "{ 8f }",
        "query {",
        "}",
        "{ steps { id } } }",
        "query Q($u: ID!) { user(id: $u) ",
        "{ steps { " + "id " * 2500 + "} }",  # over the token limit: refused while parsing
    ],
)
def test_documents_that_do_not_parse_are_refused_with_a_code(client, document):
    body = check(post(client, {"query": document}), document)
    assert body["data"] is None and body["errors"]


@pytest.mark.parametrize(
    "content",
    [b"0", b'"x"', b"null", b"true", b"\x80", b'{"query": "{ steps { id } }"}\xff'],
    ids=["number", "string", "null", "true", "not-utf-8", "trailing-byte"],
)
def test_a_json_body_that_is_not_a_request_object_is_a_400(client, content):
    response = send(client.http.post, "/graphql", content=content, headers={"content-type": "application/json"})
    check(response, content.decode("latin-1"))
    assert response.status_code == 400, (response.status_code, response.text)


@pytest.mark.parametrize(
    "root, variables",
    [
        ("user", {"id": "u1\n"}),
        ("nextSteps", {"userId": "u1\n", "channel": "WEB", "limit": 5}),
        ("eraseUser", {"userId": "u1\n"}),
        ("grantConsent", {"userId": "u1\n", "purpose": "MARKETING"}),
        ("registerUser", {"input": {"id": "new-user\n"}}),
        ("recordEvent", {"input": {"userId": "u1\n", "type": "ACTIVATED"}}),
        ("decision", {"id": "{8a5e0b3c-0000-4000-8000-000000000000}"}),
        ("decision", {"id": "urn:uuid:{8a5e0b3c-0000-4000-8000-000000000000}"}),
        ("registerUser", {"input": {"id": "early-user", "at": "0001-01-01T00:00:00+14:00"}}),
        ("registerUser", {"input": {"id": "late-user", "at": "9999-12-31T23:59:59-14:00"}}),
        ("recordEvent", {"input": {"userId": "u1", "type": "ACTIVATED", "at": "0001-01-01T00:00:00+14:00"}}),
        ("recordEvents", {"inputs": [{"userId": "u1", "type": "ACTIVATED", "at": "9999-12-31T23:59:59-14:00"}]}),
    ],
    ids=[
        "user-newline",
        "nextSteps-newline",
        "erase-newline",
        "grant-newline",
        "register-newline",
        "event-newline",
        "decision-braces",
        "decision-urn-braces",
        "register-year-1",
        "register-year-9999",
        "event-year-1",
        "events-year-9999",
    ],
)
def test_malformed_ids_and_times_out_of_range_are_bad_input(client, runtime, root, variables):
    ensure_u1(client)
    kind, args, selection = OPERATIONS[root]
    declared = ", ".join(f"${name}: {args[name][0]}" for name in variables)
    used = ", ".join(f"{name}: ${name}" for name in variables)
    payload = {"query": f"{kind} Q({declared}) {{ {root}({used}) {selection} }}", "variables": variables}
    before = len(runtime.store)
    body = check(post(client, payload), payload)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    assert (body["data"] or {}).get(root) is None and len(runtime.store) == before


def test_a_decision_can_be_read_back_only_by_its_canonical_id(client):
    """Other spellings of the UUID are refused, not answered with a null that says 'no such decision'."""
    ensure_u1(client)
    decision_id = client.data('{ nextSteps(userId: "u1") { decisionId } }')["nextSteps"]["decisionId"]
    assert UUID.fullmatch(decision_id)
    query = "query D($id: ID!) { decision(id: $id) { id } }"
    assert client.data(query, {"id": decision_id})["decision"] == {"id": decision_id}
    for spelling in (decision_id.upper(), decision_id.replace("-", ""), f"urn:uuid:{decision_id}"):
        body = check(post(client, {"query": query, "variables": {"id": spelling}}), spelling)
        found = (body.get("data") or {}).get("decision")
        codes = {e["extensions"]["code"] for e in body.get("errors") or []}
        assert found == {"id": decision_id} or codes == {"BAD_USER_INPUT"}, (spelling, body)


# ---------------------------------------------------------------------------------------------
# Schema-driven cases (schemathesis + hypothesis-graphql), from the committed SDL: valid and invalid
# documents over every root field, with selections this file does not write by hand. schemathesis'
# own response checks are not used: they count every resolver error (a refusal included) as a
# server error; the invariants are those of `check` above.

SCHEMA_EXAMPLES = max(10, EXAMPLES // 4)

if schemathesis is not None:
    SCHEMA = schemathesis.graphql.from_path(SDL)

    @SCHEMA.parametrize()
    @settings(FUZZ, max_examples=SCHEMA_EXAMPLES)
    def test_schema_driven_documents_are_answered_cleanly(case, client, runtime):
        ensure_u1(client)
        payload = {"query": case.body}
        before = len(runtime.store)
        response = post(client, payload)
        body = check(response, payload)
        kind, _, root = case.operation.label.partition(".")
        event(f"{root}: {outcome(response, body)}")
        expect_store(runtime, before, "query" if kind == "Query" else "mutation", root, body)
else:

    def test_schema_driven_documents_are_answered_cleanly():
        pytest.skip("schemathesis is not installed (pip install 'schemathesis>=4.32'); the hand-written fuzzing ran")
