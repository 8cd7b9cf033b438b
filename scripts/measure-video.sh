#!/usr/bin/env bash
# Wall time for vxd to index one 60 s 720p video with every default plugin,
# from the moment the file is there to the moment vxd is idle, and what each
# plugin found. The video: 20 s of a photo of a person while someone speaks,
# 20 s of a text slide, 20 s of moving test pattern.
# Usage: scripts/measure-video.sh   (after scripts/setup.sh and a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/target/release"
CACHE="${VX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vx}"
SANS=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
WORK="$(mktemp -d)"; trap 'kill $VXD 2>/dev/null && wait $VXD 2>/dev/null; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/media" "$WORK/cache"
ln -s "$CACHE/models" "$CACHE/onnxruntime" "$WORK/cache/"
ff() { ffmpeg -nostdin -v error -y "$@"; }
espeak-ng -v en-gb -s 120 -w "$WORK/said.wav" \
  "Welcome to the quarterly review. The budget meeting moved to Thursday morning. Please send the slides before noon."
ff -loop 1 -t 20 -i "$CACHE/testdata/astronaut.png" \
   -f lavfi -i "color=c=white:s=1280x720:d=20:r=25,drawtext=fontfile=$SANS:text='Q3 roadmap review':fontsize=64:x=120:y=300:fontcolor=black" \
   -f lavfi -i "testsrc2=size=1280x720:rate=25:duration=20" \
   -i "$WORK/said.wav" \
   -filter_complex "[0]scale=1280:720:force_original_aspect_ratio=decrease,pad=1280:720:(ow-iw)/2:(oh-ih)/2,setsar=1,fps=25,format=yuv420p[a];[1]setsar=1,format=yuv420p[b];[2]setsar=1,format=yuv420p[c];[a][b][c]concat=n=3:v=1:a=0[v];[3]adelay=2000:all=1,apad[s]" \
   -map "[v]" -map "[s]" -t 60 -c:v libx264 -preset veryfast -c:a aac "$WORK/talk.mp4"
cat > "$WORK/vxd.toml" <<TOML
watch = ["$WORK/media"]
state_dir = "$WORK/state"
cache_dir = "$WORK/cache"
socket = "$WORK/vxd.sock"
settle_ms = 0
TOML
"$BIN/vxd" --config "$WORK/vxd.toml" 2>"$WORK/vxd.log" & VXD=$!
ctl() { "$BIN/vxctl" --socket "$WORK/vxd.sock" "$@"; }
for _ in $(seq 200); do [ -S "$WORK/vxd.sock" ] && break; sleep 0.05; done
ctl wait --timeout 120 >/dev/null   # hosts started, models loaded, idle
start=$(date +%s.%N)
mv "$WORK/talk.mp4" "$WORK/media/"
sleep 0.5
ctl wait --timeout 900 >/dev/null
end=$(date +%s.%N)
awk -v a="$start" -v b="$end" 'BEGIN { printf "indexed a 60 s 720p video with all plugins in %.1f s wall\n", b - a }'
ctl status "$WORK/media/talk.mp4"
grep -E "indexed|decode_s" "$WORK/vxd.log" | tail -2
