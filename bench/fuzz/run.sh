#!/usr/bin/env bash
# The long fuzzing run: tests/test_fuzz.py with 2,000 examples per hypothesis test
# (schema-driven cases: a quarter of that per root field), statistics and timings on.
#
#   bench/fuzz/run.sh                         # 2,000 examples, seed 0
#   WAYFINDER_FUZZ_EXAMPLES=500 SEED=7 bench/fuzz/run.sh -k injection
#
# Extra arguments go to pytest. Output: the terminal, and bench/fuzz/last-run.txt (not committed).
# Exit status: pytest's.
set -euo pipefail
cd "$(dirname "$0")/../.."
export HYPOTHESIS_PROFILE=long
export WAYFINDER_FUZZ_EXAMPLES="${WAYFINDER_FUZZ_EXAMPLES:-2000}"
started=$(date +%s)
status=0
.venv/bin/python -m pytest tests/test_fuzz.py -q -p no:cacheprovider --hypothesis-show-statistics \
    --hypothesis-seed="${SEED:-0}" --durations=0 "$@" 2>&1 | tee bench/fuzz/last-run.txt || status=$?
echo "examples per test: $WAYFINDER_FUZZ_EXAMPLES, seed: ${SEED:-0}, wall: $(( $(date +%s) - started )) s" \
    | tee -a bench/fuzz/last-run.txt
exit "$status"
