#!/usr/bin/env bash
# Checks packaging/dyspatcher.service:
#  1. `systemd-analyze verify` accepts it;
#  2. its ExecStartPre= and ExecStart= command lines, unescaped as systemd
#     does ($$ -> $, %% -> %) and run with the environment systemd gives
#     them (STATE_DIRECTORY, UMask=0077, the EnvironmentFile variables), make
#     the admin key once, start the server in the foreground, serve the page,
#     write a transcript, and stop on SIGTERM.
# (The sandboxing options themselves need a booted systemd to try.)
#
#   bash packaging/test-systemd.sh [DYSPATCHER_BINARY]
# The binary defaults to the x86_64 release build (target/release/dyspatcher).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

UNIT="$PKG_DIR/dyspatcher.service"
BIN="${1:-${CARGO_TARGET_DIR:-$REPO_DIR/target}/release/dyspatcher}"
[ -x "$BIN" ] || die "no binary at $BIN (cargo build --release first)"
case "$BIN" in /*) ;; *) BIN="$PWD/$BIN" ;; esac
TIMEOUT="${SYSTEMD_TEST_TIMEOUT:-60}"
ensure_apt openssl curl python3

work="$(mktemp -d "${TMPDIR:-/tmp}/dyspatcher-systemd.XXXXXX")"
srv=""
cleanup() {
    local rc=$?
    [ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
    if [ $rc -ne 0 ] && [ -f "$work/server.log" ]; then
        echo "---- server output ----" >&2; tail -n 40 "$work/server.log" >&2
    fi
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "systemd: FAIL: $*" >&2; exit 1; }
ok() { echo "systemd: ok: $*"; }

# --- 1. systemd's own check ---------------------------------------------------
if command -v systemd-analyze >/dev/null; then
    out="$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify "$UNIT" 2>&1)" || fail "systemd-analyze verify: $out"
    # verify also warns about things it cannot see on this machine; show them.
    [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/systemd: note: /'
    ok "systemd-analyze verify accepts the unit"
else
    echo "systemd: note: systemd-analyze not found; skipping verify"
fi

# --- 2. the command lines -----------------------------------------------------
# unit_cmds KEY : each KEY= command line, as NUL-separated argv, one per line
# of output (base64 of the NUL-joined words).
unit_cmds() {
    python3 - "$UNIT" "$1" <<'EOF'
import base64, re, shlex, sys
path, key = sys.argv[1], sys.argv[2]
text = open(path).read().replace("\\\n", " ")   # continuation lines
for line in text.splitlines():
    m = re.match(r"\s*" + re.escape(key) + r"\s*=\s*(.*)$", line)
    if not m:
        continue
    cmd = m.group(1).lstrip("-@:+!")
    # systemd: "$$" is a literal "$", "%%" a literal "%"; other specifiers
    # and $VAR substitution are not used in these lines.
    if re.search(r"%[^%]", cmd.replace("%%", "")):
        sys.exit(f"unexpected specifier in {key}=: {cmd}")
    if re.search(r"(?<!\$)\$(?!\$)", cmd.replace("$$", "")):
        sys.exit(f"unescaped $ (systemd would expand it) in {key}=: {cmd}")
    cmd = cmd.replace("$$", "$").replace("%%", "%")
    argv = shlex.split(cmd)
    print(base64.b64encode("\0".join(argv).encode()).decode())
EOF
}

state="$work/var/lib/dyspatcher"
mkdir -p "$state"; chmod 700 "$state"
# exec_cmd B64 : replace this (sub)shell with one command line, as systemd
# would start it.
exec_cmd() {
    local -a argv
    mapfile -d '' -t argv < <(printf '%s' "$1" | base64 -d)
    cd "$state"
    umask 0077
    exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        STATE_DIRECTORY="$state" DYSPATCHER_BIN="$BIN" DYSPATCHER_OPTS="-i 127.0.0.1 -p 0" \
        "${argv[@]}"
}
run_cmd() { ( exec_cmd "$1" ); }

mapfile -t pre < <(unit_cmds ExecStartPre)
mapfile -t start < <(unit_cmds ExecStart)
[ "${#pre[@]}" -ge 1 ] || fail "no ExecStartPre= lines"
[ "${#start[@]}" -eq 1 ] || fail "expected one ExecStart= line, found ${#start[@]}"

t0=$SECONDS
for c in "${pre[@]}"; do run_cmd "$c" >"$work/pre.log" 2>&1 || { cat "$work/pre.log" >&2; fail "ExecStartPre failed"; }; done
[ -s "$state/admin.pem" ] || fail "ExecStartPre made no admin.pem"
[ "$(stat -c %a "$state/admin.pem")" = 600 ] || fail "admin.pem mode is $(stat -c %a "$state/admin.pem")"
[ -d "$state/transcripts" ] || fail "ExecStartPre made no transcripts/"
bits="$(openssl pkey -in "$state/admin.pem" -noout -text 2>/dev/null | sed -nE 's/.*Private-Key: \(([0-9]+) bit.*/\1/p')"
[ "$bits" = 4096 ] || fail "admin.pem is not a 4096-bit key ($bits)"
key_sum="$(sha256sum "$state/admin.pem")"
ok "ExecStartPre made a 4096-bit admin key (mode 600) and transcripts/ ($((SECONDS - t0)) s)"

( exec_cmd "${start[0]}" ) >"$work/server.log" 2>&1 &
srv=$!
t=0
until grep -Eq 'http://127\.0\.0\.1:[0-9]+/' "$work/server.log"; do
    kill -0 "$srv" 2>/dev/null || fail "ExecStart exited early"
    [ $t -ge $((TIMEOUT * 5)) ] && fail "no listening line within $TIMEOUT s"
    sleep 0.2; t=$((t + 1))
done
port="$(grep -Eo 'http://127\.0\.0\.1:[0-9]+/' "$work/server.log" | head -n1 | sed -E 's/.*:([0-9]+)\/$/\1/')"
code="$(curl -sS --max-time 30 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/")" || fail "GET / failed"
[ "$code" = 200 ] || fail "GET / answered $code"
ok "ExecStart: the server runs in the foreground on 127.0.0.1:$port, GET / -> 200"
n="$(find "$state/transcripts" -type f -name '*.txt' | wc -l)"
[ "$n" -eq 1 ] || fail "expected one transcript, found $n"
ok "transcript: $(basename "$(find "$state/transcripts" -type f -name '*.txt')")"
# ExecStart's sh must have exec'ed the server: the process systemd watches
# is the server itself, so SIGTERM reaches it.
[ "$(readlink "/proc/$srv/exe")" = "$(readlink -f "$BIN")" ] || fail "the main process is $(readlink "/proc/$srv/exe"), not the server"
ok "the main process is the server itself (sh exec'ed it)"
kill -TERM "$srv"
for _ in $(seq 75); do kill -0 "$srv" 2>/dev/null || break; sleep 0.2; done
kill -0 "$srv" 2>/dev/null && fail "the server did not stop within 15 s of SIGTERM"
set +e; wait "$srv"; st=$?; set -e
srv=""
ok "SIGTERM stopped the server (exit status $st)"

for c in "${pre[@]}"; do run_cmd "$c" >"$work/pre.log" 2>&1 || fail "ExecStartPre failed on the second start"; done
[ "$(sha256sum "$state/admin.pem")" = "$key_sum" ] || fail "the second start replaced the admin key"
ok "a second start keeps the admin key"
echo "systemd unit test passed"
