"""The sealed tier: old decision records leave the hot store for immutable segments, and stay verifiable and queryable."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime

import pyoxigraph as ox
import pytest
from typer.testing import CliRunner

from service.audit import sealed as tier
from service.audit.chain import check_record, verify, verify_since_anchors
from service.audit.erasure import erase
from service.cli import app
from service.clock import SimulatedClock, use_clock
from service.decisions import decide, users
from service.knowledge import vocab
from tests.analytics.test_feed import start_experiment
from tests.audit.test_chain import setup_users

START = datetime(2026, 1, 5, 9, tzinfo=UTC)


@pytest.fixture
def clock():
    with use_clock(SimulatedClock(START)) as simulated:
        yield simulated


def decisions_in_hot_store(runtime) -> set[str]:
    return {q.subject.value for q in runtime.store.quads(predicate=vocab.RDF_TYPE, object=vocab.DECISION)}


def full_check(runtime, sealed=True):
    return verify(
        runtime.store,
        runtime.queries["audit-index"],
        anchors=runtime.trail.anchors(),
        sealed=runtime.sealed if sealed else None,
    )


def quick_check(runtime):
    return verify_since_anchors(
        runtime.store, runtime.queries["audit-head"], runtime.trail.anchors(), sealed=runtime.sealed
    )


def old_and_new(runtime, clock):
    """Six decisions and an erasure in January, two decisions in May: returns the old and the new decision IDs."""
    runtime.trail.checkpoint_every = 3
    old = [r.decision_id for r in setup_users(runtime)]
    users.register(runtime, users.Registration(id="cy", role="analyst", plan="team", consents=["PERSONALIZATION"]))
    clock.advance(days=1)
    old += [decide.next_steps(runtime, "ana").decision_id, decide.next_steps(runtime, "cy").decision_id]
    erase(runtime, "cy", requested_by="dpo")  # a record that is not a decision: sealed, and kept hot
    old.append(decide.next_steps(runtime, "bo").decision_id)
    clock.advance(days=120)
    new = [decide.next_steps(runtime, "ana").decision_id, decide.next_steps(runtime, "bo").decision_id]
    return old, new


def test_sealing_moves_old_decisions_out_and_the_trail_verifies_across_both_tiers(disk_runtime, clock):
    old, new = old_and_new(disk_runtime, clock)
    before = full_check(disk_runtime)
    assert before.ok and before.records == 9
    quads_before = len(disk_runtime.store)

    report = tier.seal_trail(disk_runtime)
    assert report.decisions_removed == len(old) == 6
    (segment,) = report.segments
    assert (segment.chain, segment.first, segment.last, segment.records, segment.decisions) == ("main", 1, 7, 7, 6)
    assert segment.oldest < segment.newest < report.cutoff.isoformat()
    hot = decisions_in_hot_store(disk_runtime)
    assert hot == {vocab.DECISION_BASE + d for d in new}
    erasures = list(disk_runtime.store.quads(predicate=vocab.RDF_TYPE, object=vocab.ERASURE))
    assert len(erasures) == 1  # kept hot: only decisions leave
    assert len(disk_runtime.store) < quads_before
    # The segment's end is anchored outside the store, as a checkpoint would anchor it.
    assert {"chain": "main", "sequence": 7, "hash": segment.hash} in [
        {k: a[k] for k in ("chain", "sequence", "hash")} for a in disk_runtime.trail.anchors()
    ]

    after = full_check(disk_runtime)
    assert after.ok, after.reason
    assert (
        after.records == 9
        and after.chains == {"main": 9}
        and after.anchors_checked == len(disk_runtime.trail.anchors())
    )
    assert not full_check(disk_runtime, sealed=False).ok  # without its segments the hot chain starts mid-way
    assert quick_check(disk_runtime).ok

    # The chain goes on from the hot head; a second seal with nothing old enough writes nothing.
    decide.next_steps(disk_runtime, "ana")
    assert tier.seal_trail(disk_runtime).segments == []
    assert full_check(disk_runtime).ok and quick_check(disk_runtime).ok
    # The first hot record after the sealed range links back into the segment.
    first_hot = next(
        q.subject
        for q in disk_runtime.store.quads(
            predicate=vocab.SEQUENCE, object=ox.Literal("8", datatype=vocab.XSD_INTEGER), graph=vocab.AUDIT_GRAPH
        )
    )
    record = check_record(
        disk_runtime.store, first_hot, anchors=disk_runtime.trail.anchors(), sealed=disk_runtime.sealed
    )
    assert record.ok and record.linked_before


def test_a_later_seal_continues_from_the_last_segment(disk_runtime, clock):
    old_and_new(disk_runtime, clock)
    tier.seal_trail(disk_runtime)
    clock.advance(days=120)
    decide.next_steps(disk_runtime, "ana")
    report = tier.seal_trail(disk_runtime)
    assert [(s.first, s.last) for s in report.segments] == [(8, 9)]  # the new head (10) stays hot
    assert report.segments[0].previous == disk_runtime.sealed.segments()[0].hash
    assert decisions_in_hot_store(disk_runtime) == {
        q.subject.value
        for q in disk_runtime.store.quads(
            predicate=vocab.SEQUENCE, object=ox.Literal("10", datatype=vocab.XSD_INTEGER), graph=vocab.AUDIT_GRAPH
        )
    }
    assert full_check(disk_runtime).ok and quick_check(disk_runtime).ok


def lineage_bindings(runtime, decision_id: str) -> dict[str, dict]:
    """Parameters for every shipped lineage query, about one old decision (its user, consent and policy)."""
    decision = ox.NamedNode(vocab.DECISION_BASE + decision_id)
    used = [q.object for q in runtime.store.quads(subject=decision, predicate=vocab.PROV_USED)]
    consent = next(u for u in used if u.value.startswith(vocab.CONSENT_BASE))
    policy = next(runtime.store.quads(subject=decision, predicate=vocab.POLICY_VERSION_OF_DECISION)).object
    values = {
        "decision": decision,
        "consent": consent,
        "policy": policy,
        "user": vocab.user_iri("ana"),
        "model": ox.NamedNode(vocab.MODEL_BASE + "none"),  # the demo serves no model
    }
    found: dict[str, dict] = {}
    for name, query in runtime.queries.items():
        if name.startswith("lineage/"):
            params = query.parameters.values()
            found[name] = {p.name: values[p.name] for p in params if not p.optional}
    return found


def answers(store, runtime, bindings) -> dict[str, list]:
    return {
        name: sorted(
            tuple(sorted((k, str(v)) for k, v in row.items())) for row in store.select(runtime.queries[name].bind(**b))
        )
        for name, b in bindings.items()
    }


def test_every_lineage_query_answers_over_the_sealed_segments_as_before_sealing(disk_runtime, clock):
    start_experiment(disk_runtime)  # two change records in the range sealed, and decisions in an experiment
    old, _ = old_and_new(disk_runtime, clock)
    bindings = lineage_bindings(disk_runtime, old[0])
    assert len(bindings) == len(list((disk_runtime.settings.queries_dir / "lineage").glob("*.rq")))
    expected = answers(disk_runtime.store, disk_runtime, bindings)
    about_decisions = [n for n in expected if "decision" in n or "consent" in n or "affected" in n]
    # The demo serves no model version, so the two queries by model answer nothing, before and after.
    empty = {"lineage/decisions-by-model-version", "lineage/models-using-consent"}
    assert [n for n in about_decisions if not expected[n]] == sorted(empty)

    tier.seal_trail(disk_runtime)
    hot = answers(disk_runtime.store, disk_runtime, bindings)
    assert hot["lineage/why-decision"] == []  # sealed: out of the hot store
    segments = tier.chosen(disk_runtime.sealed)
    with tier.archive(disk_runtime.store, segments) as archived:
        assert answers(archived, disk_runtime, bindings) == expected
    assert not any(p.name.startswith(".store.archive") for p in disk_runtime.store.location.parent.iterdir())
    # A time window chooses segments: none of January's is in May.
    assert tier.chosen(disk_runtime.sealed, since=datetime(2026, 5, 1, tzinfo=UTC)) == []
    assert tier.chosen(disk_runtime.sealed, until=datetime(2026, 1, 6, tzinfo=UTC)) == segments


def rewrite_segment(segment, change, *, fix_manifest: bool) -> None:
    text = gzip.decompress(segment.path.read_bytes()).decode()
    segment.path.write_bytes(gzip.compress(change(text).encode()))
    if fix_manifest:
        manifest = segment.folder / f"{segment.name}.json"
        data = json.loads(manifest.read_text())
        data["sha256"] = tier.file_digest(segment.path)
        manifest.write_text(json.dumps(data))


def test_a_changed_sealed_record_is_found_and_named(disk_runtime, clock):
    old, _ = old_and_new(disk_runtime, clock)
    (segment,) = tier.seal_trail(disk_runtime).segments
    first = vocab.DECISION_BASE + old[0]
    rewrite_segment(
        segment,
        lambda t: t.replace(
            '"true"^^<http://www.w3.org/2001/XMLSchema#boolean>',
            '"false"^^<http://www.w3.org/2001/XMLSchema#boolean>',
            1,
        ),
        fix_manifest=False,
    )
    # The quick check sees the file differ from its manifest; the full one, which record.
    assert not quick_check(disk_runtime).ok and "SHA-256" in quick_check(disk_runtime).reason
    rewrite_segment(segment, lambda t: t, fix_manifest=True)  # a forger who also rewrites the manifest
    assert quick_check(disk_runtime).ok  # the digests match now: only re-hashing finds it
    broken = full_check(disk_runtime)
    assert not broken.ok and broken.broken_sequence == 1 and broken.broken_record == first
    assert "content hash does not match" in broken.reason and segment.name in broken.reason


def test_a_removed_segment_and_a_changed_hot_copy_are_found(disk_runtime, clock):
    old_and_new(disk_runtime, clock)
    (segment,) = tier.seal_trail(disk_runtime).segments
    erasure = next(disk_runtime.store.quads(predicate=vocab.RDF_TYPE, object=vocab.ERASURE)).subject
    disk_runtime.store.commit(add=[ox.Quad(erasure, vocab.REQUESTED_BY, ox.Literal("someone else"), vocab.AUDIT_GRAPH)])
    changed = full_check(disk_runtime)
    assert not changed.ok and changed.broken_record == erasure.value and "sealed copy" in changed.reason
    disk_runtime.store.commit(
        remove=[ox.Quad(erasure, vocab.REQUESTED_BY, ox.Literal("someone else"), vocab.AUDIT_GRAPH)]
    )
    assert full_check(disk_runtime).ok
    segment.path.unlink()
    (segment.folder / f"{segment.name}.json").unlink()
    for check in (full_check(disk_runtime), quick_check(disk_runtime)):
        assert not check.ok  # the hot chain starts at 8, and the anchor at 7 names nothing
    assert "record 1 missing" in full_check(disk_runtime).reason


def test_an_interrupted_seal_leaves_equal_copies_that_the_next_seal_removes(disk_runtime, clock, monkeypatch):
    old, _ = old_and_new(disk_runtime, clock)
    real = tier._remove
    monkeypatch.setattr(tier, "_remove", lambda *a, **k: (_ for _ in ()).throw(OSError("power loss")))
    with pytest.raises(OSError):
        tier.seal_trail(disk_runtime)
    (segment,) = disk_runtime.sealed.segments()  # written, with its manifest
    assert len(decisions_in_hot_store(disk_runtime)) == 8  # and every decision still hot
    assert full_check(disk_runtime).ok and quick_check(disk_runtime).ok
    # A seal that stopped before its manifest leaves a file that no check reads and the next seal removes.
    stray = disk_runtime.sealed.folder / "main-000000000008-000000000009-deadbeef.nt.gz"
    stray.write_bytes(gzip.compress(b"not records\n"))
    monkeypatch.setattr(tier, "_remove", real)
    report = tier.seal_trail(disk_runtime)
    assert report.segments == [] and report.decisions_removed == len(old)
    assert not stray.exists()
    assert full_check(disk_runtime).ok


def test_a_broken_chain_is_not_sealed(disk_runtime, clock):
    old, _ = old_and_new(disk_runtime, clock)
    third = ox.NamedNode(vocab.DECISION_BASE + old[2])
    disk_runtime.store.commit(add=[ox.Quad(third, vocab.VARIANT, ox.Literal("forged"), vocab.AUDIT_GRAPH)])
    with pytest.raises(Exception, match="does not verify"):
        tier.seal_trail(disk_runtime)
    assert disk_runtime.sealed.segments() == [] and len(decisions_in_hot_store(disk_runtime)) == 8


def test_seal_refuses_a_store_in_memory_and_an_age_that_is_not_positive(runtime, disk_runtime):
    from service.errors import InvalidInput

    with pytest.raises(InvalidInput, match="sealedDir"):
        tier.seal_trail(runtime)
    with pytest.raises(InvalidInput, match="afterDays"):
        tier.seal_trail(disk_runtime, after_days=0)


def test_the_commands_seal_query_sealed_decisions_and_back_up_the_segments(disk_runtime, clock, tmp_path):
    old, _ = old_and_new(disk_runtime, clock)
    store = disk_runtime.settings.store
    disk_runtime.store.close()
    cli = CliRunner()

    def run(*args):
        with use_clock(clock):
            return cli.invoke(app, [*args, "--store", store])

    sealed = run("audit", "seal")
    assert sealed.exit_code == 0, sealed.output
    assert "records 1 to 7 of chain main (6 decisions" in sealed.output
    missing = run("audit", "decision", old[0])
    assert missing.exit_code == 2 and "--sealed" in missing.output
    found = run("audit", "decision", old[0], "--sealed")
    assert found.exit_code == 0, found.output
    assert "returned, in rank order" in found.output
    rows = run(
        "audit", "query", "decisions-for-user", "-p", f"user={vocab.user_iri('ana').value}", "--sealed", "-f", "json"
    )
    assert rows.exit_code == 0, rows.output
    assert len(json.loads(rows.output)) == 4  # three old, one new: none lost
    window = run(
        "audit",
        "query",
        "decisions-for-user",
        "-p",
        f"user={vocab.user_iri('ana').value}",
        "--sealed",
        "--since",
        "2026-04-01T00:00:00Z",
        "-f",
        "json",
    )
    assert len(json.loads(window.output)) == 1  # only the hot one: no segment holds a decision since April
    bad = run("audit", "query", "decisions-for-user", "--sealed", "--since", "yesterday")
    assert bad.exit_code == 2 and "--since" in bad.output

    archive = tmp_path / "archive"
    built = run("audit", "archive", str(archive))
    assert built.exit_code == 0, built.output
    served = cli.invoke(
        app,
        [
            "audit",
            "query",
            "why-decision",
            "-p",
            f"decision={vocab.DECISION_BASE + old[0]}",
            "--store",
            str(archive),
            "-f",
            "json",
        ],
    )
    assert served.exit_code == 0 and json.loads(served.output)

    backup = tmp_path / "backup"
    assert run("backup", str(backup)).exit_code == 0
    assert [p.name for p in sorted((tmp_path / "backup.sealed").iterdir())] == sorted(
        p.name for p in disk_runtime.sealed.folder.iterdir() if not p.name.startswith(".")
    )
    restored = cli.invoke(app, ["audit", "verify", "--store", str(backup)])
    assert restored.exit_code == 0, restored.output
    (tmp_path / "backup.sealed").rename(tmp_path / "elsewhere")
    lost = cli.invoke(app, ["audit", "verify", "--store", str(backup)])
    assert lost.exit_code == 1 and "may not have been restored" in lost.output
    (tmp_path / "elsewhere").rename(tmp_path / "backup.sealed")
    assert "9 records chained" in restored.output
    quick = cli.invoke(app, ["audit", "verify", "--since-anchor", "--store", str(backup)])
    assert quick.exit_code == 0, quick.output


def test_a_query_over_one_segment_sees_the_hot_graphs_beside_it(disk_runtime, clock):
    old, _ = old_and_new(disk_runtime, clock)
    tier.seal_trail(disk_runtime)
    query = (
        "PREFIX wf: <https://w3id.org/wayfinder/ontology#> SELECT ?d ?label WHERE { GRAPH <"
        + vocab.AUDIT_GRAPH.value
        + "> { ?d a wf:Decision ; wf:policyVersion ?p } ?p wf:version ?label }"
    )
    policies = [g for g in disk_runtime.store.named_graphs() if g.value.startswith(vocab.POLICY_GRAPH_BASE)]
    rows = list(tier.select(disk_runtime.store, tier.chosen(disk_runtime.sealed), query, graphs=policies))
    assert {r["label"].value for r in rows} == {"1.2.0"}
    assert {vocab.local_id(r["d"].value) for r in rows} == set(old)


def test_a_rebuilt_analytics_log_keeps_the_exposures_of_sealed_decisions(disk_runtime, clock):
    from service.analytics import feed

    start_experiment(disk_runtime)
    old_and_new(disk_runtime, clock)
    statement = "SELECT experiment, arm, subject, bucket, exposed_s FROM exposures ORDER BY ALL"
    kept = feed.log(disk_runtime).query(statement)
    assert kept  # ana, bo and cy were exposed in January
    tier.seal_trail(disk_runtime)
    hot_only = disk_runtime.store.select(disk_runtime.queries["analytics/exposures"])
    assert len(hot_only) < len(kept)  # the January decisions left the hot store
    elog = feed.log(disk_runtime)
    feed.rebuild(disk_runtime, elog)
    assert elog.query(statement) == kept


def test_a_shared_store_seals_every_chain_into_its_sealed_folder(server, tmp_path, clock):
    from service.demo import knowledge_files
    from service.runtime import Runtime
    from service.settings import Settings

    def on(instance, sealed_dir=None):
        settings = Settings(store=server, instance=instance, models_dir=tmp_path / "models", sealed_dir=sealed_dir)
        return Runtime(settings=settings)

    first, second = on("one", tmp_path / "sealed"), on("two")
    first.ensure_ontology()
    first.load(knowledge_files(first))
    from service.errors import InvalidInput

    with pytest.raises(InvalidInput, match="sealedDir"):
        tier.seal_trail(second)  # a shared store without WAYFINDER_SEALED_DIR
    for runtime, uid in ((first, "a"), (second, "b")):
        users.register(runtime, users.Registration(id=uid, role="manager", plan="free", consents=["PERSONALIZATION"]))
        for _ in range(3):
            decide.next_steps(runtime, uid)
    clock.advance(days=100)
    for runtime, uid in ((first, "a"), (second, "b")):
        decide.next_steps(runtime, uid)
    report = tier.seal_trail(first)
    assert sorted((s.chain, s.first, s.last, s.decisions) for s in report.segments) == [
        ("one", 1, 3, 3),
        ("two", 1, 3, 3),
    ]
    assert len(decisions_in_hot_store(first)) == 2
    result = verify(first.store, first.queries["audit-index"], sealed=first.sealed)
    assert result.ok and result.chains == {"one": 4, "two": 4}
    assert verify_since_anchors(first.store, first.queries["audit-head"], [], sealed=first.sealed).ok


def test_a_users_export_and_erasure_receipt_count_their_sealed_decisions(disk_runtime, clock):
    from service.audit.portability import export_user

    old, new = old_and_new(disk_runtime, clock)
    before = export_user(disk_runtime, "ana")
    tier.seal_trail(disk_runtime)
    assert export_user(disk_runtime, "ana") == before  # the sealed decisions are in it, as they were stored
    receipt = erase(disk_runtime, "ana", requested_by="dpo")
    assert receipt.decisions_kept == 4  # three sealed, one hot


def test_segments_checked_in_worker_processes_find_what_one_process_finds(disk_runtime, clock):
    from datetime import timedelta

    from service.clock import now

    old, _ = old_and_new(disk_runtime, clock)
    trail = disk_runtime.trail
    report = tier.seal(
        disk_runtime.store,
        disk_runtime.sealed,
        disk_runtime.queries,
        cutoff=now() - timedelta(days=90),
        anchors=trail.anchors(),
        anchor=trail.anchor,
        segment_records=2,
    )
    assert [(s.first, s.last) for s in report.segments] == [(1, 2), (3, 4), (5, 6), (7, 7)]
    one, two = (
        full_check(disk_runtime),
        verify(
            disk_runtime.store,
            disk_runtime.queries["audit-index"],
            anchors=trail.anchors(),
            sealed=disk_runtime.sealed,
            workers=2,
        ),
    )
    assert one.ok and two.ok and (one.records, one.chains) == (two.records, two.chains) == (9, {"main": 9})
    third = report.segments[1]
    boolean = "^^<http://www.w3.org/2001/XMLSchema#boolean>"
    rewrite_segment(third, lambda t: t.replace(f'"true"{boolean}', f'"false"{boolean}', 1), fix_manifest=True)
    broken = [
        verify(disk_runtime.store, disk_runtime.queries["audit-index"], sealed=disk_runtime.sealed, workers=w)
        for w in (1, 2)
    ]
    assert not broken[0].ok and (broken[0].broken_sequence, broken[0].reason) == (
        broken[1].broken_sequence,
        broken[1].reason,
    )
    assert broken[0].broken_sequence == 3


def test_a_sealed_decision_reads_back_as_before_for_graphql_and_the_console(disk_runtime, clock):
    from service.console import views

    old, new = old_and_new(disk_runtime, clock)
    before = {d: decide.read_decision(disk_runtime, d) for d in (old[0], new[0])}
    shown = views.decision(disk_runtime, old[0])
    tier.seal_trail(disk_runtime)
    index = sorted(disk_runtime.sealed.folder.glob("*.ids"))
    assert len(index) == 1 and index[0].stat().st_size == 16 * len(old)
    assert {d: decide.read_decision(disk_runtime, d) for d in (old[0], new[0])} == before
    assert decide.read_decision(disk_runtime, "00000000-0000-4000-8000-000000000000") is None
    again = views.decision(disk_runtime, old[0])
    assert (again.used, again.pseudonym, again.policy_hash, again.lineage) == (
        shown.used,
        shown.pseudonym,
        shown.policy_hash,
        shown.lineage,
    )
    assert again.check.ok and again.check.sequence == shown.check.sequence == 1
    assert again.check.linked_after and again.check.anchor == 3
    assert not any(p.name.startswith(".store.archive") for p in disk_runtime.store.location.parent.iterdir())


def test_the_service_seals_periodically_when_told_to(disk_runtime, clock, tmp_path):
    import time

    from starlette.testclient import TestClient

    from service.api.app import create_app
    from service.runtime import Runtime

    old, _ = old_and_new(disk_runtime, clock)
    settings = disk_runtime.settings.model_copy(update={"audit_seal_interval_s": 0.2})
    periodic = Runtime(settings=settings, store=disk_runtime.store)
    with TestClient(create_app(periodic)) as http:
        assert http.get("/healthz").status_code == 200
        deadline = time.monotonic() + 10
        while not periodic.sealed.segments() and time.monotonic() < deadline:
            time.sleep(0.05)
    (segment,) = periodic.sealed.segments()
    assert segment.decisions == len(old)
    assert full_check(periodic).ok
