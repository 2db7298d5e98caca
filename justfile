# chainwatch recipes. `just` lists them; CI runs `just test`'s script (.ci/run).

set shell := ["bash", "-euo", "pipefail", "-c"]
export CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", "/var/tmp/chainwatch/target")

# list the recipes
default:
    @just --list

# everything CI runs: test bed, fmt, generated files, clippy, all tests
test:
    scripts/test.sh

# tests only (the test bed must be up: `just testbed-up`)
test-quick *ARGS:
    source /var/tmp/chainwatch/run/env && cargo nextest run --workspace {{ARGS}}

# fmt check and clippy with warnings as errors
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# format the code
fmt:
    cargo fmt --all

# regenerate config/crd from the Rust types
generate:
    cargo run -q -p chainwatch-crds --bin crdgen -- config/crd

# fail if config/crd is not what `just generate` writes
check-generated:
    cargo run -q -p chainwatch-crds --bin crdgen -- "$CARGO_TARGET_DIR/crd-check" >/dev/null
    diff -r "$CARGO_TARGET_DIR/crd-check" config/crd

# start / stop the real parts tests use (API server, Kafka-protocol broker, anvil)
testbed-up:
    scripts/testbed.sh up

testbed-down:
    scripts/testbed.sh down

# all benchmarks (release builds; the operator and pipeline ones need `just testbed-up`)
bench: bench-match bench-match-hot bench-operator bench-ingester bench-script bench-fairness

# matching engine: per-block cost with 1,000 and 10,000 monitors, expressions (cold contracts)
bench-match:
    cargo bench -p chainwatch-core --bench match

# matching at platform scale: 1k/10k/100k monitors all on the contracts the block uses (BENCH_SIZES=…)
bench-match-hot:
    cargo bench -p chainwatch-worker --bench match_hot

# operator: time to admit 1,000 Monitors from a cold start, reconciles per second
bench-operator:
    source /var/tmp/chainwatch/run/env && cargo bench -p chainwatch-operator --bench admission

# ingester: backfill rate from anvil beside the raw RPC ceiling, steady state at 250 ms blocks
bench-ingester:
    source /var/tmp/chainwatch/run/env && cargo bench -p chainwatch-ingester --bench backfill

# scripts: one run's cost in the sandbox and in the fallback
bench-script:
    cargo bench -p chainwatch-worker --bench script

# notify fairness: tenant B's latency beside a tenant whose receiver takes 10 s per request
bench-fairness:
    source /var/tmp/chainwatch/run/env && cargo bench -p chainwatch-worker --bench fairness

# fuzz the expression parser (nightly) for SECONDS
fuzz SECONDS="60":
    cd core/fuzz && CARGO_TARGET_DIR=/var/tmp/chainwatch/fuzz-target cargo +nightly fuzz run expression_parser -- -max_total_time={{SECONDS}}

# the whole pipeline on this machine against a local chain, printing matches
dev *ARGS="--demo":
    cargo run -p chainwatch-cli --release -- dev {{ARGS}}

# build the chainwatch binary
build:
    cargo build -p chainwatch-cli --release

# a kind cluster (needs Docker and kind)
kind-up:
    kind get clusters | grep -qx chainwatch || kind create cluster --config kind-cluster.yaml

# the container image
image TAG="chainwatch:dev":
    docker build --build-arg CHAINWATCH_COMMIT=$(git rev-parse --short=12 HEAD) -t {{TAG}} .

# build, load and deploy to the kind cluster (CRDs, RBAC, operator, a single-node Kafka)
deploy: kind-up image
    kind load docker-image chainwatch:dev --name chainwatch
    kubectl apply --server-side -k config/kind
    kubectl -n chainwatch-system rollout status deploy/chainwatch-operator --timeout=180s

# end to end on kind: one notification for a transfer above a threshold, none below
e2e:
    scripts/e2e-kind.sh
