#!/usr/bin/env bash
# Builds {{stem}}.wasm from app.py. Needs: pip install componentize-py==0.25.1
set -euo pipefail
cd "$(dirname "$0")"
componentize-py -d wit -w reactor-plugin componentize app -o {{stem}}.wasm
echo "built {{stem}}.wasm"
