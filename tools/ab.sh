#!/usr/bin/env bash
# Latency of two or more bertlite binaries on the same bundle, taking turns: each round runs
# every binary once per length (`bertlite bench`, 1 thread unless THREADS, int8, BBC test
# articles cut to each of LENGTHS tokens, default 16 and 128; one article at batch 1, the
# first BATCH long articles as one batch with BATCH), and the summary gives each binary's
# median time per text over the rounds and its median per-round ratio to the first. On a
# shared 2-core VM single runs of the same binary vary by ±15%; taking turns round after
# round moves all of them together.
#   tools/ab.sh ROUNDS BUNDLE NAME=BINARY NAME=BINARY...   (THREADS=2, BATCH=8, LENGTHS="64 256")
# e.g. tools/ab.sh 30 minilm-bbc.blt before=/tmp/bertlite-before after=target/release/bertlite
set -euo pipefail
[ $# -ge 4 ] || { sed -n 2,9p "$0"; exit 2; }
rounds=$1 bundle=$2 threads=${THREADS:-1} batch=${BATCH:-1} lengths=${LENGTHS:-16 128}
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
texts=$(mktemp)
# Articles of at least 2500 characters (over 256 tokens), so every text of a batch has the
# length asked; one per line.
python3 - "$root/data/bbc/test.jsonl" "$batch" > "$texts" <<'PY'
import json, sys
rows = [json.loads(l)["text"].replace("\n", " ") for l in open(sys.argv[1])]
print("\n".join([t for t in rows if len(t) >= 2500][: int(sys.argv[2])]))
PY
out=$(mktemp)
for r in $(seq "$rounds"); do
  for t in $lengths; do
    iters=$(( t <= 16 ? 200 : (batch > 1 ? 8 : 30) ))
    for nb in "$@"; do
      ms=$("${nb#*=}" bench -m "$bundle" --json --threads "$threads" --precision int8 \
        --truncate "$t" --iters "$iters" --batch "$batch" < "$texts" |
        python3 -c 'import sys, json; r = [json.loads(l) for l in sys.stdin if "p50_ms" in l]; print(r[0]["p50_ms"] / r[0]["batch"])')
      echo "$r $t ${nb%%=*} $ms" >> "$out"
    done
  done
done
python3 - "$out" "$lengths" "$batch" "$threads" <<'PY'
import statistics as st, sys
runs, names = {}, []
for line in open(sys.argv[1]):
    _, t, name, ms = line.split()
    runs.setdefault((t, name), []).append(float(ms))
    names += [name] if name not in names else []
print(f"batch {sys.argv[3]}, {sys.argv[4]} thread(s), ms per text:")
for t in sys.argv[2].split():
    base = runs[(t, names[0])]
    print(f"{t} tokens: " + "; ".join(
        f"{n} {st.median(runs[(t, n)]):.3f} ms (x{st.median(a / b for a, b in zip(runs[(t, n)], base)):.3f})"
        for n in names))
PY
rm -f "$out" "$texts"
