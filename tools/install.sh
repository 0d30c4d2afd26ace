#!/usr/bin/env bash
# Install what chunkformer needs on a fresh Debian machine: system tools (espeak-ng and sox for
# synthetic speech, jemalloc for fast CPU training) and the Python package with its pinned torch.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v sox >/dev/null || missing+=(sox)
[ -e /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 ] || [ -e /usr/lib/aarch64-linux-gnu/libjemalloc.so.2 ] \
  || missing+=(libjemalloc2)
if [ ${#missing[@]} -gt 0 ]; then
  echo "[install] apt-get install ${missing[*]}"
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! python3 -c "import chunkformer, torch, torchaudio, pytest" 2>/dev/null \
   || [ "$(python3 -c 'import torch; print(torch.__version__.split("+")[0])')" != "2.11.0" ]; then
  echo "[install] pip install -e .[test]"
  python3 -m pip install -q -e ".[test]"
fi
