"""What assignment adds to nextSteps: ``decide.next_steps`` with an experiment running against without one, side by side.

One process, two stores with the same data: a store built by ``bench/next_steps/populate.py``
(10k users by default) and a copy of it (``shutil.copytree`` of the closed store and its
analytics log). In the copy ("with") an experiment ``assignment-cost`` is created and started
on policy ``default`` (``control`` serving ``default@1.2.0``, ``treatment`` serving
``default@1.3.0``, 1:1, an activation guardrail); the original ("without") has none, so its
``assign`` finds no running experiment after one revision lookup (a store with no experiment
at all, not a stopped one: a stopped experiment is 'without assignment' too, measured apart).

Phases, each in blocks of ``--block`` calls for the same users on both sides, the side that
goes first drawn at random in every block (seeded):

1. **first exposure** (``--fresh`` users, each once): with the experiment, the user's first
   decision is a SPLIT: bucketing, the assignment written with the decision record, and the
   exposure row appended to the analytics log (``feed.exposed``). Without, it is the user's
   first decision too, so both sides read the user cold;
2. **sticky** (``--blocks`` blocks of users drawn from those of phase 1, all assigned once):
   the assignment is read back (one quads lookup) and the decision record names it;
3. **stopped** (``--stopped-blocks``): the experiment is stopped, then the same comparison.

Every call is timed, wall (``perf_counter``) and CPU (``process_time``: all threads). The
ratio with / without of p50 and p99 (nearest rank, ``bench.lib.percentile``) is given with a
95 % bootstrap interval over blocks (blocks resampled with replacement, 2,000 times). Goal
(issue): ratio <= 1.1. Stage timers (``perf_counter`` wrappers, the same on both sides) sum
``assign``, the audit append and ``feed.exposed`` per call. When a phase misses the goal, a
cProfile of ``--profile-calls`` calls on each side (fresh users kept apart for the first-exposure
path), interleaved in blocks of 25 like the timed phases, is diffed per function: where the extra
time goes, as file:function and ms per call. The stopped phase doubles as an A/A check: both
sides run the same code path, so its ratios show how far noise alone moves them.

    .venv/bin/python -m bench.experiments.assignment_cost
    .venv/bin/python -m bench.experiments.assignment_cost --sizes 10000 100000

Work folder: ``--work`` (default /tmp/wf-exp-assign); ``--reuse`` keeps a populated base store.
Results: ``bench/experiments/results/assignment-cost.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import shutil
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench import lib

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = HERE / "results"
EXPERIMENT = "assignment-cost"
ARMS = (("control", "default@1.2.0"), ("treatment", "default@1.3.0"))
GOAL_RATIO = 1.1
SEED = 42
SIDES = ("with", "without")


# -- stores ---------------------------------------------------------------------------------


def _siblings(store: Path) -> list[Path]:
    return [store.with_name(store.name + s) for s in (".anchors.jsonl", ".analytics.duckdb", ".analytics.duckdb.wal")]


def remove_store(store: Path) -> None:
    if store.exists():
        shutil.rmtree(store)
    for p in _siblings(store):
        p.unlink(missing_ok=True)


def build_stores(work: Path, n: int, reuse: bool) -> dict:
    """The base store (populated, its log rebuilt once, closed), then the two copies the run writes to."""
    from bench.next_steps import populate as pop
    from service.analytics import feed
    from service.runtime import Runtime
    from service.settings import Settings

    base = work / f"base-{lib.size_label(n)}"
    marker = base.with_name(base.name + ".ready.json")
    info: dict = {}
    if reuse and marker.exists():
        info = json.loads(marker.read_text())
    else:
        remove_store(base)
        marker.unlink(missing_ok=True)
        print(f"populating {base} with {n:,} users", flush=True)
        t0 = time.perf_counter()
        result = pop.populate(base, n, SEED, 5000, True)
        info["populate_s"] = round(time.perf_counter() - t0, 1)
        info["events"] = result["stats"]["events"]
        runtime = Runtime(settings=Settings(store=str(base)))
        t0 = time.perf_counter()
        feed.log(runtime)  # a new log beside the store: rebuilt once here, copied with the store after
        info["log_rebuild_s"] = round(time.perf_counter() - t0, 1)
        runtime.close()
        info["users"] = n
        marker.write_text(json.dumps(info))
    stores = {}
    t0 = time.perf_counter()
    for side in SIDES:
        target = work / f"{side}-{lib.size_label(n)}"
        remove_store(target)
        shutil.copytree(base, target)
        for src, dst in zip(_siblings(base), _siblings(target), strict=True):
            if src.exists():
                shutil.copy2(src, dst)
        stores[side] = target
    info["copy_s"] = round(time.perf_counter() - t0, 1)
    info["stores"] = {k: str(v) for k, v in stores.items()}
    return info


# -- measurement ----------------------------------------------------------------------------


class Stages:
    """Per-side sums of wrapped functions' wall time (the same wrappers on both sides)."""

    def __init__(self, side_of: dict[int, str]) -> None:
        self.side_of = side_of
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.calls: dict[tuple[str, str], int] = defaultdict(int)
        self._originals: list[tuple[object, str, object]] = []

    def wrap(self, owner: object, name: str, stage: str, side: str | None = None) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                s = side or self.side_of.get(id(args[0]), "?")
                self.seconds[(s, stage)] += time.perf_counter() - t
                self.calls[(s, stage)] += 1

        setattr(owner, name, timed)
        self._originals.append((owner, name, original))

    def restore(self) -> None:
        while self._originals:
            owner, name, original = self._originals.pop()
            setattr(owner, name, original)

    def take(self, calls_per_side: dict[str, int]) -> dict:
        """Mean ms per nextSteps call of each stage, per side; then reset."""
        out: dict = {side: {} for side in calls_per_side}
        for (side, stage), s in sorted(self.seconds.items()):
            if side in out and calls_per_side[side]:
                out[side][stage] = round(s * 1e3 / calls_per_side[side], 3)
        self.seconds.clear()
        self.calls.clear()
        return out


def run_blocks(runtimes: dict, blocks: list[list[str]], rng: random.Random, desc: str) -> list[dict]:
    """Each block on both sides, the first side drawn at random; every call timed."""
    from service.decisions import decide

    calls: list[dict] = []
    for b, users in enumerate(tqdm(blocks, desc=desc, unit="block", mininterval=5)):
        order = list(SIDES)
        rng.shuffle(order)
        for side in order:
            rt = runtimes[side]
            for u in users:
                c0, t0 = time.process_time(), time.perf_counter()
                rec = decide.next_steps(rt, u)
                calls.append(
                    {
                        "block": b,
                        "side": side,
                        "first": side == order[0],
                        "wall": time.perf_counter() - t0,
                        "cpu": time.process_time() - c0,
                        "variant": rec.variant,
                    }
                )
    return calls


def ratios(calls: list[dict], key: str, rng: np.random.Generator, boot: int = 2000) -> dict:
    """p50 and p99 ratios with / without, with 95 % bootstrap intervals over blocks."""
    by_block: dict[int, dict[str, list[float]]] = defaultdict(lambda: {s: [] for s in SIDES})
    for c in calls:
        by_block[c["block"]][c["side"]].append(c[key])
    blocks = sorted(by_block)
    w = {s: [v for b in blocks for v in by_block[b][s]] for s in SIDES}
    out: dict = {}
    for q in (50, 90, 99):
        a, b = lib.percentile(w["with"], q), lib.percentile(w["without"], q)
        out[f"p{q}_ratio"] = round(a / b, 4)
    # Bootstrap: resample blocks; the nearest-rank percentile on numpy (method="inverted_cdf" equals it).
    arr = {s: [np.array(by_block[b][s]) for b in blocks] for s in SIDES}
    samples: dict[int, list[float]] = {50: [], 99: []}
    for _ in range(boot):
        pick = rng.integers(0, len(blocks), len(blocks))
        x = np.concatenate([arr["with"][i] for i in pick])
        y = np.concatenate([arr["without"][i] for i in pick])
        for q in (50, 99):
            samples[q].append(
                float(np.percentile(x, q, method="inverted_cdf") / np.percentile(y, q, method="inverted_cdf"))
            )
    for q in (50, 99):
        lo, hi = np.percentile(samples[q], [2.5, 97.5])
        out[f"p{q}_ratio_ci95"] = [round(float(lo), 4), round(float(hi), 4)]
    # Paired view: per block, mean with / mean without.
    per_block = [np.mean(by_block[b]["with"]) / np.mean(by_block[b]["without"]) for b in blocks]
    out["per_block_mean_ratio_median"] = round(float(np.median(per_block)), 4)
    out["mean_ratio"] = round(float(np.mean(w["with"]) / np.mean(w["without"])), 4)
    return out


def phase_result(calls: list[dict], rng: np.random.Generator) -> dict:
    out: dict = {"blocks": len({c["block"] for c in calls})}
    for side in SIDES:
        mine = [c for c in calls if c["side"] == side]
        out[side] = {
            "wall": lib.summary_ms([c["wall"] for c in mine]),
            "cpu": lib.summary_ms([c["cpu"] for c in mine]),
        }
        counts: dict[str, int] = defaultdict(int)
        for c in mine:
            counts[str(c["variant"])] += 1
        out[side]["variants"] = dict(counts)
        # The side that ran first in a block against second: an order effect shows here.
        out[side]["wall_p50_first_in_block_ms"] = lib.summary_ms([c["wall"] for c in mine if c["first"]])["p50_ms"]
        out[side]["wall_p50_second_in_block_ms"] = lib.summary_ms([c["wall"] for c in mine if not c["first"]])["p50_ms"]
    out["wall_ratios"] = ratios(calls, "wall", rng)
    out["cpu_ratios"] = ratios(calls, "cpu", rng)
    r = out["wall_ratios"]
    out["goal_met"] = r["p50_ratio"] <= GOAL_RATIO and r["p99_ratio"] <= GOAL_RATIO
    return out


def profile_diff(
    runtimes: dict, users: dict[str, list[str]], rng: random.Random, top: int = 25, block: int = 25
) -> dict:
    """cProfile the same calls on both sides, interleaved in blocks (random side first, as the timed phases), so
    that the machine's load drifts over both alike; per function, cumulative ms per call with and without."""
    from service.decisions import decide

    profiles = {side: cProfile.Profile() for side in SIDES}
    n = {side: len(users[side]) for side in SIDES}
    for start in range(0, max(n.values()), block):
        order = list(SIDES)
        rng.shuffle(order)
        for side in order:
            rt, pr = runtimes[side], profiles[side]
            pr.enable()
            for u in users[side][start : start + block]:
                decide.next_steps(rt, u)
            pr.disable()
    stats = {side: pstats.Stats(profiles[side]).stats for side in SIDES}  # type: ignore[attr-defined]

    def key(func: tuple) -> str:
        file, line, name = func
        path = Path(file)
        try:
            file = str(path.relative_to(ROOT))
        except ValueError:
            file = path.name if path.is_absolute() else file
        return f"{file}:{line}({name})"

    table: dict[str, dict] = {}
    for side in SIDES:
        for func, (_cc, nc, tt, ct, _callers) in stats[side].items():
            row = table.setdefault(key(func), {"with_ms": 0.0, "without_ms": 0.0, "with_calls": 0, "without_calls": 0})
            row[f"{side}_ms"] = ct * 1e3 / n[side]
            row[f"{side}_self_ms"] = tt * 1e3 / n[side]
            row[f"{side}_calls"] = nc / n[side]
    total = {s: sum(v for (_f, (_c, _n, v, _ct, _cl)) in stats[s].items()) * 1e3 / n[s] for s in SIDES}
    rows = [
        {"function": f, **{k: round(v, 3) for k, v in r.items()}, "extra_ms": round(r["with_ms"] - r["without_ms"], 3)}
        for f, r in table.items()
    ]
    rows.sort(key=lambda r: -r["extra_ms"])
    with_only = [r for r in rows if r["without_calls"] == 0 and r["with_ms"] > 0]
    with_only.sort(key=lambda r: -r["with_ms"])
    return {
        "calls_per_side": n,
        "total_self_ms_per_call": {s: round(v, 3) for s, v in total.items()},
        "largest_extra_cumulative": rows[:top],
        "only_with_assignment": with_only[:top],
    }


def measure_size(n: int, args: argparse.Namespace) -> dict:
    from bench.next_steps import populate as pop
    from service.analytics import feed
    from service.decisions import decide
    from service.experiments import registry
    from service.experiments.registry import ArmSpec, ExperimentSpec, Guardrail
    from service.runtime import Runtime
    from service.settings import Settings

    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    info = build_stores(work, n, args.reuse)
    runtimes = {s: Runtime(settings=Settings(store=info["stores"][s])) for s in SIDES}
    for rt in runtimes.values():
        rt.knowledge  # noqa: B018 - read before any timing, on both sides
        feed.log(rt)  # copied closed clean: no rebuild
    spec = ExperimentSpec(
        EXPERIMENT,
        [ArmSpec(name, version, 1.0) for name, version in ARMS],
        guardrails=[Guardrail("activation", 0.0)],
    )
    registry.create(runtimes["with"], spec, by="bench")
    registry.start(runtimes["with"], EXPERIMENT, by="bench", needs_approval=False)

    rng = random.Random(SEED)
    nrng = np.random.default_rng(SEED)
    ids = [pop.user_id(i) for i in range(1, n + 1)]
    rng.shuffle(ids)
    fresh = ids[: args.fresh]
    kept_for_profile = ids[args.fresh : args.fresh + args.profile_calls]
    # Warm-up, not measured: one decision per side for users outside every phase (imports, first queries).
    for u in ids[args.fresh + args.profile_calls : args.fresh + args.profile_calls + 20]:
        for side in SIDES:
            decide.next_steps(runtimes[side], u)

    side_of = {id(rt): side for side, rt in runtimes.items()}
    stages = Stages(side_of)
    stages.wrap(decide, "assign", "assign (running experiment, stored assignment or bucketing)")
    stages.wrap(decide, "exposed", "exposure (feed.exposed: DuckDB append)")
    stages.wrap(decide, "candidate_steps", "candidates query")
    for side, rt in runtimes.items():
        stages.wrap(rt.trail, "append", "audit append (decision record [+ assignment])", side=side)

    out: dict = {"users": n, "stores": info, "phases": {}, "stages_mean_ms": {}}
    phases = [
        ("first exposure", [fresh[i : i + args.block] for i in range(0, len(fresh), args.block)]),
        ("sticky", [[rng.choice(fresh) for _ in range(args.block)] for _ in range(args.blocks)]),
    ]
    all_calls: dict[str, list[dict]] = {}
    for name, blocks in phases:
        calls = run_blocks(runtimes, blocks, rng, f"{lib.size_label(n)} {name}")
        per_side = {s: sum(1 for c in calls if c["side"] == s) for s in SIDES}
        out["stages_mean_ms"][name] = stages.take(per_side)
        out["phases"][name] = phase_result(calls, nrng)
        all_calls[name] = calls
        print_phase(n, name, out["phases"][name])

    # Where the time goes when the goal is missed: cProfile, same users on both sides.
    out["profiles"] = {}
    stages.restore()
    for name in ("sticky", "first exposure"):
        if out["phases"][name]["goal_met"] and not args.always_profile:
            continue
        if name == "sticky":
            users = [rng.choice(fresh) for _ in range(args.profile_calls)]
            chosen = {s: users for s in SIDES}
        else:
            chosen = {s: kept_for_profile for s in SIDES}  # fresh on both sides: each side's first decision
        out["profiles"][name] = profile_diff(runtimes, chosen, rng)

    # Stopped: the experiment stops; the same comparison (a stopped experiment is 'without assignment').
    if args.stopped_blocks:
        registry.stop(runtimes["with"], EXPERIMENT, by="bench")
        blocks = [[rng.choice(fresh) for _ in range(args.block)] for _ in range(args.stopped_blocks)]
        calls = run_blocks(runtimes, blocks, rng, f"{lib.size_label(n)} stopped")
        out["phases"]["stopped (with = stopped experiment)"] = phase_result(calls, nrng)
        print_phase(n, "stopped", out["phases"]["stopped (with = stopped experiment)"])

    out["log_counts"] = {s: feed.log(rt).counts() for s, rt in runtimes.items()}
    for rt in runtimes.values():
        rt.close()
    if not args.keep:
        for side in SIDES:
            remove_store(Path(info["stores"][side]))
    return out


def print_phase(n: int, name: str, r: dict) -> None:
    w = r["wall_ratios"]
    print(
        f"{lib.size_label(n)} {name}: with p50 {r['with']['wall']['p50_ms']:.2f} / p99 {r['with']['wall']['p99_ms']:.2f} ms, "
        f"without p50 {r['without']['wall']['p50_ms']:.2f} / p99 {r['without']['wall']['p99_ms']:.2f} ms; "
        f"ratio p50 {w['p50_ratio']:.3f} {w['p50_ratio_ci95']}, p99 {w['p99_ratio']:.3f} {w['p99_ratio_ci95']}",
        flush=True,
    )


# -- report ---------------------------------------------------------------------------------


def markdown(payload: dict) -> str:
    lines = ["### nextSteps with assignment / without (ms)\n"]
    rows = []
    for size, res in payload["sizes"].items():
        for name, r in res["phases"].items():
            for side in SIDES:
                wall, cpu = r[side]["wall"], r[side]["cpu"]
                rows.append(
                    (
                        lib.size_label(int(size)),
                        name,
                        side,
                        wall["n"],
                        f"{wall['p50_ms']:.2f} / {wall['p90_ms']:.2f} / {wall['p99_ms']:.2f}",
                        f"{cpu['p50_ms']:.2f} / {cpu['p90_ms']:.2f} / {cpu['p99_ms']:.2f}",
                    )
                )
    lines.append(lib.table(["store", "phase", "side", "calls", "wall p50 / p90 / p99", "CPU p50 / p90 / p99"], rows))
    lines.append("\n### Ratios with / without (95 % bootstrap interval over blocks)\n")
    rows = []
    for size, res in payload["sizes"].items():
        for name, r in res["phases"].items():
            w, c = r["wall_ratios"], r["cpu_ratios"]
            rows.append(
                (
                    lib.size_label(int(size)),
                    name,
                    f"{w['p50_ratio']:.3f} [{w['p50_ratio_ci95'][0]:.3f}, {w['p50_ratio_ci95'][1]:.3f}]",
                    f"{w['p99_ratio']:.3f} [{w['p99_ratio_ci95'][0]:.3f}, {w['p99_ratio_ci95'][1]:.3f}]",
                    f"{c['p50_ratio']:.3f}",
                    f"{c['p99_ratio']:.3f}",
                    f"{w['per_block_mean_ratio_median']:.3f}",
                    "met" if r["goal_met"] else "missed",
                )
            )
    lines.append(
        lib.table(
            [
                "store",
                "phase",
                "wall p50 ratio",
                "wall p99 ratio",
                "CPU p50 ratio",
                "CPU p99 ratio",
                "median per-block mean ratio",
                "goal <= 1.1 (p50 and p99)",
            ],
            rows,
        )
    )
    lines.append("\n### Stage timers (mean ms per nextSteps call)\n")
    rows = []
    for size, res in payload["sizes"].items():
        for name, per_side in res["stages_mean_ms"].items():
            for side, stages in per_side.items():
                rows.append(
                    (lib.size_label(int(size)), name, side, ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
                )
    lines.append(lib.table(["store", "phase", "side", "stages"], rows))
    for size, res in payload["sizes"].items():
        for name, prof in res.get("profiles", {}).items():
            lines.append(
                f"\n### cProfile, {lib.size_label(int(size))}, {name}: largest extra cumulative time with assignment "
                f"({prof['calls_per_side']['with']} calls per side; ms per call; cProfile inflates Python code)\n"
            )
            rows = [
                (r["function"], f"{r['with_ms']:.3f}", f"{r['without_ms']:.3f}", f"{r['extra_ms']:+.3f}")
                for r in prof["largest_extra_cumulative"][:15]
            ]
            lines.append(lib.table(["function", "with", "without", "extra"], rows))
            rows = [
                (r["function"], f"{r['with_ms']:.3f}", f"{r['with_calls']:.2f}")
                for r in prof["only_with_assignment"][:12]
            ]
            lines.append("\nCalled only with assignment:\n")
            lines.append(lib.table(["function", "ms per nextSteps", "calls per nextSteps"], rows))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/wf-exp-assign"))
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000])
    parser.add_argument("--fresh", type=int, default=5000, help="users in the first-exposure phase (the sticky pool)")
    parser.add_argument("--block", type=int, default=50, help="calls per side in a block")
    parser.add_argument("--blocks", type=int, default=200, help="blocks in the sticky phase")
    parser.add_argument("--stopped-blocks", type=int, default=20)
    parser.add_argument("--profile-calls", type=int, default=300)
    parser.add_argument("--always-profile", action="store_true", help="profile even when the goal is met")
    parser.add_argument("--reuse", action="store_true", help="reuse a populated base store of an earlier run")
    parser.add_argument("--keep", action="store_true", help="keep the two measured stores")
    parser.add_argument("--out", default="assignment-cost")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    print(f"command: {lib.command_line()}", flush=True)
    print(lib.machine_line(lib.environment()), flush=True)
    t0 = time.perf_counter()
    payload: dict = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "environment_at_start": lib.environment(),
        "goal_ratio": GOAL_RATIO,
        "sizes": {},
    }
    for n in args.sizes:
        payload["sizes"][str(n)] = measure_size(n, args)
    payload["total_s"] = round(time.perf_counter() - t0, 1)
    text = markdown(payload)
    print(text)
    path = lib.write_result(args.results, args.out, payload, markdown=text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
