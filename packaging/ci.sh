#!/usr/bin/env bash
# Packaging checks, in order:
#   (a) type-check for aarch64-linux-android        packaging/check-android.sh
#   (b) static aarch64-unknown-linux-musl release    packaging/build-musl.sh
#       x86_64 release build (cargo build --release)
#   (c) smoke test of (b) under qemu-aarch64-static  packaging/smoke-test.sh
#   (d) termux/build.sh's steps, the runit service   packaging/test-termux.sh
#   (e) the systemd unit's command lines             packaging/test-systemd.sh
# then prints both binaries' sizes and fails if either is 4 MB or more.
#
# Installs what it needs idempotently (apt packages; .deb downloads cached in
# $HOME/.cache/dyspatcher-packaging). Exits non-zero on any failure.
#
#   bash packaging/ci.sh
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/env.sh"

SIZE_LIMIT=4000000   # bytes; "under 4 MB"
t_all=$SECONDS
steps=()
step() { steps+=("$(printf '%-44s %4d s' "$1" "$2")"); }

log "installing the host tools (idempotent)"
t=$SECONDS
ensure_host_tools
ensure_debian_rust
ensure_musl_sysroot
ensure_apt runit
step "tools and toolchain" $((SECONDS - t))

log "(a) cargo check for aarch64-linux-android"
t=$SECONDS
bash "$HERE/check-android.sh"
step "(a) check aarch64-linux-android" $((SECONDS - t))

log "(b) static aarch64-unknown-linux-musl release build"
t=$SECONDS
musl_bin="$(bash "$HERE/build-musl.sh" | tail -n1)"
step "(b) build aarch64-unknown-linux-musl" $((SECONDS - t))

log "x86_64 release build (cargo build --release)"
t=$SECONDS
host_target_dir="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
cargo build --release --manifest-path "$REPO_DIR/Cargo.toml" >&2
host_bin="$host_target_dir/release/dyspatcher"
[ -x "$host_bin" ] || die "no x86_64 binary at $host_bin"
step "x86_64 release build" $((SECONDS - t))

log "(c) smoke test under qemu-aarch64-static"
t=$SECONDS
# One client from the x86_64 build, one from the aarch64 binary under qemu:
# both client builds and the emulated server are exercised together.
SMOKE_HOST_CLIENT="$host_bin" bash "$HERE/smoke-test.sh" "$musl_bin"
step "(c) smoke test under qemu" $((SECONDS - t))

log "(d) Termux recipe and runit service"
t=$SECONDS
bash "$HERE/test-termux.sh"
step "(d) termux/build.sh and the runit service" $((SECONDS - t))

log "(e) systemd unit"
t=$SECONDS
bash "$HERE/test-systemd.sh" "$host_bin"
step "(e) systemd unit" $((SECONDS - t))

musl_size="$(file_size "$musl_bin")"
host_size="$(file_size "$host_bin")"
echo
echo "Time per step:"
printf '  %s\n' "${steps[@]}"
printf '  %-44s %4d s\n' "total" $((SECONDS - t_all))
echo
echo "Binary sizes (limit: under $SIZE_LIMIT bytes):"
printf '  %-28s %9d bytes (%s MiB)  %s\n' "aarch64-unknown-linux-musl" "$musl_size" \
    "$(awk "BEGIN{printf \"%.2f\", $musl_size/1048576}")" "$musl_bin"
printf '  %-28s %9d bytes (%s MiB)  %s\n' "x86_64-unknown-linux-gnu" "$host_size" \
    "$(awk "BEGIN{printf \"%.2f\", $host_size/1048576}")" "$host_bin"
fail=0
[ "$musl_size" -lt "$SIZE_LIMIT" ] || { echo "error: the aarch64 binary is too big" >&2; fail=1; }
[ "$host_size" -lt "$SIZE_LIMIT" ] || { echo "error: the x86_64 binary is too big" >&2; fail=1; }
[ $fail -eq 0 ] || exit 1
echo "packaging checks passed"
