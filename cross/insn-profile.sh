#!/usr/bin/env bash
# Instructions per batch-1 inference by function under qemu-user: where the cost of an
# inference goes on a board's CPU (what cross/insn-count.sh totals).
#
#   cross/insn-profile.sh [-t aarch64|armv7] [-c CPU] [-n TOKENS] [-p PRECISION] [-j THREADS] BUNDLE BINARY
#
# BINARY must keep its symbols: build it with
#   CARGO_PROFILE_BOARD_STRIP=false cargo build --profile board --target aarch64-unknown-linux-gnu -p bertlite --bin bertlite
# (armv7-unknown-linux-gnueabihf with -t armv7; the CPU defaults to cortex-a15 there).
# Two runs (1 and 3 timed iterations) with cross/insn/insn_count.c's profile=PATH option; the
# difference / 2 per function is one inference's share.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export BERTLITE_CACHE=${BERTLITE_CACHE:-$HOME/.cache/bertlite}
arch=aarch64 cpu="" tokens=128 precision="" threads=1
while getopts "t:c:n:p:j:" o; do
  case $o in
    t) arch=$OPTARG ;; c) cpu=$OPTARG ;; n) tokens=$OPTARG ;; p) precision=$OPTARG ;; j) threads=$OPTARG ;;
    *) sed -n 5p "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
bundle=${1:?usage: cross/insn-profile.sh [-t aarch64|armv7] [-c CPU] [-n TOKENS] [-p PRECISION] [-j THREADS] BUNDLE BINARY}
bin=${2:?a bertlite binary with symbols}
case $arch in
  aarch64) runner=$root/cross/run-aarch64.sh nm=aarch64-linux-gnu-nm cpu=${cpu:-cortex-a76} ;;
  armv7) runner=$root/cross/run-armv7.sh nm=arm-linux-gnueabihf-nm cpu=${cpu:-cortex-a15} ;;
  *) echo "unknown target $arch (aarch64 or armv7)" >&2; exit 2 ;;
esac
plugin=$("$root/cross/insn-plugin.sh")
text=$(python3 "$root/cross/bench_text.py" "$root/data/bbc/test.jsonl")
extra=()
[ -n "$precision" ] && extra=(--precision "$precision")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Several guest threads run in parallel: the plugin must add atomically (slower, exact).
plugin_arg="file=$plugin"
[ "$threads" -gt 1 ] && plugin_arg="$plugin_arg,atomic=on"
for iters in 1 3; do
  QEMU_CPU=$cpu QEMU_PLUGIN="$plugin_arg,profile=$work/p$iters.txt" "$runner" "$bin" \
    bench -m "$bundle" --threads "$threads" --iters "$iters" --truncate "$tokens" "${extra[@]}" "$text" >/dev/null 2>&1
done
$nm -C "$bin" > "$work/syms.txt"
echo "qemu cpu $cpu, $tokens tokens, precision ${precision:-auto}, $(basename "$bundle")"
python3 - "$work" "$arch" <<'PY'
import bisect, collections, os, sys
work, arch = sys.argv[1], sys.argv[2]
syms = []
for line in open(f"{work}/syms.txt"):
    parts = line.split(" ", 2)
    if len(parts) == 3 and parts[0] and parts[1] in "tTwW":
        syms.append((int(parts[0], 16), parts[2].strip()))
syms.sort()
starts = [a for a, _ in syms]
# qemu-user maps an aarch64 PIE at 0x5500000000, a 32-bit ARM one at 0x40000000.
BASE = {"aarch64": 0x5500000000, "armv7": 0x40000000}[arch]
def by_function(path):
    cost = collections.Counter()
    for line in open(path):
        vaddr, insns, count = line.split()
        i = bisect.bisect_right(starts, int(vaddr, 16) - BASE) - 1
        cost[syms[i][1] if i >= 0 else "?"] += int(insns) * int(count)
    return cost
one, three = by_function(f"{work}/p1.txt"), by_function(f"{work}/p3.txt")
per = {k: (three[k] - one.get(k, 0)) / 2 for k in three}
total = sum(per.values())
print(f"{total / 1e6:8.1f} M  total per inference")
for name, n in sorted(per.items(), key=lambda kv: -kv[1])[:int(os.environ.get("TOP", "15"))]:
    print(f"{n / 1e6:8.2f} M  {100 * n / total:5.1f}%  {name[:110]}")
PY
