#!/usr/bin/env bash
# Writes the benchmark corpus into DIR, the same on every run, from what
# setup installs: 24 videos (10-30 s, 640x360 to 1280x720; a photo of people
# panned across, a text slide, test-pattern motion, and a spoken sentence),
# 8 spoken audio files and 24 photos. No media is committed.
# Usage: bench/corpus.sh DIR
set -euo pipefail
DIR="$1"
mkdir -p "$DIR/videos" "$DIR/audio" "$DIR/photos"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
ff() { ffmpeg -nostdin -v error -y "$@"; }
SANS=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
# The labelme examples' photos (VOC scenes with people, buses, rooms), each once.
mapfile -t PHOTOS < <(find /usr/share/doc/labelme-examples -name '*.jpg' -print0 \
  | xargs -0 md5sum | sort | awk '!seen[$1]++ {print $2}' | head -24)
[ "${#PHOTOS[@]}" -eq 24 ] || { echo "expected 24 photos from labelme-examples, got ${#PHOTOS[@]}" >&2; exit 1; }

SAID=(
  "The quarterly budget review moves to Thursday morning."
  "Please remember to file the tax return before the deadline."
  "Our new office opens next to the railway station in spring."
  "The red bus leaves the depot every twenty minutes."
  "Grandmother baked an apple pie for the birthday party."
  "We measured the river after three days of heavy rain."
  "The keynote covers the roadmap for the third quarter."
  "Turn left at the bakery and walk to the harbour."
  "The football match was cancelled because of the storm."
  "Bring your passport and a printed ticket to the airport."
  "The garden needs water before the weekend heat arrives."
  "Sales doubled after we lowered the shipping price."
  "The museum shows paintings from the northern coast."
  "Check the brakes before you ride down the mountain."
  "The choir practises every Tuesday in the old church."
  "Our team fixed the login bug before the release."
  "The library stays open late during the exam weeks."
  "Fresh snow covered the village overnight."
  "The doctor asked him to rest for another week."
  "We planted forty trees along the school fence."
  "The concert tickets sold out within an hour."
  "Lunch is served on the terrace when the sun is out."
  "The bridge repairs will close the road until June."
  "She wrote the whole novel on an old typewriter."
  "The wedding photos arrived in a wooden box."
  "Our cat sleeps on the warm laptop every afternoon."
  "The harvest festival starts with a parade at noon."
  "He learned to sail on the lake near his uncle's farm."
  "The printer on the second floor is out of toner."
  "Every volunteer gets a blue shirt and a sandwich."
  "The astronomy club meets when the sky is clear."
  "Last summer we drove along the coast to the lighthouse."
)
SIZES=(640x360 854x480 1280x720)

for i in $(seq 0 23); do
  out="$DIR/videos/clip$(printf %02d "$i").mp4"
  [ -s "$out" ] && continue
  size="${SIZES[$((i % 3))]}"; w="${size%x*}"; h="${size#*x}"
  dur=$((10 + (i * 7) % 21)); a=$((dur / 3)); b=$((dur / 3)); c=$((dur - a - b))
  espeak-ng -v en-gb -s 140 -w "$WORK/said.wav" "${SAID[$i]}"
  ff -loop 1 -t "$a" -i "${PHOTOS[$i]}" \
     -f lavfi -i "color=c=white:s=${size}:d=${b}:r=25,drawtext=fontfile=$SANS:text='Slide $i ${SAID[$i]%% *} review':fontsize=$((h / 12)):x=(w-text_w)/2:y=(h-text_h)/2:fontcolor=black" \
     -f lavfi -i "testsrc2=size=${size}:rate=25:duration=${c}" \
     -i "$WORK/said.wav" \
     -filter_complex "[0]scale=$((w * 6 / 5)):-2,crop=${w}:${h}:x='(iw-ow)*t/${a}':y=(ih-oh)/2,setsar=1,fps=25,format=yuv420p[p];[1]setsar=1,format=yuv420p[s];[2]setsar=1,format=yuv420p[m];[p][s][m]concat=n=3:v=1:a=0[v];[3]adelay=1000:all=1,apad[sp]" \
     -map "[v]" -map "[sp]" -t "$dur" -c:v libx264 -preset veryfast -c:a aac "$out"
done

EXT=(mp3 m4a wav ogg)
for i in $(seq 0 7); do
  out="$DIR/audio/memo$i.${EXT[$((i % 4))]}"
  [ -s "$out" ] && continue
  espeak-ng -v en-us -s 130 -w "$WORK/memo.wav" "${SAID[$((24 + i))]} ${SAID[$i]}"
  ff -i "$WORK/memo.wav" "$out"
done

for i in $(seq 0 23); do
  src="${PHOTOS[$(((i + 7) % 24))]}"
  if [ $((i % 4)) -eq 3 ]; then
    [ -s "$DIR/photos/photo$i.png" ] || ff -i "$src" "$DIR/photos/photo$i.png"
  else
    cp -n "$src" "$DIR/photos/photo$i.jpg"
  fi
done
