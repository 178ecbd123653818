#!/usr/bin/env bash
# Makes sure redis-server and redis-cli are on PATH: tests start their own
# redis-server on free ports and never skip for want of one. The Redis Cluster
# tests (internal/redisproc StartCluster, make cluster) need 7.0 or later
# (cluster-port) and redis-cli (redis-tools) to join the nodes; Debian 12
# ships 7.0.
set -euo pipefail
check_version() {
  local v
  v=$(redis-server --version | sed -n 's/.* v=\([0-9]*\)\..*/\1/p')
  if [ -z "$v" ] || [ "$v" -lt 7 ]; then
    echo "redis-server $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p') is too old: the Redis Cluster tests need 7.0 or later" >&2
    exit 1
  fi
}
if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
  check_version
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing redis-server (apt-get)…"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq redis-server redis-tools >/dev/null
  # The package starts a system redis on :6379; tests never use it, and make run
  # prefers REDIS_URL or a private one, so leave it be.
  check_version
  exit 0
fi
echo "redis-server is missing. Install it, then re-run:" >&2
echo "  sudo apt-get install -y redis-server" >&2
exit 1
