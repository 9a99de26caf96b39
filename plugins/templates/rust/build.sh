#!/usr/bin/env bash
# Builds {{stem}}.wasm (needs: rustup target add wasm32-wasip2).
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --target wasm32-wasip2
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{stem}}.wasm" {{stem}}.wasm
echo "built {{stem}}.wasm"
