#!/usr/bin/env bash
# Builds {{stem}}.wasm from reactor.js (QuickJS). Needs: npm install -g componentize-qjs@0.4.5
# --sync is required: without it the component needs the async component
# model, which the host refuses.
set -euo pipefail
cd "$(dirname "$0")"
componentize-qjs --sync --wit wit --world reactor-plugin --js reactor.js -o {{stem}}.wasm
echo "built {{stem}}.wasm"
