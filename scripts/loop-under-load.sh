#!/usr/bin/env bash
# Runs a set of tests N times in a row while a parallel release build keeps every core busy, and
# prints one line per run and a summary. A flaky test shows up here; fix its race, never retry it.
#
#   scripts/loop-under-load.sh [RUNS] [NEXTEST FILTER]
#
# The tests run from a nextest archive (built once), so the load build and the loop never wait for
# each other's cargo lock. The test bed must be up (`scripts/testbed.sh up`).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-30}
filter=${2:-'package(chainwatch-operator) | (package(chainwatch-cli) & binary(system))'}
cache=${CHAINWATCH_CACHE:-/var/tmp/chainwatch}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
# shellcheck disable=SC1091
source "$cache/run/env"

archive=$cache/loop/tests.tar.zst
mkdir -p "$cache/loop"
cargo nextest archive --workspace --archive-file "$archive" >/dev/null 2>&1

# the load: rebuild the workspace in release mode, in its own target dir, for as long as we loop
load_target=$cache/loop/load-target
export load_target
setsid bash -c 'while true; do
    CARGO_TARGET_DIR=$load_target cargo build --release --workspace -q >/dev/null 2>&1 || true
    rm -rf "$load_target/release/.fingerprint" "$load_target/release/deps"
done' &
load=$!
trap 'kill -- -$load 2>/dev/null || true' EXIT
sleep 20 # let the load build get going

passed=0
failed=0
for i in $(seq 1 "$runs"); do
    start=$(date +%s)
    log=$cache/loop/run-$i.log
    if cargo nextest run --archive-file "$archive" --workspace-remap . --profile ci \
        -E "$filter" >"$log" 2>&1; then
        passed=$((passed + 1))
        result=pass
    else
        failed=$((failed + 1))
        result="FAIL (see $log)"
    fi
    load1=$(cut -d' ' -f1 /proc/loadavg)
    summary=$(grep -E '^ +Summary' "$log" | sed 's/^ *//')
    echo "run $i/$runs: $result in $(($(date +%s) - start)) s, load $load1 — $summary"
done
echo "loop: $passed/$runs passed, $failed failed (filter: $filter)"
[ "$failed" -eq 0 ]
