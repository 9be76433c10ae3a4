#!/usr/bin/env bash
# ONNX Runtime int8 against bertlite on the boards' CPUs, as instructions per inference under
# qemu-user (results/boards.md, issue #14). Both count the same token ids (the longest BBC test
# article cut to each length, as cross/insn-count.sh does) with the same plugin, batch 1,
# 1 thread, (11 runs − 1 run) / 10.
#
#   cross/ort-baseline.sh [-c "cortex-a72 cortex-a76"] [-n "16 128"] BUNDLE [BERTLITE_BINARY]
#
# ONNX Runtime side: libonnxruntime.so.1 for
# linux-arm64 from the onnxruntime-node npm package, cross/ort-baseline (a small program on the
# `ort` crate, load-dynamic) cross-built for aarch64, the quantize_dynamic (per-channel QInt8)
# graph of tools/reference/make_onnx.py. ONNX Runtime's cpuinfo library reads /proc/cpuinfo,
# which under qemu-user is the host's: each ORT process runs in a private mount namespace with a
# board-like /proc/cpuinfo (the MIDR of the -cpu model). Needs root (unshare -m), npm, qemu-user,
# the aarch64 cross linker and the Python oracles of tools/setup.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export BERTLITE_CACHE=${BERTLITE_CACHE:-$HOME/.cache/bertlite}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$BERTLITE_CACHE/target}
cpus="cortex-a72 cortex-a76" lengths="16 128"
while getopts "c:n:" o; do
  case $o in
    c) cpus=$OPTARG ;; n) lengths=$OPTARG ;;
    *) sed -n 7p "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
bundle=${1:?usage: cross/ort-baseline.sh [-c CPUS] [-n LENGTHS] BUNDLE [BERTLITE_BINARY]}
bin=${2:-$CARGO_TARGET_DIR/aarch64-unknown-linux-gnu/board/bertlite}
ORT_VERSION=1.30.0

# ONNX Runtime's aarch64 library, from the npm registry (cached).
ortdir=$BERTLITE_CACHE/ort-arm64
lib=$ortdir/package/bin/napi-v6/linux/arm64/libonnxruntime.so.1
if [ ! -f "$lib" ]; then
  mkdir -p "$ortdir"
  (cd "$ortdir" && npm pack "onnxruntime-node@$ORT_VERSION" --silent >/dev/null &&
    tar xzf "onnxruntime-node-$ORT_VERSION.tgz" package/bin/napi-v6/linux/arm64/libonnxruntime.so.1 &&
    rm "onnxruntime-node-$ORT_VERSION.tgz")
fi
# The host program, cross-built (its own target dir: it is not a workspace member).
CARGO_TARGET_DIR=$BERTLITE_CACHE/ort-baseline-target cargo build --quiet --release \
  --manifest-path "$root/cross/ort-baseline/Cargo.toml" --target aarch64-unknown-linux-gnu
runner=$BERTLITE_CACHE/ort-baseline-target/aarch64-unknown-linux-gnu/release/ort-baseline
# The int8 graph ONNX Runtime runs (tools/test.sh makes it too).
onnx=$BERTLITE_CACHE/onnx
[ -f "$onnx/minilm-int8.onnx" ] || python3 "$root/tools/reference/make_onnx.py" "$root/models/all-MiniLM-L6-v2" "$onnx"
plugin=$("$root/cross/insn-plugin.sh")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cpuinfo() { # qemu CPU -> a Raspberry-Pi-like /proc/cpuinfo with its MIDR and features
  local variant part rev features model
  case $1 in
    cortex-a72) variant=0x0 part=0xd08 rev=3 features="fp asimd evtstrm crc32 cpuid" model="Raspberry Pi 4 Model B" ;;
    cortex-a76) variant=0x4 part=0xd0b rev=1 features="fp asimd evtstrm crc32 cpuid atomics fphp asimdhp asimdrdm lrcpc dcpop asimddp" model="Raspberry Pi 5 Model B" ;;
    *) echo "no cpuinfo for $1" >&2; exit 2 ;;
  esac
  for p in 0 1 2 3; do
    printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' \
      "$p" "$features" "$variant" "$part" "$rev"
  done
  printf 'Hardware\t: BCM2835\nModel\t\t: %s\n' "$model"
}
ids() { # tokens -> the text's ids, truncated as Hugging Face does
  python3 "$root/cross/bench_text.py" "$root/data/bbc/test.jsonl" "$root/models/all-MiniLM-L6-v2/tokenizer.json" "$1"
}
ort_count() { # cpu runs ids -> instructions
  cpuinfo "$1" > "$work/cpuinfo-$1"
  mkdir -p "$work/home"
  # ONNX Runtime writes a telemetry store under $HOME even with telemetry off.
  HOME=$work/home unshare -m sh -c 'mount --bind "$1" /proc/cpuinfo && shift && exec "$@"' sh \
    "$work/cpuinfo-$1" qemu-aarch64 -cpu "$1" -L /usr/aarch64-linux-gnu -plugin "$plugin" \
    "$runner" "$lib" "$onnx/minilm-int8.onnx" "$2" "$3" 2>&1 >/dev/null | sed -n 's/^insns: //p'
}
printf '%-11s %6s %14s %16s %7s %18s %7s\n' "qemu cpu" tokens "ORT int8" "bertlite auto" ratio "bertlite int8" ratio
for cpu in $cpus; do
  for n in $lengths; do
    ids=$(ids "$n")
    a=$(ort_count "$cpu" 1 "$ids") b=$(ort_count "$cpu" 11 "$ids")
    ort=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f", (b - a) / 10 / 1e6 }')
    ours=$("$root/cross/insn-count.sh" -c "$cpu" -n "$n" "$bundle" "$bin" | sed -n 's/^ *[0-9]* tokens: \([0-9.]*\) M.*/\1/p')
    int8=$("$root/cross/insn-count.sh" -c "$cpu" -n "$n" -p int8 "$bundle" "$bin" | sed -n 's/^ *[0-9]* tokens: \([0-9.]*\) M.*/\1/p')
    awk -v c="$cpu" -v n="$n" -v o="$ort" -v a="$ours" -v i="$int8" 'BEGIN {
      printf "%-11s %6d %12.1f M %14.1f M %7.2f %16.1f M %7.2f\n", c, n, o, a, a / o, i, i / o }'
  done
done
