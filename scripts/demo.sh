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
rm -rf "$DEMO"; mkdir -p "$MEDIA" "$DEMO/cache"
CACHE="${VX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vx}"
# The demo keeps its index and thumbnails apart, and uses the installed models.
ln -s "$CACHE/models" "$CACHE/onnxruntime" "$DEMO/cache/"
ff() { ffmpeg -nostdin -v error -y "$@"; }
SANS=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
VOC=/usr/share/doc/labelme-examples/examples/bbox_detection/data_dataset_voc/JPEGImages
# Real photos from packages: a street with buses and a car, people, a portrait.
cp "$VOC/2011_000025.jpg" "$MEDIA/street.jpg"
cp "$VOC/2011_000006.jpg" "$MEDIA/friends.jpg"
cp "$CACHE/testdata/grace_hopper.jpg" "$MEDIA/portrait.jpg"
# A 12 s talk: 4 s of a person on screen, then a slide while someone says a
# sentence, then a colour test card; and a voice memo.
espeak-ng -v en-gb -s 120 -w "$DEMO/said.wav" "The budget meeting moved to Thursday morning."
ff -loop 1 -t 4 -i "$CACHE/testdata/astronaut.png" \
   -f lavfi -i "color=c=white:s=1280x720:d=5:r=25,drawtext=fontfile=$SANS:text='Q3 roadmap review':fontsize=64:x=120:y=300:fontcolor=black" \
   -f lavfi -i "testsrc=size=1280x720:rate=25:duration=3" \
   -i "$DEMO/said.wav" \
   -filter_complex "[0]scale=1280:720:force_original_aspect_ratio=decrease,pad=1280:720:(ow-iw)/2:(oh-ih)/2,setsar=1,fps=25,format=yuv420p[a];[1]setsar=1,format=yuv420p[b];[2]setsar=1,format=yuv420p[c];[a][b][c]concat=n=3:v=1:a=0[v];[3]adelay=4500:all=1,apad[s]" \
   -map "[v]" -map "[s]" -t 12 -c:v libx264 -preset veryfast -c:a aac "$MEDIA/team_talk.mp4"
espeak-ng -v en-us -s 120 -w "$DEMO/memo.wav" "Remember to file the tax return before the deadline."
ff -i "$DEMO/memo.wav" -c:a libmp3lame "$MEDIA/voice_memo.mp3"

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
show() { echo; echo "\$ vxctl search $*"; ctl search "$@"; }
show bus
show --label person --kind image
show --has faces --kind video
show roadmap
show '"budget meeting"'
show tax deadline --has speech
echo
echo "vxd is stopped on exit. To keep it running on the demo folder:"
echo "  $BIN/vxd --config $DEMO/vxd.toml &"
echo "  $BIN/vxctl --socket $DEMO/run/vxd.sock search h264"
echo "  $BIN/vxctl --socket $DEMO/run/vxd.sock open      # the search page in a browser"
