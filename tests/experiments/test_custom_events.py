"""A product's own event types: declared in a catalog file, recorded as CUSTOM, counted by a KPI file of its own."""

from __future__ import annotations

import shutil

import pytest
from starlette.testclient import TestClient

from service.api.app import create_app
from service.decisions import decide
from service.experiments import registry
from service.experiments.analysis import analyse
from service.knowledge.embedded import Store
from service.runtime import Runtime
from service.settings import Settings
from tests.graphql_client import GraphQLClient, register
from tests.paths import FIXTURES, ROOT

RECORD = "mutation R($input: EventInput!) { recordEvent(input: $input) { id type customType } }"
EXPORTS_KPI = """-- kpi: report_exports
-- measures: Share of exposed users who exported a report at or after their first exposure.
-- unit: share
-- higher_is_better: true
-- window_days: 14
SELECT x.experiment, x.arm, x.subject,
    CAST(CASE WHEN COUNT(e.event) > 0 THEN 1 ELSE 0 END AS DOUBLE) AS value,
    c.now_s >= x.exposed_s + 14 * 86400 AS window_closed
FROM exposures x
CROSS JOIN analysis_clock c
LEFT JOIN events e ON e.subject = x.subject AND e.type = 'REPORT_EXPORTED'
    AND e.recorded_s >= x.exposed_s AND e.recorded_s <= c.now_s
WHERE x.exposed_s <= c.now_s
GROUP BY x.experiment, x.arm, x.subject, x.exposed_s, c.now_s
"""


@pytest.fixture(scope="module")
def product(knowledge_quads, tmp_path_factory):
    """A service whose catalog declares REPORT_EXPORTED and whose queries folder has a KPI counting it (shared by
    this module's tests: loading the catalog is the slow part; each test uses users of its own)."""
    tmp_path = tmp_path_factory.mktemp("product")
    queries = tmp_path / "queries"
    shutil.copytree(ROOT / "queries", queries)
    (queries / "kpi" / "report_exports.sql").write_text(EXPORTS_KPI)
    store = Store(":memory:")
    store.commit(add=knowledge_quads)
    runtime = Runtime(settings=Settings(store=":memory:", queries_dir=queries, models_dir=tmp_path / "m"), store=store)
    runtime.load([FIXTURES / "product-events.ttl"])
    with TestClient(create_app(runtime)) as http:
        yield runtime, GraphQLClient(http)


def test_a_declared_event_type_is_recorded_as_custom_and_counted_by_its_kpi(product):
    runtime, client = product
    registry.create(
        runtime,
        registry.ExperimentSpec(
            "exports", [registry.ArmSpec("a", "default@1.2.0", 1), registry.ArmSpec("b", "default@1.3.0", 1)]
        ),
        by="test",
    )
    registry.start(runtime, "exports", by="test", needs_approval=False)
    for user in ("u1", "u2", "u3"):
        register(client, user)
        decide.next_steps(runtime, user)
    stored = client.data(RECORD, {"input": {"userId": "u1", "type": "CUSTOM", "customType": "REPORT_EXPORTED"}})
    assert stored["recordEvent"]["type"] == "CUSTOM" and stored["recordEvent"]["customType"] == "REPORT_EXPORTED"
    analysis = analyse(runtime, "exports")
    counted = {a.name: next(k for k in a.kpis if k.kpi == "report_exports") for a in analysis.arms}
    assert sum(k.units for k in counted.values()) == 3
    assert sum(analysis.moments["report_exports"][arm]["total"] for arm in ("a", "b")) == 1


@pytest.mark.parametrize(
    ("input", "reason"),
    [
        ({"type": "CUSTOM"}, "required with type CUSTOM"),
        ({"type": "CUSTOM", "customType": "NOPE"}, "unknown event type 'NOPE'"),
        ({"type": "CUSTOM", "customType": "ACTIVATED"}, "send type ACTIVATED"),
        ({"type": "ACTIVATED", "customType": "REPORT_EXPORTED"}, "only with type CUSTOM"),
    ],
)
def test_a_custom_event_names_a_declared_type_of_the_product(product, input, reason):
    runtime, client = product
    user = f"bad-{abs(hash(reason))}"
    register(client, user)
    error = client.error(RECORD, {"input": {"userId": user, **input}})
    assert "input.customType" in error["message"] and reason in error["message"], error


def test_a_custom_event_needs_the_consent_its_type_is_collected_for(product):
    _, client = product
    register(client, "no-analytics", consents=["PERSONALIZATION"])
    error = client.error(
        RECORD, {"input": {"userId": "no-analytics", "type": "CUSTOM", "customType": "REPORT_EXPORTED"}}
    )
    assert error["extensions"]["code"] == "CONSENT_REQUIRED"
