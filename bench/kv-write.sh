#!/usr/bin/env bash
# Write benchmark: Keyward and OpenBao taking KV v2 writes over TLS 1.3 on 127.0.0.1 under
# the same wrk load, alternating Keyward, OpenBao in each round. Two scenarios: `update`
# writes a new version of the same secret, `create` writes a new secret per request. Keyward
# fsyncs every write (SQLite) and its audit entries; OpenBao's raft storage fsyncs its log.
# Prints writes/s, p50 and p99 per server, the Keyward/OpenBao ratios of the medians and
# each server's peak RSS, and writes them to a JSON file. See bench/README.md.
set -euo pipefail

BENCH_NAME=kv-write
source "$(dirname "$0")/lib.sh"
parse_options "$@"

ensure_tools
build_binaries
make_work_dir
make_certificate
meta_machine=$(machine_json)

keyward_port=$(free_port_pair)
bao_port=$(free_port_pair)

log "starting Keyward (embedded SQLite store, audit log on) on 127.0.0.1:$keyward_port"
init_keyward "$keyward_port"
start_keyward
put_secret "$KEYWARD_URL" "$KEYWARD_HEADER" "$SECRET_PATH" "$SECRET_JSON"

log "starting OpenBao ($BAO_STORAGE storage, file audit device) on 127.0.0.1:$bao_port"
write_bao_config "$bao_port"
start_bao
init_bao
put_secret "$BAO_URL" "$BAO_HEADER" "$SECRET_PATH" "$SECRET_JSON"

keyward_token=$(header_token "$KEYWARD_HEADER")
bao_token=$(header_token "$BAO_HEADER")
for round in $(seq 1 "$ROUNDS"); do
    run_wrk keyward update "$round" "$KEYWARD_URL" "$BENCH_DIR/lua/write-same.lua" "$keyward_token"
    run_wrk openbao update "$round" "$BAO_URL" "$BENCH_DIR/lua/write-same.lua" "$bao_token"
    run_wrk keyward create "$round" "$KEYWARD_URL" "$BENCH_DIR/lua/write-new.lua" "$keyward_token"
    run_wrk openbao create "$round" "$BAO_URL" "$BENCH_DIR/lua/write-new.lua" "$bao_token"
done

python3 "$BENCH_DIR/report.py" load "$WORK/runs.jsonl" "$OUT" \
    --set=name=kv-write \
    --set=machine="$meta_machine" \
    --set=quick="$QUICK" \
    --set=settings.connections="$CONNECTIONS" \
    --set=settings.threads="$THREADS" \
    --set=settings.duration_s="$DURATION" \
    --set=settings.rounds="$ROUNDS" \
    --set=settings.openbao_storage="$BAO_STORAGE" \
    --set=settings.keyward_rate_limits="raised to 1000000/s per token and per address" \
    --set=settings.body_bytes="${#SECRET_JSON}" \
    --set=peak_rss_kib.keyward="$(peak_rss_kib "$KEYWARD_PID")" \
    --set=peak_rss_kib.openbao="$(peak_rss_kib "$BAO_PID")" \
    --set=audit_lines.keyward="$(line_count "$WORK/keyward/audit/audit.log")" \
    --set=audit_lines.openbao="$(line_count "$WORK/openbao-audit.log")" \
    --set=openbao_version="$("$BAO_BIN" version)" \
    --set=keyward_commit="$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
printf 'OpenBao storage: %s. Keyward rate limits raised so they do not cap the load.\n' "$BAO_STORAGE"
