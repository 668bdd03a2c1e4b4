#!/usr/bin/env bash
# Start-up benchmark: for Keyward and OpenBao, each already initialised and holding one
# secret, the time from starting the process to its first TLS response and to its first
# successful secret read, and the resident memory (RSS) once idle. Starts each server several
# times, alternating, and reports medians in a table and a JSON file. See bench/README.md.
#
# Keyward reads its root key from a key file; OpenBao uses raft storage (inmem keeps nothing
# across a restart) and is unsealed through the API right after its first response.
set -euo pipefail

BENCH_NAME=startup
source "$(dirname "$0")/lib.sh"
ROUNDS=7
parse_options "$@"
[[ "$BAO_STORAGE" == raft ]] || die "startup.sh restarts OpenBao on its data, so it needs --bao-storage raft"
idle_seconds=2
[[ "$QUICK" == true ]] && idle_seconds=1

ensure_tools
build_binaries
make_work_dir
make_certificate
meta_machine=$(machine_json)

keyward_port=$(free_port_pair)
bao_port=$(free_port_pair)

log "initialising Keyward and OpenBao, each with one secret"
init_keyward "$keyward_port"
start_keyward
put_secret "$KEYWARD_URL" "$KEYWARD_HEADER" "$SECRET_PATH" "$SECRET_JSON"
stop_pid "$KEYWARD_PID"

write_bao_config "$bao_port"
start_bao
init_bao
put_secret "$BAO_URL" "$BAO_HEADER" "$SECRET_PATH" "$SECRET_JSON"
stop_pid "$BAO_PID"

probe() { # NAME URL HEADER [PROBE OPTION ...] -- COMMAND ...
    local name=$1 url=$2 header=$3
    shift 3
    python3 "$BENCH_DIR/startup-probe.py" --name "$name" --url "$url" --ca "$CA_FILE" \
        --header-file "$header" --read-path "/v1/secret/data/$SECRET_PATH" \
        --idle-seconds "$idle_seconds" --log "$WORK/$name.log" "$@" >>"$WORK/runs.jsonl"
}

for round in $(seq 1 "$ROUNDS"); do
    log "round $round: starting keyward"
    probe keyward "$KEYWARD_URL" "$KEYWARD_HEADER" -- \
        "$KEYWARD_BIN" server --config "$KEYWARD_CONFIG"
    log "round $round: starting openbao"
    probe openbao "$BAO_URL" "$BAO_HEADER" --unseal-key-file "$WORK/openbao-unseal.key" -- \
        "$BAO_BIN" server -config "$BAO_CONFIG"
done

python3 "$BENCH_DIR/report.py" startup "$WORK/runs.jsonl" "$OUT" \
    --set=machine="$meta_machine" \
    --set=quick="$QUICK" \
    --set=settings.rounds="$ROUNDS" \
    --set=settings.idle_seconds="$idle_seconds" \
    --set=settings.keyward_root_key="key file" \
    --set=settings.openbao_storage="$BAO_STORAGE" \
    --set=openbao_version="$("$BAO_BIN" version)" \
    --set=keyward_commit="$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
printf 'OpenBao storage: raft, unsealed through the API after its first response.\n'
