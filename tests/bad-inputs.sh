#!/usr/bin/env bash
# Writes the bad-input suite into DIR: files that are empty, cut short, lie
# about what they are, hold nothing to decode, or are huge once decoded, and
# names that are hard to print. tests/tests/bad_inputs.rs runs vxd on them;
# the same folder serves as a seed corpus for fuzzing the decoder.
# Usage: tests/bad-inputs.sh DIR
set -euo pipefail
DIR="$1"
mkdir -p "$DIR"
cd "$DIR"
ff() { ffmpeg -nostdin -v error -y "$@"; }
# Bytes that are the same on every run.
noise() { python3 -c "import random,sys; random.seed($2); sys.stdout.buffer.write(random.randbytes($1))"; }

ff -f lavfi -i testsrc=size=320x240:rate=25:duration=3 -f lavfi -i sine=duration=3 \
   -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac whole.mp4
ff -f lavfi -i testsrc2=size=320x240 -frames:v 1 good.png

: > empty.mp4                                            # zero bytes
head -c 20000 whole.mp4 > no-moov.mp4                    # the index (moov) is at the end
ff -i whole.mp4 -c copy whole.mkv
head -c "$(( $(stat -c %s whole.mkv) * 6 / 10 ))" whole.mkv > cut-mid-stream.mkv
rm whole.mkv
noise 65536 1 > random.mp4
noise 65536 2 > random.jpg
noise 65536 3 > random.wav
printf 'this is a text file, not a video\n' > text.mkv
printf '1\n00:00:00,000 --> 00:00:01,000\nonly subtitles\n' > subs.srt
ff -i subs.srt no-av-streams.mkv && rm subs.srt          # a container with no audio or video
ff -i whole.mp4 -vn -c copy audio-only.mp4
ff -i whole.mp4 -an -c copy video-only.mp4
ff -f lavfi -i testsrc=size=320x240 -frames:v 0 -c:v libx264 zero-frames.mp4 || : > zero-frames.mp4
ff -f lavfi -i testsrc=size=1x1:rate=5:duration=2 -c:v ffv1 one-pixel.mkv
ff -f lavfi -i color=c=gray:s=16000x16000 -frames:v 1 huge.jpg

# Names.
cp good.png "with spaces.png"
cp good.png "$(printf 'new\nline.png')"
cp good.png "$(printf 'escape\033[31m\033]0;title\007.png')"
cp good.png "$(printf 'latin1-\351t\351.png')"          # not UTF-8
long="$(printf 'd%.0s' {1..200})"
mkdir -p "$long/$long/$long/$long/$long/$long/$long/$long/$long/$long/$long/$long/$long/$long/$long/$long/$long/$long"
cp good.png "$long/$long/$long/$long/$long/$long/$long/$long/$long/$long/$long/$long/$long/$long/$long/$long/$long/$long/$(printf 'n%.0s' {1..200}).png"

# Links that must not be followed, and what cannot be read.
ln -sfn loop loop.mp4
mkdir -p links && ln -sfn .. links/up && ln -sfn / links/root
cp good.png unreadable.png && chmod 000 unreadable.png
mkdir -p closed && cp good.png closed/inside.png && chmod 000 closed
