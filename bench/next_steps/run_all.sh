#!/usr/bin/env bash
# Every measurement of bench/next_steps, in the order the README reports them.
# About 25 minutes on the 2-core machine (most of it: a handful of 100k-user decisions
# at tens of seconds each, and populating 100k users). Big stores go to /tmp and are
# deleted at the end; results land in bench/next_steps/results/.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
B=bench/next_steps
STORE=${STORE:-/tmp/wf-bench-store}

$PY $B/populate.py --store "$STORE" --users 100000 --force
$PY $B/latency.py --demo
$PY $B/latency.py --store "$STORE"
$PY $B/whatif_queries.py --store "$STORE" --users 200 --compare 2
rm -rf "$STORE" "$STORE.bench.json" "$STORE.anchors.jsonl"

# How nextSteps grows with the store: 1k and 10k users (in-process only).
for n in 1000 10000; do
  S="/tmp/wf-bench-store-$n"
  $PY $B/populate.py --store "$S" --users $n --force
  $PY $B/latency.py --store "$S" --quick --budget-s 30
  $PY $B/whatif_queries.py --store "$S" --users 100 --compare 10
  rm -rf "$S" "$S.bench.json" "$S.anchors.jsonl"
done
