#!/usr/bin/env bash
# Runs the fuzz targets, each for SECONDS (default 60), one after the other, on one core each
# (-j N runs N jobs of each target in parallel). Needs the nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz`). The corpus grows in ~/.cache/bertlite/fuzz/<target>, seeded from
# the committed fuzz/seeds/<target>; a crash is saved under fuzz/artifacts/<target>/ and fails the
# run. Prints, per target, the CPU seconds it ran clean and the inputs it executed.
#   fuzz/run.sh [--smoke] [-j N] [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
jobs=1
smoke=false
if [ "${1:-}" = "--smoke" ]; then smoke=true; shift; fi
if [ "${1:-}" = "-j" ]; then jobs=$2; shift 2; fi
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(tokenizer bundle nnef capi_text)
cache=${BERTLITE_CACHE:-$HOME/.cache/bertlite}/fuzz
logs=$cache
mkdir -p "$logs"
# --smoke (CI): start from the committed seeds only. libFuzzer first replays the whole corpus,
# and a grown bundle corpus takes minutes to replay. And build unoptimized: 3.5 minutes cold
# instead of 9 (tract at one codegen unit and -O); the smoke replays the seeds and runs a few
# inputs more (a bundle or graph takes ~2 s unoptimized), which is what it is for. The long
# runs (results/fuzz.md) are optimized.
build=(-O -a)
if $smoke; then
  build=(-D -a)
  cache=$(mktemp -d)
  trap 'rm -rf "$cache"' EXIT
fi
# Builds go outside the clone, like every other cache of the project.
target_dir=${BERTLITE_CACHE:-$HOME/.cache/bertlite}/fuzz-target
# Bundles and graphs are ~160 KB; texts need no more than the default.
declare -A max_len=([tokenizer]=8192 [capi_text]=8192 [bundle]=262144 [nnef]=262144)
# Optimized (but in a smoke), with overflow checks and debug assertions on (-a): an input that
# overflows arithmetic is a finding (the test profile builds the runtime without them, for
# speed).
cargo +nightly fuzz build "${build[@]}" --target-dir "$target_dir" >/dev/null
status=0
for t in "${targets[@]}"; do
  mkdir -p "$cache/$t" "artifacts/$t"
  log="$logs/$t.log"
  start=$(date +%s)
  # With -jobs, libFuzzer's workers log to fuzz-<job>.log here (so two -j runs must not share
  # a checkout); one job logs to $log.
  parallel=()
  [ "$jobs" -gt 1 ] && parallel=(-jobs="$jobs" -workers="$jobs")
  rm -f fuzz-*.log
  set +e
  cargo +nightly fuzz run "${build[@]}" --target-dir "$target_dir" "$t" "$cache/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -max_len="${max_len[$t]}" -timeout=20 -rss_limit_mb=4096 \
    "${parallel[@]}" -print_final_stats=1 > "$log" 2>&1
  rc=$?
  set -e
  runs=$(shopt -s nullglob; awk '/stat::number_of_executed_units/ {s += $2} END {print s + 0}' "$log" fuzz-*.log)
  if [ $rc -eq 0 ]; then
    printf '%-10s clean  %6d CPU s  %10d inputs  corpus %d\n' "$t" $(( ($(date +%s) - start) * jobs )) "$runs" "$(ls "$cache/$t" | wc -l)"
  else
    printf '%-10s FAILED after %d s: see %s and fuzz/artifacts/%s/\n' "$t" $(( $(date +%s) - start )) "$log" "$t"
    grep -m3 -E "panicked|ERROR|SUMMARY" "$log" || true
    status=1
  fi
done
exit $status
