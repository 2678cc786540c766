"""The console in headless Chromium (Debian's ``chromium``, driven by Playwright; no browser is downloaded), with
the network cut off: an auditor and an operator sign in, the lineage drawing and the plotted KPI points are read
back from the page and checked against the API (GraphQL, and SPARQL through SPARQLWrapper), and every page
fits a 1366x768 window, logs no error and has no serious or critical axe-core violation. Screenshots are kept
in var/test-artefacts/console/.
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
from collections.abc import Iterator

import httpx
import pyoxigraph as ox
import pytest

from service.console import views
from tests.conftest import serving
from tests.console.conftest import AUDITOR_KEY, EXPERIMENT, OPERATOR_KEY
from tests.paths import ROOT

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on this machine (Debian's chromium package; .ci/run installs it)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency: make install")
AXE = ROOT / "var" / "vendor" / "axe-core" / "axe.min.js"
ARTEFACTS = ROOT / "var" / "test-artefacts" / "console"
WINDOW = {"width": 1366, "height": 768}


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not AXE.is_file():
        pytest.skip("axe-core is not installed: make vendor")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


class Visit:
    """A browser tab on the service that may reach nothing but the service, and records what went wrong."""

    def __init__(self, browser, base: str) -> None:
        self.base = base
        self.context = browser.new_context(viewport=WINDOW)
        self.errors: list[str] = []
        self.blocked: list[str] = []
        host = urllib.parse.urlsplit(base).netloc

        def only_the_service(route) -> None:
            if urllib.parse.urlsplit(route.request.url).netloc == host:
                route.continue_()
            else:
                self.blocked.append(route.request.url)
                route.abort()

        self.context.route("**/*", only_the_service)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, path: str) -> None:
        response = self.page.goto(self.base + path)
        assert response is not None and response.ok, (path, response and response.status)

    def sign_in(self, key: str) -> None:
        self.open("/console/login")
        self.check("login")
        self.page.fill("#key", key)
        self.page.click("button[type=submit]")
        self.page.wait_for_load_state()

    def check(self, name: str) -> None:
        """The page fits the window, logged no error, reached nothing else, and axe finds nothing serious."""
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)
        widths = self.page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1], f"{name}: scrolls sideways ({widths[0]} > {widths[1]} px)"
        self.page.add_script_tag(path=str(AXE))
        violations = self.page.evaluate(
            "async () => (await axe.run(document)).violations"
            ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))}))"
        )
        grave = [v for v in violations if v["impact"] in ("serious", "critical")]
        assert not grave, f"{name}: {json.dumps(grave, indent=1)}"
        assert not self.errors, f"{name}: {self.errors}"
        assert not self.blocked, f"{name} asked for {self.blocked}"

    def close(self) -> None:
        self.context.close()


def graphql(base: str, key: str, query: str, variables: dict) -> dict:
    answer = httpx.post(
        base + "/graphql",
        json={"query": query, "variables": variables},
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    ).json()
    assert not answer.get("errors"), answer
    return answer["data"]


def test_an_auditor_opens_a_decision_and_its_drawn_lineage_is_what_the_api_says(browser, console_runtime):
    from SPARQLWrapper import JSON, SPARQLWrapper

    with serving(console_runtime) as base:
        visit = Visit(browser, base)
        try:
            visit.sign_in(AUDITOR_KEY)
            assert visit.page.url.endswith("/console/decisions")
            visit.check("decisions")
            visit.page.fill("#user", "sim-6")
            visit.page.click("form.search button[type=submit]")
            visit.page.wait_for_load_state()
            rows = visit.page.eval_on_selector_all("tr[data-decision]", "rows => rows.map(r => r.dataset.decision)")
            assert rows
            visit.page.click(f"tr[data-decision='{rows[0]}'] a")
            visit.page.wait_for_load_state()
            visit.check("decision")
            drawn = visit.page.eval_on_selector_all(
                "svg.lineage g.node", "nodes => nodes.map(n => [n.dataset.kind, n.dataset.iri])"
            )
            table = visit.page.eval_on_selector_all(
                "table.candidates tr[data-step]",
                "rows => rows.map(r => [r.dataset.step, parseFloat(r.dataset.score), r.dataset.rank])",
            )
            chain = visit.page.get_attribute("[data-field=chain]", "data-ok")
            role = views.profile_options(console_runtime)["role"][0][0]
            for name, path in (
                ("preview", "/console/preview?user=sim-6&locale=pt-BR"),
                ("preview-made-up", f"/console/preview?madeUp=1&role={role}&consents=PERSONALIZATION&locale=pt-BR"),
                ("consent", "/console/consent?user=sim-6"),
                ("models", "/console/models"),
            ):
                visit.open(path)
                visit.check(name)
        finally:
            visit.close()

        decision = graphql(
            base,
            AUDITOR_KEY,
            "query D($id: ID!) { decision(id: $id) { policyVersion variant"
            " steps { rank score step { id } } candidates { score step { id } } } }",
            {"id": rows[0]},
        )["decision"]
        sparql = SPARQLWrapper(base + "/sparql")
        sparql.addCustomHttpHeader("Authorization", f"Bearer {AUDITOR_KEY}")
        sparql.setQuery(
            console_runtime.queries["lineage/why-decision"].bind(
                decision=ox.NamedNode(f"https://w3id.org/wayfinder/decision/{rows[0]}")
            )
        )
        sparql.setReturnFormat(JSON)
        bindings = sparql.queryAndConvert()["results"]["bindings"]

    def local(iri: str) -> str:
        return iri.rsplit("/", 1)[-1]

    used = {(b["kind"]["value"], b["item"]["value"]) for b in bindings if b["kind"]["value"] != "returned"}
    assert used and {(k, i) for k, i in drawn if k in ("consent", "event", "knowledge", "profile")} == used
    shown = [local(i) for k, i in drawn if k == "shown"]
    assert shown == [s["step"]["id"] for s in sorted(decision["steps"], key=lambda s: s["rank"])]
    assert {local(i) for k, i in drawn if k in ("shown", "candidate")} == {
        c["step"]["id"] for c in decision["candidates"]
    }
    assert ("policy", decision["policyVersion"]) in [tuple(n) for n in drawn]
    assert ("arm", decision["variant"]) in [tuple(n) for n in drawn]
    scores = {c["step"]["id"]: c["score"] for c in decision["candidates"]}
    assert {local(step): score for step, score, _ in table} == pytest.approx(scores, abs=1e-9)
    assert chain == "true"


def test_an_operator_opens_an_experiment_and_its_plotted_points_are_the_monitors_and_the_results(
    browser, console_runtime
):
    with serving(console_runtime) as base:
        visit = Visit(browser, base)
        try:
            visit.sign_in(OPERATOR_KEY)
            visit.open("/console/journeys")
            visit.check("journeys")
            visit.open("/console/experiments")
            visit.check("experiments")
            visit.page.click(f"tr[data-experiment='{EXPERIMENT}'] a")
            visit.page.wait_for_load_state()
            visit.check("experiment")
            points = visit.page.eval_on_selector_all(
                "figure.chart",
                "figures => figures.flatMap(f => [...f.querySelectorAll('circle.point')].map(c => ({"
                "kpi: f.dataset.kpi, arm: c.dataset.arm, at: c.dataset.at, now: c.dataset.now === 'true',"
                " estimate: parseFloat(c.dataset.estimate),"
                " lower: parseFloat(c.dataset.lower), upper: parseFloat(c.dataset.upper)})))",
            )
            rolled = visit.page.eval_on_selector_all(
                "table.rollbacks tr[data-arm]", "rows => rows.map(r => r.dataset.arm)"
            )
        finally:
            visit.close()
        results = graphql(
            base,
            OPERATOR_KEY,
            "query R($id: ID!) { experimentResults(id: $id) { arms { name kpis { kpi estimate lower upper } } } }",
            {"id": EXPERIMENT},
        )["experimentResults"]

    assert rolled and set(rolled) == {"treatment"}
    by_series: dict[tuple[str, str], list[dict]] = {}
    for point in points:
        by_series.setdefault((point["kpi"], point["arm"]), []).append(point)
    # one point of each series is the analysis now: experimentResults, to the last digit
    now = {(k["kpi"], a["name"]): k for a in results["arms"] for k in a["kpis"] if k["estimate"] is not None}
    assert now and set(now) == set(by_series)
    for key, series in by_series.items():
        (last,) = [p for p in series if p["now"]]
        assert last["estimate"] == pytest.approx(now[key]["estimate"], abs=1e-12), key
        assert (last["lower"], last["upper"]) == pytest.approx((now[key]["lower"], now[key]["upper"]), abs=1e-12)
    # the earlier ones are the snapshots the guardrail monitor stored at each check, in the audit trail
    stored = console_runtime.store.select(
        console_runtime.queries["console/snapshots"].bind(
            experiment=ox.NamedNode(f"https://w3id.org/wayfinder/experiment/{EXPERIMENT}")
        )
    )
    assert len(stored) >= 4
    activation = sorted((p for p in by_series[("activation", "treatment")] if not p["now"]), key=lambda p: p["at"])
    expected = [
        next(
            k
            for a in json.loads(r["analysis"].value)["results"]
            if a["arm"] == "treatment"
            for k in a["kpis"]
            if k["kpi"] == "activation"
        )
        for r in stored
    ]
    expected = [k for k in expected if k["estimate"] is not None]
    assert [p["estimate"] for p in activation] == pytest.approx([k["estimate"] for k in expected], abs=1e-12)


def test_graphiql_works_with_the_network_cut_off(browser, runtime):
    with serving(runtime) as base:  # an open service in development mode: GraphiQL at /graphql
        visit = Visit(browser, base)
        try:
            visit.open("/graphql")
            visit.page.wait_for_selector(".graphiql-container", timeout=20_000)
            visit.page.wait_for_selector(".graphiql-execute-button", timeout=20_000)
            assert not visit.errors and not visit.blocked
            visit.check("graphiql-api")
            visit.open("/console/graphiql")
            visit.page.wait_for_selector(".graphiql-container", timeout=20_000)
            visit.check("graphiql")
        finally:
            visit.close()
