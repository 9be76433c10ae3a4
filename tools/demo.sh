#!/usr/bin/env bash
# The main job on the default model: fetch all-MiniLM-L6-v2 and BBC News (cached), build
# release binaries, compile the real model into an int8 bundle with a BBC News head, classify
# sample sentences, and print size and latency.
source "$(dirname "$0")/env.sh"
cargo build --release --workspace --bins
bin="$CARGO_TARGET_DIR/release"
bundle=${BUNDLE:-minilm-bbc.blt}
if [ ! -f "$bundle" ]; then
  "$bin/bertlite-tool" compile --model-dir models/all-MiniLM-L6-v2 --train data/bbc/train.jsonl -o "$bundle"
fi
echo
echo "== bertlite info"
"$bin/bertlite" info -m "$bundle"
sentences=(
  "Shares in the carmaker fell after a profit warning"
  "The striker scored twice in the cup final on Saturday"
  "The prime minister faced tough questions in parliament"
  "The band's new album tops the charts for a second week"
  "The new phone runs a faster chip and a brighter screen"
)
echo
echo "== bertlite classify"
"$bin/bertlite" classify -m "$bundle" "${sentences[@]}"
echo
echo "== bertlite classify --json (stdin)"
printf '%s\n' "${sentences[0]}" | "$bin/bertlite" classify -m "$bundle" --json
echo
echo "== latency, batch 1, 1 thread, this machine ($(nproc) cores, $(uname -m))"
"$bin/bertlite" bench -m "$bundle" --threads 1 --iters 20 "${sentences[@]:0:2}" \
  "$(head -1 data/bbc/test.jsonl | python3 -c 'import json,sys; print(json.load(sys.stdin)["text"])')"
ls -l "$bundle" | awk '{printf "bundle size: %.2f MB\n", $5/1e6}'
