#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: setup, build, make a small demo
# folder, start vxd on it, wait until it is idle, then show status and search.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "==> building (release)" >&2
cargo build --release --workspace --locked
BIN="$PWD/target/release"
DEMO="$PWD/target/demo"
MEDIA="$DEMO/media"

echo "==> making demo media in $MEDIA" >&2
rm -rf "$DEMO"; mkdir -p "$MEDIA"
ff() { ffmpeg -nostdin -v error -y "$@"; }
# A 10 s video in three shots (test card, colour bars, cellular automaton)
# with a tone, a 5 s voice memo, and a photo.
ff -f lavfi -i "testsrc=size=1280x720:rate=25:duration=4" \
   -f lavfi -i "smptebars=size=1280x720:rate=25:duration=3" \
   -f lavfi -i "cellauto=size=1280x720:rate=25:rule=110" \
   -f lavfi -i "sine=frequency=440:duration=10" \
   -filter_complex "[2:v]trim=duration=3[c];[0:v][1:v][c]concat=n=3:v=1:a=0[v]" \
   -map "[v]" -map 3:a -t 10 -c:v libx264 -preset veryfast -pix_fmt yuv420p -c:a aac "$MEDIA/beach_walk.mp4"
ff -f lavfi -i "sine=frequency=300:duration=5" -c:a libmp3lame "$MEDIA/voice_memo.mp3"
ff -f lavfi -i "testsrc2=size=800x600" -frames:v 1 "$MEDIA/sunset_photo.jpg"

cat > "$DEMO/vxd.toml" <<TOML
watch = ["$MEDIA"]
state_dir = "$DEMO/state"
cache_dir = "$DEMO/cache"
socket = "$DEMO/run/vxd.sock"
TOML

echo "==> starting vxd (log: $DEMO/vxd.log)" >&2
"$BIN/vxd" --config "$DEMO/vxd.toml" 2>"$DEMO/vxd.log" &
VXD=$!
trap 'kill -TERM $VXD 2>/dev/null; wait $VXD 2>/dev/null || true' EXIT
ctl() { "$BIN/vxctl" --socket "$DEMO/run/vxd.sock" "$@"; }
for _ in $(seq 100); do [ -S "$DEMO/run/vxd.sock" ] && break; sleep 0.1; done
ctl wait --timeout 300

echo; echo "\$ vxctl status"; ctl status
echo; echo "\$ vxctl search beach"; ctl search beach
echo; echo "\$ vxctl search scene"; ctl search scene
echo; echo "\$ vxctl search mp3"; ctl search mp3
echo
echo "vxd is stopped on exit. To keep it running on the demo folder:"
echo "  $BIN/vxd --config $DEMO/vxd.toml &"
echo "  $BIN/vxctl --socket $DEMO/run/vxd.sock search h264"
