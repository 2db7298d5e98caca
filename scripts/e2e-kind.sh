#!/usr/bin/env bash
# End to end on a kind cluster (needs Docker, kind and kubectl): build the image, deploy
# config/kind, run a chain and a webhook receiver in the cluster, send one transfer above the
# monitor's threshold and one below, and expect exactly one notification.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
CLUSTER=chainwatch
log() { printf '[e2e] %s\n' "$*" >&2; }
die() { printf '[e2e] FAILED: %s\n' "$*" >&2; kubectl -n chainwatch-system logs deploy/chainwatch-operator --tail=50 >&2 || true; exit 1; }
command -v kind >/dev/null || die "kind is not installed (https://kind.sigs.k8s.io)"
command -v docker >/dev/null && docker info >/dev/null 2>&1 || die "no Docker engine"

kind get clusters | grep -qx "$CLUSTER" || kind create cluster --config "$REPO/kind-cluster.yaml"
kubectl config use-context "kind-$CLUSTER" >/dev/null
log "building the image"
docker build --build-arg CHAINWATCH_COMMIT="$(git -C "$REPO" rev-parse --short=12 HEAD)" -t chainwatch:dev "$REPO"
kind load docker-image chainwatch:dev --name "$CLUSTER"
log "deploying"
kubectl apply --server-side -k "$REPO/config/kind"
kubectl -n chainwatch-system set env deploy/chainwatch-operator CHAINWATCH_ALLOW_DESTINATIONS=10.0.0.0/8
kubectl -n chainwatch-system rollout status deploy/chainwatch-operator --timeout=180s || die "the operator did not become ready"
kubectl -n chainwatch-system rollout status sts/kafka --timeout=300s || die "Kafka did not start"
kubectl apply --server-side -f "$REPO/scripts/e2e/fixtures.yaml"
kubectl -n e2e rollout status deploy/anvil --timeout=180s
kubectl -n e2e rollout status deploy/receiver --timeout=180s
kubectl wait --for=condition=Ready network/anvil --timeout=300s || die "Network anvil not Ready: $(kubectl get network anvil -o jsonpath='{.status.conditions}')"
kubectl -n e2e-tenant wait --for=condition=Ready monitor/big-eth-transfers --timeout=120s || die "Monitor not Ready"

log "sending 2 ETH and 0.5 ETH"
ANVIL=$(kubectl -n e2e get pod -l app=anvil -o jsonpath='{.items[0].metadata.name}')
KEY=0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80 # anvil's first dev account
BIG=$(kubectl -n e2e exec "$ANVIL" -- cast send --rpc-url http://127.0.0.1:8545 --private-key $KEY --value 2ether 0x70997970C51812dc3A010C7d01b50e0d17dc79C8 --json | sed -n 's/.*"transactionHash":"\(0x[0-9a-f]*\)".*/\1/p')
kubectl -n e2e exec "$ANVIL" -- cast send --rpc-url http://127.0.0.1:8545 --private-key $KEY --value 0.5ether 0x70997970C51812dc3A010C7d01b50e0d17dc79C8 >/dev/null
for _ in $(seq 1 60); do
  got=$(kubectl -n e2e logs deploy/receiver | grep -c RECEIVED || true)
  [ "$got" -ge 1 ] && break
  sleep 2
done
sleep 10 # anything else would have arrived by now
got=$(kubectl -n e2e logs deploy/receiver | grep -c RECEIVED || true)
[ "$got" -eq 1 ] || die "expected 1 notification, got $got"
kubectl -n e2e logs deploy/receiver | grep RECEIVED | grep -q "$BIG" || die "the notification does not name $BIG"
kubectl get networks,monitors,triggers,tenants -A
log "passed: one notification for the 2 ETH transfer ($BIG), none for 0.5 ETH"
