#!/usr/bin/env bash
# Installs everything vx needs on Debian 12, idempotently: apt packages, the
# ONNX Runtime shared library (from the PyPI onnxruntime wheel) and the models
# of the default plugins. A second run with everything present takes seconds.
# Each step says what it does; a failing step names itself and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${VX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vx}"
ORT_VERSION=1.31.1
ORT_SHA256=fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3
APT_PACKAGES=(
  pkg-config clang libclang-dev cmake nasm libfftw3-dev
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
  libavfilter-dev libavdevice-dev ffmpeg python3 python3-pip python3-venv
  espeak-ng systemd
  # Tests: real photos with ground truth, the OCR baseline with its fonts,
  # and real drum samples (music that is not speech).
  labelme-examples tesseract-ocr tesseract-ocr-eng libtesseract-dev fonts-dejavu-core
  python-kivy-examples
  # The search page's browser tests: headless Chromium over WebDriver.
  chromium chromium-driver
  # The cluster's tests: a real NATS server with JetStream, on loopback.
  nats-server
)

step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
fail() { printf 'setup failed at step "%s": %s\n' "$CURRENT" "$1" >&2; exit 1; }
trap 'fail "command exited with status $? (line $LINENO)"' ERR

CURRENT="apt packages"
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  step "installing apt packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq || fail "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null \
    || fail "apt-get install ${missing[*]} failed"
else
  step "apt packages: all present"
fi

CURRENT="rust toolchain"
command -v cargo >/dev/null || fail "cargo not found: install Rust 1.85 or newer (https://rustup.rs)"

CURRENT="onnx runtime"
ORT_DIR="$CACHE/onnxruntime"
ORT_LIB="$ORT_DIR/libonnxruntime.so.$ORT_VERSION"
sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }
if sha_ok "$ORT_LIB" "$ORT_SHA256"; then
  step "onnx runtime $ORT_VERSION: present"
else
  step "onnx runtime $ORT_VERSION: downloading the PyPI onnxruntime wheel"
  mkdir -p "$ORT_DIR"
  tmp="$(mktemp -d "$ORT_DIR/.download.XXXXXX")"
  python3 -m pip download --quiet "onnxruntime==$ORT_VERSION" --no-deps --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --python-version 3.11 \
    -d "$tmp" || fail "pip download onnxruntime==$ORT_VERSION failed (is PyPI reachable?)"
  python3 - "$tmp" "$ORT_VERSION" <<'PY' || fail "cannot extract the library from the wheel"
import glob, sys, zipfile
tmp, version = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(f"{tmp}/onnxruntime-*.whl")[0])
with open(f"{tmp}/lib", "wb") as out:
    out.write(wheel.read(f"onnxruntime/capi/libonnxruntime.so.{version}"))
PY
  sha_ok "$tmp/lib" "$ORT_SHA256" || fail "libonnxruntime.so.$ORT_VERSION has the wrong sha256"
  mv "$tmp/lib" "$ORT_LIB"   # atomic: never a half-written library under the final name
  rm -rf "$tmp"
fi

CURRENT="model tool venv"
VENV="$CACHE/venv"
REQS="models/requirements.txt"
if [ -x "$VENV/bin/python" ] && cmp -s "$REQS" "$VENV/requirements.txt"; then
  step "model tool venv: present"
else
  step "model tool venv: installing $(grep -v '^#' "$REQS" | tr '\n' ' ')"
  rm -rf "$VENV"
  python3 -m venv "$VENV" || fail "python3 -m venv failed (is python3-venv installed?)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS" || fail "pip install -r $REQS failed"
  cp "$REQS" "$VENV/requirements.txt"
fi

CURRENT="models"
step "models: fetching the default models"
VX_CACHE_DIR="$CACHE" "$VENV/bin/python" models/vxmodels.py fetch || fail "some models could not be installed (see above)"

CURRENT="test photos"
# Real photos for the vision tests, from package wheels (never committed):
# a portrait (person, face) and an astronaut (person, face).
TESTDATA="$CACHE/testdata"
if [ -f "$TESTDATA/grace_hopper.jpg" ] && [ -f "$TESTDATA/astronaut.png" ]; then
  step "test photos: present"
else
  step "test photos: extracting from the matplotlib and scikit-image wheels"
  mkdir -p "$TESTDATA"
  tmp="$(mktemp -d "$TESTDATA/.download.XXXXXX")"
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" \
    "matplotlib==3.9.2" "scikit-image==0.24.0" --platform manylinux_2_17_x86_64 --python-version 3.11 \
    || fail "pip download of the test photo wheels failed (is PyPI reachable?)"
  python3 - "$tmp" "$TESTDATA" <<'PY' || fail "cannot extract the test photos"
import glob, sys, zipfile
tmp, out = sys.argv[1], sys.argv[2]
wanted = {"matplotlib": ["matplotlib/mpl-data/sample_data/grace_hopper.jpg"],
          "scikit_image": ["skimage/data/astronaut.png", "skimage/data/coffee.png"]}
for pkg, names in wanted.items():
    wheel = zipfile.ZipFile(glob.glob(f"{tmp}/{pkg}-*.whl")[0])
    for name in names:
        with open(f"{out}/{name.rsplit('/', 1)[1]}", "wb") as f:
            f.write(wheel.read(name))
PY
  rm -rf "$tmp"
fi

step "setup done ($(du -sh "$CACHE" 2>/dev/null | cut -f1) in $CACHE)"
