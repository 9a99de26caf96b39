#!/usr/bin/env bash
# Builds {{stem}}.wasm from reactor.c. No root needed:
# - a C compiler for wasm32-wasi: zig, which bundles clang and wasi-libc
#     python3 -m venv ~/.batpak-tools && ~/.batpak-tools/bin/pip install ziglang==0.15.2
#   (puts python-zig in ~/.batpak-tools/bin; a zig on PATH is used first),
#   or set WASI_CC, e.g. WASI_CC="clang-19 --target=wasm32-wasi" with Debian's
#   clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32;
# - batpak-build (C bindings and component wrapping, from the batpak-host
#   repository): cargo install --locked --path <batpak-host>/plugins/build-tool
set -euo pipefail
cd "$(dirname "$0")"
PATH="$PATH:${HOME:-}/.batpak-tools/bin"
command -v batpak-build >/dev/null || {
  echo "error: batpak-build not found; cargo install --locked --path <batpak-host>/plugins/build-tool" >&2
  exit 3
}
if [ -n "${WASI_CC:-}" ]; then
  read -ra cc <<<"$WASI_CC"
elif command -v zig >/dev/null; then
  cc=(zig cc --target=wasm32-wasi)
elif command -v python-zig >/dev/null; then
  cc=(python-zig cc --target=wasm32-wasi)
else
  echo "error: no C compiler for wasm32-wasi; install zig without root:" >&2
  echo "  python3 -m venv ~/.batpak-tools && ~/.batpak-tools/bin/pip install ziglang==0.15.2" >&2
  echo "or set WASI_CC (e.g. WASI_CC=\"clang-19 --target=wasm32-wasi\")" >&2
  exit 3
fi
mkdir -p build
batpak-build c-bindings wit build/bindings
# -mexec-model=reactor: a library with no main (_initialize instead of _start).
"${cc[@]}" -mexec-model=reactor -O2 -Wl,--strip-all -Ibuild/bindings \
  -o build/{{stem}}.core.wasm reactor.c build/bindings/reactor_plugin.c \
  build/bindings/reactor_plugin_component_type.o
batpak-build component build/{{stem}}.core.wasm {{stem}}.wasm
echo "built {{stem}}.wasm"
