#!/usr/bin/env bash
# Fuzzes the decoders that face untrusted bytes, each for SECONDS (default
# 60): the wire frame decoder, the control-protocol decoder, the check of a
# host's reply, and FFmpeg through vx-media. libFuzzer (libfuzzer-sys) with
# coverage instrumentation works on the stable toolchain: only address
# sanitizing would need nightly, so it is left out.
# New inputs go to fuzz/corpus/TARGET (not committed); crashes to
# fuzz/artifacts/TARGET. Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECS="${1:-60}"
# make_seeds is an ordinary program; the targets need the flags.
[ -d seeds/wire_frame ] || cargo run --release --bin make_seeds -- seeds
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# An explicit target keeps the flags off build scripts and proc macros.
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
TARGETS=(wire_frame control_request host_reply media_decode)
cargo build --release --target "$TRIPLE" "${TARGETS[@]/#/--bin=}"
BIN="target/$TRIPLE/release"
for target in "${TARGETS[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  echo "==> fuzzing $target for $SECS s" >&2
  "$BIN/$target" -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=20 \
    -artifact_prefix="artifacts/$target/" -print_final_stats=1 "corpus/$target" "seeds/$target" 2>&1 \
    | grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss|==[0-9]+==|SUMMARY|.*panicked)" || true
  if ls "artifacts/$target"/crash-* >/dev/null 2>&1; then
    echo "fuzz: $target found a crash: $(ls artifacts/$target/crash-*)" >&2
    exit 1
  fi
done
