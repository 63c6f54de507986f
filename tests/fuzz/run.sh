#!/usr/bin/env bash
# Runs the libFuzzer targets of the preset `fuzz` (build them first:
# `cmake --preset fuzz && cmake --build --preset fuzz`), each for a bounded
# time, starting from its seed corpus, and fails on the first crash, hang,
# leak or UB report.
#
#   tests/fuzz/run.sh [-t SECONDS] [-j JOBS] [TARGET...]
#
#   -t SECONDS  how long each target runs (default 60; CI passes its own)
#   -j JOBS     targets run at once, one process each (default 1)
#   TARGET      config control commands wire escpos dns perfdata (default all)
#
# New inputs the fuzzer finds and crash artifacts go to build/fuzz/work/
# TARGET/{corpus,artifacts}, never into the source tree: a crash found there
# is fixed, and its input copied into tests/fuzz/corpus/TARGET/ (the replay
# test then keeps it fixed). Each target's log is build/fuzz/work/TARGET/log.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
bin="$root/build/fuzz/tests/fuzz"
work="$root/build/fuzz/work"
seconds=60
jobs=1
while getopts "t:j:" opt; do
  case $opt in
    t) seconds=$OPTARG ;;
    j) jobs=$OPTARG ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config control commands wire escpos dns perfdata)

for t in "${targets[@]}"; do
  if [ ! -x "$bin/fuzz_$t" ]; then
    echo "fuzz: no $bin/fuzz_$t (cmake --preset fuzz && cmake --build --preset fuzz)" >&2
    exit 2
  fi
done

# One target: its own corpus directory first (where libFuzzer writes), the
# seeds second (only read). -timeout: an input slower than 10 s is a hang.
run_one() {
  local t=$1 dir="$work/$1"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  local dict=()
  [ -f "$root/tests/fuzz/$t.dict" ] && dict=(-dict="$root/tests/fuzz/$t.dict")
  local start=$SECONDS
  if "$bin/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$dir/artifacts/" "${dict[@]}" \
    "$dir/corpus" "$root/tests/fuzz/corpus/$t" >"$dir/log" 2>&1; then
    local runs
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -n 1)
    echo "fuzz: $t: ${runs:-?} inputs in $((SECONDS - start)) s, no failure"
  else
    echo "fuzz: $t FAILED after $((SECONDS - start)) s; the end of $dir/log:" >&2
    tail -n 40 "$dir/log" >&2
    ls "$dir/artifacts" >&2 || true
    return 1
  fi
}

failed=0
running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || failed=1
    running=$((running - 1))
  fi
done
while [ "$running" -gt 0 ]; do
  wait -n || failed=1
  running=$((running - 1))
done
if [ "$failed" -ne 0 ]; then
  echo "fuzz: a target failed (its input is in build/fuzz/work/TARGET/artifacts/)" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${seconds} s each, no failure"
