#!/usr/bin/env bash
# Measures vxd as a person lives with it, in one run on this machine:
#  - first indexing of N distinct images, then the resume after a restart on
#    the same, unchanged folder (ratio: resume time / first indexing time);
#  - vxd's CPU use and RSS while idle, and its plugin host's RSS.
# Usage: scripts/measure-daemon.sh [N=1000] [IDLE_SECONDS=20]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000}"; IDLE="${2:-20}"
BIN="$PWD/target/release"
[ -x "$BIN/vxd" ] || cargo build --release --workspace
WORK="$(mktemp -d)"; trap 'kill $VXD 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/media"
python3 - "$WORK/media" "$N" <<'PY'
import struct, sys
d, n = sys.argv[1], int(sys.argv[2])
w, h = 96, 64
for i in range(n):
    px = bytearray()
    for y in range(h):
        for x in range(w):
            px += bytes(((x * 2 + i * 7) & 255, (y * 3 + i * 13) & 255, ((x + y) ^ i) & 255))
    hdr = b"BM" + struct.pack("<IHHI", 54 + len(px), 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(px), 0, 0, 0, 0)
    px[0:3] = bytes((i & 255, (i >> 8) & 255, 77))  # every file distinct
    open(f"{d}/img{i:05}.bmp", "wb").write(hdr + px)
PY
cat > "$WORK/vxd.toml" <<TOML
watch = ["$WORK/media"]
state_dir = "$WORK/state"
cache_dir = "$WORK/cache"
socket = "$WORK/run/vxd.sock"
TOML
ctl() { "$BIN/vxctl" --socket "$WORK/run/vxd.sock" "$@"; }
start() { "$BIN/vxd" --config "$WORK/vxd.toml" 2>>"$WORK/vxd.log" & VXD=$!; until [ -S "$WORK/run/vxd.sock" ]; do sleep 0.02; done; }
now() { date +%s.%N; }

t0=$(now); start; ctl wait; t1=$(now)
first=$(echo "$t1 - $t0" | bc -l)
jobs1=$(ctl status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["plugin_jobs"])')
kill -TERM $VXD; wait $VXD || true
t0=$(now); start; ctl wait; t1=$(now)
resume=$(echo "$t1 - $t0" | bc -l)
jobs2=$(ctl status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["plugin_jobs"])')

host=$(ctl status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["plugins"][0]["pid"])')
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
c0=$(ticks $VXD); sleep "$IDLE"; c1=$(ticks $VXD)
hz=$(getconf CLK_TCK)
idle_cpu=$(echo "100 * ($c1 - $c0) / $hz / $IDLE" | bc -l)

printf 'files                         %d\n' "$N"
printf 'first indexing                %.2f s (%d plugin jobs)\n' "$first" "$jobs1"
printf 'resume after restart          %.2f s (%d plugin jobs)\n' "$resume" "$jobs2"
printf 'resume / first indexing       %.3f\n' "$(echo "$resume / $first" | bc -l)"
printf 'vxd idle CPU over %ss         %.3f %% of one core\n' "$IDLE" "$idle_cpu"
printf 'vxd idle RSS                  %.1f MiB\n' "$(echo "$(rss $VXD) / 1024" | bc -l)"
printf 'keyframes host RSS            %.1f MiB\n' "$(echo "$(rss $host) / 1024" | bc -l)"
