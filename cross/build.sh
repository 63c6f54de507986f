#!/usr/bin/env bash
# Builds storewatch for a store gateway's architecture, runs its tests there
# (under qemu-user when the architecture is not this machine's) and makes the
# .deb with CPack.
#
#   cross/build.sh ARCH [--no-tests] [--no-bench] [--label LABEL] [--exclude-label LABEL]
#                       [--deps-only] [-j N]
#     ARCH: aarch64 (arm64), armhf (32-bit ARM, hard float), amd64 (native)
#     --no-bench: leave out the benchmarks and their smoke tests (labels bench, slow)
#
# Leaves build-ARCH/ (a Release build configured with prefix /usr) and
# build-ARCH/storewatch_VERSION_DEBARCH.deb; install that with `dpkg -i`.
# Installs what it needs from Debian's archive first (idempotent: a second run
# costs one dpkg query): the cross compiler, qemu-user, pkgconf and the -dev
# packages of scripts/bootstrap.sh for ARCH (Debian multiarch), mosquitto and
# the other test tools for this machine. Runs as root, or through sudo.
# Every phase prints how long it took.
set -euo pipefail

usage() {
  sed -n '6,9p' "$0" | sed 's/^# *//' >&2
  exit 2
}

arch=${1:-}
[ -n "$arch" ] || usage
shift
run_tests=1
bench=ON
deps_only=0
jobs=2
ctest_filter=()
while [ $# -gt 0 ]; do
  case $1 in
    --no-tests) run_tests=0 ;;
    --no-bench) bench=OFF ;;
    --deps-only) deps_only=1 ;;
    --label | -L) ctest_filter+=(-L "$2"); shift ;;
    --exclude-label | -LE) ctest_filter+=(-LE "$2"); shift ;;
    -j) jobs=$2; shift ;;
    *) usage ;;
  esac
  shift
done

native=$(dpkg --print-architecture)
case $arch in
  aarch64 | arm64) debarch=arm64 triplet=aarch64-linux-gnu qemu=qemu-aarch64 ;;
  armhf | arm) debarch=armhf triplet=arm-linux-gnueabihf qemu=qemu-arm ;;
  amd64 | x86_64) debarch=amd64 triplet=x86_64-linux-gnu qemu=qemu-x86_64 ;;
  *) echo "cross/build.sh: unknown architecture '$arch' (aarch64, armhf, amd64)" >&2; exit 2 ;;
esac
cross=0
[ "$debarch" = "$native" ] || cross=1

src=$(cd "$(dirname "$0")/.." && pwd)
build=$src/build-$arch
toolchain=$src/cross/$triplet.cmake

phase_start=0
phase() {
  phase_name=$1
  phase_start=$(date +%s)
  echo "== $arch: $phase_name"
}
phase_done() {
  local took=$(($(date +%s) - phase_start))
  printf '== %s: %s took %dm%02ds\n' "$arch" "$phase_name" $((took / 60)) $((took % 60))
}

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo_cmd=(sudo)
  fi
fi

# --- dependencies ---------------------------------------------------------
phase "dependencies"
"$src/scripts/bootstrap.sh"
# The -dev packages of scripts/bootstrap.sh that hold libraries (Multi-Arch:
# same); the header-only ones (libcli11-dev, nlohmann-json3-dev, googletest)
# are Multi-Arch: foreign and already there. gtest links into the tests.
target_dev=(libboost-dev libpaho-mqttpp-dev libpaho-mqtt-dev libssl-dev libsqlite3-dev
  libcurl4-openssl-dev libgtest-dev libgmock-dev libtomlplusplus-dev libsystemd-dev libfmt-dev
  libhowardhinnant-date-dev)
want=(dpkg-dev file)
if [ $cross -eq 1 ]; then
  want+=("g++-$triplet" qemu-user "pkgconf:$debarch")
  for p in "${target_dev[@]}"; do want+=("$p:$debarch"); done
fi
missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] && [ ${#sudo_cmd[@]} -eq 0 ]; then
    echo "cross/build.sh: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
  if [ $cross -eq 1 ] && ! dpkg --print-foreign-architectures | grep -qx "$debarch"; then
    "${sudo_cmd[@]}" dpkg --add-architecture "$debarch"
  fi
  echo "cross/build.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # A mirror mid-sync fails one index now and then: what is already known may do.
  "${sudo_cmd[@]}" apt-get update -qq || echo "cross/build.sh: apt-get update failed; trying with the indexes there are" >&2
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
phase_done
[ $deps_only -eq 0 ] || exit 0

# --- configure ------------------------------------------------------------
phase "configure"
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
toolchain_args=()
[ $cross -eq 1 ] && toolchain_args=(-DCMAKE_TOOLCHAIN_FILE="$toolchain")
cmake -S "$src" -B "$build" "${generator[@]}" "${toolchain_args[@]}" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr -DSTOREWATCH_BUILD_TESTS=ON \
  -DSTOREWATCH_BUILD_BENCH=$bench
phase_done

# --- build ----------------------------------------------------------------
targets=()
# Without tests only the binary is built (the test binaries are most of the work).
[ $run_tests -eq 1 ] || targets=(--target storewatch)
phase "build ${targets[*]:-(all)}"
nice -n 10 cmake --build "$build" -j "$jobs" "${targets[@]}"
phase_done

# --- tests ----------------------------------------------------------------
if [ $run_tests -eq 1 ]; then
  phase "tests ${ctest_filter[*]:-(all)}"
  [ $cross -eq 0 ] || echo "(under $qemu -L /)"
  # A longer timeout than the presets': everything runs 5-20x slower under qemu.
  rc=0
  nice -n 10 ctest --test-dir "$build" -j "$jobs" --output-on-failure --timeout 900 \
    "${ctest_filter[@]}" || rc=$?
  phase_done
  if [ $rc -ne 0 ]; then
    echo "cross/build.sh: tests failed on $arch (see above); no package made" >&2
    exit $rc
  fi
fi

# --- package --------------------------------------------------------------
phase "package"
(cd "$build" && cpack -G DEB)
phase_done
deb=$(ls -t "$build"/storewatch_*_"$debarch".deb | head -1)
echo "== $arch: $deb"
dpkg-deb -f "$deb" Package Version Architecture Installed-Size Depends
