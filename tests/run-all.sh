#!/usr/bin/env bash
# Runs every test of dyspatcher on a fresh Debian machine, installing what it needs first:
#   1. the Rust unit, integration and documentation tests (cargo test)
#   2. the web client in a real headless Chromium (tests/browser, Playwright)
#   3. the packaging checks: Android type-check, static aarch64 build, qemu smoke test
#
#   bash tests/run-all.sh            everything
#   SKIP_PACKAGING=1 bash tests/run-all.sh   steps 1 and 2 only
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need=()
command -v openssl >/dev/null || need+=(openssl)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

echo "== Rust tests"
cargo build --quiet
cargo test --quiet

echo "== browser tests"
(
  cd tests/browser
  npm ci --no-audit --no-fund --loglevel=error
  DYSPATCHER_BIN="$PWD/../../target/debug/dyspatcher" node --test
)

if [ -z "${SKIP_PACKAGING:-}" ]; then
  echo "== packaging checks"
  bash packaging/ci.sh
fi
echo "== all tests passed"
