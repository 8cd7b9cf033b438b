#!/usr/bin/env bash
# Batched commits against one commit per file, in one run: vxd indexes N small
# distinct pictures with the keyframes plugin only (so the commit is a large
# part of each file's cost), once with commit_batch = 1 and once with the
# default, alternating ROUNDS times. Prints each time and the ratio of the
# medians. Build first: cargo build --release --workspace.
# Usage: bench/commits.sh [N=300] [ROUNDS=3]
set -euo pipefail
N="${1:-300}"; ROUNDS="${2:-3}"
BIN="$(cd "$(dirname "$0")/.." && pwd)/target/release"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/media"
# testsrc draws a frame counter, so every picture is distinct content.
ffmpeg -nostdin -v error -f lavfi -i "testsrc=size=96x64:rate=25" -frames:v "$N" "$WORK/media/pic%04d.bmp"

# Seconds from vxd's start until it is idle with all N files indexed.
index_once() {
  local batch="$1" dir; dir="$(mktemp -d -p "$WORK")"
  cat > "$dir/vxd.toml" <<TOML
watch = ["$WORK/media"]
state_dir = "$dir/state"
cache_dir = "$dir/cache"
socket = "$dir/vxd.sock"
plugins = ["keyframes"]
commit_batch = $batch
TOML
  local start; start=$(date +%s.%N)
  "$BIN/vxd" --config "$dir/vxd.toml" 2>"$dir/log" &
  local pid=$!
  until [ -S "$dir/vxd.sock" ]; do sleep 0.02; done
  "$BIN/vxctl" --socket "$dir/vxd.sock" wait --timeout 600 >/dev/null
  local end; end=$(date +%s.%N)
  local indexed; indexed=$("$BIN/vxctl" --socket "$dir/vxd.sock" status --json \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["files"]["indexed"])')
  kill "$pid"; wait "$pid" || true
  [ "$indexed" = "$N" ] || { echo "only $indexed of $N indexed (batch $batch)" >&2; exit 1; }
  echo "$end - $start" | bc
}

per_file=(); batched=()
for _ in $(seq "$ROUNDS"); do
  per_file+=("$(index_once 1)")
  batched+=("$(index_once 64)")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
a=$(median "${per_file[@]}"); b=$(median "${batched[@]}")
echo "$N pictures, keyframes only, $ROUNDS rounds (s): commit per file ${per_file[*]}; batched ${batched[*]}"
printf 'median: commit per file %.2f s, batched %.2f s: batched is %.2fx faster\n' "$a" "$b" "$(echo "$a / $b" | bc -l)"
