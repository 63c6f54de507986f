#!/usr/bin/env bash
# Builds storewatch for a store gateway's architecture, runs its tests there
# (under qemu-user when the architecture is not this machine's) and makes the
# .deb with CPack.
#
#   cross/build.sh ARCH [--no-tests] [--no-bench] [--label LABEL] [--exclude-label LABEL]
#                       [--sysroot] [--deps-only] [-j N]
#     ARCH: aarch64 (arm64), armhf (32-bit ARM, hard float), amd64 (native)
#     --no-bench: leave out the benchmarks and their smoke tests (labels bench, slow)
#     --sysroot: build against build-ARCH/sysroot instead of multiarch packages
#
# Leaves build-ARCH/ (a Release build configured with prefix /usr) and
# build-ARCH/storewatch_VERSION_DEBARCH.deb; install that with `dpkg -i`.
# Installs what it needs from Debian's archive first (idempotent: a second run
# costs one dpkg query): the cross compiler, qemu-user, pkgconf and the -dev
# packages of scripts/bootstrap.sh for ARCH (Debian multiarch), mosquitto and
# the other test tools for this machine. Runs as root, or through sudo.
# When the multiarch -dev packages cannot be installed (Multi-Arch: same
# packages must have the same version on every architecture, and a mirror
# that has this machine's security updates but not ARCH's breaks that), or
# with --sysroot, it builds against a sysroot instead: ARCH's packages and
# what they depend on, resolved by apt with its own state for ARCH alone,
# downloaded and unpacked into build-ARCH/sysroot. Nothing is installed for
# ARCH then, and no foreign architecture is added.
# Every phase prints how long it took.
set -euo pipefail

usage() {
  sed -n '6,10p' "$0" | sed 's/^# *//' >&2
  exit 2
}

arch=${1:-}
[ -n "$arch" ] || usage
shift
run_tests=1
bench=ON
deps_only=0
sysroot_wanted=0
jobs=2
ctest_filter=()
while [ $# -gt 0 ]; do
  case $1 in
    --no-tests) run_tests=0 ;;
    --no-bench) bench=OFF ;;
    --deps-only) deps_only=1 ;;
    --sysroot) sysroot_wanted=1 ;;
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

# install_missing [--arch DEBARCH] PACKAGE...: installs those not installed.
# With --arch, adds DEBARCH as a foreign architecture first and takes it away
# again when the install fails. Returns non-zero when the install fails.
install_missing() {
  local add_arch=""
  if [ "$1" = --arch ]; then add_arch=$2; shift 2; fi
  local p missing=()
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  if [ "$(id -u)" -ne 0 ] && [ ${#sudo_cmd[@]} -eq 0 ]; then
    echo "cross/build.sh: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
  local added=0
  if [ -n "$add_arch" ] && ! dpkg --print-foreign-architectures | grep -qx "$add_arch"; then
    "${sudo_cmd[@]}" dpkg --add-architecture "$add_arch"
    added=1
  fi
  echo "cross/build.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # A mirror mid-sync fails one index now and then: what is already known may do.
  "${sudo_cmd[@]}" apt-get update -qq || echo "cross/build.sh: apt-get update failed; trying with the indexes there are" >&2
  if ! "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
    if [ $added -eq 1 ]; then
      # Leaves this machine's apt as it was: a foreign architecture whose
      # index fails would fail every later `apt-get update`.
      "${sudo_cmd[@]}" dpkg --remove-architecture "$add_arch" || true
    fi
    return 1
  fi
}

# make_sysroot DIR: the target's -dev packages and everything they depend on,
# for DEBARCH alone, resolved and downloaded by apt with a state of its own
# (under DIR-apt; this machine's apt and dpkg are not touched, and no root is
# needed), unpacked into DIR. DIR/DEBIAN holds the packages' symbols and
# shlibs files, where dpkg-shlibdeps (cpack) finds them for the Depends.
make_sysroot() {
  local root=$1 state=$1-apt
  local pkgs=("${target_dev[@]}" libcli11-dev nlohmann-json3-dev googletest)
  local stamp="$debarch ${pkgs[*]}"
  if [ -f "$root/.storewatch-sysroot" ] && [ "$(cat "$root/.storewatch-sysroot")" = "$stamp" ]; then
    echo "cross/build.sh: sysroot $root is there"
    return 0
  fi
  echo "cross/build.sh: making the $debarch sysroot in $root"
  rm -rf "$root" "$state"
  mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$root/DEBIAN"
  : >"$state/status"
  local apt=(apt-get -q -o "APT::Architecture=$debarch" -o "APT::Architectures::=$debarch"
    -o "Dir::State=$state" -o "Dir::State::Lists=$state/lists"
    -o "Dir::State::status=$state/status" -o "Dir::Cache=$state/cache"
    -o APT::Sandbox::User="$(id -un)" -o Debug::NoLocking=1)
  # An index that fails to download (a mirror mid-sync) leaves the others.
  "${apt[@]}" update >"$state/update.log" 2>&1 ||
    { echo "cross/build.sh: some $debarch indexes failed (going on without them):" >&2
      grep -E '^(E|W):' "$state/update.log" | head -3 >&2; }
  "${apt[@]}" install -y --download-only --no-install-recommends "${pkgs[@]}" >"$state/install.log" 2>&1 ||
    { cat "$state/install.log" >&2; echo "cross/build.sh: could not fetch the $debarch packages" >&2; exit 1; }
  local deb n=0
  for deb in "$state"/cache/archives/*.deb; do
    dpkg-deb -x "$deb" "$root"
    dpkg-deb --info "$deb" symbols >>"$root/DEBIAN/symbols" 2>/dev/null || true
    dpkg-deb --info "$deb" shlibs >>"$root/DEBIAN/shlibs" 2>/dev/null || true
    n=$((n + 1))
  done
  # Links such as usr/lib/TRIPLET/libm.so -> /lib/TRIPLET/libm.so.6 would point
  # into this machine: make them relative, inside the sysroot.
  local link target
  while IFS= read -r -d '' link; do
    target=$(readlink "$link")
    ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$root$target")" "$link"
  done < <(find "$root" -type l -lname '/*' -print0)
  echo "$stamp" >"$root/.storewatch-sysroot"
  echo "cross/build.sh: unpacked $n $debarch packages ($(du -sh "$root" | cut -f1))"
}

install_missing dpkg-dev file
sysroot=""
if [ $cross -eq 0 ] && [ $sysroot_wanted -eq 1 ]; then
  echo "cross/build.sh: --sysroot is for cross builds; $arch builds against this machine's packages" >&2
fi
if [ $cross -eq 1 ]; then
  install_missing "g++-$triplet" qemu-user
  # A build directory keeps what it was configured with.
  if grep -q '^CMAKE_SYSROOT:.*=.' "$build/CMakeCache.txt" 2>/dev/null; then
    sysroot_wanted=1
  elif [ $sysroot_wanted -eq 1 ] && [ -f "$build/CMakeCache.txt" ]; then
    echo "cross/build.sh: $build was configured with multiarch packages; remove it to build with --sysroot" >&2
    exit 2
  fi
  if [ $sysroot_wanted -eq 0 ]; then
    target_want=("pkgconf:$debarch")
    for p in "${target_dev[@]}"; do target_want+=("$p:$debarch"); done
    if ! install_missing --arch "$debarch" "${target_want[@]}"; then
      echo "cross/build.sh: the $debarch -dev packages cannot be installed next to this machine's (above); building against a sysroot instead" >&2
      sysroot_wanted=1
    fi
  fi
  if [ $sysroot_wanted -eq 1 ]; then
    sysroot=$build/sysroot
    make_sysroot "$sysroot"
  fi
fi
phase_done
[ $deps_only -eq 0 ] || exit 0

# --- configure ------------------------------------------------------------
phase "configure"
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
toolchain_args=()
[ $cross -eq 1 ] && toolchain_args=(-DCMAKE_TOOLCHAIN_FILE="$toolchain")
[ -z "$sysroot" ] || toolchain_args+=(-DCMAKE_SYSROOT="$sysroot")
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
