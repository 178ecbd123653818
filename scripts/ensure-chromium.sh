#!/usr/bin/env bash
# Makes sure a headless-capable Chromium is on PATH: the console's browser
# test (cmd/slammesh TestConsoleInBrowser) drives it and never skips.
set -euo pipefail
for b in chromium chromium-browser google-chrome; do
  if command -v "$b" >/dev/null; then
    exit 0
  fi
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing chromium (apt-get)…"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
  exit 0
fi
echo "chromium is missing. Install it, then re-run:" >&2
echo "  sudo apt-get install -y chromium" >&2
exit 1
