#!/usr/bin/env bash
# The compression trade-off on BBC News: int8 alone and int8 with increasing structured
# pruning, each with a head retrained on its own embeddings, evaluated against fp32.
# Writes results/compression.{json,svg,md}.
source "$(dirname "$0")/env.sh"
cargo build -p bertlite-tool  # dev profile: dependencies are optimized (Cargo.toml)
tool="$CARGO_TARGET_DIR/debug/bertlite-tool"
out="$BERTLITE_CACHE/sweep"
mkdir -p "$out" results
points=(
  "int8:"
  "ffn25:--prune-ffn 0.25"
  "ffn50-heads50:--prune-ffn 0.5 --prune-heads 0.5"
  "ffn50-layers2:--prune-ffn 0.5 --drop-layers 2"
  "ffn75-heads50-layers2:--prune-ffn 0.75 --prune-heads 0.5 --drop-layers 2"
)
bundles=()
for p in "${points[@]}"; do
  name=${p%%:*}
  # shellcheck disable=SC2086
  "$tool" compile --model-dir models/all-MiniLM-L6-v2 --train data/bbc/train.jsonl ${p#*:} -o "$out/$name.blt"
  bundles+=("$out/$name.blt")
done
# Latency at 1 thread, batch 1, on the first 40 test articles; accuracy on all 444.
"$tool" eval --data data/bbc/test.jsonl --model-dir models/all-MiniLM-L6-v2 --threads 1 --latency-texts 40 \
  --json results/compression.json --svg results/compression.svg "${bundles[@]}"
python3 tools/reference/compression_report.py results/compression.json > results/compression.md
