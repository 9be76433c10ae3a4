#!/usr/bin/env bash
# Fidelity of what runs on each board CPU: pooled-embedding cosine of an aarch64 binary, under
# qemu, to the float64 reference on the 56 golden sentences (tests/golden/embeddings.jsonl, the
# same set and measure as tests/fidelity.rs on the host).
#
#   cross/fidelity.sh BINARY [BUNDLE]        (BUNDLE: minilm-int8.blt from tools/test.sh)
#
# Prints one line per CPU and precision: `auto` on cortex-a72 and cortex-a76, and on
# cortex-a72 also `--precision int8` (the Pi 4's int8 path, which `auto` does not pick).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export BERTLITE_CACHE=${BERTLITE_CACHE:-$HOME/.cache/bertlite}
bin=${1:?usage: cross/fidelity.sh BINARY [BUNDLE]}
bundle=${2:-$BERTLITE_CACHE/bundles/minilm-int8.blt}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -c 'import json, sys
for l in open(sys.argv[1]): print(json.loads(l)["text"])' "$root/tests/golden/embeddings.jsonl" > "$work/texts.txt"
for run in "cortex-a72 auto" "cortex-a72 int8" "cortex-a76 auto"; do
  set -- $run
  QEMU_CPU=$1 "$root/cross/run-aarch64.sh" "$bin" embed -m "$bundle" --json --threads 1 \
    --precision "$2" < "$work/texts.txt" > "$work/out.jsonl"
  picked=$(QEMU_CPU=$1 "$root/cross/run-aarch64.sh" "$bin" info -m "$bundle" --precision "$2" | awk '$1 == "precision" { print $2 }')
  python3 - "$root/tests/golden/embeddings.jsonl" "$work/out.jsonl" "$1" "$2" "$picked" <<'PY'
import json, math, sys
gold = [json.loads(l)["embedding"] for l in open(sys.argv[1])]
got = [json.loads(l)["embedding"] for l in open(sys.argv[2]) if l.strip()]
assert len(got) == len(gold), f"{len(got)} embeddings for {len(gold)} sentences"
def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
c = [cos(a, b) for a, b in zip(got, gold)]
print(f"{sys.argv[3]:<11} --precision {sys.argv[4]:<5} ({sys.argv[5]}): mean {sum(c) / len(c):.5f}, min {min(c):.5f} over {len(c)} sentences")
PY
done
