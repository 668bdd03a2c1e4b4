#!/usr/bin/env bash
# Scans a `keyward server --dev` on loopback with testssl.sh and fails unless:
#
#   - TLS 1.3 is the only protocol offered (no SSLv2, SSLv3, TLS 1.0, 1.1 or 1.2);
#   - no finding is rated MEDIUM, HIGH or CRITICAL (protocols, ciphers, vulnerabilities,
#     server defaults, headers), apart from the certificate findings listed in EXCUSED below;
#   - HSTS is sent with a max-age of at least 180 days, includeSubDomains and preload;
#   - the certificate chain validates against the dev server's CA (given with --add-ca).
#
# It builds the shipping binary first (`cargo build --profile dist --locked -p keyward`, the
# build the end-to-end tests and the benchmarks share), prints a short summary and leaves testssl's JSON in
# target/tls-scan/testssl.json.
#
# Needs: testssl.sh (Debian package `testssl.sh`, command `testssl`), python3, curl.
set -euo pipefail

cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

testssl_bin=$(command -v testssl || command -v testssl.sh || true)
if [[ -z "$testssl_bin" ]]; then
    log "testssl.sh is missing: install it with 'apt-get install testssl.sh'"
    exit 1
fi

log "building keyward (dist profile)"
cargo build --profile dist --locked -p keyward

out=target/tls-scan
mkdir -p "$out"
rm -f "$out/testssl.json"
work=$(mktemp -d "${TMPDIR:-/tmp}/keyward-tls-scan.XXXXXX")
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log "starting keyward server --dev on 127.0.0.1:$port"
# The dev server makes its temporary data dir, with the CA, under TMPDIR.
TMPDIR="$work" "${CARGO_TARGET_DIR:-target}/dist/keyward" server --dev --listen "127.0.0.1:$port" \
    >"$work/server.stdout" 2>"$work/server.stderr" &
server_pid=$!

ca_file=""
for _ in $(seq 1 100); do
    ca_file=$(sed -n 's/^CA file: *//p' "$work/server.stdout")
    if [[ -n "$ca_file" ]] && curl -fsS --cacert "$ca_file" "https://127.0.0.1:$port/v1/sys/health" \
        >/dev/null 2>&1; then
        break
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        log "keyward server exited; its log follows"
        cat "$work/server.stderr" >&2
        exit 1
    fi
    sleep 0.1
done
if [[ -z "$ca_file" ]]; then
    log "keyward server printed no CA file within 10 s"
    exit 1
fi

cat >"$work/judge.py" <<'PY'
import json
import sys

# Findings that testssl.sh rates MEDIUM or worse for any certificate of a private CA. Each
# is excused here with its reason; every other MEDIUM, HIGH or CRITICAL finding fails.
EXCUSED = {
    "cert_revocation": "the dev CA is private and publishes no CRL or OCSP responder",
}
SEVERE = {"MEDIUM", "HIGH", "CRITICAL"}
OLD_PROTOCOLS = ["SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2"]

with open(sys.argv[1]) as file:
    findings = json.load(file)
by_id = {}
for item in findings:
    by_id.setdefault(item["id"], []).append(item)


def finding(id_):
    return " / ".join(item["finding"] for item in by_id.get(id_, [])) or "(missing)"


checks = []
for protocol in OLD_PROTOCOLS:
    text = finding(protocol)
    checks.append((f"{protocol} not offered", text.startswith("not offered"), text))
text = finding("TLS1_3")
checks.append(("TLS 1.3 offered", text.startswith("offered"), text))

severe = [
    item for item in findings if item["severity"] in SEVERE and item["id"] not in EXCUSED
]
# testssl.sh rates a check it could not finish WARN: that is a failure too.
warnings = [item for item in findings if item["severity"] == "WARN"]
severe += warnings
checks.append((
    "no MEDIUM/HIGH/CRITICAL/WARN finding",
    not severe,
    "; ".join(f'{i["severity"]} {i["id"]}: {i["finding"]}' for i in severe) or "none",
))

hsts_time = by_id.get("HSTS_time", [])
checks.append((
    "HSTS max-age >= 180 days",
    bool(hsts_time) and all(item["severity"] == "OK" for item in hsts_time),
    finding("HSTS_time"),
))
text = finding("HSTS_subdomains")
checks.append(("HSTS includeSubDomains", text.startswith("includes"), text))
text = finding("HSTS_preload")
checks.append(("HSTS preload", "IS marked" in text, text))
text = finding("cert_chain_of_trust")
checks.append(("chain valid for the dev CA", text.startswith("passed"), text))

failed = 0
for name, ok, detail in checks:
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    failed += not ok
for id_, reason in EXCUSED.items():
    for item in by_id.get(id_, []):
        if item["severity"] in SEVERE:
            print(f"NOTE  {item['severity']} {id_} excused: {reason}")
if failed:
    print(f"TLS scan failed: {failed} of {len(checks)} checks")
    # Exit code 3 means the only failure is a check that testssl.sh could not finish because
    # a connection broke. The caller scans once more in that case.
    only_connect = (
        failed == 1
        and severe
        and all(item in warnings and "connect problem" in item["finding"] for item in severe)
    )
    sys.exit(3 if only_connect else 1)
print(f"TLS scan passed: {len(checks)} checks")
PY

# -p protocols, -s standard cipher lists, -S server defaults and certificate, -h HTTP headers,
# -U vulnerabilities. --fast skips the slowest checks. One scan takes one to three minutes on
# loopback on a 2-core machine (measured, not a bound).
scan() {
    log "running testssl.sh $("$testssl_bin" --version 2>/dev/null | sed -n 's/.*testssl.sh *\([0-9][^ ]*\).*/\1/p' | head -n 1)"
    rm -f "$out/testssl.json"
    # testssl.sh exits with 1 to 241 for ambiguous results, which judge.py weighs, and with
    # 242 or more when it could not scan.
    local status=0
    "$testssl_bin" --quiet --warnings off --color 0 --fast \
        --add-ca "$ca_file" --jsonfile "$out/testssl.json" \
        -p -s -S -h -U "127.0.0.1:$port" >"$out/testssl.txt" 2>&1 || status=$?
    if ((status >= 242)) || [[ ! -s "$out/testssl.json" ]]; then
        log "testssl.sh failed with exit code $status; its output follows"
        cat "$out/testssl.txt" >&2
        return 1
    fi
    if ((status > 0)); then
        log "testssl.sh reported $status ambiguous results; see $out/testssl.txt"
    fi
    python3 "$work/judge.py" "$out/testssl.json"
}

# A check whose connection broke (testssl.sh: "connect problem") earns another scan, up to
# three in all: it happened in the first scan of two of four CI runs. Any other failure
# fails the run at once. The server's log and each scan's output are kept.
status=0
for attempt in 1 2 3; do
    status=0
    scan || status=$?
    cp "$out/testssl.txt" "$out/testssl-$attempt.txt"
    if ((status != 3)); then
        break
    fi
    log "a testssl.sh check lost its connection (scan $attempt of 3)"
done
cp "$work/server.stderr" "$out/server.stderr"
if ((status != 0)); then
    log "the server's log is in $out/server.stderr"
    exit 1
fi
