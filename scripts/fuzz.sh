#!/usr/bin/env bash
# Runs every fuzz target in the repository for the given time each
# (default 30s), from each package's own directory so that nested modules
# (examples/*) work too.
set -euo pipefail
t=${1:-30s}
cd "$(dirname "$0")/.."
grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r f; do
  dir=$(dirname "$f")
  grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //' | while read -r fz; do
    echo "== $dir $fz"
    (cd "$dir" && go test -run '^$' -fuzz "^${fz}\$" -fuzztime "$t" .)
  done
done
