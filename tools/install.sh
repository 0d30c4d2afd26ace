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

# Dependencies (torch pinned to 2.11.0), then this checkout as the `chunkformer` package: a
# clone elsewhere must not test another checkout's editable install.
# The server and ONNX extras are installed too: their tests are part of the suite.
modules="torch, torchaudio, pytest, sentencepiece, kaldiio, editdistance, soundfile, websockets"
modules+=", onnx, onnxruntime, onnxscript"
if ! python3 -c "import $modules" 2>/dev/null \
   || [ "$(python3 -c 'import torch; print(torch.__version__.split("+")[0])')" != "2.11.0" ]; then
  echo "[install] pip install -e .[test,server,onnx]"
  python3 -m pip install -q -e ".[test,server,onnx]"
fi
here="$(pwd -P)/chunkformer"
there="$(cd / && python3 -c 'import chunkformer, os; print(os.path.dirname(os.path.realpath(chunkformer.__file__)))' 2>/dev/null || true)"
if [ "$there" != "$here" ]; then
  echo "[install] pip install -e . (this checkout)"
  python3 -m pip install -q --no-deps -e .
fi
