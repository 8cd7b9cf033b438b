#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: setup, one release
# build of every crate, then every unit and end-to-end test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Conversion tests also cover whisper-base and the quantised whisper-tiny.en
# variants, which are not default models.
VX_CACHE="${VX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vx}"
VX_CACHE_DIR="$VX_CACHE" "$VX_CACHE/venv/bin/python" models/vxmodels.py fetch whisper-base whisper-tiny.en-q8_0 whisper-tiny.en-q5_0
# The fault injectors are compiled in for tests: the misbehave plugin into
# the host, and a panic on request into vxd's pipeline.
FEATURES=(--features vx-plugin-host/misbehave,vxd/fault-injection)
echo "==> building (release)" >&2
cargo build --release --workspace --locked "${FEATURES[@]}"
echo "==> testing" >&2
cargo test --release --workspace --locked "${FEATURES[@]}" "$@"
echo "==> testing model conversions against their references" >&2
VX_CACHE_DIR="$VX_CACHE" "$VX_CACHE/venv/bin/python" -m unittest discover -s models/tests
echo "==> fuzzing each decoder briefly, so that the targets keep building" >&2
scripts/fuzz.sh 20
