#!/usr/bin/env bash
# Search at 10k, 100k and 1M segments: query latency p50/p99 per mode (text,
# semantic, hybrid; the query's embedding by the warm host included), index
# and vector size on disk, vxd's memory, and the recall@10 of the two-stage
# vector search against scoring every vector. See
# tests/examples/search-scale.rs for how the index is made.
# Usage: scripts/measure-search.sh [SEGMENTS…]   (after scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p vxd -p vx-plugin-host -p vx-decoder
cargo build --release -p vx-e2e --example search-scale
SIZES=("${@:-10000 100000 1000000}")
for n in ${SIZES[@]}; do
  WORK="$(mktemp -d)"
  target/release/examples/search-scale "$n" "$WORK/scale"
  rm -rf "$WORK"
done
