#!/usr/bin/env bash
# Builds {{stem}}.wasm from app.py. Needs componentize-py 0.25.1; without root:
#   python3 -m venv ~/.batpak-tools && ~/.batpak-tools/bin/pip install componentize-py==0.25.1
set -euo pipefail
cd "$(dirname "$0")"
PATH="$PATH:${HOME:-}/.batpak-tools/bin"
command -v componentize-py >/dev/null || {
  echo "error: componentize-py not found; install it without root:" >&2
  echo "  python3 -m venv ~/.batpak-tools && ~/.batpak-tools/bin/pip install componentize-py==0.25.1" >&2
  exit 3
}
componentize-py -d wit -w reactor-plugin componentize app -o {{stem}}.wasm
echo "built {{stem}}.wasm"
