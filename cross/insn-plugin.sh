#!/usr/bin/env bash
# Builds the instruction-count plugin (cross/insn/insn_count.c) with the host gcc when its
# source is newer than the cached library, and prints the library's path. Used by
# cross/insn-count.sh, cross/insn-profile.sh and cross/ort-baseline.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
plugin=${BERTLITE_CACHE:-$HOME/.cache/bertlite}/qemu-plugins/libinsn_count.so
if [ ! -f "$plugin" ] || [ "$root/cross/insn/insn_count.c" -nt "$plugin" ]; then
  mkdir -p "$(dirname "$plugin")"
  gcc -shared -fPIC -O2 -o "$plugin.tmp" "$root/cross/insn/insn_count.c" && mv "$plugin.tmp" "$plugin"
fi
echo "$plugin"
