#!/usr/bin/env bash
# (a) Type-check the crate for aarch64-linux-android (what Termux runs on).
#
# No NDK: Debian's rustc-web checks std for the target (-Zbuild-std), and
# ring's build script compiles its C and assembly with clang aimed at Android
# without any libc headers (RING_CORE_NOSTDLIBINC).
#
#   bash packaging/check-android.sh
#
# CARGO_TARGET_DIR defaults to <repo>/target-android.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

TARGET=aarch64-linux-android
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_ANDROID:-$REPO_DIR/target-android}"

ensure_host_tools
ensure_debian_rust
use_debian_rust

export CC_aarch64_linux_android=clang-14
export AR_aarch64_linux_android=llvm-ar-14
export CFLAGS_aarch64_linux_android="--target=aarch64-linux-android$ANDROID_API -ffreestanding -nostdlibinc -DRING_CORE_NOSTDLIBINC=1"

log "cargo check --target $TARGET (all targets of the crate, std checked from source)"
start=$SECONDS
# --all-targets would need test for the target too; bins and lib are what ships.
cargo check --release --target "$TARGET" -Zbuild-std=std,panic_abort \
    --manifest-path "$REPO_DIR/Cargo.toml" --bins --lib >&2
log "android type check passed in $((SECONDS - start)) s"
