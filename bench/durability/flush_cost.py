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

    .venv/bin/python bench/durability/flush_cost.py                 # 10k users, about 1M quads
    .venv/bin/python bench/durability/flush_cost.py --users 100000  # about 10M quads

The store is built in ``--dir`` (default ``var/bench-durability``, on the project's
disk, not tmpfs: fsync must reach a device to mean anything) and removed at the end
unless ``--keep``. Results: ``bench/durability/results/flush_cost.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import random
import shlex
import shutil
import sys
import time
import uuid
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

import pyoxigraph as ox  # noqa: E402

from service import demo  # noqa: E402
from service.decisions import users  # noqa: E402
from service.knowledge import vocab  # noqa: E402
from service.knowledge.embedded import Store  # noqa: E402
from service.runtime import Runtime  # noqa: E402
from service.settings import Settings  # noqa: E402

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


def _n(iri: str) -> str:
    return f"<{iri}>"


def synthetic_users(runtime: Runtime, first: int, n_users: int, seed: int) -> bytes:
    """N-Quads of users shaped as the service writes them: profile, two consent records, ~20 events.

    About 100 quads per user, the same layout as users.register / users.record_events
    (bench/next_steps/populate.py builds richer histories; size is what matters here).
    """
    rng = random.Random(seed)
    catalog = runtime.catalog
    steps = [s.iri for s in catalog.steps]
    features = sorted(e.iri for e in catalog.by_id["Feature"].values())
    roles = sorted(e.iri for e in catalog.by_id["Role"].values())
    industries = sorted(e.iri for e in catalog.by_id["Industry"].values())
    plans = sorted(e.iri for e in catalog.by_id["Plan"].values())
    purposes = runtime.knowledge.codes.purposes
    a, xsd_dt = _n(vocab.RDF_TYPE.value), _n(vocab.XSD_DATETIME.value)
    consent_g = _n(vocab.CONSENT_GRAPH.value)
    epoch = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def when(t: dt.datetime) -> str:
        return f'"{t.strftime("%Y-%m-%dT%H:%M:%SZ")}"^^{xsd_dt}'

    lines: list[str] = []
    for i in range(first, first + n_users):
        uid = f"s{i:07d}"
        user, g = _n(vocab.USER_BASE + uid), _n(vocab.USER_GRAPH_BASE + uid)
        at = epoch + dt.timedelta(seconds=rng.randrange(300 * 86400))
        lines += [
            f"{user} {a} {_n(vocab.USER.value)} {g} .\n",
            f"{user} {_n(vocab.REGISTERED_AT.value)} {when(at)} {g} .\n",
            f'{user} {_n(vocab.PSEUDONYM.value)} "{rng.getrandbits(128):032x}" {g} .\n',
            f"{user} {_n(vocab.HAS_ROLE.value)} <{rng.choice(roles)}> {g} .\n",
            f"{user} {_n(vocab.HAS_INDUSTRY.value)} <{rng.choice(industries)}> {g} .\n",
            f"{user} {_n(vocab.HAS_PLAN.value)} <{rng.choice(plans)}> {g} .\n",
            f"{user} {_n(vocab.SIGNUP_CHANNEL.value)} {_n(vocab.WF_NS + 'Web')} {g} .\n",
        ]
        for code in ("PERSONALIZATION", "ANALYTICS"):
            c = _n(vocab.CONSENT_BASE + str(uuid.UUID(int=rng.getrandbits(128), version=4)))
            lines += [
                f"{c} {a} {_n(vocab.CONSENT_RECORD.value)} {consent_g} .\n",
                f"{c} {_n(vocab.HAS_DATA_SUBJECT.value)} {user} {consent_g} .\n",
                f"{c} {_n(vocab.HAS_PURPOSE.value)} <{purposes[code]}> {consent_g} .\n",
                f"{c} {_n(vocab.HAS_CONSENT_STATUS.value)} {_n(vocab.CONSENT_GIVEN.value)} {consent_g} .\n",
                f"{c} {_n(vocab.HAS_LEGAL_BASIS.value)} {_n(vocab.CONSENT_LEGAL_BASIS.value)} {consent_g} .\n",
                f"{c} {_n(vocab.IS_INDICATED_AT_TIME.value)} {when(at)} {consent_g} .\n",
            ]
        for _ in range(rng.randint(12, 28)):
            at += dt.timedelta(seconds=rng.randint(60, 2 * 86400))
            e = _n(vocab.EVENT_BASE + str(uuid.UUID(int=rng.getrandbits(128), version=4)))
            if rng.random() < 0.45:
                lines += [
                    f"{e} {a} {_n(vocab.STEP_COMPLETED.value)} {g} .\n",
                    f"{e} {_n(vocab.ABOUT_STEP.value)} <{rng.choice(steps)}> {g} .\n",
                ]
            else:
                lines += [
                    f"{e} {a} {_n(vocab.FEATURE_USED.value)} {g} .\n",
                    f"{e} {_n(vocab.ABOUT_FEATURE.value)} <{rng.choice(features)}> {g} .\n",
                ]
            lines += [
                f"{e} {_n(vocab.BY_USER.value)} {user} {g} .\n",
                f"{e} {_n(vocab.OCCURRED_AT.value)} {when(at)} {g} .\n",
            ]
    return "".join(lines).encode()


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
        store.oxigraph.bulk_load(data, format=ox.RdfFormat.N_QUADS, lenient=True)
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
    store.oxigraph.optimize()
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


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (q in 0..100)."""
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def summary(seconds: list[float], wall_s: float) -> dict:
    s = sorted(seconds)
    ms = lambda v: round(v * 1e3, 3)  # noqa: E731
    return {
        "n": len(s),
        "p50_ms": ms(percentile(s, 50)),
        "p90_ms": ms(percentile(s, 90)),
        "p99_ms": ms(percentile(s, 99)),
        "max_ms": ms(s[-1]),
        "mean_ms": ms(sum(s) / len(s)),
        "per_s": round(len(s) / wall_s, 1),
    }


def event_quads(user_id: str) -> list[ox.Quad]:
    """One event's quads as users.record_events writes them (a STEP_COMPLETED: four quads)."""
    event = ox.NamedNode(vocab.EVENT_BASE + str(uuid.uuid4()))
    graph = vocab.user_graph(user_id)
    at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [
        ox.Quad(event, vocab.RDF_TYPE, vocab.STEP_COMPLETED, graph),
        ox.Quad(event, vocab.BY_USER, vocab.user_iri(user_id), graph),
        ox.Quad(event, vocab.OCCURRED_AT, ox.Literal(at, datatype=vocab.XSD_DATETIME), graph),
        ox.Quad(event, vocab.ABOUT_STEP, ox.NamedNode("https://w3id.org/wayfinder/demo/explore-sample-data"), graph),
    ]


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
        "backup_s": {"n": len(times), "p50": round(sorted(times)[len(times) // 2], 4), "max": round(max(times), 4)},
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


def command_line() -> str:
    exe = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable
    return " ".join(shlex.quote(p) for p in [exe, os.path.relpath(os.path.abspath(sys.argv[0]), ROOT), *sys.argv[1:]])


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


def environment(store_dir: Path) -> dict:
    cpu = None
    try:
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            None,
        )
    except OSError:
        pass

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_model": cpu,
            "platform": platform.platform(),
            "loadavg_at_write": os.getloadavg(),
        },
        "store_filesystem": filesystem_of(store_dir),
        "python": sys.version.split()[0],
        "versions": {p: version(p) for p in ("pyoxigraph", "pyshacl", "rdflib")},
    }


def table(headers: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


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
    parser.add_argument("--out", type=Path, default=RESULTS / "flush_cost.json", help="result file")
    args = parser.parse_args(argv)
    command = command_line()
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
    print()
    print(
        table(
            ["level", "after each commit", "n", "p50 ms", "p90 ms", "p99 ms", "max ms", "commits/s", "mean ms added"],
            rows,
        )
    )
    print(f"\nSST files added per round (interleaved, {args.rounds} rounds): {writes['sst_files_growth_per_round']}")
    print()
    print(
        table(
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
    )

    payload = {
        "name": "flush_cost",
        "command": command,
        "args": {k: str(v) for k, v in vars(args).items()},
        "store": store_info,
        "writes": writes,
        "backup": backup,
        **environment(work),
    }
    out: Path = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {os.path.relpath(out, ROOT)}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
