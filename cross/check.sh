#!/usr/bin/env bash
# Builds the runtime for the boards and checks it under qemu-user, CPU pinned per board:
#  - unit tests of the runtime crate run on each target;
#  - the x86_64-compiled bundle gives the same labels and embeddings on aarch64/armv7 as on x86_64;
#  - tract picks the NEON kernels (arm64simd on aarch64, armv7neon on armv7);
#  - stripped binary size (at most 10 MB) and the glibc symbol versions it needs are reported.
# Needs the bundles tools/test.sh makes and the packages .ci/run installs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export BERTLITE_CACHE=${BERTLITE_CACHE:-$HOME/.cache/bertlite}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$BERTLITE_CACHE/target}
bundle="$BERTLITE_CACHE/bundles/minilm-bbc.blt"
host="$CARGO_TARGET_DIR/debug/bertlite"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Elapsed time at each step, so a CI log shows where the boards stage spends its minutes.
t0=$(date +%s)
step() { echo "[check.sh +$(( $(date +%s) - t0 ))s] $*"; }

# Classify and embed the golden lines in two processes side by side (qemu runs one guest thread
# per process, and CI has two cores): PREFIX CPU RUNNER BIN [ARGS...].
golden_pair() {
  local prefix=$1 cpu=$2 runner=$3 bin=$4
  shift 4
  QEMU_CPU=$cpu "$runner" "$bin" classify -m "$bundle" --json --threads 1 "$@" < "$out/texts.txt" > "$prefix.classify" &
  local pid=$!
  QEMU_CPU=$cpu "$runner" "$bin" embed -m "$bundle" --json --threads 1 "$@" < "$out/texts.txt" > "$prefix.embed" || true
  wait "$pid" || true
}

# Golden sentences, one per line (a sentence with a newline becomes several lines on both sides).
python3 -c 'import json,sys
for l in open(sys.argv[1]): print(json.loads(l)["text"])' tests/golden/embeddings.jsonl > "$out/texts.txt"
# f32 compute (--precision f32 on every board: the most faithful path).
golden_pair "$out/x86" host env "$host" --precision f32
# The int8 compute path: the reference for boards with dot-product.
golden_pair "$out/x86.int8" host env "$host" --precision int8

# Task-head inputs from the golden file, and the host's f32 answers to them.
python3 -c 'import json,sys
out = {"fill-mask": [], "ner": [], "qa": []}
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["task"] == "fill-mask": out["fill-mask"].append(r["text"])
    if r["task"] == "ner": out["ner"].append(r["text"])
    if r["task"] == "qa": out["qa"].append(r["question"] + "\t" + r["context"])
for k, v in out.items(): open(sys.argv[2] + "/" + k + ".txt", "w").write("\n".join(v) + "\n")' \
  tests/golden/tasks.jsonl "$out"
for kind in fill-mask:pretraining ner:ner qa:qa; do
  task=${kind#*:} kind=${kind%%:*}
  "$host" "$kind" -m "$BERTLITE_CACHE/bundles/task-$task-f32.blt" --json --threads 1 \
    --precision f32 < "$out/$kind.txt" > "$out/x86.$kind"
done

# The shipped binaries are linked against glibc 2.31 with cargo-zigbuild, so one binary runs on
# Pi OS Bullseye / JetPack 5 and newer; without zigbuild, Debian's cross linkers are used.
GLIBC_FLOOR=2.31

# The tool↔runtime contract on the boards' CPUs (tests/contract.rs asserts it on the host): the
# "fast paths" line of `bertlite info` must name every fused op and int8 linear expected for
# the 6-layer bundle at the precision that ran.
expect_paths() {
  local info=$1 want=$2
  local got
  got=$(sed -n 's/^fast paths   //p' "$info")
  [ "$got" = "$want" ] || { echo "FAIL: $info: fast paths '$got', expected '$want'" >&2; exit 1; }
  echo "fast paths: $got"
}

check_target() {
  local target=$1 runner=$2 kernel=$3 cpu=$4 paths=$5
  step "$target (qemu cpu $cpu)"
  local bin="$CARGO_TARGET_DIR/$target/board/bertlite"
  local size
  size=$(stat -c %s "$bin")
  printf 'binary: %s, %.2f MB stripped\n' "$bin" "$(awk -v s="$size" 'BEGIN {print s/1e6}')"
  # Issue #3's budget: a board binary of at most 10 MB (vendor/README.md says what keeps it there).
  [ "$size" -le 10000000 ] || { echo "FAIL: $target binary is $size bytes, over the 10 MB budget" >&2; exit 1; }
  local objdump=aarch64-linux-gnu-objdump
  [ "${target%%-*}" = armv7 ] && objdump=arm-linux-gnueabihf-objdump
  local glibc
  glibc=$($objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
  echo "glibc needed: $glibc"
  if command -v cargo-zigbuild >/dev/null && [ "$(printf '%s\n' "GLIBC_$GLIBC_FLOOR" "$glibc" | sort -V | tail -1)" != "GLIBC_$GLIBC_FLOOR" ]; then
    echo "FAIL: $target binary needs $glibc, above GLIBC_$GLIBC_FLOOR" >&2; exit 1
  fi

  QEMU_CPU=$cpu "$runner" "$bin" info -v -m "$bundle" --precision f32 > "$out/$target.info"
  grep -E '^(cpu|matmul)' "$out/$target.info"
  if ! grep -q "^matmul.*$kernel" "$out/$target.info"; then
    echo "FAIL: expected $kernel kernels on $target" >&2; exit 1
  fi
  expect_paths "$out/$target.info" "$paths"
  step "$target: golden lines, --precision f32"
  golden_pair "$out/$target" "$cpu" "$runner" "$bin" --precision f32
  python3 cross/compare.py "$out/x86.classify" "$out/$target.classify" "$out/x86.embed" "$out/$target.embed"

  # The task heads (fill-mask, entities, answers) on the board, f32 compute, same answers.
  step "$target: task heads"
  local kind task
  for kind in fill-mask:pretraining ner:ner qa:qa; do
    task=${kind#*:} kind=${kind%%:*}
    QEMU_CPU=$cpu "$runner" "$bin" "$kind" -m "$BERTLITE_CACHE/bundles/task-$task-f32.blt" --json \
      --threads 1 --precision f32 < "$out/$kind.txt" > "$out/$target.$kind" || true
    python3 cross/compare_tasks.py "$kind" "$out/x86.$kind" "$out/$target.$kind"
  done

  # The runtime's unit tests, on the target (qemu-test profile: unoptimized, quick to build).
  # Without the CLI feature, as the C API below builds the runtime: the same features, so
  # tract is compiled once per target for both (with the CLI, cargo measured a second build).
  step "$target: unit tests"
  QEMU_CPU=$cpu cargo test --no-default-features --profile qemu-test --target "$target" -p bertlite --lib
}

# Both board binaries in one cargo run: each ends in a fat-LTO link that runs on one core, so
# the two links share CI's two cores instead of following each other (~5 minutes saved).
step "board builds (aarch64, armv7)"
boards=(--target=aarch64-unknown-linux-gnu --target=armv7-unknown-linux-gnueabihf)
if command -v cargo-zigbuild >/dev/null; then
  cargo zigbuild --profile board "${boards[@]/%/.$GLIBC_FLOOR}" -p bertlite --bin bertlite
else
  cargo build --profile board "${boards[@]}" -p bertlite --bin bertlite
fi

check_target aarch64-unknown-linux-gnu cross/run-aarch64.sh arm64simd_mmm_f32 cortex-a72 \
  "6 attention, 13 layer norm, 0 masked softmax, 0 int8 linear"

# Pi 5 / Orin class core: dotprod is there, so `auto` must choose int8 on the SDOT kernel, and
# agree with x86's int8 path within int8 bounds (cross/compare.py --int8).
step "aarch64 (qemu cpu cortex-a76)"
a64="$CARGO_TARGET_DIR/aarch64-unknown-linux-gnu/board/bertlite"
QEMU_CPU=cortex-a76 cross/run-aarch64.sh "$a64" info -m "$bundle" > "$out/a76.info"
grep -E '^(cpu|precision|matmul)' "$out/a76.info"
if ! grep -q '^precision    int8' "$out/a76.info" || ! grep -q '^matmul.*bertlite_neon_sdot_4x16' "$out/a76.info"; then
  echo "FAIL: expected int8 on bertlite's dot-product kernel on cortex-a76" >&2; exit 1
fi
expect_paths "$out/a76.info" "6 attention, 13 layer norm, 0 masked softmax, 36 int8 linear (bertlite_neon_sdot_4x16)"
golden_pair "$out/a76" cortex-a76 cross/run-aarch64.sh "$a64"
python3 cross/compare.py "$out/x86.int8.classify" "$out/a76.classify" "$out/x86.int8.embed" "$out/a76.embed" --int8
# The runtime's unit tests on this CPU too: the SDOT kernels' exact tests (the int8 linear and
# the attention's int8 scores) only run where dot-product exists (cortex-a72 above runs the
# SMULL kernel's).
step "aarch64 (cortex-a76): SDOT unit tests"
QEMU_CPU=cortex-a76 cargo test --no-default-features --profile qemu-test --target aarch64-unknown-linux-gnu -p bertlite --lib -- gemm_i8 attention
# Board cost guard (issue #14): instructions per 16-token inference on the Pi 5's CPU against
# ONNX Runtime int8 on the same token ids, both counted here (cross/ort-baseline.sh; the full
# table is results/boards.md). Fails above 0.74 of ONNX Runtime (the issue's goal is 0.75;
# session 14 measured 17.8 M = 0.70), so a regression in a kernel or a rewrite fails a commit.
# (0.83 in sessions 12-13, when the outlier split had put this cell at 0.81.)
step "aarch64 (cortex-a76): ONNX Runtime cost guard"
cross/ort-baseline.sh -c cortex-a76 -n 16 "$bundle" "$a64" | tee "$out/ort-baseline.txt"
ratio=$(awk '$1 == "cortex-a76" && $2 == 16 { print $7 }' "$out/ort-baseline.txt")
awk -v r="$ratio" 'BEGIN { exit !(r > 0 && r <= 0.74) }' || { echo "FAIL: cortex-a76 16-token cost is $ratio of ONNX Runtime int8's (budget 0.74)" >&2; exit 1; }
# Pi 4: `auto` picks int8 on the bundle's calibrated weights (src/encoder/precision.rs), on
# bertlite's SMULL kernel: the same integer sums as x86's int8.
step "aarch64 (cortex-a72): auto = int8"
QEMU_CPU=cortex-a72 cross/run-aarch64.sh "$a64" info -m "$bundle" > "$out/a72.int8.info"
grep -q '^precision    int8' "$out/a72.int8.info" || { echo "FAIL: auto did not pick int8 on cortex-a72 for calibrated weights" >&2; exit 1; }
grep -q '^matmul.*bertlite_neon_smull_2x16' "$out/a72.int8.info" || { echo "FAIL: no SMULL kernel on cortex-a72" >&2; exit 1; }
expect_paths "$out/a72.int8.info" "6 attention, 13 layer norm, 0 masked softmax, 36 int8 linear (bertlite_neon_smull_2x16)"
golden_pair "$out/a72.int8" cortex-a72 cross/run-aarch64.sh "$a64"
python3 cross/compare.py "$out/x86.int8.classify" "$out/a72.int8.classify" "$out/x86.int8.embed" "$out/a72.int8.embed" --int8
# Same core with fp16 exposed (qemu hides it from tract): --precision f16 takes the fp16 kernels.
TRACT_CPU_ISA=+fp16 QEMU_CPU=cortex-a76 cross/run-aarch64.sh "$a64" info -m "$bundle" --precision f16 > "$out/a76.f16.info"
grep -E '^(precision|matmul)' "$out/a76.f16.info"
expect_paths "$out/a76.f16.info" "0 attention, 0 layer norm, 0 masked softmax, 0 int8 linear"
grep -q '^matmul.*arm64fp16_mmm_f16' "$out/a76.f16.info" || { echo "FAIL: no fp16 kernels with --precision f16 on cortex-a76+fp16" >&2; exit 1; }

# The C API: libbertlite.a for x86_64 here, and for aarch64 and armv7 under qemu. On x86_64 in
# the dev profile the tests already built (tract and the runtime optimized as in release, the
# C wrapper with debug assertions on): the release profile capi/README.md gives differs only in
# optimizing the wrapper and stripping, and building tract once more for it cost CI 4 minutes.
# examples/classify.c, compiled with the target's gcc, must give x86's label for a short text
# and an error message for a missing bundle; tests/robustness.c sends every entry point bad
# input and shares one handle between 8 pthreads (fewer requests under qemu: it is slow).
capi_text="Shares in the carmaker fell after a profit warning."
capi_x86=$("$host" classify -m "$bundle" --json --threads 1 "$capi_text")
label() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])["label"])' "$1"; }
check_capi() {
  local target=$1 runner=$2 gcc=$3 cpu=$4 requests=$5 profile=$6 lib
  step "C API on $target (qemu cpu $cpu), $profile profile"
  if [ "$target" = host ]; then
    # With the workspace's other libraries, so that tract's features are the ones the tests
    # built it with: `-p bertlite-capi` alone changed them and rebuilt tract, 3.5 minutes of
    # CI. (The runtime's own library is left out: its file name is the C library's.)
    cargo build --profile "$profile" --workspace --lib --exclude bertlite
    lib="$CARGO_TARGET_DIR/$([ "$profile" = dev ] && echo debug || echo "$profile")/libbertlite.a"
  else
    cargo build --profile "$profile" --target "$target" -p bertlite-capi
    lib="$CARGO_TARGET_DIR/$target/$profile/libbertlite.a"
  fi
  for prog in examples/classify.c tests/robustness.c; do
    "$gcc" -std=c99 -Wall -Werror -O1 "capi/$prog" -I capi/include "$lib" -lpthread -ldl -lm \
      -Wl,-z,noexecstack -o "$out/$(basename "$prog" .c)-$target"
  done
  local got
  got=$(QEMU_CPU=$cpu $runner "$out/classify-$target" "$bundle" "$capi_text")
  echo "C API on $cpu: $got"
  [ "$(label "$got")" = "$(label "$capi_x86")" ] || { echo "FAIL: C API label on $target differs from x86: $got vs $capi_x86" >&2; exit 1; }
  if QEMU_CPU=$cpu $runner "$out/classify-$target" /nonexistent.blt "text" 2> "$out/capi.err"; then
    echo "FAIL: the C program accepted a missing bundle on $target" >&2; exit 1
  fi
  grep -q "cannot load /nonexistent.blt" "$out/capi.err" || { echo "FAIL: no error message from the C API on $target: $(cat "$out/capi.err")" >&2; exit 1; }
  QEMU_CPU=$cpu $runner "$out/robustness-$target" "$bundle" "$requests"
}
check_capi host env cc host 2000 dev
# aarch64 in the qemu-test profile too (unoptimized dependencies, unwinding): the release
# build for aarch64 cost CI 2.5 minutes of its 45; the release library's code is the one the
# host check above runs, and aarch64's kernels are checked by the board binary and unit tests.
check_capi aarch64-unknown-linux-gnu cross/run-aarch64.sh aarch64-linux-gnu-gcc cortex-a76 64 qemu-test

# armv7: no fused attention (no NEON in the default target, `mul_add` is a libm call), so the
# masked softmax is fused on its own.
check_target armv7-unknown-linux-gnueabihf cross/run-armv7.sh armv7neon_mmm_f32 cortex-a15 \
  "0 attention, 13 layer norm, 6 masked softmax, 0 int8 linear"
# armv7 `auto` = int8 on calibrated weights (issue #14): bertlite's NEON kernels
# (gemm_i8/armv7_neon.rs and the quantize, outlier, GELU and softmax forms beside it), the same
# integer sums as x86's int8, so the same labels and embeddings within int8 bounds.
a7="$CARGO_TARGET_DIR/armv7-unknown-linux-gnueabihf/board/bertlite"
step "armv7 (cortex-a15): auto = int8"
QEMU_CPU=cortex-a15 cross/run-armv7.sh "$a7" info -m "$bundle" > "$out/armv7.int8.info"
grep -E '^(precision|matmul)' "$out/armv7.int8.info"
grep -q '^precision    int8' "$out/armv7.int8.info" || { echo "FAIL: auto did not pick int8 on cortex-a15 for calibrated weights" >&2; exit 1; }
grep -q '^matmul.*bertlite_armv7_neon_vmull_1x16' "$out/armv7.int8.info" || { echo "FAIL: no armv7 NEON int8 kernel on cortex-a15" >&2; exit 1; }
expect_paths "$out/armv7.int8.info" "0 attention, 13 layer norm, 6 masked softmax, 36 int8 linear (bertlite_armv7_neon_vmull_1x16)"
golden_pair "$out/armv7.int8" cortex-a15 cross/run-armv7.sh "$a7"
python3 cross/compare.py "$out/x86.int8.classify" "$out/armv7.int8.classify" "$out/x86.int8.embed" "$out/armv7.int8.embed" --int8
# armv7 in the qemu-test profile (unoptimized, unwinding): a release build for a third target
# would cost CI several more minutes; the release armv7 library passed the same checks by hand (results/fuzz.md).
check_capi armv7-unknown-linux-gnueabihf cross/run-armv7.sh arm-linux-gnueabihf-gcc cortex-a15 64 qemu-test
step "done"
