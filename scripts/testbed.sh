#!/usr/bin/env bash
# The real parts tests talk to: the etcd-backed Kubernetes API server (kube-testenv), a
# Kafka-protocol broker (noida-db) and an EVM chain (anvil). Installs what is missing, starts each
# on 127.0.0.1, stops each by the PID it saved.
#
#   scripts/testbed.sh install    install the broker and anvil (and build kube-testenv) only
#   scripts/testbed.sh install-demo   install what `chainwatch dev --demo` needs (build packages, anvil)
#   scripts/testbed.sh up         install if needed, (re)start everything with empty state, write the env file
#   scripts/testbed.sh down       stop everything
#   scripts/testbed.sh env        print the env file (source it: `source <(scripts/testbed.sh env)`)
#   scripts/testbed.sh anvil-path print where anvil is installed
#
# Env: CHAINWATCH_CACHE (default /var/tmp/chainwatch) keeps installs between clones;
#      KUBE_TESTENV_DIR (default /var/tmp/kube-testenv) keeps the API server build;
#      KAFKA_PORT (9092), ANVIL_PORT (8545), PORT (6443, API server), ETCD_PORT (2379).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${CHAINWATCH_SHARED:-$REPO/../shared}
CACHE=${CHAINWATCH_CACHE:-/var/tmp/chainwatch}
TOOLS=$CACHE/testenv
RUN=$CACHE/run
export KUBE_TESTENV_DIR=${KUBE_TESTENV_DIR:-/var/tmp/kube-testenv}
KAFKA_PORT=${KAFKA_PORT:-9092}
ANVIL_PORT=${ANVIL_PORT:-8545}
NOIDA_VERSION=0.2.3
ANVIL_VERSION=1.7.1
KUBE_TESTENV=$SHARED/tools/kube-testenv/kube-testenv

log() { printf '[testbed] %s\n' "$*" >&2; }
die() { printf '[testbed] ERROR: %s\n' "$*" >&2; exit 1; }

noida_bin() { echo "$TOOLS/kvenv/lib/python3.11/site-packages/noida_db/noida-db"; }
anvil_bin() { echo "$TOOLS/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"; }

install_system_packages() {
  local missing=()
  command -v cmake >/dev/null || missing+=(cmake)
  [ -f /usr/include/curl/curl.h ] || [ -f /usr/include/x86_64-linux-gnu/curl/curl.h ] || missing+=(libcurl4-openssl-dev)
  command -v kubectl >/dev/null || missing+=(kubectl)
  # librdkafka's TLS and SASL SCRAM
  [ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
  command -v pkg-config >/dev/null || missing+=(pkg-config)
  # the Argo CD health checks (config/argocd) are tested under a real Lua
  command -v lua5.4 >/dev/null || missing+=(lua5.4)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    # a fresh machine's package lists are stale: refresh them first (output in the log)
    local aptlog="$TOOLS/apt.log"
    mkdir -p "$TOOLS"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq "${missing[@]}"; } >"$aptlog" 2>&1 \
      || { tail -n 20 "$aptlog" >&2; die "could not install ${missing[*]} (full log: $aptlog)"; }
  fi
}

install_broker() {
  if [ -x "$(noida_bin)" ] && [ "$(cat "$TOOLS/.noida-version" 2>/dev/null)" = "$NOIDA_VERSION" ]; then return; fi
  log "installing the Kafka-protocol broker (noida-db $NOIDA_VERSION from PyPI)"
  mkdir -p "$TOOLS"
  python3 -m venv "$TOOLS/kvenv"
  "$TOOLS/kvenv/bin/pip" install -q "noida-db==$NOIDA_VERSION"
  chmod +x "$(noida_bin)"
  echo "$NOIDA_VERSION" > "$TOOLS/.noida-version"
}

install_anvil() {
  if [ -x "$(anvil_bin)" ] && [ "$(cat "$TOOLS/.anvil-version" 2>/dev/null)" = "$ANVIL_VERSION" ]; then return; fi
  log "installing anvil $ANVIL_VERSION from npm"
  mkdir -p "$TOOLS"
  npm install --prefix "$TOOLS" --no-audit --no-fund --silent "@foundry-rs/anvil-linux-amd64@$ANVIL_VERSION" >/dev/null
  echo "$ANVIL_VERSION" > "$TOOLS/.anvil-version"
}

wait_port() { # host port what seconds
  local deadline=$(( $(date +%s) + $4 ))
  until (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || die "$3 did not open $1:$2 within $4 s (logs in $RUN)"
    sleep 0.1
  done
}

stop_pid() { # name
  local f=$RUN/$1.pid
  [ -f "$f" ] || return 0
  local pid; pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

cmd_install() {
  install_system_packages
  install_broker
  install_anvil
  [ -x "$KUBE_TESTENV" ] || die "kube-testenv not found at $KUBE_TESTENV (CI keeps ../shared beside the clone)"
}

cmd_install_demo() {
  install_system_packages
  install_anvil
}

cmd_down() {
  stop_pid anvil
  stop_pid kafka
  if [ -x "$KUBE_TESTENV" ]; then "$KUBE_TESTENV" stop >/dev/null 2>&1 || true; fi
}

cmd_up() {
  cmd_install
  cmd_down
  mkdir -p "$RUN"
  # API server: build once (cached in $KUBE_TESTENV_DIR), start on empty etcd
  rm -rf "$KUBE_TESTENV_DIR/etcd"
  log "starting the Kubernetes API server (kube-testenv; the first build takes ~10 min)"
  "$KUBE_TESTENV" all > "$RUN/kube-testenv.log" 2>&1 || { tail -30 "$RUN/kube-testenv.log" >&2; die "kube-testenv failed"; }

  log "starting the Kafka-protocol broker on 127.0.0.1:$KAFKA_PORT"
  rm -rf "$RUN/kafka-data"
  "$(noida_bin)" start --only kafka --data-dir "$RUN/kafka-data" --kafka-port "$KAFKA_PORT" > "$RUN/kafka.log" 2>&1 &
  echo $! > "$RUN/kafka.pid"
  wait_port 127.0.0.1 "$KAFKA_PORT" broker 30

  log "starting anvil on 127.0.0.1:$ANVIL_PORT"
  "$(anvil_bin)" --host 127.0.0.1 --port "$ANVIL_PORT" --silent > "$RUN/anvil.log" 2>&1 &
  echo $! > "$RUN/anvil.pid"
  wait_port 127.0.0.1 "$ANVIL_PORT" anvil 30

  cat > "$RUN/env" <<EOF
export KUBECONFIG=$KUBE_TESTENV_DIR/kubeconfig
export KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT
export EVM_RPC_URL=http://127.0.0.1:$ANVIL_PORT
export ANVIL_BIN=$(anvil_bin)
export NOIDA_BIN=$(noida_bin)
export CHAINWATCH_FIXTURES=$SHARED/fixtures
export KUBE_TESTENV_BIN=$KUBE_TESTENV
export KUBE_TESTENV_DIR=$KUBE_TESTENV_DIR
EOF
  log "up: source $RUN/env"
}

case "${1:-up}" in
  install) cmd_install ;;
  install-demo) cmd_install_demo ;;
  up) cmd_up ;;
  down) cmd_down ;;
  env) cat "$RUN/env" ;;
  anvil-path) anvil_bin ;;
  *) die "usage: $0 install|install-demo|up|down|env|anvil-path" ;;
esac
