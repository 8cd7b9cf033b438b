#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: setup, one release
# build of every crate, then every unit and end-to-end test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "==> building (release)" >&2
cargo build --release --workspace --locked
echo "==> testing" >&2
cargo test --release --workspace --locked "$@"
