#!/usr/bin/env bash
# Builds the non-Rust example reactors from source into OUT_DIR:
#   passthrough_c.wasm    C, zig cc (clang + wasi-libc) + batpak-build (bindings, component)
#   passthrough_py.wasm   Python, componentize-py 0.25.1
#   passthrough_js.wasm   JavaScript on the SDK, componentize-qjs 0.4.5 (QuickJS, --sync)
#   passthrough_js_sm.wasm  the same, componentize-js 0.23.0 (SpiderMonkey)
#   passthrough_wat.wat   WAT, copied as is (the host reads component text)
# and writes OUT_DIR/build-times.tsv (language, seconds, bytes).
#
# Usage: plugins/build-examples.sh OUT_DIR [c|python|js|wat ...]
# The tools are taken from PATH. The tests (tests/e2e/languages.rs) put the
# ones they provision first on PATH (target/toolchains/bin: zig from PyPI's
# ziglang 0.15.2, componentize-py 0.25.1, componentize-qjs 0.4.5, componentize-js 0.23.0, all
# user-level). WASI_CC overrides the C compiler, e.g.
# WASI_CC="clang-19 --target=wasm32-wasi" with Debian's wasi-libc.
# A language whose sources, WIT and compiler are unchanged since its last
# build is not rebuilt (componentize-py output differs byte for byte on
# every build, so a rebuild would also mean a new digest and a new compile
# in the host). A missing toolchain fails with the commands that install it
# without root; nothing is skipped.
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

# Hash of a tool's identity and the given files: the cache key of one
# language's build.
stamp_of() { # stamp_of TOOL-IDENTITY FILES...
  { echo "$1"; shift; cat "$@"; } | sha256sum | cut -d' ' -f1
}

# up_to_date LANG OUTPUT TOOL-IDENTITY FILES...: true when OUTPUT was built
# from these files with this tool.
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
    # The C compiler for wasm32-wasi: WASI_CC, else zig's bundled clang and
    # wasi-libc (`zig`, or `python-zig` as PyPI's ziglang installs it).
    if [ -n "${WASI_CC:-}" ]; then
      read -ra cc <<<"$WASI_CC"
    elif command -v zig >/dev/null 2>&1; then
      cc=(zig cc --target=wasm32-wasi)
    elif command -v python-zig >/dev/null 2>&1; then
      cc=(python-zig cc --target=wasm32-wasi)
    else
      echo "error: no C compiler for wasm32-wasi (zig); install it without root with:" >&2
      echo "  python3 -m venv ~/.batpak-tools && ~/.batpak-tools/bin/pip install ziglang==0.15.2" >&2
      echo "and put ~/.batpak-tools/bin on PATH (it provides python-zig), or set WASI_CC" >&2
      exit 3
    fi
    files=(plugins/passthrough-c/reactor.c guest-sdk/c/batpak.h wit/reactor.wit plugins/build-tool/src/main.rs)
    compiler="${cc[*]} $("${cc[@]}" --version 2>/dev/null | head -n 1 || true)"
    if ! up_to_date c "$out/passthrough_c.wasm" "$compiler" "${files[@]}"; then
      # The build tool is not a default workspace member: its own cargo
      # invocation, so its wasm crates never unify features with wasmtime.
      cargo build --release --quiet -p batpak-build
      tool="$root/target/release/batpak-build"
      tmp="$out/c-build"
      rm -rf "$tmp" && mkdir -p "$tmp"
      "$tool" c-bindings wit "$tmp"
      "${cc[@]}" -mexec-model=reactor -O2 -Wl,--strip-all \
        -I"$tmp" -Iguest-sdk/c -o "$tmp/reactor.core.wasm" plugins/passthrough-c/reactor.c \
        "$tmp/reactor_plugin.c" "$tmp/reactor_plugin_component_type.o"
      "$tool" component "$tmp/reactor.core.wasm" "$out/passthrough_c.wasm"
      stamp_of "$compiler" "${files[@]}" >"$out/.c.stamp"
    fi
    record c "$start" "$out/passthrough_c.wasm"
    ;;
  python)
    need componentize-py "python3 -m venv ~/.batpak-tools && ~/.batpak-tools/bin/pip install componentize-py==0.25.1 (then put ~/.batpak-tools/bin on PATH)"
    files=(plugins/passthrough-py/app.py guest-sdk/python/batpak_guest/*.py wit/reactor.wit)
    tool_id="$(componentize-py --version)"
    if ! up_to_date python "$out/passthrough_py.wasm" "$tool_id" "${files[@]}"; then
      componentize-py -d wit -w reactor-plugin componentize -p plugins/passthrough-py -p guest-sdk/python app \
        -o "$out/passthrough_py.wasm" >/dev/null
      stamp_of "$tool_id" "${files[@]}" >"$out/.python.stamp"
    fi
    record python "$start" "$out/passthrough_py.wasm"
    ;;
  js)
    # The SDK example on both engines: QuickJS as passthrough-js, and
    # SpiderMonkey as passthrough-js-sm (the same source renamed, so both
    # run side by side in one host).
    need componentize-qjs "npm install --prefix ~/.batpak-tools/npm componentize-qjs@0.4.5 (then put ~/.batpak-tools/npm/node_modules/.bin on PATH)"
    need componentize-js "npm install --prefix ~/.batpak-tools/npm @bytecodealliance/componentize-js@0.23.0 (then put ~/.batpak-tools/npm/node_modules/.bin on PATH)"
    files=(plugins/passthrough-js/reactor.js guest-sdk/js/index.js guest-sdk/js/core.js guest-sdk/js/layout.js wit/reactor.wit)
    tool_id="$(command -v componentize-qjs) $(command -v componentize-js)"
    if ! up_to_date js "$out/passthrough_js.wasm" "$tool_id" "${files[@]}" ||
      [ ! -f "$out/passthrough_js_sm.wasm" ]; then
      componentize-qjs --sync --wit wit --world reactor-plugin \
        --js plugins/passthrough-js/reactor.js -o "$out/passthrough_js.wasm" >/dev/null
      sm="$out/js-sm"
      rm -rf "$sm" && mkdir -p "$sm/plugins/passthrough-js" "$sm/guest-sdk/js"
      cp guest-sdk/js/*.js "$sm/guest-sdk/js/"
      sed 's/"passthrough-js"/"passthrough-js-sm"/' plugins/passthrough-js/reactor.js \
        >"$sm/plugins/passthrough-js/reactor.js"
      componentize-js --wit wit --world-name reactor-plugin -d http -d fetch-event \
        --out "$out/passthrough_js_sm.wasm" "$sm/plugins/passthrough-js/reactor.js" >/dev/null
      stamp_of "$tool_id" "${files[@]}" >"$out/.js.stamp"
    fi
    record js "$start" "$out/passthrough_js.wasm"
    record js-sm "$start" "$out/passthrough_js_sm.wasm"
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
