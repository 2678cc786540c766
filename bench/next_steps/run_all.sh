#!/usr/bin/env bash
# Every measurement of bench/next_steps, in the order the README reports them.
# About 25 minutes on the 2-core machine (most of it: populating 100k users, the
# 100k latency run, and the handful of old-form candidates queries at tens of
# seconds each that read_queries.py compares against). Big stores go to /tmp and
# are deleted at the end; results land in bench/next_steps/results/.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
B=bench.next_steps
STORE=${STORE:-/tmp/wf-bench-store}

$PY -m $B.populate --store "$STORE" --users 100000 --force
$PY -m $B.latency --store "$STORE"
$PY -m $B.read_queries --store "$STORE" --users 400 --compare 2
rm -rf "$STORE" "$STORE.bench.json" "$STORE.anchors.jsonl"
$PY -m $B.latency --demo

# How nextSteps grows with the store: 1k and 10k users (in-process only).
for n in 1000 10000; do
  S="/tmp/wf-bench-store-$n"
  $PY -m $B.populate --store "$S" --users $n --force
  $PY -m $B.latency --store "$S" --quick --budget-s 30
  $PY -m $B.read_queries --store "$S" --users 200 --compare 20
  rm -rf "$S" "$S.bench.json" "$S.anchors.jsonl"
done
