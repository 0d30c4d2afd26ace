#!/usr/bin/env bash
# The test command of the README: installs what is missing, then runs the default test suite
# (under 15 minutes on 2 cores). Extra arguments go to pytest, e.g. `bash tools/test.sh -k encoder`.
# Slow end-to-end checks: CHUNKFORMER_SLOW=1 bash tools/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh
if ! command -v chromium >/dev/null; then  # the call report is tested in headless Chromium
  echo "[install] apt-get install chromium (test only)"
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
. tools/env.sh
set +e
python3 -m pytest -q test "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
fi
exit $rc
