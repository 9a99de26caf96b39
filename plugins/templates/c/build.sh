#!/usr/bin/env bash
# Builds {{stem}}.wasm from reactor.c.
# Needs: apt-get install -y --no-install-recommends clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32
# and batpak-build (C bindings and component wrapping, from the batpak-host
# repository): cargo install --locked --path <batpak-host>/plugins/build-tool
set -euo pipefail
cd "$(dirname "$0")"
command -v batpak-build >/dev/null || {
  echo "error: batpak-build not found; cargo install --locked --path <batpak-host>/plugins/build-tool" >&2
  exit 3
}
mkdir -p build
batpak-build c-bindings wit build/bindings
# -mexec-model=reactor: a library with no main (_initialize instead of _start).
clang-19 --target=wasm32-wasi -mexec-model=reactor -O2 -Wl,--strip-all -Ibuild/bindings \
  -o build/{{stem}}.core.wasm reactor.c build/bindings/reactor_plugin.c \
  build/bindings/reactor_plugin_component_type.o
batpak-build component build/{{stem}}.core.wasm {{stem}}.wasm
echo "built {{stem}}.wasm"
