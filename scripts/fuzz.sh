#!/usr/bin/env bash
# Runs every Fuzz target of the module for a short time (default 10s each), so
# CI exercises the fuzzers and not only their seed corpora.
set -euo pipefail
fuzztime=${1:-10s}
found=0
for pkg in $(go list ./...); do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    found=1
    echo "fuzz $pkg $target ($fuzztime)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"
  done
done
if [ "$found" = 0 ]; then
  echo "no fuzz targets found" >&2
  exit 1
fi
