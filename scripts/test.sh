#!/usr/bin/env bash
# The whole test suite, as CI runs it (`.ci/run`) and as `just test` does. Installs what it needs
# (Debian packages, the Kafka-protocol broker, anvil, the kube-testenv API server, cargo-nextest),
# starts them with empty state, then checks formatting, lints, generated files, dependency
# versions, and runs every test. Stops the test bed on exit.
#
# Env: CARGO_TARGET_DIR (default /var/tmp/chainwatch/target) and CHAINWATCH_CACHE (default
# /var/tmp/chainwatch) live outside the clone, so a fresh clone builds warm.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
export CHAINWATCH_CACHE=${CHAINWATCH_CACHE:-/var/tmp/chainwatch}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CHAINWATCH_CACHE/target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
step() { printf '\n==> %s (%s)\n' "$*" "$(date +%H:%M:%S)" >&2; }
fail() { printf '\n==> FAILED: %s\n' "$*" >&2; exit 1; }

step "toolchain"
command -v cargo >/dev/null || fail "cargo is not installed (https://rustup.rs); rust-toolchain.toml pins the version"
cargo --version
cargo nextest --version >/dev/null 2>&1 || { step "installing cargo-nextest"; cargo install --locked cargo-nextest; }

step "test bed: API server, Kafka-protocol broker, anvil"
scripts/testbed.sh up
trap 'scripts/testbed.sh down' EXIT
# shellcheck disable=SC1091
source "$CHAINWATCH_CACHE/run/env"

step "format"
cargo fmt --all --check || fail "run \`cargo fmt --all\`"

step "generated files"
cargo run --locked --quiet -p chainwatch-crds --bin crdgen -- "$CARGO_TARGET_DIR/crd-check" >/dev/null
diff -r "$CARGO_TARGET_DIR/crd-check" config/crd || fail "config/crd is stale: run \`just generate\` and commit"

step "one version of kube and k8s-openapi"
dups=$(cargo tree --locked --workspace --duplicates --edges normal,build --depth 0 2>/dev/null | grep -E '^(kube|kube-[a-z]+|k8s-openapi) v' || true)
[ -z "$dups" ] || fail "several versions in the tree: $dups"

step "clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "tests"
cargo nextest run --locked --workspace --profile ci
step "all passed"
