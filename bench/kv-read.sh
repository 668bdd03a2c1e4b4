#!/usr/bin/env bash
# Read benchmark: Keyward, OpenBao and a bare hyper + rustls server (the ceiling) serving the
# same KV v2 secret over TLS 1.3 on 127.0.0.1, under the same wrk load, alternating
# Keyward, OpenBao, ceiling in each round. Prints req/s, p50 and p99 per server, the
# Keyward/OpenBao ratios of the medians, Keyward's share of the ceiling and each server's
# peak RSS, and writes them to a JSON file. See bench/README.md.
set -euo pipefail

BENCH_NAME=kv-read
source "$(dirname "$0")/lib.sh"
parse_options "$@"

ensure_tools
build_binaries
make_work_dir
make_certificate
meta_machine=$(machine_json)

keyward_port=$(free_port_pair)
bao_port=$(free_port_pair)
ceiling_port=$(free_port_pair)

log "starting Keyward (embedded SQLite store, audit log on) on 127.0.0.1:$keyward_port"
init_keyward "$keyward_port"
start_keyward
put_secret "$KEYWARD_URL" "$KEYWARD_HEADER" "$SECRET_PATH" "$SECRET_JSON"

log "starting OpenBao ($BAO_STORAGE storage, file audit device) on 127.0.0.1:$bao_port"
write_bao_config "$bao_port"
start_bao
init_bao
put_secret "$BAO_URL" "$BAO_HEADER" "$SECRET_PATH" "$SECRET_JSON"

# The ceiling replays the exact response Keyward gives wrk (HTTP/1.1) for this read.
curl -sS --fail --http1.1 --cacert "$CA_FILE" -H "@$KEYWARD_HEADER" \
    -D "$WORK/read-response.head" -o "$WORK/read-response.body" \
    "$KEYWARD_URL/v1/secret/data/$SECRET_PATH"
cat "$WORK/read-response.head" "$WORK/read-response.body" >"$WORK/read-response.http"
log "starting the ceiling server on 127.0.0.1:$ceiling_port"
start_ceiling "$ceiling_port" "$WORK/read-response.http"

keyward_token=$(header_token "$KEYWARD_HEADER")
bao_token=$(header_token "$BAO_HEADER")
for round in $(seq 1 "$ROUNDS"); do
    run_wrk keyward read "$round" "$KEYWARD_URL" "$BENCH_DIR/lua/read.lua" "$keyward_token"
    run_wrk openbao read "$round" "$BAO_URL" "$BENCH_DIR/lua/read.lua" "$bao_token"
    run_wrk ceiling read "$round" "$CEILING_URL" "$BENCH_DIR/lua/read.lua" "$keyward_token"
done

python3 "$BENCH_DIR/report.py" load "$WORK/runs.jsonl" "$OUT" \
    --set=name=kv-read \
    --set=machine="$meta_machine" \
    --set=quick="$QUICK" \
    --set=settings.connections="$CONNECTIONS" \
    --set=settings.threads="$THREADS" \
    --set=settings.duration_s="$DURATION" \
    --set=settings.rounds="$ROUNDS" \
    --set=settings.openbao_storage="$BAO_STORAGE" \
    --set=settings.keyward_rate_limits="raised to 1000000/s per token and per address" \
    --set=settings.response_bytes="$(wc -c <"$WORK/read-response.body")" \
    --set=peak_rss_kib.keyward="$(peak_rss_kib "$KEYWARD_PID")" \
    --set=peak_rss_kib.openbao="$(peak_rss_kib "$BAO_PID")" \
    --set=peak_rss_kib.ceiling="$(peak_rss_kib "$CEILING_PID")" \
    --set=audit_lines.keyward="$(line_count "$WORK/keyward/audit/audit.log")" \
    --set=audit_lines.openbao="$(line_count "$WORK/openbao-audit.log")" \
    --set=openbao_version="$("$BAO_BIN" version)" \
    --set=keyward_commit="$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
printf 'OpenBao storage: %s. Keyward rate limits raised so they do not cap the load.\n' "$BAO_STORAGE"
