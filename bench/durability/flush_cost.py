"""What per-commit durability costs, and what a backup costs, on an on-disk store.

Three ways to finish a commit, measured on the same store, interleaved in rounds:

- ``wal`` (what the service does today): ``Store.commit`` returns once the
  transaction is in RocksDB's write-ahead log, in the OS page cache. Survives
  ``kill -9`` of the process (tests/knowledge/test_durability.py), not necessarily a power
  loss or a kernel crash.
- ``flush``: ``Store.flush()`` (pyoxigraph ``Store.flush``: RocksDB flushes every
  column family's memtable to SST files, syncs them and the MANIFEST) after each
  commit: what ``WAYFINDER_FLUSH_EACH_COMMIT=true`` (``Store(flush_each_commit=True)``) does.
- ``wal-fsync``: ``fdatasync`` of the store's write-ahead log files (``*.log``
  in the folder) after each commit: what RocksDB's ``WriteOptions.sync`` would
  do, which pyoxigraph does not expose. Relies on RocksDB's file layout, not on
  an API: measured as the alternative to ask upstream for, not as a recommendation.

Each mode is measured at two levels: ``Store.commit`` of one event's quads (the
store alone) and ``users.record_events`` of one event (the service's write path:
SHACL validation of the delta, then the commit, under the store's write lock).
Throughput is sequential commits per second: the service serialises writes under
``Store.write_lock``, so this is also the ceiling of one service process.

Then the backup: ``Store.backup(dir)`` (a RocksDB checkpoint) of the store, its
size, what it writes, how long a full copy of it takes (shipping it off the disk),
and how long the restored folder takes to open.

    .venv/bin/python -m bench.durability.flush_cost                 # 10k users, about 1M quads
    .venv/bin/python -m bench.durability.flush_cost --users 100000  # about 10M quads

The store is built in ``--dir`` (default ``var/bench-durability``, on the project's
disk, not tmpfs: fsync must reach a device to mean anything) and removed at the end
unless ``--keep``. Results: ``bench/durability/results/flush_cost.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import random
import shutil
import time
import uuid
from pathlib import Path

import pyoxigraph as ox

from bench import lib
from service import demo
from service.decisions import users
from service.knowledge import vocab
from service.knowledge.embedded import Store
from service.runtime import Runtime
from service.settings import Settings
from service.synthetic import SyntheticConsent, SyntheticEvent, SyntheticUser, nquads

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = HERE / "results"
MODES = ("wal", "flush", "wal-fsync")


# -- the store under test ------------------------------------------------------------------


class BenchStore(Store):
    """The service's Store with a switchable step after each commit (``flush``: its ``flush_each_commit``)."""

    mode = "wal"

    def commit(self, *, add=(), remove=(), drop=()) -> None:
        self.flush_each_commit = self.mode == "flush"
        super().commit(add=add, remove=remove, drop=drop)
        if self.mode == "wal-fsync":
            sync_wal(self.location)


def sync_wal(folder: Path) -> None:
    """fdatasync every write-ahead log file of a RocksDB folder (NNNNNN.log; the info log is LOG)."""
    for log in folder.glob("*.log"):
        try:
            fd = os.open(log, os.O_RDONLY)
        except FileNotFoundError:  # recycled or deleted in between
            continue
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)


# -- a store of realistic size -------------------------------------------------------------


def synthetic_users(runtime: Runtime, first: int, n_users: int, seed: int) -> bytes:
    """N-Quads of users as the service writes them (``service.synthetic``): profile, two consent records, ~20 events.

    About 100 quads per user (bench/next_steps/populate.py builds richer histories; size is what matters here).
    """
    rng = random.Random(seed)
    catalog = runtime.catalog
    steps = [s.iri for s in catalog.steps]
    features = sorted(e.iri for e in catalog.by_id["Feature"].values())
    roles = sorted(e.iri for e in catalog.by_id["Role"].values())
    industries = sorted(e.iri for e in catalog.by_id["Industry"].values())
    plans = sorted(e.iri for e in catalog.by_id["Plan"].values())
    purposes = runtime.knowledge.codes.purposes
    epoch = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def uuid4() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    made: list[SyntheticUser] = []
    for i in range(first, first + n_users):
        at = epoch + dt.timedelta(seconds=rng.randrange(300 * 86400))
        pseudonym = f"{rng.getrandbits(128):032x}"
        user = SyntheticUser(
            id=f"s{i:07d}",
            registered_at=at,
            pseudonym=pseudonym,
            role=rng.choice(roles),
            industry=rng.choice(industries),
            plan=rng.choice(plans),
            signup_channel=vocab.WEB.value,
        )
        user.consents = [
            SyntheticConsent(uuid4(), purposes[code], True, at) for code in ("PERSONALIZATION", "ANALYTICS")
        ]
        for _ in range(rng.randint(12, 28)):
            at += dt.timedelta(seconds=rng.randint(60, 2 * 86400))
            event_id = uuid4()
            if rng.random() < 0.45:
                user.events.append(SyntheticEvent(event_id, vocab.STEP_COMPLETED.value, at, step=rng.choice(steps)))
            else:
                user.events.append(SyntheticEvent(event_id, vocab.FEATURE_USED.value, at, feature=rng.choice(features)))
        made.append(user)
    return nquads(made)


def build_store(path: Path, n_users: int, seed: int, writers: int) -> tuple[Runtime, dict]:
    t0 = time.perf_counter()
    store = BenchStore(path)
    runtime = Runtime(settings=Settings(store=str(path), models_dir=path.parent / "models"), store=store)
    runtime.ensure_ontology()
    runtime.load(demo.knowledge_files(runtime))
    knowledge_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    chunk = 5000
    for start in range(0, n_users, chunk):
        data = synthetic_users(runtime, start, min(chunk, n_users - start), seed + start)
        store.bulk_load(data, format=ox.RdfFormat.N_QUADS)
    bulk_s = time.perf_counter() - t1
    # The users the write benchmark reports events for, registered through the service.
    for w in range(writers):
        users.register(
            runtime,
            users.Registration(
                id=f"writer-{w}", role="analyst", plan="team", consents=["PERSONALIZATION", "ANALYTICS"]
            ),
        )
    t2 = time.perf_counter()
    store.flush()
    store.optimize()
    info = {
        "users": n_users,
        "quads": len(store),
        "knowledge_s": round(knowledge_s, 2),
        "bulk_load_s": round(bulk_s, 2),
        "flush_optimize_s": round(time.perf_counter() - t2, 2),
        "size_bytes": folder_bytes(path),
        "sst_files": sst_files(path),
    }
    return runtime, info


# -- measurements --------------------------------------------------------------------------


def folder_bytes(path: Path, *, unlinked_only: bool = False) -> int:
    total = 0
    for f in path.rglob("*"):
        if f.is_file():
            st = f.stat()
            if not unlinked_only or st.st_nlink == 1:
                total += st.st_size
    return total


def sst_files(path: Path) -> int:
    return len(list(path.glob("*.sst")))


def summary(seconds: list[float], wall_s: float) -> dict:
    """The latency summary (nearest-rank percentiles, bench.lib), with commits per second."""
    return {**lib.summary_ms(seconds), "per_s": round(len(seconds) / wall_s, 1)}


def event_quads(user_id: str) -> list[ox.Quad]:
    """One event's quads as users.record_events writes them (a STEP_COMPLETED: four quads)."""
    event = ox.NamedNode(vocab.EVENT_BASE + str(uuid.uuid4()))
    step = "https://w3id.org/wayfinder/demo/explore-sample-data"
    return users.event_quads(event, user_id, vocab.STEP_COMPLETED, at=dt.datetime.now(dt.UTC), step=step)


def measure_writes(runtime: Runtime, commits: int, events: int, rounds: int, writers: int) -> dict:
    store: BenchStore = runtime.store  # type: ignore[assignment]
    samples = {(level, mode): [] for level in ("store.commit", "users.record_events") for mode in MODES}
    walls = {key: 0.0 for key in samples}
    sst_before = {mode: 0 for mode in MODES}
    sst_after = {mode: 0 for mode in MODES}
    kinds = [
        ("STEP_COMPLETED", "explore-sample-data", None),
        ("FEATURE_USED", None, "charts"),
        ("ACTIVATED", None, None),
    ]
    i = 0
    for r in range(rounds):
        for mode in MODES if r % 2 == 0 else tuple(reversed(MODES)):  # alternate the order between rounds
            store.mode = mode
            sst_before[mode] += sst_files(store.location)
            key = ("store.commit", mode)
            start = time.perf_counter()
            for _ in range(commits // rounds):
                quads = event_quads(f"writer-{i % writers}")
                t = time.perf_counter()
                with store.write_lock:
                    store.commit(add=quads)
                samples[key].append(time.perf_counter() - t)
                i += 1
            walls[key] += time.perf_counter() - start
            key = ("users.record_events", mode)
            start = time.perf_counter()
            for _ in range(events // rounds):
                kind, step, feature = kinds[i % len(kinds)]
                report = users.EventReport(user_id=f"writer-{i % writers}", type=kind, step_id=step, feature_id=feature)
                t = time.perf_counter()
                users.record_events(runtime, [report])
                samples[key].append(time.perf_counter() - t)
                i += 1
            walls[key] += time.perf_counter() - start
            sst_after[mode] += sst_files(store.location)
    store.mode = "wal"
    out = {f"{level} / {mode}": summary(samples[(level, mode)], walls[(level, mode)]) for level, mode in samples}
    out["sst_files_growth_per_round"] = {m: round((sst_after[m] - sst_before[m]) / rounds, 1) for m in MODES}
    return out


def measure_backup(runtime: Runtime, work: Path, repeats: int) -> dict:
    store: BenchStore = runtime.store  # type: ignore[assignment]
    times, targets = [], []
    for k in range(repeats):
        target = work / f"backup-{k}"
        t = time.perf_counter()
        store.backup(target)
        times.append(time.perf_counter() - t)
        targets.append(target)
    # A backup right after unflushed writes: the checkpoint flushes the memtables first.
    for n in range(200):
        store.commit(add=event_quads(f"writer-{n % 4}"))
    target = work / "backup-after-writes"
    t = time.perf_counter()
    store.backup(target)
    after_writes_s = time.perf_counter() - t
    first = targets[0]
    result = {
        "backup_s": {"n": len(times), "p50": round(lib.percentile(times, 50), 4), "max": round(max(times), 4)},
        "backup_after_200_unflushed_commits_s": round(after_writes_s, 4),
        "backup_files": sum(1 for f in first.rglob("*") if f.is_file()),
        "backup_bytes_apparent": folder_bytes(first),
        "backup_bytes_written_not_hard_linked": folder_bytes(first, unlinked_only=True),
    }
    copy = work / "full-copy"
    t = time.perf_counter()
    shutil.copytree(first, copy)  # a real copy of every byte: what shipping the backup elsewhere costs
    with os.scandir(copy) as entries:  # make the copy durable too, as a real backup job would
        for entry in entries:
            fd = os.open(entry.path, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
    result["full_copy_of_backup_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    restored = Store(copy)
    result["open_restored_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    result["restored_quads"] = len(restored)
    result["count_restored_quads_s"] = round(time.perf_counter() - t, 3)
    restored.close()
    del restored
    gc.collect()
    check = Store(first)
    result["restored_quads_match_backup"] = len(check) == result["restored_quads"]
    check.close()
    for leftover in [*targets, target, copy]:
        shutil.rmtree(leftover, ignore_errors=True)
    return result


# -- report --------------------------------------------------------------------------------


def filesystem_of(path: Path) -> dict:
    """The mount holding the path (device, type, options) from /proc/mounts."""
    best: dict = {}
    try:
        target = str(path.resolve())
        for line in Path("/proc/mounts").read_text().splitlines():
            dev, mount, fstype, opts, *_ = line.split()
            if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(
                best.get("mount", "")
            ):
                best = {"device": dev, "mount": mount, "type": fstype, "options": opts}
    except OSError:
        pass
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dir",
        type=Path,
        default=ROOT / "var" / "bench-durability",
        help="working folder on the disk to measure (not tmpfs)",
    )
    parser.add_argument("--users", type=int, default=10_000, help="synthetic users in the store (~100 quads each)")
    parser.add_argument("--commits", type=int, default=200, help="Store.commit calls per mode")
    parser.add_argument("--events", type=int, default=120, help="users.record_events calls per mode")
    parser.add_argument("--rounds", type=int, default=4, help="rounds, the modes interleaved in each")
    parser.add_argument("--backups", type=int, default=5, help="backups timed")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", action="store_true", help="keep the store folder")
    parser.add_argument(
        "--out", type=Path, default=RESULTS / "flush_cost.json", help="result file (JSON; .md beside it)"
    )
    args = parser.parse_args(argv)
    command = lib.command_line()
    print(f"command: {command}", flush=True)
    work: Path = args.dir
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    store_path = work / "store"
    writers = 4

    t0 = time.perf_counter()
    runtime, store_info = build_store(store_path, args.users, args.seed, writers)
    print(
        f"store: {store_info['quads']:,} quads, {store_info['size_bytes'] / 1e6:.0f} MB, "
        f"built in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    writes = measure_writes(runtime, args.commits, args.events, args.rounds, writers)
    backup = measure_backup(runtime, work, args.backups)
    runtime.store.close()

    rows = []
    for level in ("store.commit", "users.record_events"):
        base = writes[f"{level} / wal"]
        for mode in MODES:
            s = writes[f"{level} / {mode}"]
            rows.append(
                [
                    level,
                    mode,
                    s["n"],
                    s["p50_ms"],
                    s["p90_ms"],
                    s["p99_ms"],
                    s["max_ms"],
                    s["per_s"],
                    f"{s['mean_ms'] - base['mean_ms']:+.1f}" if mode != "wal" else "0",
                ]
            )
    writes_table = lib.table(
        ["level", "after each commit", "n", "p50 ms", "p90 ms", "p99 ms", "max ms", "commits/s", "mean ms added"], rows
    )
    sst = f"SST files added per round (interleaved, {args.rounds} rounds): {writes['sst_files_growth_per_round']}"
    backup_table = lib.table(
        ["backup of the store", "value"],
        [
            [
                "store",
                f"{store_info['quads']:,} quads, {store_info['size_bytes'] / 1e6:.0f} MB, "
                f"{store_info['sst_files']} SST files",
            ],
            [
                "Store.backup (checkpoint, same file system), p50 / max",
                f"{backup['backup_s']['p50'] * 1e3:.0f} / {backup['backup_s']['max'] * 1e3:.0f} ms",
            ],
            [
                "Store.backup right after 200 unflushed commits",
                f"{backup['backup_after_200_unflushed_commits_s'] * 1e3:.0f} ms",
            ],
            [
                "backup folder",
                f"{backup['backup_files']} files, {backup['backup_bytes_apparent'] / 1e6:.0f} MB apparent, "
                f"{backup['backup_bytes_written_not_hard_linked'] / 1e6:.2f} MB not hard-linked",
            ],
            ["full copy of the backup (copytree + fsync)", f"{backup['full_copy_of_backup_s']:.2f} s"],
            ["open the restored copy", f"{backup['open_restored_s'] * 1e3:.0f} ms"],
            [
                "count its quads (full scan)",
                f"{backup['count_restored_quads_s']:.2f} s, match: {backup['restored_quads_match_backup']}",
            ],
        ],
    )
    text = "\n\n".join([writes_table, sst, backup_table])
    print("\n" + text)
    payload = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "store": store_info,
        "store_filesystem": filesystem_of(work),
        "writes": writes,
        "backup": backup,
    }
    out = lib.write_result(args.out.resolve().parent, args.out.stem, payload, markdown=text, command=command)
    print(f"\nwrote {os.path.relpath(out, ROOT)}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
