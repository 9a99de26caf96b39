#!/usr/bin/env bash
# Builds {{stem}}.wasm from reactor.js and the SDK in batpak/.
#   ./build.sh              SpiderMonkey: @bytecodealliance/componentize-js 0.23.0
#   ./build.sh --quickjs    QuickJS: componentize-qjs 0.4.5 (smaller, faster to load)
# Install them without root:
#   npm install --prefix ~/.batpak-tools/npm @bytecodealliance/componentize-js@0.23.0 componentize-qjs@0.4.5
# (BATPAK_JS_ENGINE=quickjs does the same as --quickjs.)
set -euo pipefail
cd "$(dirname "$0")"
PATH="$PATH:${HOME:-}/.batpak-tools/npm/node_modules/.bin"
engine="${BATPAK_JS_ENGINE:-{{engine}}}"
[ "${1:-}" = "--quickjs" ] && engine=quickjs
[ "${1:-}" = "--spidermonkey" ] && engine=spidermonkey
install="npm install --prefix ~/.batpak-tools/npm @bytecodealliance/componentize-js@0.23.0 componentize-qjs@0.4.5"
case "$engine" in
quickjs)
  command -v componentize-qjs >/dev/null || { echo "error: componentize-qjs not found; install it without root: $install" >&2; exit 3; }
  # --sync: without it the component needs the async component model, which the host refuses.
  componentize-qjs --sync --wit wit --world reactor-plugin --js reactor.js -o {{stem}}.wasm >/dev/null
  ;;
spidermonkey)
  command -v componentize-js >/dev/null || { echo "error: componentize-js not found; install it without root: $install" >&2; exit 3; }
  # -d http -d fetch-event: without them the component imports wasi:http, which the host refuses.
  componentize-js --wit wit --world-name reactor-plugin -d http -d fetch-event --out {{stem}}.wasm reactor.js >/dev/null
  ;;
*) echo "error: unknown engine $engine (spidermonkey or quickjs)" >&2; exit 2 ;;
esac
echo "built {{stem}}.wasm ($engine)"
