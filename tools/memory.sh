#!/usr/bin/env bash
# Peak resident memory (GNU time's maxrss) of the release `bertlite` CLI on the BBC bundle,
# 1 thread, for the inputs issue #17 names: a 10 MB line, a batch of long texts, and many
# sequential requests (peak after 100, 1 000 and 10 000 requests: growth would show as a
# rising peak). Prints a markdown table; README.md's "Memory" figures come from it.
#   tools/memory.sh [BUNDLE]
source "$(dirname "$0")/env.sh"
bundle=${1:-$BERTLITE_CACHE/bundles/minilm-bbc.blt}
bin="$CARGO_TARGET_DIR/release/bertlite"
cargo build --quiet --release -p bertlite --bin bertlite
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
peak() { # peak KB of: bertlite ARGS < INPUT
  local input=$1; shift
  /usr/bin/time -f %M -o "$tmp/kb" "$bin" "$@" < "$input" > /dev/null
  awk '{printf "%.1f", $1 / 1024}' "$tmp/kb"
}
python3 - "$tmp" <<'PY'
import json, sys
tmp = sys.argv[1]
words = "the markets rallied as investors welcomed the central bank decision ".split()
with open(f"{tmp}/10mb.txt", "w") as f:  # one line of 10 MB
    line = " ".join(words[i % len(words)] for i in range(10 * 1024 * 1024 // 6))
    f.write(line[: 10 * 1024 * 1024] + "\n")
texts = [json.loads(l)["text"].replace("\n", " ") for l in open("data/bbc/test.jsonl")]
texts.sort(key=len, reverse=True)
with open(f"{tmp}/long.txt", "w") as f:  # the 32 longest test articles
    f.write("\n".join(texts[:32]) + "\n")
short = [t[:200] for t in texts]
for n in (100, 1000, 10000):
    with open(f"{tmp}/seq{n}.txt", "w") as f:
        f.write("\n".join(short[i % len(short)] for i in range(n)) + "\n")
PY
echo "| input | peak RSS |"
echo "|---|---|"
echo "| load only (\`info\`) | $(peak /dev/null info -m "$bundle" --threads 1) MB |"
echo "| one 10 MB line (\`classify\`) | $(peak "$tmp/10mb.txt" classify -m "$bundle" --threads 1) MB |"
echo "| 32 longest BBC test articles, one batch of 32 × 256 tokens (\`bench --batch 32\`) | $(peak "$tmp/long.txt" bench -m "$bundle" --threads 1 --batch 32 --iters 1) MB |"
for n in 100 1000 10000; do
  echo "| $n sequential requests (\`classify\`, one per line) | $(peak "$tmp/seq$n.txt" classify -m "$bundle" --threads 1) MB |"
done
