#!/usr/bin/env bash
# The demo on one machine, from a fresh clone: installs what it needs (build packages, anvil),
# builds chainwatch, and runs `chainwatch dev --demo` — a local chain with an ERC-20 and a stream
# of transfers, example monitors, matches and notifications printed as they happen. No cluster,
# Kafka or internet at run time. Extra arguments go to `chainwatch dev` (e.g. `--duration 2m`,
# `--rpc https://eth.example` for the mainnet USDC example against a real endpoint). Ctrl-C stops.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
export CHAINWATCH_CACHE=${CHAINWATCH_CACHE:-/var/tmp/chainwatch}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CHAINWATCH_CACHE/target}
command -v cargo >/dev/null || { echo "cargo is not installed: see https://rustup.rs" >&2; exit 1; }
"$REPO/scripts/testbed.sh" install-demo
ANVIL_BIN=$("$REPO/scripts/testbed.sh" anvil-path)
export ANVIL_BIN
echo "[demo] building chainwatch (the first build takes about 15 minutes on 2 cores; cached after, then seconds)" >&2
cargo build --release --locked --quiet -p chainwatch-cli --manifest-path "$REPO/Cargo.toml"
exec "$CARGO_TARGET_DIR/release/chainwatch" dev --demo "$@"
