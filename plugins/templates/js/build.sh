#!/usr/bin/env bash
# Builds {{stem}}.wasm from reactor.js (QuickJS). Needs componentize-qjs 0.4.5;
# without root:
#   npm install --prefix ~/.batpak-tools/npm componentize-qjs@0.4.5
# --sync is required: without it the component needs the async component
# model, which the host refuses.
set -euo pipefail
cd "$(dirname "$0")"
PATH="$PATH:${HOME:-}/.batpak-tools/npm/node_modules/.bin"
command -v componentize-qjs >/dev/null || {
  echo "error: componentize-qjs not found; install it without root:" >&2
  echo "  npm install --prefix ~/.batpak-tools/npm componentize-qjs@0.4.5" >&2
  exit 3
}
componentize-qjs --sync --wit wit --world reactor-plugin --js reactor.js -o {{stem}}.wasm
echo "built {{stem}}.wasm"
