#!/usr/bin/env bash
# Boots a real systemd (Debian 12 in systemd-nspawn, private network: only its
# own loopback) with packaging/dyspatcher.service enabled, all its sandboxing
# on, and checks inside the container that:
#   - the service starts (ExecStartPre makes the key, DynamicUser state dir),
#   - GET http://127.0.0.1:8080/ answers 200,
#   - after the main process is killed (SIGKILL), Restart=on-failure brings
#     it back with a new transcript,
#   - `systemctl stop` ends it cleanly,
# and prints `systemd-analyze security`'s verdict. Not part of ci.sh (it
# debootstraps a system once, ~250 MB, cached in the packaging cache).
#
#   bash packaging/test-systemd-boot.sh [DYSPATCHER_BINARY]
# The binary defaults to the x86_64 release build (target/release/dyspatcher).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

BIN="${1:-${CARGO_TARGET_DIR:-$REPO_DIR/target}/release/dyspatcher}"
[ -x "$BIN" ] || die "no binary at $BIN (cargo build --release first)"
ensure_apt systemd-container debootstrap

base="$PKG_CACHE/nspawn-bookworm.tar"
if [ ! -f "$base" ]; then
    log "debootstrap a minimal Debian 12 with systemd (once; cached in $base)"
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/dyspatcher-debootstrap.XXXXXX")"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,openssl,curl,ca-certificates \
        bookworm "$tmp/rootfs" http://deb.debian.org/debian >"$tmp/debootstrap.log" 2>&1 \
        || { tail -n 20 "$tmp/debootstrap.log" >&2; rm -rf "$tmp"; die "debootstrap failed"; }
    tar -C "$tmp/rootfs" -cf "$base.new" . && mv "$base.new" "$base"
    rm -rf "$tmp"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/dyspatcher-boot.XXXXXX")"
trap 'rm -rf "$work"' EXIT
R="$work/rootfs"
mkdir -p "$R"
tar -C "$R" -xf "$base"
install -m 755 "$BIN" "$R/usr/local/bin/dyspatcher"
install -m 644 "$PKG_DIR/dyspatcher.service" "$R/etc/systemd/system/dyspatcher.service"

# The check runs inside the container once dyspatcher.service has started,
# writes its findings to /root/result, and powers the container off.
cat >"$R/usr/local/sbin/dyspatcher-check" <<'EOF'
#!/bin/sh
out=/root/result
say() { echo "$*" >>"$out"; }
get() { curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/; }
wait_200() { for _ in $(seq 120); do [ "$(get)" = 200 ] && return 0; sleep 0.5; done; return 1; }
state=/var/lib/private/dyspatcher
if wait_200; then say "ok: GET / -> 200"; else say "FAIL: GET / never answered 200"; fi
[ -s $state/admin.pem ] && say "ok: admin.pem made (mode $(stat -c '%a, uid %u' $state/admin.pem))" || say "FAIL: no admin.pem"
pid1=$(systemctl show -p MainPID --value dyspatcher)
say "ok: main process $pid1 is $(readlink /proc/$pid1/exe), uid $(stat -c %u /proc/$pid1)"
systemctl kill -s KILL dyspatcher
sleep 7    # RestartSec=5s
if wait_200; then
    pid2=$(systemctl show -p MainPID --value dyspatcher)
    [ "$pid2" != "$pid1" ] && say "ok: restarted after SIGKILL (pid $pid1 -> $pid2)" || say "FAIL: not restarted"
else
    say "FAIL: not back after SIGKILL"
fi
n=$(ls $state/transcripts | wc -l)
[ "$n" -eq 2 ] && say "ok: two transcripts: $(ls $state/transcripts | tr '\n' ' ')" || say "FAIL: $n transcripts"
systemctl stop dyspatcher
say "ok: stopped: $(systemctl show -p ActiveState -p Result dyspatcher | tr '\n' ' ')"
say "security: $(systemd-analyze security dyspatcher.service 2>/dev/null | tail -n 1)"
journalctl -u dyspatcher --no-pager >/root/journal 2>&1
say "done"
systemctl poweroff
EOF
chmod 755 "$R/usr/local/sbin/dyspatcher-check"
cat >"$R/etc/systemd/system/dyspatcher-check.service" <<'EOF'
[Unit]
Description=Check dyspatcher.service
After=dyspatcher.service
Wants=dyspatcher.service
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/dyspatcher-check
[Install]
WantedBy=multi-user.target
EOF
chroot "$R" systemctl enable dyspatcher.service dyspatcher-check.service >/dev/null 2>&1

log "booting the container (systemd-nspawn)"
t0=$SECONDS
set +e
# --register=no --keep-unit: no systemd or D-Bus needed on this host.
timeout 300 systemd-nspawn -q -D "$R" --private-network --register=no --keep-unit -b \
    </dev/null >"$work/boot.log" 2>&1
set -e
[ -f "$R/root/result" ] || { tail -n 30 "$work/boot.log" >&2; die "the check did not run"; }
sed 's/^/systemd-boot: /' "$R/root/result"
grep -q '^done' "$R/root/result" || die "the check did not finish"
if grep -q '^FAIL' "$R/root/result"; then
    sed 's/^/journal: /' "$R/root/journal" >&2
    die "the service failed in a booted systemd"
fi
echo "systemd boot test passed in $((SECONDS - t0)) s"
