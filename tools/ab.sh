#!/usr/bin/env bash
# Batch-1 latency of two or more bertlite binaries on the same bundle, taking turns: each
# round runs every binary once per length (`bertlite bench`, 1 thread unless THREADS, int8,
# one BBC test article cut to 16 and to 128 tokens), and the summary gives each binary's
# median over the rounds and its median per-round ratio to the first. On a shared 2-core VM
# single runs of the same binary vary by ±15%; taking turns round after round moves all of
# them together.
#   tools/ab.sh ROUNDS BUNDLE NAME=BINARY NAME=BINARY...   (THREADS=2 for two threads)
# e.g. tools/ab.sh 30 minilm-bbc.blt before=/tmp/bertlite-before after=target/release/bertlite
set -euo pipefail
[ $# -ge 4 ] || { sed -n 2,9p "$0"; exit 2; }
rounds=$1 bundle=$2 threads=${THREADS:-1}
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
text=$(head -1 "$root/data/bbc/test.jsonl" | python3 -c 'import sys, json; print(json.loads(sys.stdin.readline())["text"].replace("\n", " "))')
out=$(mktemp)
for r in $(seq "$rounds"); do
  for t in 16 128; do
    iters=$([ "$t" = 16 ] && echo 200 || echo 30)
    for nb in "$@"; do
      p50=$("${nb#*=}" bench -m "$bundle" --threads "$threads" --precision int8 --truncate "$t" \
        --iters "$iters" "$text" | grep -oE 'p50 +[0-9.]+' | awk '{print $2}')
      echo "$r $t ${nb%%=*} $p50" >> "$out"
    done
  done
done
python3 - "$out" <<'PY'
import statistics as st, sys
runs, names = {}, []
for line in open(sys.argv[1]):
    _, t, name, ms = line.split()
    runs.setdefault((t, name), []).append(float(ms))
    names += [name] if name not in names else []
for t in ("16", "128"):
    base = runs[(t, names[0])]
    print(f"{t} tokens: " + "; ".join(
        f"{n} {st.median(runs[(t, n)]):.3f} ms (x{st.median(a / b for a, b in zip(runs[(t, n)], base)):.3f})"
        for n in names))
PY
rm -f "$out"
