"""Pacing across processes: two service processes over one shared store (a real `oxigraph serve`) decide for the
same user at the same moment; the frequency cap holds across them (each user's paced decisions take a lease in the
store), and quiet hours hold in both."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pyoxigraph as ox

from service.decisions import users
from service.demo import knowledge_files
from service.knowledge import vocab
from service.runtime import Runtime
from service.settings import Settings
from tests.decisions.test_pacing import WORDS
from tests.paths import ROOT

POLICIES = """
@prefix wf:   <https://w3id.org/wayfinder/ontology#> .
@prefix pol:  <https://w3id.org/wayfinder/policy/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix xsd:  <http://www.w3.org/2001/XMLSchema#> .

pol:capped a wf:Policy ; rdfs:label "Capped"@en .
pol:capped-1.0.0 a wf:PolicyVersion ;
    wf:versionOf pol:capped ; wf:version "1.0.0" ; wf:status "active" ; wf:pacing pol:cap-pacing .
pol:cap-pacing a wf:PacingPolicy ;
    wf:snoozeDuration "P1D"^^xsd:dayTimeDuration ;
    wf:defaultTimeZone "UTC" ;
    wf:hasFrequencyCap pol:one-email-a-day ;
    WORDS
pol:one-email-a-day a wf:FrequencyCap ;
    wf:maxShown 1 ; wf:capWindow "P1D"^^xsd:dayTimeDuration ; wf:capScope wf:PerUser ; wf:capChannel wf:Email .

pol:quiet a wf:Policy ; rdfs:label "Quiet"@en .
pol:quiet-1.0.0 a wf:PolicyVersion ;
    wf:versionOf pol:quiet ; wf:version "1.0.0" ; wf:status "active" ; wf:pacing pol:quiet-pacing .
pol:quiet-pacing a wf:PacingPolicy ;
    wf:snoozeDuration "P1D"^^xsd:dayTimeDuration ;
    wf:defaultTimeZone "UTC" ;
    wf:hasQuietHours pol:now ;
    WORDS
pol:now a wf:QuietHours ;
    wf:quietChannel wf:Email ;
    wf:quietFrom "FROM"^^xsd:time ; wf:quietUntil "UNTIL"^^xsd:time .
"""

# One service process: for each policy and user in turn, at the same instants in both processes, decides twice on
# EMAIL for them; prints what each decision showed, by policy.
USERS = 10
PROCESS = """
import json, sys, time
from service.decisions import decide
from service.runtime import Runtime
from service.settings import Settings

url, instance, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
runtime = Runtime(settings=Settings(store=url, instance=instance))
runtime.knowledge  # read before the start, so that both processes begin deciding together
shown, turn = {}, 0
for plan in sys.argv[4:]:
    policy, count = plan.split(":")
    for i in range(int(count)):
        time.sleep(max(0.0, start + 0.4 * turn - time.time()))
        turn += 1
        for _ in range(2):
            rec = decide.next_steps(runtime, f"user-{i}", channel="EMAIL", limit=1, policy_id=policy)
            shown.setdefault(policy, []).append([s.step for s in rec.steps])
print(json.dumps(shown))
"""


def run_two(url: str, plans: dict[str, int]) -> dict[str, list[list[str]]]:
    """Run two processes that decide under each policy for its count of users; return what was shown, by policy."""
    start = time.time() + 6  # both interpreters are up and have read the knowledge by then
    args = [f"{policy}:{count}" for policy, count in plans.items()]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PROCESS, url, name, str(start), *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("one", "two")
    ]
    shown: dict[str, list[list[str]]] = {policy: [] for policy in plans}
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        for policy, steps in json.loads(out.strip().splitlines()[-1]).items():
            shown[policy] += steps
    return shown


def test_a_cap_holds_across_two_processes_deciding_at_once_and_quiet_hours_in_both(server, tmp_path):
    now = datetime.now(UTC)
    quiet_from, quiet_until = (
        (now - timedelta(hours=1)).strftime("%H:00:00"),
        (now + timedelta(hours=2)).strftime("%H:00:00"),
    )
    runtime = Runtime(settings=Settings(store=server, instance="setup", models_dir=tmp_path / "models"))
    runtime.ensure_ontology()
    path = tmp_path / "policies.ttl"
    path.write_text(POLICIES.replace("WORDS", WORDS).replace("FROM", quiet_from).replace("UNTIL", quiet_until))
    runtime.load([*knowledge_files(runtime), path])
    for i in range(USERS):
        users.register(runtime, users.Registration(id=f"user-{i}", role="analyst", plan="team"))

    shown = run_two(server, {"capped": USERS, "quiet": 2})
    capped = shown["capped"]
    assert len(capped) == 4 * USERS  # two processes, two decisions each per user
    # every decision stands in the store, and one e-mail a day per user was shown: the cap, across processes
    assert sum(len(steps) for steps in capped) == USERS
    decisions = list(runtime.store.quads(predicate=vocab.RDF_TYPE, object=vocab.DECISION, graph=vocab.AUDIT_GRAPH))
    assert len(decisions) == 4 * USERS + 8  # and the quiet policy's eight
    # and no lease is left behind
    assert not list(runtime.store.quads(graph=ox.NamedNode(vocab.LOCKS_GRAPH.value)))

    assert shown["quiet"] == [[]] * 8
