#!/usr/bin/env bash
# Checks dependencies with cargo-deny: security advisories, banned crates (one crypto backend),
# licences and sources, as deny.toml sets them.
#
# Where the RustSec database cannot be fetched, a dated snapshot beside the checkout
# (../shared/advisory-db with its ../shared/tools/advisory-db script) is laid out as a git
# repository and cargo-deny runs offline against it. Elsewhere cargo-deny fetches the database
# as usual. Needs cargo-deny (`cargo install --locked cargo-deny`).
set -euo pipefail

cd "$(dirname "$0")/.."

command -v cargo-deny >/dev/null || {
    echo "cargo-deny is missing: install it with 'cargo install --locked cargo-deny'" >&2
    exit 1
}

snapshot_tool=../shared/tools/advisory-db
if [[ -x "$snapshot_tool" || -f "$snapshot_tool" ]]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/keyward-deny.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    db=$(bash "$snapshot_tool" "$work/db")
    sed "s|^db-path = .*|db-path = \"$db\"|" deny.toml > "$work/deny.toml"
    # Offline, cargo-deny reads every crate of the lock file from Cargo's cache, those of
    # other platforms too, which a build on this one does not download.
    cargo fetch --locked
    echo "==> cargo deny (offline, advisory snapshot of $(cut -d' ' -f2 ../shared/advisory-db/SNAPSHOT))"
    cargo deny --offline --config "$work/deny.toml" check
else
    echo "==> cargo deny"
    cargo deny check
fi
