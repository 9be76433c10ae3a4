#!/usr/bin/env bash
# Guest instructions per inference under qemu-user: a deterministic cost measure for comparing
# builds, precisions and graph changes on the ARM targets (emulated wall time means nothing).
#
#   cross/insn-count.sh [-t aarch64|armv7] [-c CPU] [-n "16 128"] [-p PRECISION] [-j THREADS] BUNDLE [BINARY]
#
# Counts with our plugin (cross/insn/insn_count.c, built by cross/insn-plugin.sh) over two runs of
# `bertlite bench` that differ only in the number of timed iterations (1 and 11, as the ONNX
# Runtime side is counted in results/boards.md); the difference / 10 is the cost of one batch-1
# inference at that length, load and tokenization excluded. (With 1 and 3 runs, the 16-token
# count moved by ±2% between runs of nearly the same code.)
# Instruction counts are not time (no cache misses, no issue width), but the same binary and CPU
# model give the same count every run, so a change of a few percent is visible.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export BERTLITE_CACHE=${BERTLITE_CACHE:-$HOME/.cache/bertlite}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$BERTLITE_CACHE/target}
arch=aarch64 cpu="" lengths="16 128" precision="" threads=1
while getopts "t:c:n:p:j:" o; do
  case $o in
    t) arch=$OPTARG ;; c) cpu=$OPTARG ;; n) lengths=$OPTARG ;; p) precision=$OPTARG ;; j) threads=$OPTARG ;;
    *) sed -n 4,5p "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
bundle=${1:?usage: cross/insn-count.sh [-t aarch64|armv7] [-c CPU] [-n LENGTHS] [-p PRECISION] BUNDLE [BINARY]}
case $arch in
  aarch64) target=aarch64-unknown-linux-gnu runner=$root/cross/run-aarch64.sh cpu=${cpu:-cortex-a72} ;;
  armv7) target=armv7-unknown-linux-gnueabihf runner=$root/cross/run-armv7.sh cpu=${cpu:-cortex-a15} ;;
  *) echo "unknown target $arch (aarch64 or armv7)" >&2; exit 2 ;;
esac
bin=${2:-$CARGO_TARGET_DIR/$target/board/bertlite}
[ -x "$bin" ] || { echo "no $target binary at $bin: run cross/check.sh or cargo build --profile board --target $target -p bertlite --bin bertlite" >&2; exit 2; }

plugin=$("$root/cross/insn-plugin.sh")

# A long real article, cut to each length by the runtime (--truncate).
text=$(python3 "$root/cross/bench_text.py" "$root/data/bbc/test.jsonl")
extra=()
[ -n "$precision" ] && extra=(--precision "$precision")

# With several threads the plugin must add atomically (guest threads run in parallel): the sum
# over all threads, spinning included, which is what -j measures (the parallel overhead).
plugin_arg="file=$plugin"
[ "$threads" -gt 1 ] && plugin_arg="$plugin_arg,atomic=on"
count() { # iters tokens
  QEMU_CPU=$cpu QEMU_PLUGIN="$plugin_arg" "$runner" "$bin" bench -m "$bundle" --threads "$threads" \
    --iters "$1" --truncate "$2" "${extra[@]}" "$text" 2>&1 >/dev/null | sed -n 's/^insns: //p'
}
echo "target $target, qemu cpu $cpu, precision ${precision:-auto}, threads $threads, $(basename "$bundle")"
for n in $lengths; do
  one=$(count 1 "$n") eleven=$(count 11 "$n")
  awk -v n="$n" -v a="$one" -v b="$eleven" 'BEGIN { printf "%4d tokens: %.1f M instructions per inference\n", n, (b - a) / 10 / 1e6 }'
done
