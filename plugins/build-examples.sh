#!/usr/bin/env bash
# Builds the non-Rust example reactors from source into OUT_DIR:
#   passthrough_c.wasm    C, zig cc (clang + wasi-libc) + batpak-build (bindings, component)
#   passthrough_py.wasm   Python, componentize-py 0.25.1
#   passthrough_js.wasm   JavaScript on the SDK, componentize-qjs 0.4.5 (QuickJS, --sync)
#   passthrough_js_sm.wasm  the same, componentize-js 0.23.0 (SpiderMonkey)
#   passthrough_wat.wat   WAT, copied as is (the host reads component text)
# and the demo's inventory rule in each of them from the guides:
# inventory_c.wasm, inventory_py.wasm, inventory_js.wasm (QuickJS) and
# inventory_js_sm.wasm (SpiderMonkey), from plugins/inventory-{c,py,js};
# With `handwritten` (not built by default): the hand-written buffer code
# of plugins/handwritten, the benchmark's baselines: handwritten_c.wasm,
# handwritten_py.wasm, handwritten_js.wasm and handwritten_js_sm.wasm.
# It writes OUT_DIR/build-times.tsv (component, seconds, bytes; the
# seconds of a component that was up to date are those of its last build).
#
# Usage: plugins/build-examples.sh OUT_DIR [c|python|js|wat|handwritten ...]
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

# built NAME START: remembers how long NAME's build took (since START).
built() {
  awk -v s="$2" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f\n", e - s }' >"$out/.$1.secs"
}

record() { # record NAME OUTPUT: its last build time and its size
  printf '%s\t%s\t%s\n' "$1" "$(cat "$out/.$1.secs" 2>/dev/null || echo '?')" "$(stat -c %s "$2")" >>"$out/build-times.tsv"
}

# Sets cc to the C compiler for wasm32-wasi: WASI_CC, else zig's bundled
# clang and wasi-libc (`zig`, or `python-zig` as PyPI's ziglang installs it).
wasi_cc() {
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
}

: >"$out/build-times.tsv"
for lang in "${langs[@]}"; do
  start=$(date +%s.%N)
  case "$lang" in
  c)
    wasi_cc
    files=(plugins/passthrough-c/reactor.c plugins/inventory-c/reactor.c guest-sdk/c/batpak.h wit/reactor.wit plugins/build-tool/src/main.rs)
    compiler="${cc[*]} $("${cc[@]}" --version 2>/dev/null | head -n 1 || true)"
    if ! up_to_date c "$out/passthrough_c.wasm" "$compiler" "${files[@]}" ||
      [ ! -f "$out/inventory_c.wasm" ]; then
      # The build tool is not a default workspace member: its own cargo
      # invocation, so its wasm crates never unify features with wasmtime.
      cargo build --release --quiet -p batpak-build
      tool="$root/target/release/batpak-build"
      tmp="$out/c-build"
      rm -rf "$tmp" && mkdir -p "$tmp"
      "$tool" c-bindings wit "$tmp"
      for name in passthrough inventory; do
        start=$(date +%s.%N)
        "${cc[@]}" -mexec-model=reactor -O2 -Wl,--strip-all \
          -I"$tmp" -Iguest-sdk/c -o "$tmp/$name.core.wasm" "plugins/$name-c/reactor.c" \
          "$tmp/reactor_plugin.c" "$tmp/reactor_plugin_component_type.o"
        "$tool" component "$tmp/$name.core.wasm" "$out/${name}_c.wasm"
        built "${name}_c" "$start"
      done
      stamp_of "$compiler" "${files[@]}" >"$out/.c.stamp"
    fi
    record passthrough_c "$out/passthrough_c.wasm"
    record inventory_c "$out/inventory_c.wasm"
    ;;
  python)
    need componentize-py "python3 -m venv ~/.batpak-tools && ~/.batpak-tools/bin/pip install componentize-py==0.25.1 (then put ~/.batpak-tools/bin on PATH)"
    files=(plugins/passthrough-py/app.py plugins/inventory-py/app.py guest-sdk/python/batpak_guest/*.py wit/reactor.wit)
    tool_id="$(componentize-py --version)"
    if ! up_to_date python "$out/passthrough_py.wasm" "$tool_id" "${files[@]}" ||
      [ ! -f "$out/inventory_py.wasm" ]; then
      for name in passthrough inventory; do
        start=$(date +%s.%N)
        componentize-py -d wit -w reactor-plugin componentize -p "plugins/$name-py" -p guest-sdk/python app \
          -o "$out/${name}_py.wasm" >/dev/null
        built "${name}_py" "$start"
      done
      stamp_of "$tool_id" "${files[@]}" >"$out/.python.stamp"
    fi
    record passthrough_py "$out/passthrough_py.wasm"
    record inventory_py "$out/inventory_py.wasm"
    ;;
  js)
    # The SDK example on both engines: QuickJS as passthrough-js, and
    # SpiderMonkey as passthrough-js-sm (the same source renamed, so both
    # run side by side in one host).
    need componentize-qjs "npm install --prefix ~/.batpak-tools/npm componentize-qjs@0.4.5 (then put ~/.batpak-tools/npm/node_modules/.bin on PATH)"
    need componentize-js "npm install --prefix ~/.batpak-tools/npm @bytecodealliance/componentize-js@0.23.0 (then put ~/.batpak-tools/npm/node_modules/.bin on PATH)"
    files=(plugins/passthrough-js/reactor.js plugins/inventory-js/reactor.js guest-sdk/js/index.js guest-sdk/js/core.js guest-sdk/js/layout.js wit/reactor.wit)
    tool_id="$(command -v componentize-qjs) $(command -v componentize-js)"
    if ! up_to_date js "$out/passthrough_js.wasm" "$tool_id" "${files[@]}" ||
      [ ! -f "$out/passthrough_js_sm.wasm" ] || [ ! -f "$out/inventory_js_sm.wasm" ]; then
      sm="$out/js-sm"
      rm -rf "$sm" && mkdir -p "$sm/guest-sdk/js"
      cp guest-sdk/js/*.js "$sm/guest-sdk/js/"
      for name in passthrough inventory; do
        start=$(date +%s.%N)
        componentize-qjs --sync --wit wit --world reactor-plugin \
          --js "plugins/$name-js/reactor.js" -o "$out/${name}_js.wasm" >/dev/null
        built "${name}_js" "$start"
        start=$(date +%s.%N)
        mkdir -p "$sm/plugins/$name-js"
        sed "s/\"$name-js\"/\"$name-js-sm\"/" "plugins/$name-js/reactor.js" \
          >"$sm/plugins/$name-js/reactor.js"
        componentize-js --wit wit --world-name reactor-plugin -d http -d fetch-event \
          --out "$out/${name}_js_sm.wasm" "$sm/plugins/$name-js/reactor.js" >/dev/null
        built "${name}_js_sm" "$start"
      done
      stamp_of "$tool_id" "${files[@]}" >"$out/.js.stamp"
    fi
    record passthrough_js "$out/passthrough_js.wasm"
    record passthrough_js_sm "$out/passthrough_js_sm.wasm"
    record inventory_js "$out/inventory_js.wasm"
    record inventory_js_sm "$out/inventory_js_sm.wasm"
    ;;
  wat)
    cp plugins/passthrough-wat/reactor.wat "$out/passthrough_wat.wat"
    built passthrough_wat "$start"
    record passthrough_wat "$out/passthrough_wat.wat"
    ;;
  handwritten)
    # Each rebuilt only when its source, the WIT or its tool changed.
    need componentize-py "python3 -m venv ~/.batpak-tools && ~/.batpak-tools/bin/pip install componentize-py==0.25.1"
    need componentize-qjs "npm install --prefix ~/.batpak-tools/npm componentize-qjs@0.4.5"
    need componentize-js "npm install --prefix ~/.batpak-tools/npm @bytecodealliance/componentize-js@0.23.0"
    wasi_cc
    hw=plugins/handwritten
    if ! up_to_date hw_c "$out/handwritten_c.wasm" "${cc[*]}" $hw/c/reactor.c wit/reactor.wit; then
      cargo build --release --quiet -p batpak-build
      start=$(date +%s.%N)
      tool="$root/target/release/batpak-build"
      tmp="$out/hw-c-build"
      rm -rf "$tmp" && mkdir -p "$tmp"
      "$tool" c-bindings wit "$tmp"
      "${cc[@]}" -mexec-model=reactor -O2 -Wl,--strip-all -I"$tmp" -o "$tmp/reactor.core.wasm" \
        $hw/c/reactor.c "$tmp/reactor_plugin.c" "$tmp/reactor_plugin_component_type.o"
      "$tool" component "$tmp/reactor.core.wasm" "$out/handwritten_c.wasm"
      built handwritten_c "$start"
      stamp_of "${cc[*]}" $hw/c/reactor.c wit/reactor.wit >"$out/.hw_c.stamp"
    fi
    tool_id="$(componentize-py --version)"
    if ! up_to_date hw_py "$out/handwritten_py.wasm" "$tool_id" $hw/py/app.py wit/reactor.wit; then
      start=$(date +%s.%N)
      componentize-py -d wit -w reactor-plugin componentize -p $hw/py app -o "$out/handwritten_py.wasm" >/dev/null
      built handwritten_py "$start"
      stamp_of "$tool_id" $hw/py/app.py wit/reactor.wit >"$out/.hw_py.stamp"
    fi
    tool_id="$(command -v componentize-qjs) $(command -v componentize-js)"
    if ! up_to_date hw_js "$out/handwritten_js_sm.wasm" "$tool_id" $hw/js/reactor.js wit/reactor.wit ||
      [ ! -f "$out/handwritten_js.wasm" ]; then
      start=$(date +%s.%N)
      componentize-qjs --sync --wit wit --world reactor-plugin --js $hw/js/reactor.js \
        -o "$out/handwritten_js.wasm" >/dev/null
      built handwritten_js "$start"
      start=$(date +%s.%N)
      componentize-js --wit wit --world-name reactor-plugin -d http -d fetch-event \
        --out "$out/handwritten_js_sm.wasm" $hw/js/reactor.js >/dev/null
      built handwritten_js_sm "$start"
      stamp_of "$tool_id" $hw/js/reactor.js wit/reactor.wit >"$out/.hw_js.stamp"
    fi
    for name in c py js js_sm; do record "handwritten_$name" "$out/handwritten_$name.wasm"; done
    ;;
  *)
    echo "error: unknown language $lang (expected c, python, js, wat or handwritten)" >&2
    exit 2
    ;;
  esac
done
