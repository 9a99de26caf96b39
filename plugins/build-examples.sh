#!/usr/bin/env bash
# Builds the non-Rust example reactors from source into OUT_DIR:
#   passthrough_c.wasm    C, clang-19 + batpak-build (bindings, component)
#   passthrough_py.wasm   Python, componentize-py 0.25.1
#   passthrough_js.wasm   JavaScript, componentize-qjs 0.4.5 (QuickJS, --sync)
#   passthrough_wat.wat   WAT, copied as is (the host reads component text)
# and writes OUT_DIR/build-times.tsv (language, seconds, bytes).
#
# Usage: plugins/build-examples.sh OUT_DIR [c|python|js|wat ...]
# A language whose sources and WIT are unchanged since its last build is not
# rebuilt (componentize-py output differs byte for byte on every build, so a
# rebuild would also mean a new digest and a new compile in the host).
# A missing toolchain fails with the command that installs it; nothing is
# skipped.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:?usage: build-examples.sh OUT_DIR [c|python|js|wat ...]}"
shift
langs=("$@")
[ ${#langs[@]} -eq 0 ] && langs=(c python js wat)
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$root"

need() { # need TOOL INSTALL-COMMAND
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "error: $1 is not installed; install it with: $2" >&2
    exit 3
  fi
}

# Hash of the given files: the cache key of one language's build.
stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

# up_to_date LANG OUTPUT FILES...: true when OUTPUT was built from these files.
up_to_date() {
  local lang="$1" output="$2"
  shift 2
  [ -f "$output" ] && [ -f "$out/.$lang.stamp" ] &&
    [ "$(cat "$out/.$lang.stamp")" = "$(stamp_of "$@")" ]
}

record() { # record LANG START OUTPUT
  local secs
  secs=$(awk -v s="$2" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
  printf '%s\t%s\t%s\n' "$1" "$secs" "$(stat -c %s "$3")" >>"$out/build-times.tsv"
}

: >"$out/build-times.tsv"
for lang in "${langs[@]}"; do
  start=$(date +%s.%N)
  case "$lang" in
  c)
    need clang-19 "apt-get install -y --no-install-recommends clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32"
    need wasm-ld-19 "apt-get install -y --no-install-recommends lld-19"
    [ -f /usr/lib/wasm32-wasi/libc.a ] ||
      { echo "error: no wasi-libc; install it with: apt-get install -y --no-install-recommends wasi-libc" >&2; exit 3; }
    [ -f /usr/lib/llvm-19/lib/clang/19/lib/wasi/libclang_rt.builtins-wasm32.a ] ||
      { echo "error: no wasm32 compiler-rt; install it with: apt-get install -y --no-install-recommends libclang-rt-19-dev-wasm32" >&2; exit 3; }
    files=(plugins/passthrough-c/reactor.c wit/reactor.wit plugins/build-tool/src/main.rs)
    if ! up_to_date c "$out/passthrough_c.wasm" "${files[@]}"; then
      # The build tool is not a default workspace member: its own cargo
      # invocation, so its wasm crates never unify features with wasmtime.
      cargo build --release --quiet -p batpak-build
      tool="$root/target/release/batpak-build"
      tmp="$out/c-build"
      rm -rf "$tmp" && mkdir -p "$tmp"
      "$tool" c-bindings wit "$tmp"
      clang-19 --target=wasm32-wasi -mexec-model=reactor -O2 -Wl,--strip-all \
        -I"$tmp" -o "$tmp/reactor.core.wasm" plugins/passthrough-c/reactor.c \
        "$tmp/reactor_plugin.c" "$tmp/reactor_plugin_component_type.o"
      "$tool" component "$tmp/reactor.core.wasm" "$out/passthrough_c.wasm"
      stamp_of "${files[@]}" >"$out/.c.stamp"
    fi
    record c "$start" "$out/passthrough_c.wasm"
    ;;
  python)
    need componentize-py "pip install componentize-py==0.25.1"
    files=(plugins/passthrough-py/app.py wit/reactor.wit)
    if ! up_to_date python "$out/passthrough_py.wasm" "${files[@]}"; then
      componentize-py -d wit -w reactor-plugin componentize -p plugins/passthrough-py app \
        -o "$out/passthrough_py.wasm" >/dev/null
      stamp_of "${files[@]}" >"$out/.python.stamp"
    fi
    record python "$start" "$out/passthrough_py.wasm"
    ;;
  js)
    need componentize-qjs "npm install -g componentize-qjs@0.4.5"
    files=(plugins/passthrough-js/reactor.js wit/reactor.wit)
    if ! up_to_date js "$out/passthrough_js.wasm" "${files[@]}"; then
      componentize-qjs --sync --wit wit --world reactor-plugin \
        --js plugins/passthrough-js/reactor.js -o "$out/passthrough_js.wasm" >/dev/null
      stamp_of "${files[@]}" >"$out/.js.stamp"
    fi
    record js "$start" "$out/passthrough_js.wasm"
    ;;
  wat)
    cp plugins/passthrough-wat/reactor.wat "$out/passthrough_wat.wat"
    record wat "$start" "$out/passthrough_wat.wat"
    ;;
  *)
    echo "error: unknown language $lang (expected c, python, js or wat)" >&2
    exit 2
    ;;
  esac
done
