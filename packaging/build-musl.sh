#!/usr/bin/env bash
# (b) Build a fully static aarch64-unknown-linux-musl release binary.
#
# No rustup target and no NDK: Debian's rustc-web builds std for the target
# (-Zbuild-std), aarch64-linux-gnu-gcc links against musl's libc.a.
#
#   bash packaging/build-musl.sh        # prints the binary's path on stdout
#
# Output: $CARGO_TARGET_DIR/aarch64-unknown-linux-musl/release/dyspatcher
# (CARGO_TARGET_DIR defaults to <repo>/target-aarch64-musl).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

TARGET=aarch64-unknown-linux-musl
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_MUSL:-$REPO_DIR/target-aarch64-musl}"

ensure_host_tools
ensure_debian_rust
ensure_musl_sysroot
use_debian_rust
use_musl_env

log "cargo build --release --target $TARGET (std built from source; a few minutes)"
start=$SECONDS
cargo build --release --target "$TARGET" \
    --manifest-path "$REPO_DIR/Cargo.toml" >&2
bin="$CARGO_TARGET_DIR/$TARGET/release/dyspatcher"
[ -x "$bin" ] || die "no binary at $bin"
log "built in $((SECONDS - start)) s"

# It must be a static aarch64 executable: no interpreter, no needed libraries.
info="$(file -b "$bin" 2>/dev/null || true)"
log "file: ${info:-?}"
if readelf -lW "$bin" | grep -q 'INTERP'; then die "$bin has a program interpreter (not static)"; fi
if readelf -dW "$bin" 2>/dev/null | grep -q 'NEEDED'; then die "$bin needs shared libraries (not static)"; fi
readelf -hW "$bin" | grep -q 'AArch64' || die "$bin is not an AArch64 executable"
log "static aarch64 binary: $bin ($(file_size "$bin") bytes)"
echo "$bin"
