#!/usr/bin/env bash
# Installs the dependencies, checks formatting, builds storewatch and runs its
# tests in three legs, as CI does:
#
#   dev      Debug build with -Werror: every test (labels unit, integration,
#            slow, bench)
#   asan     ASan + UBSan with -Werror: the unit tests and the integration
#            suites labelled `target` (the daemon end to end, its incident
#            engine, MQTT, TLS, HQ ingest, a probe per kind of I/O, the CLI),
#            none labelled `slow`; the benchmarks are not built. The dev leg
#            runs the rest natively; `ctest --preset asan` runs it all.
#   aarch64  cross/build.sh aarch64: Release cross build for 64-bit ARM (no
#            benchmarks), the unit tests and the integration tests labelled
#            `target` under qemu-aarch64, and the arm64 .deb
#   tsan     ThreadSanitizer with -Werror: the same tests as asan (tests/tsan.supp
#            holds the reports inside uninstrumented third-party libraries)
#   fuzz     clang and libFuzzer (preset fuzz): every target of tests/fuzz
#            for FUZZ_SECONDS (default 45) from its seed corpus, nproc at once
#
# Every leg also replays the fuzz corpora (ctest fuzz_replay_*, label unit).
#
# The dev leg's ten-minute soak (Soak.*, label slow) uses little CPU: when
# more legs follow it runs in the background beside them (its log in
# build/dev/soak.log), and the script waits for it, and fails with it, at the
# end.
#
#   scripts/test.sh            all five legs
#   scripts/test.sh dev        one leg (dev | asan | tsan | aarch64 | fuzz | release), or several
#
# Each leg prints how long it took, and the end sums them up.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

legs=("$@")
[ ${#legs[@]} -gt 0 ] || legs=(dev asan tsan fuzz aarch64)
for leg in "${legs[@]}"; do
  case $leg in
    dev | asan | tsan | release | aarch64 | fuzz) ;;
    *)
      echo "scripts/test.sh: unknown leg '$leg' (dev, asan, tsan, aarch64, fuzz, release)" >&2
      exit 2
      ;;
  esac
done

all_start=$(date +%s)
"$root/scripts/bootstrap.sh"

# Formatting first: it takes a second and fails fast.
echo "==> format (clang-format --dry-run --Werror)"
git ls-files '*.cpp' '*.h' | xargs clang-format --dry-run --Werror

jobs=$(nproc)
summary=()
soak_pid=
soak_log="$root/build/dev/soak.log"
soak_start=0
# A leg that fails ends the script: the soak goes with it.
# (setsid: the soak's ctest, the test and the agents it started are one group.)
trap '[ -z "$soak_pid" ] || kill -- -"$soak_pid" 2>/dev/null || true' EXIT
# Waits for the background soak, if one runs; fails with it.
wait_soak() {
  [ -n "$soak_pid" ] || return 0
  echo "==> [dev] waiting for the soak (started $(($(date +%s) - soak_start)) s ago)"
  if ! wait "$soak_pid"; then
    cat "$soak_log"
    echo "==> [dev] the soak FAILED (log above: $soak_log)" >&2
    exit 1
  fi
  soak_pid=
  echo "==> [dev] the soak passed (started $(($(date +%s) - soak_start)) s ago, beside the legs after dev)"
}
# What the asan, tsan and aarch64 legs run: the unit tests and the `target` suites.
leg_labels='^(unit|target)$'

for leg in "${legs[@]}"; do
  start=$(date +%s)
  case $leg in
    aarch64)
      echo "==> [$leg] cross build, tests under qemu (labels unit and target), .deb"
      "$root/cross/build.sh" aarch64 --no-bench --label "$leg_labels" --exclude-label slow \
        -j "$jobs"
      ;;
    fuzz)
      echo "==> [$leg] build the fuzz targets (clang, libFuzzer, ASan, UBSan)"
      cmake --preset fuzz >/dev/null
      cmake --build --preset fuzz -j "$jobs"
      echo "==> [$leg] each target ${FUZZ_SECONDS:-45} s, $jobs at once"
      "$root/tests/fuzz/run.sh" -t "${FUZZ_SECONDS:-45}" -j "$jobs"
      ;;
    *)
      ctest_args=()
      bench=ON
      if [ "$leg" = asan ] || [ "$leg" = tsan ]; then
        ctest_args=(-L "$leg_labels" -LE slow)
        bench=OFF
      fi
      echo "==> [$leg] configure and build"
      cmake --preset "$leg" -DSTOREWATCH_BUILD_BENCH=$bench >/dev/null
      cmake --build --preset "$leg" -j "$jobs"
      if [ "$leg" = dev ] && [ "${legs[-1]}" != dev ]; then
        echo "==> [$leg] the soak in the background (log: $soak_log)"
        soak_start=$(date +%s)
        setsid ctest --preset dev -R '^Soak\.' >"$soak_log" 2>&1 &
        soak_pid=$!
        ctest_args=(-E '^Soak\.')
      fi
      echo "==> [$leg] test ${ctest_args[*]:-(all)}"
      ctest --preset "$leg" -j "$jobs" "${ctest_args[@]}"
      ;;
  esac
  took=$(($(date +%s) - start))
  echo "==> [$leg] passed in $took s"
  summary+=("$leg $took s")
done

wait_soak

echo "==> all passed in $(($(date +%s) - all_start)) s ($(IFS=,; echo "${summary[*]}" | sed 's/,/, /g'))"
