#!/usr/bin/env bash
# Makes sure redis-server and redis-cli are on PATH: tests start their own
# redis-server on free ports and never skip for want of one.
set -euo pipefail
if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing redis-server (apt-get)…"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq redis-server redis-tools >/dev/null
  # The package starts a system redis on :6379; tests never use it, and make run
  # prefers REDIS_URL or a private one, so leave it be.
  exit 0
fi
echo "redis-server is missing. Install it, then re-run:" >&2
echo "  sudo apt-get install -y redis-server" >&2
exit 1
