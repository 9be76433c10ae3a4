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
for run in "cortex-a72 auto" "cortex-a72 int8" "cortex-a76 auto"; do
  # shellcheck disable=SC2086
  set -- $run
  # The texts as arguments: some golden sentences hold line breaks.
  python3 - "$root" "$bin" "$bundle" "$1" "$2" <<'PY'
import json, math, os, subprocess, sys
root, binary, bundle, cpu, precision = sys.argv[1:]
rows = [json.loads(l) for l in open(f"{root}/tests/golden/embeddings.jsonl")]
run = [f"{root}/cross/run-aarch64.sh", binary]
env = dict(os.environ, QEMU_CPU=cpu)
common = ["-m", bundle, "--precision", precision]
out = subprocess.run(run + ["embed", "--json", "--threads", "1", *common, *[r["text"] for r in rows]],
                     env=env, check=True, capture_output=True, text=True).stdout
got = [json.loads(l)["embedding"] for l in out.splitlines() if l.strip()]
assert len(got) == len(rows), f"{len(got)} embeddings for {len(rows)} sentences"
info = subprocess.run(run + ["info", *common], env=env, check=True, capture_output=True, text=True).stdout
picked = next((l.split()[1] for l in info.splitlines() if l.startswith("precision")), "?")
def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
c = [cos(g, r["embedding"]) for g, r in zip(got, rows)]
print(f"{cpu:<11} --precision {precision:<5} (runs {picked}): mean {sum(c) / len(c):.5f}, "
      f"min {min(c):.5f} over {len(c)} sentences")
PY
done
