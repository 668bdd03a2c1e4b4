#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time.
#
#   scripts/fuzz.sh [SECONDS]   run each target for SECONDS (default 60)
#   scripts/fuzz.sh --smoke     run each target for 5 seconds, as CI does
#
# The targets are built once, in release mode with debug assertions, without a sanitizer
# (`-s none`), because the sanitizer build needs a nightly toolchain. Each run starts from
# the seeds in fuzz/seeds/TARGET and grows a working corpus in target/fuzz/corpus/TARGET,
# which later runs reuse. A crash stops the script with exit code 1; libFuzzer saves the
# input in fuzz/artifacts/TARGET/, and `cargo fuzz run -s none TARGET FILE` replays it.
#
# Needs: cargo-fuzz (`cargo install --locked cargo-fuzz`).
set -euo pipefail

cd "$(dirname "$0")/.."

targets=(ciphertext secret_path policy audit_line kv_body)
seconds=60
case "${1:-}" in
    --smoke) seconds=5 ;;
    "") ;;
    *[!0-9]* | 0)
        echo "usage: scripts/fuzz.sh [SECONDS | --smoke]" >&2
        exit 2
        ;;
    *) seconds=$1 ;;
esac

log() { printf '==> %s\n' "$*" >&2; }

command -v cargo-fuzz >/dev/null || {
    log "cargo-fuzz is missing: install it with 'cargo install --locked cargo-fuzz'"
    exit 1
}

target_dir=target/fuzz
fuzz_options=(--sanitizer none --release --debug-assertions --target-dir "$target_dir")

# cargo-fuzz has no --locked option: check that fuzz/Cargo.lock is current first. It is the
# workspace's Cargo.lock plus libfuzzer-sys, so the targets build the audited versions.
if ! cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null; then
    log "fuzz/Cargo.lock is out of date with the workspace; refresh it with:"
    log "  cp Cargo.lock fuzz/Cargo.lock && cargo metadata --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null"
    exit 1
fi
log "building the fuzz targets"
cargo fuzz build "${fuzz_options[@]}"

# Run the binaries directly: `cargo fuzz run` would check the build again for every target.
binaries="$target_dir/$(rustc -vV | sed -n 's/^host: //p')/release"

failed=()
for target in "${targets[@]}"; do
    corpus="$target_dir/corpus/$target"
    artifacts="fuzz/artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    log "fuzzing $target for ${seconds} s"
    # -timeout fails an input that takes over 10 s, and -rss_limit_mb one that needs over
    # 2 GiB: both count as findings, like a panic.
    if ! "$binaries/$target" "$corpus" "fuzz/seeds/$target" \
        -artifact_prefix="$artifacts/" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 2>"$target_dir/$target.log"; then
        log "fuzz target $target failed; the end of its log follows"
        tail -n 40 "$target_dir/$target.log" >&2
        failed+=("$target")
        continue
    fi
    grep -E '^stat::number_of_executed_units' "$target_dir/$target.log" \
        | sed "s/^/    $target: /" >&2 || true
done

if ((${#failed[@]} > 0)); then
    log "fuzzing found problems in: ${failed[*]} (inputs are under fuzz/artifacts/)"
    exit 1
fi
log "fuzzing passed: ${#targets[@]} targets, ${seconds} s each"
