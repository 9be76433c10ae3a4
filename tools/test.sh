#!/usr/bin/env bash
# The test command: fetch the real model and data (cached), compile the test bundles from the
# real all-MiniLM-L6-v2, then run every test of the workspace.
source "$(dirname "$0")/env.sh"
cargo build --workspace --bins
tool="$CARGO_TARGET_DIR/debug/bertlite-tool"
bundles="$BERTLITE_CACHE/bundles"
mkdir -p "$bundles"
model=models/all-MiniLM-L6-v2
"$tool" compile --model-dir $model --no-quantize -o "$bundles/minilm-f32.blt"
"$tool" compile --model-dir $model -o "$bundles/minilm-int8.blt"
# Training embeds 1781 articles (~3 min on 2 cores): reuse the bundle when nothing it depends on
# changed (tool binary, checkpoint, training data).
stamp=$( (sha256sum "$tool" $model/model.safetensors data/bbc/train.jsonl) | sha256sum | cut -c1-16)
if [ "$(cat "$bundles/minilm-bbc.stamp" 2>/dev/null)" != "$stamp" ]; then
  "$tool" compile --model-dir $model --train data/bbc/train.jsonl -o "$bundles/minilm-bbc.blt"
  echo "$stamp" > "$bundles/minilm-bbc.stamp"
fi
cargo test --workspace "$@"
