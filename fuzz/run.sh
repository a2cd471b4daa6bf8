#!/usr/bin/env bash
# Runs every fuzz target for the given number of seconds (default 60) each.
#   fuzz/run.sh 600
# Needs `cargo install cargo-fuzz`. `-s none`: no sanitizer, so it runs on the stable
# toolchain (netpeer-proto forbids unsafe code; what we look for is panics, overflows
# in debug assertions, hangs and memory blow-ups, which libFuzzer catches itself).
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
for target in decoder machine handshake; do
  mkdir -p "corpus/$target"
  cargo fuzz run -s none --debug-assertions "$target" "corpus/$target" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1
done
