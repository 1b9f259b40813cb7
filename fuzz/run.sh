#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 30) on its committed corpus, failing on any crash,
# timeout or out-of-memory. Installs the nightly toolchain and cargo-fuzz first if missing.
#
#   bash fuzz/run.sh            30 s per target (what CI runs)
#   bash fuzz/run.sh 600        10 minutes per target
#
# New inputs found go to a scratch directory, not to the committed corpus; a crash is written to
# fuzz/artifacts/TARGET/ (replay it with `cargo +nightly fuzz run TARGET FILE`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs=${1:-30}
targets=(ws_frames http_head client_msg allowlist_csv pem_keys session_open)

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

cargo +nightly fuzz build
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
  echo "== fuzz $t (${secs} s)"
  mkdir -p "$scratch/$t"
  # -timeout: one input taking over 10 s is a finding; -rss_limit_mb: so is over 2 GiB.
  extra=()
  case $t in
    client_msg | session_open) extra=(-dict=fuzz/dict/json.dict) ;;
    # Longer than MAX_HEAD (8 KiB), so that a head too large is reached.
    http_head) extra=(-max_len=12288) ;;
  esac
  if ! cargo +nightly fuzz run "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${extra[@]}" \
    >"$scratch/$t.log" 2>&1; then
    tail -n 60 "$scratch/$t.log"
    echo "fuzz target $t failed: see fuzz/artifacts/$t/"
    exit 1
  fi
  grep -E '^(Done|stat::average_exec_per_sec)' "$scratch/$t.log"
done
