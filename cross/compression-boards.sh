#!/usr/bin/env bash
# The pruned bundles of tools/sweep.sh on the boards' CPUs: instructions per batch-1 inference
# under qemu-user (cross/insn-count.sh: (11 runs - 1 run) / 10, one BBC article cut to 256
# tokens, about a BBC article's length), each against the unpruned int8 bundle of the same split.
# Writes results/compression-boards.md.
#
#   cross/compression-boards.sh [SEED...]     (default: 1 2 3 4 5, the splits tools/sweep.sh made)
# POINTS="int8 flops50" and CPUS="cortex-a72" choose what is counted (defaults below);
# REPORT=results/NAME writes NAME.md instead of results/compression-boards.md.
#
# Instruction counts are not time (no caches, no issue width), but the same binary, CPU model
# and bundle give the same count every run, so each count is kept beside its bundle
# (BUNDLE.CPU.insn) and taken again only when the bundle or the binary is newer. Needs the
# aarch64 board build (cross/check.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export BERTLITE_CACHE=${BERTLITE_CACHE:-$HOME/.cache/bertlite}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$BERTLITE_CACHE/target}
bin=$CARGO_TARGET_DIR/aarch64-unknown-linux-gnu/board/bertlite
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(1 2 3 4 5)
read -r -a points <<< "${POINTS:-int8 flops50 lat55 ffn50-layers2}"
read -r -a cpus <<< "${CPUS:-cortex-a72 cortex-a76}"
[ "${points[0]}" = int8 ] || points=(int8 "${points[@]}")
report=${REPORT:-results/compression-boards}
out=$root/$report.md
regen="cross/compression-boards.sh ${seeds[*]}"
[ -n "${REPORT:-}" ] && regen="REPORT=$report $regen"
[ -n "${POINTS:-}${CPUS:-}" ] && regen="POINTS=\"${points[*]}\" CPUS=\"${cpus[*]}\" $regen"

count() { # bundle cpu -> M instructions
  local cache="$1.$2.insn"
  if [ ! -s "$cache" ] || [ "$1" -nt "$cache" ] || [ "$bin" -nt "$cache" ]; then
    "$root/cross/insn-count.sh" -c "$2" -n 256 "$1" "$bin" |
      sed -n 's/^ *256 tokens: \([0-9.]*\) M.*/\1/p' > "$cache.tmp"
    [ -s "$cache.tmp" ] || { echo "no count for $1 on $2" >&2; exit 1; }
    mv "$cache.tmp" "$cache"
  fi
  cat "$cache"
}

rows=()
for cpu in "${cpus[@]}"; do
  for seed in "${seeds[@]}"; do
    split=$BERTLITE_CACHE/sweep/split-$seed
    for p in "${points[@]}"; do
      [ -f "$split/$p.blt" ] || { echo "no $split/$p.blt: run tools/sweep.sh $seed first" >&2; exit 1; }
      n=$(count "$split/$p.blt" "$cpu")
      echo "$cpu seed $seed $p: $n M" >&2
      rows+=("$cpu $seed $p $n")
    done
  done
done

{
  echo "# Pruned bundles on the boards' CPUs"
  echo
  echo "Instructions per batch-1 inference, 1 thread, \`--precision auto\` (int8), one BBC article cut to"
  echo "256 tokens (about a BBC article's length; \`cross/insn-count.sh -n 256\`, qemu-user with our"
  echo "counting plugin), for the bundles \`tools/sweep.sh\` compiled on each split (the sweep's report"
  echo "of the same seeds and points has their accuracy: results/compression.md for 1-5, compression-seeds6-10.md for 6-10, compression-finetune.md for the -ftw points). The reduction is the unpruned int8 bundle's count over the pruned one's, per"
  echo "split, then the mean and the range over the splits. Counts are not time (no cache misses, no issue"
  echo "width), but they are the work the boards' int8 kernels do, the same every run."
  echo
  echo "Regenerate: \`$regen\` (after \`tools/sweep.sh\` and the board build of \`cross/check.sh\`)."
  echo
  printf '%s\n' "${rows[@]}" | python3 -c '
import sys, statistics
rows = [l.split() for l in sys.stdin if l.strip()]
cpus = list(dict.fromkeys(r[0] for r in rows)); seeds = list(dict.fromkeys(r[1] for r in rows))
points = list(dict.fromkeys(r[2] for r in rows))
n = {(c, s, p): float(x) for c, s, p, x in rows}
print("| bundle | " + " | ".join(f"{c}: M instructions (mean) | reduction, mean (range)" for c in cpus) + " |")
print("|---|" + "---|---|" * len(cpus))
for p in points:
    cells = []
    for c in cpus:
        r = [n[(c, s, "int8")] / n[(c, s, p)] for s in seeds]
        m = statistics.mean(n[(c, s, p)] for s in seeds)
        cells += [f"{m:.1f}", f"{statistics.mean(r):.2f}× ({min(r):.2f}–{max(r):.2f})"]
    print(f"| {p} | " + " | ".join(cells) + " |")
print()
print("Per split (M instructions; seeds " + ", ".join(seeds) + "):")
print()
for c in cpus:
    for p in points:
        print(f"- {c}, {p}: " + " / ".join(f"{n[(c, s, p)]:.1f}" for s in seeds))
'
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out" >&2
