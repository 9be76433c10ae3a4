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
# The two real ONNX exports (no tokenizer inside: all-MiniLM-L6-v2's has the same vocabulary).
tok=(--tokenizer $model/tokenizer.json --max-len 128)
int8w=models/minilm-int8-onnx/model.onnx
para=models/paraphrase-MiniLM-L3-v2-onnx/paraphrase-MiniLM-L3-v2.onnx
"$tool" compile --onnx $int8w "${tok[@]}" --no-quantize -o "$bundles/onnx-int8w-f32.blt"
"$tool" compile --onnx $int8w "${tok[@]}" -o "$bundles/onnx-int8w-int8.blt"
"$tool" compile --onnx $para "${tok[@]}" --no-quantize -o "$bundles/onnx-paraphrase-f32.blt"
"$tool" compile --onnx $para "${tok[@]}" -o "$bundles/onnx-paraphrase-int8.blt"
# A pruned bundle (heads, FFN neurons, two whole layers removed): the fast paths must still
# match its graph (tests/contract.rs).
"$tool" compile --model-dir $model --prune-ffn 0.5 --prune-heads 0.25 --drop-layers 2 \
  --calibration data/bbc/train.jsonl --calibration-texts 32 -o "$bundles/minilm-pruned.blt"
# ONNX Runtime's graphs of bench.py: hand-built fp32, and quantize_dynamic (MatMulInteger) of it.
onnx="$BERTLITE_CACHE/onnx"
[ -f "$onnx/minilm-int8.onnx" ] || python3 tools/reference/make_onnx.py $model "$onnx"
"$tool" compile --onnx "$onnx/minilm-fp32.onnx" "${tok[@]}" --no-quantize -o "$bundles/onnx-ort-fp32-f32.blt"
"$tool" compile --onnx "$onnx/minilm-int8.onnx" "${tok[@]}" --no-quantize -o "$bundles/onnx-ort-int8-f32.blt"
# Training embeds all 1781 articles: reuse the bundle when nothing it depends on
# changed (tool binary, checkpoint, training data).
stamp=$( (sha256sum "$tool" $model/model.safetensors data/bbc/train.jsonl) | sha256sum | cut -c1-16)
if [ "$(cat "$bundles/minilm-bbc.stamp" 2>/dev/null)" != "$stamp" ]; then
  "$tool" compile --model-dir $model --train data/bbc/train.jsonl -o "$bundles/minilm-bbc.blt"
  echo "$stamp" > "$bundles/minilm-bbc.stamp"
fi
cargo test --workspace "$@"
