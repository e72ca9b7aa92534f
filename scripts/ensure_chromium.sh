#!/usr/bin/env bash
# The report's browser test needs a headless Chromium: install Debian's if it is missing, fail loudly if we can't.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
echo "== installing chromium (Debian) for the browser test"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
if ! { $sudo apt-get update -q && $sudo apt-get install -y -q chromium; }; then
  echo "== ERROR: could not install chromium; the report's browser test needs it: apt-get install chromium" >&2
  exit 1
fi
