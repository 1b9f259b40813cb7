# shellcheck shell=bash
# Shared set-up for the packaging scripts. Source it; do not run it.
#
# It gets, idempotently:
#   * Debian's rustc-web/cargo-web with the matching rust-web-src, extracted
#     (not installed) into a cache folder, so that std can be built for the
#     cross targets with -Zbuild-std;
#   * the Debian packages the cross builds and the smoke test need
#     (gcc-aarch64-linux-gnu, qemu-user-static, clang, llvm, openssl, curl);
#   * a musl sysroot for aarch64-unknown-linux-musl laid out like rustup's
#     "self-contained" folder (musl's crt objects and libc.a, gcc's
#     crtbegin/crtend, LLVM's libunwind.a with a tiny __fprintf_chk shim).
#
# Everything downloaded lives under $DYSPATCHER_PKG_CACHE
# (default: $HOME/.cache/dyspatcher-packaging), so a second run downloads
# nothing. Build outputs go to git-ignored /target-* folders of the repo.

set -euo pipefail

PKG_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$PKG_DIR/.." && pwd)"
PKG_CACHE="${DYSPATCHER_PKG_CACHE:-$HOME/.cache/dyspatcher-packaging}"
export PKG_DIR REPO_DIR PKG_CACHE

# Android API level the type check aims at (Termux needs 24 or later; ring's
# C code only needs 21).
export ANDROID_API="${DYSPATCHER_ANDROID_API:-24}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

_apt_updated=""
apt_update_once() {
    if [ -z "$_apt_updated" ]; then
        log "apt-get update"
        $SUDO apt-get update -qq -o DPkg::Lock::Timeout=600 >&2
        _apt_updated=1
    fi
}

# ensure_apt PKG... : install the packages that are not installed yet.
ensure_apt() {
    local missing=() p
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$p")
        fi
    done
    if [ ${#missing[@]} -gt 0 ]; then
        apt_update_once
        log "apt-get install ${missing[*]}"
        mkdir -p "$PKG_CACHE"
        if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
            -o DPkg::Lock::Timeout=600 "${missing[@]}" >"$PKG_CACHE/apt-install.log" 2>&1; then
            tail -n 30 "$PKG_CACHE/apt-install.log" >&2
            die "apt-get install ${missing[*]} failed"
        fi
    fi
}

# The host tools every packaging script uses.
ensure_host_tools() {
    ensure_apt gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static \
        clang-14 llvm-14 openssl curl ca-certificates binutils file python3
}

# apt_candidate PKG : the version apt would install (empty if none).
apt_candidate() {
    apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}' | grep -v '(none)' || true
}

# download_debs DIR PKG[=VER]... : apt-get download into DIR unless there.
download_debs() {
    local dir="$1"; shift
    mkdir -p "$dir"
    (
        cd "$dir"
        local spec name ver arch file
        for spec in "$@"; do
            name="${spec%%=*}"; ver=""
            [ "$spec" != "$name" ] && ver="${spec#*=}"
            arch="${name#*:}"; [ "$arch" = "$name" ] && arch=""
            name="${name%%:*}"
            # apt-get download names files NAME_VERSION_ARCH.deb with ':' as %3a.
            if [ -n "$ver" ]; then
                file="$(ls "${name}_${ver/:/%3a}_"*.deb 2>/dev/null | head -n1 || true)"
            else
                file="$(ls "${name}_"*"_${arch:-*}.deb" 2>/dev/null | head -n1 || true)"
            fi
            if [ -z "$file" ]; then
                log "apt-get download $spec"
                # _apt cannot write to a root-owned cache folder; that is fine.
                apt-get download -q "$spec" 2>&1 | grep -v -e 'unsandboxed' -e '^Get:' -e '^Fetched' >&2 || true
                ls "${name}_"*.deb >/dev/null 2>&1 || die "could not download $spec"
            fi
        done
    )
}

# --- Debian's Rust toolchain, able to build std for other targets ---------

ensure_debian_rust() {
    local ver
    ver="$(apt_candidate rustc-web)"
    if [ -z "$ver" ]; then apt_update_once; ver="$(apt_candidate rustc-web)"; fi
    [ -n "$ver" ] || die "Debian has no rustc-web package here"

    local short="${ver%%+*}"          # 1.96.0
    local mm="${short%.*}"            # 1.96
    DEB_RUST_ROOT="$PKG_CACHE/rust-web-$ver"
    if [ ! -f "$DEB_RUST_ROOT/.complete" ] && [ -z "$_apt_updated" ]; then
        # About to download: make sure the lists name files the mirror still has.
        apt_update_once
        ver="$(apt_candidate rustc-web)"
        DEB_RUST_ROOT="$PKG_CACHE/rust-web-$ver"
        short="${ver%%+*}"; mm="${short%.*}"
    fi
    if [ ! -f "$DEB_RUST_ROOT/.complete" ]; then
        local llvm
        llvm="$(apt-cache show "libstd-rust-web-$mm=$ver" | sed -n 's/^Depends: //p' | head -n1 \
            | tr ',' '\n' | grep -o 'libllvm[0-9]*' | head -n1)"
        [ -n "$llvm" ] || die "cannot tell which libLLVM rustc-web $ver needs"
        local debs="$PKG_CACHE/debs/rust-web-$ver"
        download_debs "$debs" "rustc-web=$ver" "cargo-web=$ver" "rust-web-src=$ver" \
            "libstd-rust-web-$mm=$ver" "libstd-rust-web-dev=$ver" "$llvm"
        log "extracting Debian's Rust $ver into $DEB_RUST_ROOT"
        rm -rf "$DEB_RUST_ROOT"; mkdir -p "$DEB_RUST_ROOT"
        local d
        for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$DEB_RUST_ROOT"; done
        # Only library/ of the source is needed to build std; drop the rest.
        rm -rf "$DEB_RUST_ROOT"/usr/src/rustc-*/src "$DEB_RUST_ROOT"/usr/src/rustc-*/compiler \
            "$DEB_RUST_ROOT"/usr/share/doc "$DEB_RUST_ROOT"/usr/share/man
        touch "$DEB_RUST_ROOT/.complete"
        rm -rf "$debs"
    fi
    DEB_RUSTC="$DEB_RUST_ROOT/usr/bin/rustc"
    DEB_CARGO="$DEB_RUST_ROOT/usr/bin/cargo"
    DEB_RUST_LIBS="$DEB_RUST_ROOT/usr/lib/x86_64-linux-gnu"
    export DEB_RUST_ROOT DEB_RUSTC DEB_CARGO DEB_RUST_LIBS
    [ -d "$DEB_RUST_ROOT/usr/lib/rustlib/src/rust/library" ] || die "rust-web-src is missing library/"
    # Debian's cargo links to a few shared libraries (libgit2, ...): install
    # the ones missing (amd64 libraries only; the toolchain stays extracted).
    if LD_LIBRARY_PATH="$DEB_RUST_LIBS" ldd "$DEB_CARGO" | grep -q 'not found'; then
        local deps
        deps="$(apt-cache show "cargo-web=$ver" | sed -n 's/^Depends: //p' | head -n1 | tr ',' '\n' \
            | sed -E 's/\(.*\)//; s/\|.*//; s/^ +//; s/ +$//' | grep '^lib' || true)"
        # shellcheck disable=SC2086
        ensure_apt $deps
    fi
    LD_LIBRARY_PATH="$DEB_RUST_LIBS" "$DEB_RUSTC" -V >/dev/null || die "Debian's rustc does not run"
    LD_LIBRARY_PATH="$DEB_RUST_LIBS" "$DEB_CARGO" -V >/dev/null || die "Debian's cargo does not run"
}

# Environment for a cargo run that builds std itself with Debian's cargo and
# rustc (first on PATH from here on); RUSTC_BOOTSTRAP lets both accept -Z.
use_debian_rust() {
    export PATH="$DEB_RUST_ROOT/usr/bin:$PATH"
    export RUSTC="$DEB_RUSTC"
    export RUSTDOC="$DEB_RUST_ROOT/usr/bin/rustdoc"
    export LD_LIBRARY_PATH="$DEB_RUST_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export RUSTC_BOOTSTRAP=1
    # Options meant for the host toolchain must not leak into these builds.
    unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS RUSTC_WRAPPER CARGO_BUILD_RUSTC_WRAPPER || true
}

# --- aarch64 musl sysroot --------------------------------------------------

ensure_musl_sysroot() {
    ensure_debian_rust
    local target=aarch64-unknown-linux-musl
    local sc="$DEB_RUST_ROOT/usr/lib/rustlib/$target/lib/self-contained"
    if [ -f "$sc/.complete" ]; then MUSL_SELF_CONTAINED="$sc"; export MUSL_SELF_CONTAINED; return; fi

    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        log "dpkg --add-architecture arm64 (package lists only; nothing arm64 is installed)"
        $SUDO dpkg --add-architecture arm64
        _apt_updated=""
    fi
    apt_update_once
    [ -n "$(apt_candidate musl-dev:arm64)" ] || die "no musl-dev:arm64 in the package lists"

    local debs="$PKG_CACHE/debs/arm64"
    download_debs "$debs" musl:arm64 musl-dev:arm64 libunwind-14-dev:arm64
    local x="$PKG_CACHE/arm64-root"
    rm -rf "$x"; mkdir -p "$x"
    local d
    for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$x"; done

    log "laying out the aarch64 musl sysroot in $sc"
    rm -rf "$sc"; mkdir -p "$sc"
    cp "$x"/usr/lib/aarch64-linux-musl/*.o "$x"/usr/lib/aarch64-linux-musl/*.a "$sc"/
    local gccdir
    gccdir="$(dirname "$(aarch64-linux-gnu-gcc -print-libgcc-file-name)")"
    cp "$gccdir"/crtbegin.o "$gccdir"/crtbeginS.o "$gccdir"/crtend.o "$gccdir"/crtendS.o "$sc"/

    # LLVM's libunwind was built with _FORTIFY_SOURCE for glibc; musl has no
    # __fprintf_chk, so add one that forwards to vfprintf.
    cat >"$x/fprintf_chk.c" <<'EOF'
#include <stdarg.h>
#include <stdio.h>
int __fprintf_chk(FILE *f, int flag, const char *fmt, ...)
{
    (void)flag;
    va_list ap;
    va_start(ap, fmt);
    int r = vfprintf(f, fmt, ap);
    va_end(ap);
    return r;
}
EOF
    aarch64-linux-gnu-gcc -O2 -fPIC -ffreestanding -nostdinc -isystem "$x/usr/include/aarch64-linux-musl" \
        -c "$x/fprintf_chk.c" -o "$x/fprintf_chk.o"
    cp "$x/usr/lib/llvm-14/lib/libunwind.a" "$sc/libunwind.a"
    chmod u+w "$sc/libunwind.a"
    aarch64-linux-gnu-ar rs "$sc/libunwind.a" "$x/fprintf_chk.o" 2>/dev/null
    touch "$sc/.complete"
    rm -rf "$x" "$debs"
    MUSL_SELF_CONTAINED="$sc"; export MUSL_SELF_CONTAINED
}

# Environment for building aarch64-unknown-linux-musl with the sysroot above
# (after use_debian_rust): std from source, gcc's cross linker, musl's libc.a.
use_musl_env() {
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C target-feature=+crt-static -C link-self-contained=yes"
    export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
    export AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar
    # Same as -Zbuild-std=std,panic_abort, for cargo commands we do not spell.
    export CARGO_UNSTABLE_BUILD_STD=std,panic_abort
}

# Size of a file in bytes.
file_size() { stat -c %s "$1"; }
