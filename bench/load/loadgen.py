"""Load generator: N concurrent virtual clients drive a running Wayfinder service over GraphQL.

The mix is what client apps send (issue 6): 80% ``nextSteps`` (a random existing user, a random
channel), 18% events (``recordEvent`` or ``recordEvents`` with 2 to 5 events of one user) and 2%
consent changes (``grantConsent`` or ``withdrawConsent``, a random purpose). Each virtual client
sends its next request as soon as the previous one is answered (a closed loop, no think time), so
the figures are the service's capacity at that concurrency, and latency includes queueing.

Events are plausible and consent-respecting by construction. They are reported for users who
just received a recommendation: STEP_COMPLETED or STEP_DISMISSED for a step that nextSteps
offered the user, FEATURE_USED for a feature such a step introduces. FEATURE_USED is sent only
when the client knows a consent allows it (``personalized`` was true, or it granted PERSONALIZATION
or ANALYTICS itself). A refusal by design (``CONSENT_REQUIRED``, say when another client
withdrew that consent a moment before) is counted as a refusal, apart from errors. An error is
an HTTP status other than 200, a timeout or connection failure, a body that is not a GraphQL
result, or a GraphQL error that is not an expected refusal.

    .venv/bin/python -m bench.load.loadgen --url http://127.0.0.1:8000 --users 1000 --clients 8 --duration 60

Prints a table and, with ``--out``, writes a JSON report (machine, versions, git HEAD, date).
``bench/load/run.py`` starts the service configurations and calls :func:`run` for each.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import sys
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from bench import lib

CHANNELS = ("WEB", "MOBILE", "IN_APP", "EMAIL")
PURPOSES = ("PERSONALIZATION", "ANALYTICS", "MARKETING")
FEATURE_PURPOSES = {"PERSONALIZATION", "ANALYTICS"}  # wf:FeatureUsed wf:collectedFor (ontology/wayfinder.ttl)
OPERATIONS = ("nextSteps", "recordEvent", "recordEvents", "grantConsent", "withdrawConsent")
# Refusals the service gives by design, per operation: an event whose purpose lacks consent.
EXPECTED_REFUSALS = {"recordEvent": {"CONSENT_REQUIRED"}, "recordEvents": {"CONSENT_REQUIRED"}}

NEXT_STEPS = """query Next($user: ID!, $channel: Channel!, $limit: Int!) {
  nextSteps(userId: $user, channel: $channel, limit: $limit) {
    decisionId personalized policyVersion modelVersion variant
    steps { rank score reasons step { id title introduces { id } } }
  }
}"""
RECORD_EVENT = "mutation Record($input: EventInput!) { recordEvent(input: $input) { id type at } }"
RECORD_EVENTS = "mutation Many($inputs: [EventInput!]!) { recordEvents(inputs: $inputs) }"
GRANT = "mutation Grant($u: ID!, $p: Purpose!) { grantConsent(userId: $u, purpose: $p) { purpose granted at } }"
WITHDRAW = (
    "mutation Withdraw($u: ID!, $p: Purpose!) { withdrawConsent(userId: $u, purpose: $p) { purpose granted at } }"
)


@dataclass(frozen=True)
class Mix:
    """Shares of the three kinds of request; recordEvent and recordEvents split the events half and half."""

    next_steps: float = 0.80
    events: float = 0.18
    consent: float = 0.02


@dataclass
class LoadConfig:
    url: str
    users: list[str]
    clients: int = 8
    duration_s: float | None = 60.0
    requests: int | None = None  # stop after this many measured requests (instead of, or before, the duration)
    warmup_s: float = 0.0  # requests in the first seconds run but are not measured
    mix: Mix = field(default_factory=Mix)
    api_key: str | None = None
    timeout_s: float = 30.0
    seed: int = 1
    limit: int = 5
    requests_per_connection: int = 0  # 0: each virtual client keeps one connection for the whole run


@dataclass
class Ledger:
    """What the service acknowledged, for checking afterwards that every write was stored."""

    decisions: int = 0
    events_by_user: Counter = field(default_factory=Counter)
    consents_by_user: Counter = field(default_factory=Counter)

    @property
    def events(self) -> int:
        return sum(self.events_by_user.values())

    @property
    def consents(self) -> int:
        return sum(self.consents_by_user.values())


@dataclass
class Outcome:
    operation: str
    seconds: float
    status: str  # "ok", "refused" or "error"
    detail: str = ""


class Knowledge:
    """What the clients have learnt from the answers: steps offered to recent users, their consents."""

    def __init__(self, rng: random.Random, capacity: int = 5000) -> None:
        self.rng = rng
        self.capacity = capacity
        self.offered: OrderedDict[str, list[str]] = OrderedDict()  # recent user -> steps offered, not yet reported
        self.features: dict[str, list[str]] = {}  # recent user -> features the offered steps introduce
        self.consent: dict[str, dict[str, bool]] = {}  # user -> purpose -> granted, where known

    def saw(self, user: str, answer: dict) -> None:
        """Learn from a nextSteps answer: the steps offered, and whether PERSONALIZATION is given."""
        self.offered[user] = [s["step"]["id"] for s in answer["steps"]]
        self.offered.move_to_end(user)
        self.features[user] = sorted({f["id"] for s in answer["steps"] for f in s["step"]["introduces"]})
        self.consent.setdefault(user, {})["PERSONALIZATION"] = answer["personalized"]
        while len(self.offered) > self.capacity:
            gone, _ = self.offered.popitem(last=False)
            self.features.pop(gone, None)

    def feature_events_allowed(self, user: str) -> bool:
        known = self.consent.get(user, {})
        return any(known.get(p) for p in FEATURE_PURPOSES)

    def recent_user(self) -> str | None:
        """A user who was recently offered steps; the most recent weigh more, as events follow recommendations."""
        if not self.offered:
            return None
        index = min(int(self.rng.expovariate(1 / 100)), len(self.offered) - 1)
        return next(itertools.islice(reversed(self.offered), index, None))


def plan_events(knowledge: Knowledge, rng: random.Random, user: str, count: int) -> list[dict]:
    """Up to ``count`` plausible events of one user: steps they were offered, features those steps teach."""
    offered = knowledge.offered.get(user, [])
    features = knowledge.features.get(user, [])
    features_ok = knowledge.feature_events_allowed(user) and bool(features)
    out: list[dict] = []
    for _ in range(count):
        if offered and (not features_ok or rng.random() < 0.45):
            step = offered.pop(rng.randrange(len(offered)))
            kind = "STEP_DISMISSED" if rng.random() < 0.1 else "STEP_COMPLETED"
            out.append({"userId": user, "type": kind, "stepId": step})
        elif features_ok:
            out.append({"userId": user, "type": "FEATURE_USED", "featureId": rng.choice(features)})
    return out


def classify(operation: str, response: httpx.Response) -> tuple[str, str, dict | None]:
    """Return (status, detail, data) of one GraphQL answer."""
    if response.status_code != 200:
        return "error", f"HTTP {response.status_code}: {response.text[:300]}", None
    try:
        body = response.json()
    except ValueError:
        return "error", f"not JSON: {response.text[:300]}", None
    errors = body.get("errors") if isinstance(body, dict) else None
    if errors:
        codes = {(e.get("extensions") or {}).get("code") for e in errors}
        message = "; ".join(f"{(e.get('extensions') or {}).get('code')}: {e.get('message', '')[:240]}" for e in errors)
        if codes and codes <= EXPECTED_REFUSALS.get(operation, set()):
            return "refused", message, None
        return "error", message, None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        return "error", f"no data: {json.dumps(body)[:300]}", None
    return "ok", "", data


class Generator:
    """The shared state of one run: the virtual clients, what they know, what they measured."""

    def __init__(self, config: LoadConfig) -> None:
        if not config.users:
            raise ValueError("no users to drive")
        self.config = config
        self.rng = random.Random(config.seed)
        self.knowledge = Knowledge(self.rng)
        self.ledger = Ledger()
        self.outcomes: list[Outcome] = []
        self.error_samples: deque[dict] = deque(maxlen=20)
        self.refusal_samples: deque[dict] = deque(maxlen=10)
        self.sent = 0
        self.measuring = False
        self.stop = False

    def choose(self) -> tuple[str, str, dict, object]:
        """The next request: (operation, query, variables, what to learn from an ok answer)."""
        rng, mix, users = self.rng, self.config.mix, self.config.users
        draw = rng.random() * (mix.next_steps + mix.events + mix.consent)
        if mix.next_steps <= draw < mix.next_steps + mix.events:
            for _ in range(5):
                user = self.knowledge.recent_user()
                if user is None:
                    break
                batch = rng.random() < 0.5
                events = plan_events(self.knowledge, rng, user, rng.randint(2, 5) if batch else 1)
                if events:
                    if batch:
                        return "recordEvents", RECORD_EVENTS, {"inputs": events}, (user, len(events))
                    return "recordEvent", RECORD_EVENT, {"input": events[0]}, (user, 1)
            # No recent user has anything to report yet (the first requests): ask for steps instead.
        elif draw >= mix.next_steps + mix.events:
            user = self.knowledge.recent_user() if rng.random() < 0.5 else None
            user = user or rng.choice(users)
            purpose = rng.choice(PURPOSES)
            grant = rng.random() < 0.5
            return (
                "grantConsent" if grant else "withdrawConsent",
                GRANT if grant else WITHDRAW,
                {"u": user, "p": purpose},
                (user, purpose, grant),
            )
        user = rng.choice(users)
        variables = {"user": user, "channel": rng.choice(CHANNELS), "limit": self.config.limit}
        return "nextSteps", NEXT_STEPS, variables, user

    def learn(self, operation: str, data: dict, about: object) -> None:
        if operation == "nextSteps":
            self.ledger.decisions += 1
            self.knowledge.saw(about, data["nextSteps"])
        elif operation in ("recordEvent", "recordEvents"):
            user, count = about
            stored = data["recordEvents"] if operation == "recordEvents" else 1
            if stored != count:
                raise AssertionError(f"recordEvents stored {stored} of {count}")
            self.ledger.events_by_user[user] += count
        else:
            user, purpose, grant = about
            self.ledger.consents_by_user[user] += 1
            self.knowledge.consent.setdefault(user, {})[purpose] = grant

    def unlearn(self, operation: str, about: object) -> None:
        """A refused event batch: the user lacks the consent, so send no more feature events for them."""
        if operation in ("recordEvent", "recordEvents"):
            user = about[0]
            self.knowledge.consent[user] = {p: False for p in FEATURE_PURPOSES}

    def take(self) -> bool:
        """Whether a client may send one more request."""
        if self.stop:
            return False
        limit = self.config.requests
        if limit is not None and self.measuring and self.sent >= limit:
            return False
        if self.measuring:
            self.sent += 1
        return True

    def connection(self) -> httpx.AsyncClient:
        """One virtual client's own HTTP connection (keep-alive)."""
        config = self.config
        headers = {"content-type": "application/json", "accept": "application/json"}
        if config.api_key:
            headers["authorization"] = f"Bearer {config.api_key}"
        return httpx.AsyncClient(
            base_url=config.url,
            headers=headers,
            timeout=config.timeout_s,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )

    async def client(self) -> None:
        http, sent_on_connection = self.connection(), 0
        try:
            while self.take():
                every = self.config.requests_per_connection
                if every and sent_on_connection >= every:
                    # A new connection: with several worker processes, whichever is free accepts it.
                    await http.aclose()
                    http, sent_on_connection = self.connection(), 0
                sent_on_connection += 1
                await self.one_request(http)
        finally:
            await http.aclose()

    async def one_request(self, http: httpx.AsyncClient) -> None:
        measured = self.measuring
        operation, query, variables, about = self.choose()
        started = time.perf_counter()
        try:
            response = await http.post("/graphql", json={"query": query, "variables": variables})
            seconds = time.perf_counter() - started
            status, detail, data = classify(operation, response)
        except httpx.HTTPError as exc:
            seconds = time.perf_counter() - started
            status, detail, data = "error", f"{type(exc).__name__}: {exc}", None
        if status == "ok":
            try:
                self.learn(operation, data, about)
            except (KeyError, TypeError, AssertionError) as exc:
                status, detail = "error", f"unexpected answer ({exc!r}): {json.dumps(data)[:300]}"
        elif status == "refused":
            self.unlearn(operation, about)
            self.refusal_samples.append({"operation": operation, "variables": variables, "detail": detail})
        if status == "error":
            self.error_samples.append({"operation": operation, "variables": variables, "detail": detail})
        if measured:
            self.outcomes.append(Outcome(operation, seconds, status, detail))

    async def drive(self, mark: Callable[[str], None] | None = None) -> float:
        """Run the clients; return the measured wall time in seconds. ``mark`` is told "start" and "stop"."""
        config = self.config
        tasks = [asyncio.create_task(self.client()) for _ in range(config.clients)]
        if config.warmup_s > 0:
            await asyncio.sleep(config.warmup_s)
        self.measuring = True
        if mark:
            mark("start")
        started = time.perf_counter()
        if config.duration_s is not None:
            await asyncio.wait(tasks, timeout=config.duration_s)
            self.stop = True
        await asyncio.gather(*tasks)
        # The clock stops at the deadline or when the last answer arrived, whichever is later:
        # the requests still in flight at the deadline are counted.
        wall_s = time.perf_counter() - started
        if mark:
            mark("stop")
        return wall_s


def summarise(outcomes: list[Outcome], wall_s: float) -> dict:
    """Throughput, latency percentiles (of answered requests) and error counts, overall and per operation."""

    def block(items: list[Outcome]) -> dict:
        answered = [o.seconds for o in items if o.status != "error"]
        count = Counter(o.status for o in items)
        out = {
            "requests": len(items),
            "ok": count["ok"],
            "refused": count["refused"],
            "errors": count["error"],
            "error_rate": count["error"] / len(items) if items else 0.0,
            "throughput_rps": len(items) / wall_s if wall_s else 0.0,
        }
        out.update(lib.summary_ms(answered) if answered else {})
        out.pop("samples_ms", None)
        return out

    by_op = {op: block([o for o in outcomes if o.operation == op]) for op in OPERATIONS}
    groups = {"events": ("recordEvent", "recordEvents"), "consent": ("grantConsent", "withdrawConsent")}
    by_group = {name: block([o for o in outcomes if o.operation in ops]) for name, ops in groups.items()}
    return {
        "wall_s": round(wall_s, 3),
        "overall": block(outcomes),
        "by_operation": {k: v for k, v in {**by_op, **by_group}.items() if v["requests"]},
        "mix_actual": {op: round(v["requests"] / len(outcomes), 4) for op, v in by_op.items() if outcomes},
    }


async def run(config: LoadConfig, *, mark: Callable[[str], None] | None = None) -> tuple[dict, Ledger]:
    """Drive the service with the mix; return the report and the ledger of acknowledged writes.

    ``mark("start")`` and ``mark("stop")`` are called when the measured window opens and closes
    (after the warm-up), for a caller that samples CPU time or other counters over that window.
    """
    generator = Generator(config)
    wall_s = await generator.drive(mark)
    report = summarise(generator.outcomes, wall_s)
    ledger = generator.ledger
    report["writes_acknowledged"] = {
        "decisions": ledger.decisions,
        "events": ledger.events,
        "consent_records": ledger.consents,
        "note": "warm-up included",
    }
    report["error_samples"] = list(generator.error_samples)
    report["refusal_samples"] = list(generator.refusal_samples)
    config_out = asdict(config)
    config_out["users"] = len(config.users)
    config_out["api_key"] = "set" if config.api_key else None
    report["config"] = config_out
    return report, ledger


def user_ids(count: int, *, pattern: str = "u{:06d}", first: int = 1) -> list[str]:
    """The IDs of a populated store (bench/next_steps/populate.py writes u000001, u000002, ...)."""
    return [pattern.format(i) for i in range(first, first + count)]


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def table(report: dict) -> str:
    """The readable form: one row per operation and one overall."""
    rows = []
    for name, b in [*report["by_operation"].items(), ("overall", report["overall"])]:
        rows.append(
            (
                name,
                f"{b['requests']:,}",
                f"{b['throughput_rps']:,.1f}",
                ms(b.get("p50_ms")),
                ms(b.get("p99_ms")),
                ms(b.get("max_ms")),
                b["refused"],
                b["errors"],
                f"{b['error_rate']:.2%}",
            )
        )
    return lib.table(
        ["operation", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "refused", "errors", "error rate"], rows
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="base URL of the service, e.g. http://127.0.0.1:8000")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "--users", type=int, help="drive users u000001..uN (a store built by bench/next_steps/populate.py)"
    )
    who.add_argument("--user-ids", help="comma-separated user IDs")
    parser.add_argument("--clients", type=int, default=8, help="concurrent virtual clients")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds to measure (0: until --requests)")
    parser.add_argument("--requests", type=int, help="stop after this many measured requests")
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds of unmeasured requests first")
    parser.add_argument("--api-key", help="sent as 'Authorization: Bearer KEY' (a key of role client)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a request counts as an error")
    parser.add_argument(
        "--requests-per-connection",
        type=int,
        default=0,
        help="each client reconnects after this many requests (0: one keep-alive connection)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    args = parser.parse_args(argv)
    users = user_ids(args.users) if args.users else [u for u in args.user_ids.split(",") if u]
    config = LoadConfig(
        url=args.url,
        users=users,
        clients=args.clients,
        duration_s=args.duration or None,
        requests=args.requests,
        warmup_s=args.warmup,
        api_key=args.api_key,
        timeout_s=args.timeout,
        seed=args.seed,
        requests_per_connection=args.requests_per_connection,
    )
    if config.duration_s is None and config.requests is None:
        parser.error("give --duration or --requests")
    report, _ = asyncio.run(run(config))
    report["command"] = lib.command_line()
    report["environment"] = lib.environment()
    print(table(report))
    for sample in report["error_samples"][:5]:
        print("error:", json.dumps(sample)[:400])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"wrote {args.out}")
    sys.exit(1 if report["overall"]["errors"] else 0)


if __name__ == "__main__":
    main()
