#!/usr/bin/env bash
# Runs termux/build.sh's steps and the termux-services scripts for real, in a
# fake Termux prefix on this machine:
#
#  1. termux_step_get_source / _make / _make_install / _post_make_install,
#     as termux-packages would call them, with termux_setup_rust standing in
#     for the NDK toolchain: it builds the static aarch64 musl binary
#     (the Android build itself is type-checked by check-android.sh);
#  2. the installed service under runit (runsv, sv, svlogd from Debian): it
#     must make the admin key, start in the foreground, serve the page, log
#     through log/run, take a new transcript on every start, and stop on
#     `sv down`. The aarch64 binary runs through qemu-aarch64-static.
#
#   bash packaging/test-termux.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

TIMEOUT="${TERMUX_TEST_TIMEOUT:-120}"
ensure_host_tools
ensure_apt runit openssl curl
ensure_debian_rust
ensure_musl_sysroot

work="$(mktemp -d "${TMPDIR:-/tmp}/dyspatcher-termux.XXXXXX")"
runsv_pid=""
cleanup() {
    local rc=$?
    if [ -n "$runsv_pid" ] && kill -0 "$runsv_pid" 2>/dev/null; then
        SVDIR="$work/usr/var/service" sv force-stop dyspatcher >/dev/null 2>&1 || true
        SVDIR="$work/usr/var/service" sv exit dyspatcher >/dev/null 2>&1 || true
        sleep 1
        kill "$runsv_pid" 2>/dev/null || true
        wait "$runsv_pid" 2>/dev/null || true
    fi
    if [ $rc -ne 0 ]; then
        echo "---- termux test failed; service log ----" >&2
        cat "$work/usr/var/log/sv/dyspatcher/current" 2>/dev/null | tail -n 40 >&2 || true
    fi
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "termux: FAIL: $*" >&2; exit 1; }
ok() { echo "termux: ok: $*"; }

# --- 1. the package recipe ---------------------------------------------------
export TERMUX_PREFIX="$work/usr"
export TERMUX_ANDROID_HOME="$work/home"
export TERMUX_PKG_BUILDER_DIR="$REPO_DIR/termux"
export TERMUX_PKG_SRCDIR="$work/src"
TERMUX_PKG_MAKE_PROCESSES="$(nproc)"
export TERMUX_PKG_MAKE_PROCESSES
mkdir -p "$TERMUX_PREFIX" "$TERMUX_ANDROID_HOME"

# Not `( ... ) || fail`: that would switch set -e off inside.
set +e
(
    set -euo pipefail
    termux_error_exit() { echo "termux_error_exit: $*" >&2; exit 1; }
    # Stands in for termux-packages' termux_setup_rust (NDK + rustup target).
    termux_setup_rust() {
        CARGO_TARGET_NAME=aarch64-unknown-linux-musl
        use_debian_rust
        use_musl_env
        # Reuse build-musl.sh's target folder: only the crate itself rebuilds.
        export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_MUSL:-$REPO_DIR/target-aarch64-musl}"
    }
    # shellcheck source=../termux/build.sh
    source "$TERMUX_PKG_BUILDER_DIR/build.sh"
    [ -n "$TERMUX_PKG_HOMEPAGE" ] && [ -n "$TERMUX_PKG_DESCRIPTION" ] && [ -n "$TERMUX_PKG_LICENSE" ] \
        && [ -n "$TERMUX_PKG_MAINTAINER" ] && [ -n "$TERMUX_PKG_VERSION" ] && [ "$TERMUX_PKG_BUILD_IN_SRC" = true ] \
        || termux_error_exit "build.sh lacks a required TERMUX_PKG_ field"
    grep -q "^version = \"$TERMUX_PKG_VERSION\"" "$REPO_DIR/Cargo.toml" \
        || termux_error_exit "TERMUX_PKG_VERSION=$TERMUX_PKG_VERSION differs from Cargo.toml's version"
    termux_step_get_source
    cd "$TERMUX_PKG_SRCDIR"
    [ -f Cargo.toml ] && [ -f src/main.rs ] || termux_error_exit "the source copy has no Cargo.toml/src"
    termux_step_make >&2
    termux_step_make_install
    termux_step_post_make_install
)
rc=$?
set -e
[ $rc -eq 0 ] || fail "termux/build.sh steps"

bin="$TERMUX_PREFIX/bin/dyspatcher"
sv="$TERMUX_PREFIX/var/service/dyspatcher"
[ -x "$bin" ] || fail "no $bin"
readelf -hW "$bin" | grep -q AArch64 || fail "$bin is not aarch64"
[ -x "$sv/run" ] && [ -x "$sv/log/run" ] && [ -f "$sv/down" ] || fail "service files missing in $sv"
[ "$(head -n1 "$sv/run")" = "#!$TERMUX_PREFIX/bin/sh" ] || fail "run's #! line was not set to the prefix"
[ "$(head -n1 "$sv/log/run")" = "#!$TERMUX_PREFIX/bin/sh" ] || fail "log/run's #! line was not set to the prefix"
grep -q '/data/data/com.termux' "$sv/run" "$sv/log/run" && fail "a Termux path was left unreplaced"
ok "build.sh: source copied, built, installed bin/dyspatcher ($(file_size "$bin") bytes) and var/service/dyspatcher/{run,log/run,down}"

# --- 2. the service under runit ---------------------------------------------
# What a Termux prefix provides: sh, termux-services' svlogger; the aarch64
# binary runs through qemu (a wrapper that execs, so runit still supervises
# the server process itself).
ln -s /bin/sh "$TERMUX_PREFIX/bin/sh"
mkdir -p "$TERMUX_PREFIX/libexec" "$TERMUX_PREFIX/share/termux-services" "$TERMUX_PREFIX/var/log"
mv "$bin" "$TERMUX_PREFIX/libexec/dyspatcher.aarch64"
printf '#!/bin/sh\nexec qemu-aarch64-static "%s" "$@"\n' "$TERMUX_PREFIX/libexec/dyspatcher.aarch64" >"$bin"
chmod 755 "$bin"
cat >"$TERMUX_PREFIX/share/termux-services/svlogger" <<'EOF'
#!/bin/sh
# As termux-services' svlogger: log to $LOGDIR/sv/<service>/ with svlogd.
dir=${PWD%/*}
service=${dir##*/}
mkdir -p "$LOGDIR/sv/$service"
exec svlogd -tt "$LOGDIR/sv/$service"
EOF
chmod 755 "$TERMUX_PREFIX/share/termux-services/svlogger"

state="$TERMUX_ANDROID_HOME/.dyspatcher"
mkdir -p "$state"
printf '# test options\n-i 127.0.0.1\n-p 0\n' >"$state/options"

export SVDIR="$TERMUX_PREFIX/var/service"
logfile="$TERMUX_PREFIX/var/log/sv/dyspatcher/current"
env -i HOME="$TERMUX_ANDROID_HOME" PREFIX="$TERMUX_PREFIX" LOGDIR="$TERMUX_PREFIX/var/log" \
    SVDIR="$SVDIR" PATH="$TERMUX_PREFIX/bin:/usr/bin:/bin" \
    runsv "$sv" </dev/null >/dev/null 2>&1 &
runsv_pid=$!
sleep 1
sv status dyspatcher | grep -q '^down:' || fail "the service should start disabled (down file): $(sv status dyspatcher)"
ok "runsv runs; the service is down until enabled"

# wait_listening N : wait for the N-th listening line in the service log.
wait_listening() {
    local n="$1" t=0 c
    while :; do
        c="$(grep -c 'listening on http://127\.0\.0\.1:[0-9]*/' "$logfile" 2>/dev/null || true)"
        [ "${c:-0}" -ge "$n" ] && break
        [ $t -ge $((TIMEOUT * 5)) ] && fail "no listening line #$n in $logfile within $TIMEOUT s"
        sleep 0.2; t=$((t + 1))
    done
    grep -o 'listening on http://127\.0\.0\.1:[0-9]*/' "$logfile" | sed -n "${n}p" | sed -E 's/.*:([0-9]+)\/$/\1/'
}

t0=$SECONDS
sv up dyspatcher >/dev/null
port="$(wait_listening 1)"
ok "sv up: the server listens on 127.0.0.1:$port ($((SECONDS - t0)) s, admin key made on first start)"
[ -s "$state/admin.pem" ] || fail "no admin key at $state/admin.pem"
[ "$(stat -c %a "$state/admin.pem")" = 600 ] || fail "admin.pem mode is $(stat -c %a "$state/admin.pem"), not 600"
openssl pkey -in "$state/admin.pem" -noout 2>/dev/null || fail "admin.pem is not a private key"
code="$(curl -sS --max-time 30 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/")" || fail "GET / failed"
[ "$code" = 200 ] || fail "GET / answered $code"
ok "GET / -> 200 through the service"
pid1="$(sv status dyspatcher | sed -nE 's/^run: [^(]*\(pid ([0-9]+)\).*/\1/p')"
[ -n "$pid1" ] || fail "sv status shows no pid: $(sv status dyspatcher)"
grep -q 'qemu-aarch64' "/proc/$pid1/cmdline" || fail "runit's child is not the server itself (pid $pid1)"
ok "runit supervises the server process itself (pid $pid1, no shell in between)"

sv restart dyspatcher >/dev/null
wait_listening 2 >/dev/null
ok "sv restart: the server came back"
mapfile -t transcripts < <(grep -o 'transcript: .*' "$logfile" | sed 's/^transcript: //')
[ "${#transcripts[@]}" -ge 2 ] || fail "expected two 'transcript:' lines, got ${#transcripts[@]}"
[ "${transcripts[0]}" != "${transcripts[1]}" ] || fail "the same transcript file was used twice"
for f in "${transcripts[@]:0:2}"; do [ -e "$f" ] || fail "transcript $f was not created"; done
ok "a new transcript each start: $(basename "${transcripts[0]}"), $(basename "${transcripts[1]}")"

pid2="$(sv status dyspatcher | sed -nE 's/^run: [^(]*\(pid ([0-9]+)\).*/\1/p')"
sv down dyspatcher >/dev/null
for _ in $(seq 75); do kill -0 "$pid2" 2>/dev/null || break; sleep 0.2; done
kill -0 "$pid2" 2>/dev/null && fail "the server (pid $pid2) is still running after sv down"
sv status dyspatcher | grep -q '^down:' || fail "sv status after sv down: $(sv status dyspatcher)"
ok "sv down: the server stopped"
sv exit dyspatcher >/dev/null 2>&1 || true
wait "$runsv_pid" 2>/dev/null || true
runsv_pid=""
echo "termux test passed: build.sh steps, and the service under runit (key, foreground, log, transcripts, restart, stop)"
