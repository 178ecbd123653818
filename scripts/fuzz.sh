#!/usr/bin/env bash
# Runs every Fuzz target of the module for a short time (default 200000 executions each), so
# CI exercises the fuzzers and not only their seed corpora. Give a count
# ("200000x"): a duration can fail spuriously on Go 1.26 (go.dev/issue/75804).
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-200000x}
found=0
while IFS=: read -r file target; do
  found=1
  pkg=./$(dirname "$file")
  echo "fuzz $pkg $target ($fuzztime)"
  go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"
done < <(git grep -o -E '^func Fuzz[A-Za-z0-9_]*' -- '*_test.go' | sed 's/func //')
if [ "$found" = 0 ]; then
  echo "no fuzz targets found" >&2
  exit 1
fi
