#!/usr/bin/env bash
# (c) Smoke test of the static aarch64 binary under qemu-aarch64-static.
#
# The server (aarch64, emulated) must start, serve the page (GET / -> 200,
# HTML), let two terminal clients join, and carry direct messages both ways
# and one @all message between them. Everything listens on 127.0.0.1 only.
#
#   bash packaging/smoke-test.sh [AARCH64_BINARY]
#
# Both clients run from the same aarch64 binary under qemu, unless
# SMOKE_HOST_CLIENT=/path/to/host/dyspatcher: then alice uses that build.
# SMOKE_TIMEOUT (seconds, default 90) bounds each wait; SMOKE_SHOW_LOGS=1
# prints the server's and clients' output at the end even on success.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

BIN="${1:-${CARGO_TARGET_DIR_MUSL:-$REPO_DIR/target-aarch64-musl}/aarch64-unknown-linux-musl/release/dyspatcher}"
[ -x "$BIN" ] || die "no aarch64 binary at $BIN (run packaging/build-musl.sh first)"
TIMEOUT="${SMOKE_TIMEOUT:-90}"

ensure_apt qemu-user-static openssl curl
QEMU="$(command -v qemu-aarch64-static)" || die "qemu-aarch64-static not found"

# alice's client: the aarch64 binary under qemu, or SMOKE_HOST_CLIENT (a host
# build) when set; carol's: always the aarch64 binary under qemu.
if [ -n "${SMOKE_HOST_CLIENT:-}" ]; then
    [ -x "$SMOKE_HOST_CLIENT" ] || die "SMOKE_HOST_CLIENT=$SMOKE_HOST_CLIENT is not an executable"
    alice_client=("$SMOKE_HOST_CLIENT")
else
    alice_client=("$QEMU" "$BIN")
fi
carol_client=("$QEMU" "$BIN")

work="$(mktemp -d "${TMPDIR:-/tmp}/dyspatcher-smoke.XXXXXX")"
pids=()
fds=()
cleanup() {
    local rc=$? p fd
    for fd in "${fds[@]}"; do { exec {fd}>&-; } 2>/dev/null || true; done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ $rc -ne 0 ] || [ -n "${SMOKE_SHOW_LOGS:-}" ]; then
        [ $rc -ne 0 ] && echo "---- smoke test failed; logs from $work ----" >&2
        local f
        for f in "$work"/*.log; do
            [ -f "$f" ] || continue
            echo "---- $(basename "$f") (last 40 lines) ----" >&2
            tail -n 40 "$f" >&2
        done
    fi
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "smoke: FAIL: $*" >&2; exit 1; }
ok() { echo "smoke: ok: $*"; }

# wait_for FILE REGEX PID WHAT : wait until FILE matches REGEX, PID alive.
wait_for() {
    local file="$1" re="$2" pid="$3" what="$4" t=0
    while ! grep -Eq -- "$re" "$file" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || fail "$what: the process exited early"
        [ $t -ge $((TIMEOUT * 5)) ] && fail "$what: not seen within $TIMEOUT s"
        sleep 0.2; t=$((t + 1))
    done
}

token="$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"

log "keys (2048-bit, openssl)"
for k in admin alice carol; do
    openssl genrsa -out "$work/$k.pem" 2048 2>/dev/null || fail "openssl genrsa"
done

# --- the server, in the foreground as under runit or systemd -------------
log "starting the server under qemu: $BIN"
t0=$SECONDS
"$QEMU" "$BIN" -i 127.0.0.1 -p 0 --admin-private-key "$work/admin.pem" \
    --transcription "$work/transcript.txt" </dev/null >"$work/server.log" 2>&1 &
srv=$!
pids+=("$srv")
wait_for "$work/server.log" 'http://127\.0\.0\.1:[0-9]+/' "$srv" "server listening line"
port="$(grep -Eo 'http://127\.0\.0\.1:[0-9]+/' "$work/server.log" | head -n1 | sed -E 's/.*:([0-9]+)\/$/\1/')"
[ -n "$port" ] && [ "$port" != 0 ] || fail "no port in the listening line"
ok "server listens on 127.0.0.1:$port (started in $((SECONDS - t0)) s under qemu)"

# --- the page ---------------------------------------------------------------
out="$(curl -sS --max-time 30 -o "$work/page.html" -w '%{http_code} %{content_type}' "http://127.0.0.1:$port/")" \
    || fail "GET / failed"
code="${out%% *}"; ctype="${out#* }"
[ "$code" = 200 ] || fail "GET / answered $code"
case "$ctype" in text/html*) ;; *) fail "GET / content type is '$ctype'";; esac
grep -qi '<html' "$work/page.html" || fail "GET / did not return an HTML page"
ok "GET / -> 200 $ctype, $(file_size "$work/page.html") bytes"

# --- two terminal clients ---------------------------------------------------
# start_client NAME : runs `dyspatcher connect` with stdin on a FIFO we hold.
start_client() {
    local name="$1" fd
    local -n cmd="${name}_client"
    mkfifo "$work/$name.in"
    "${cmd[@]}" connect "ws://127.0.0.1:$port/ws" --name "$name" --key "$work/$name.pem" \
        <"$work/$name.in" >"$work/$name.log" 2>&1 &
    pids+=("$!")
    eval "${name}_pid=$!"
    exec {fd}>"$work/$name.in"
    fds+=("$fd")
    eval "${name}_fd=$fd"
}
# say NAME LINE : type LINE into NAME's client.
say() { local fd; eval "fd=\$${1}_fd"; printf '%s\n' "$2" >&"$fd"; }

# deliver FROM TO_LINE_PREFIX RECEIVER TEXT WHAT: send until RECEIVER prints TEXT.
# The first sends may come before the sender has learned of the receiver;
# resending after a pause covers that without knowing the client's wording.
deliver() {
    local from="$1" prefix="$2" to="$3" text="$4" what="$5" pid t=0 n=0
    eval "pid=\$${to}_pid"
    # The receiver's line must carry the text and name the sender.
    while ! grep -F -- "$text" "$work/$to.log" 2>/dev/null | grep -qF -- "$from"; do
        if [ $((t % 25)) -eq 0 ]; then
            n=$((n + 1))
            say "$from" "$prefix $text"
        fi
        kill -0 "$pid" 2>/dev/null || fail "$what: $to's client exited"
        [ $t -ge $((TIMEOUT * 5)) ] && fail "$what: '$text' not received within $TIMEOUT s ($n sends)"
        sleep 0.2; t=$((t + 1))
    done
    ok "$what (after $n send(s), $((t / 5)) s)"
}

log "clients: alice: ${alice_client[*]}; carol: ${carol_client[*]}"
start_client alice
start_client carol
# Joining costs each client a key check and a signature under emulation; the
# join is proven by the deliveries below, which retry until it has happened.
for _ in $(seq 100); do grep -q 'carol' "$work/alice.log" && break; sleep 0.2; done
if grep -q 'carol' "$work/alice.log"; then ok "alice saw carol join"; fi

deliver alice "@carol" carol "direct-a2c-$token" "direct alice -> carol"
deliver carol "@alice" alice "direct-c2a-$token" "direct carol -> alice"
deliver alice "@all" carol "all-from-alice-$token" "@all alice -> carol"

# Direct messages between users must never reach the server in the clear
# (the admin's console does show @all messages: the admin is a member).
for t in "direct-a2c-$token" "direct-c2a-$token"; do
    if grep -Fq -- "$t" "$work/server.log" "$work/transcript.txt" 2>/dev/null; then
        fail "a direct message between users shows on the server ($t)"
    fi
done
ok "no direct message text on the server's console or transcript"

# --- orderly end ------------------------------------------------------------
say alice "/quit"; say carol "/quit"
for who in alice carol; do
    eval "pid=\$${who}_pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && fail "$who's client did not quit on /quit"
done
ok "clients left with /quit"

kill -TERM "$srv"
for _ in $(seq 75); do kill -0 "$srv" 2>/dev/null || break; sleep 0.2; done
kill -0 "$srv" 2>/dev/null && fail "the server did not stop within 15 s of SIGTERM"
set +e; wait "$srv"; src=$?; set -e
ok "server stopped on SIGTERM (exit status $src)"

echo "smoke test passed: aarch64 server under qemu served the page and relayed a join, direct messages both ways and an @all"
