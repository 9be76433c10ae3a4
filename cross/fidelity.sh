#!/usr/bin/env bash
# Fidelity of what runs on each board CPU: pooled-embedding cosine of a board binary, under
# qemu, to the float64 reference on the 56 golden sentences (tests/golden/embeddings.jsonl, the
# same set and measure as tests/fidelity.rs on the host).
#
#   cross/fidelity.sh [-t aarch64|armv7] BINARY [BUNDLE]   (BUNDLE: minilm-int8.blt from tools/test.sh)
#
# Prints one line per CPU and precision. aarch64: `auto` on cortex-a72 and cortex-a76, and on
# cortex-a72 also `--precision int8` (the Pi 4's int8 path, which `auto` does not pick).
# armv7: `auto` and `--precision int8` on cortex-a15.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export BERTLITE_CACHE=${BERTLITE_CACHE:-$HOME/.cache/bertlite}
arch=aarch64
while getopts "t:" o; do
  case $o in
    t) arch=$OPTARG ;; *) sed -n 5p "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
bin=${1:?usage: cross/fidelity.sh [-t aarch64|armv7] BINARY [BUNDLE]}
bundle=${2:-$BERTLITE_CACHE/bundles/minilm-int8.blt}
case $arch in
  aarch64) runner=$root/cross/run-aarch64.sh runs=("cortex-a72 auto" "cortex-a72 int8" "cortex-a76 auto") ;;
  armv7) runner=$root/cross/run-armv7.sh runs=("cortex-a15 auto" "cortex-a15 int8") ;;
  *) echo "unknown target $arch (aarch64 or armv7)" >&2; exit 2 ;;
esac
for run in "${runs[@]}"; do
  # shellcheck disable=SC2086
  set -- $run
  # The texts as arguments: some golden sentences hold line breaks.
  python3 - "$root" "$bin" "$bundle" "$1" "$2" "$runner" <<'PY'
import json, math, os, subprocess, sys
root, binary, bundle, cpu, precision, runner = sys.argv[1:]
rows = [json.loads(l) for l in open(f"{root}/tests/golden/embeddings.jsonl")]
run = [runner, binary]
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
