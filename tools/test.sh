#!/usr/bin/env bash
# The test command: fetch the real model and data (cached), compile the test bundles from the
# real all-MiniLM-L6-v2, then run every test of the workspace.
source "$(dirname "$0")/env.sh"
cargo build --workspace --bins
tool="$CARGO_TARGET_DIR/debug/bertlite-tool"
bundles="$BERTLITE_CACHE/bundles"
mkdir -p "$bundles"
model=models/all-MiniLM-L6-v2
# A bundle is compiled again only when what it depends on changed: the tool binary, the
# checkpoint, the training data or its command line (the fetched ONNX files are pinned
# versions). Training the BBC head embeds all 1781 articles.
inputs=$( (sha256sum "$tool" $model/model.safetensors data/bbc/train.jsonl \
  tools/reference/make_task_checkpoints.py) | sha256sum | cut -c1-16)
compile() { # NAME TOOL-ARGS...
  local name=$1 stamp
  shift
  stamp=$(printf '%s %s' "$inputs" "$*" | sha256sum | cut -c1-16)
  if [ ! -f "$bundles/$name" ] || [ "$(cat "$bundles/$name.stamp" 2>/dev/null)" != "$stamp" ]; then
    "$tool" compile "$@" -o "$bundles/$name"
    echo "$stamp" > "$bundles/$name.stamp"
  fi
}
compile minilm-f32.blt --model-dir $model --no-quantize
compile minilm-int8.blt --model-dir $model
compile minilm-int8-nearest.blt --model-dir $model --round-to-nearest
# The two real ONNX exports (no tokenizer inside: all-MiniLM-L6-v2's has the same vocabulary).
tok=(--tokenizer $model/tokenizer.json --max-len 128)
int8w=models/minilm-int8-onnx/model.onnx
para=models/paraphrase-MiniLM-L3-v2-onnx/paraphrase-MiniLM-L3-v2.onnx
compile onnx-int8w-f32.blt --onnx $int8w "${tok[@]}" --no-quantize
compile onnx-int8w-int8.blt --onnx $int8w "${tok[@]}"
compile onnx-paraphrase-f32.blt --onnx $para "${tok[@]}" --no-quantize
compile onnx-paraphrase-int8.blt --onnx $para "${tok[@]}"
# A pruned bundle (heads, FFN neurons, two whole layers removed): the fast paths must still
# match its graph (tests/contract.rs).
compile minilm-pruned.blt --model-dir $model --prune-ffn 0.5 --prune-heads 0.25 --drop-layers 2 \
  --calibration data/bbc/train.jsonl --calibration-texts 32
# The same neurons and heads removed (no layers), with and without the least-squares repair.
compile minilm-pruned-distill.blt --model-dir $model --prune-ffn 0.5 --prune-heads 0.25 \
  --drop-layers 2 --calibration data/bbc/train.jsonl --calibration-texts 32 --distill
compile minilm-ffn50-heads25.blt --model-dir $model --prune-ffn 0.5 --prune-heads 0.25 \
  --calibration data/bbc/train.jsonl --calibration-texts 32
compile minilm-ffn50-heads25-norepair.blt --model-dir $model --prune-ffn 0.5 --prune-heads 0.25 \
  --calibration data/bbc/train.jsonl --calibration-texts 32 --no-repair
# The same FLOPs budget (59%) spent per layer by measured sensitivity (--target-flops).
compile minilm-budget59.blt --model-dir $model --target-flops 0.59 \
  --calibration data/bbc/train.jsonl --calibration-texts 32
# ONNX Runtime's graphs of bench.py: hand-built fp32, and quantize_dynamic (MatMulInteger) of it.
onnx="$BERTLITE_CACHE/onnx"
[ -f "$onnx/minilm-int8.onnx" ] || python3 tools/reference/make_onnx.py $model "$onnx"
compile onnx-ort-fp32-f32.blt --onnx "$onnx/minilm-fp32.onnx" "${tok[@]}" --no-quantize
compile onnx-ort-int8-f32.blt --onnx "$onnx/minilm-int8.onnx" "${tok[@]}" --no-quantize
compile minilm-bbc.blt --model-dir $model --train data/bbc/train.jsonl
# Every layer's output (tests/token_outputs.rs).
compile minilm-layers-f32.blt --model-dir $model --no-quantize --encoder-outputs
compile minilm-layers-int8.blt --model-dir $model --encoder-outputs
# Task heads (tests/tasks.rs): each checkpoint of tools/reference/make_task_checkpoints.py at f32
# and int8, and the pre-training one pruned.
for task in pretraining ner qa choice; do
  compile task-$task-f32.blt --model-dir models/tasks/minilm-$task --no-quantize
  compile task-$task-int8.blt --model-dir models/tasks/minilm-$task
done
compile task-pretraining-pruned.blt --model-dir models/tasks/minilm-pretraining --prune-ffn 0.5 \
  --drop-layers 2 --calibration data/bbc/train.jsonl --calibration-texts 32
cargo test --workspace "$@"
