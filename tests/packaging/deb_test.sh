#!/usr/bin/env bash
# The .deb (issue 7): CPack makes it from this build's binary (component
# runtime) and the system component of the same sources configured with
# prefix /usr, as cross/build.sh does; then its control fields, files,
# conffiles and maintainer scripts are checked with dpkg-deb, and the config
# it ships passes `config check` with the packaged binary (extracted, run
# through the emulator when cross).
# With STOREWATCH_TEST_DPKG_INSTALL=1, as root, where storewatch is not
# installed: `dpkg -i` on this machine (the user, directories, the unit
# enabled), `config check` against /etc/storewatch/storewatch.toml, `dpkg -r`,
# reinstall, `dpkg -P` (config and data gone), all undone at the end.
# Usage: deb_test.sh SOURCE_DIR BUILD_DIR VERSION [EMULATOR...]
# Exit 77 (ctest SKIP_RETURN_CODE) when dpkg-deb or cpack is missing.
set -euo pipefail

src=$1
build=$2
version=$3
shift 3
emulator=("$@")
fail=0
problem() {
  echo "FAIL: $*" >&2
  fail=1
}

for tool in dpkg-deb cpack dpkg-shlibdeps; do
  if ! command -v $tool >/dev/null 2>&1; then
    echo "$tool is missing (packages dpkg, cmake, dpkg-dev); skipping" >&2
    exit 77
  fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The system component configured with prefix /usr (and this build's
# toolchain and sysroot: the package's architecture comes from the toolchain,
# its Depends from the target's libraries).
cache() { sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt"; }
generator=$(cache CMAKE_GENERATOR)
toolchain=$(cache CMAKE_TOOLCHAIN_FILE)
args=(-S "$src" -B "$tmp/usr" -G "$generator" -DCMAKE_INSTALL_PREFIX=/usr
  -DSTOREWATCH_BUILD_TESTS=OFF)
[ -z "$toolchain" ] || args+=(-DCMAKE_TOOLCHAIN_FILE="$toolchain")
sysroot=$(cache CMAKE_SYSROOT)
[ -z "$sysroot" ] || args+=(-DCMAKE_SYSROOT="$sysroot")
if ! cmake "${args[@]}" >"$tmp/configure.log" 2>&1 </dev/null; then
  cat "$tmp/configure.log" >&2
  echo "FAIL: configuring with prefix /usr failed" >&2
  exit 1
fi
debarch=$(sed -n 's/^set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE "\(.*\)")$/\1/p' \
  "$tmp/usr/CPackConfig.cmake")
[ -n "$debarch" ] || { echo "FAIL: no architecture in CPackConfig.cmake" >&2; exit 1; }

# One package from both: the binary of BUILD, everything else of the /usr build.
if ! (cd "$tmp/usr" && cpack -G DEB -B "$tmp/out" \
  -D "CPACK_INSTALL_CMAKE_PROJECTS=$tmp/usr;storewatch;system;/;$build;storewatch;runtime;/") \
  >"$tmp/cpack.log" 2>&1 </dev/null; then
  cat "$tmp/cpack.log" >&2
  echo "FAIL: cpack failed" >&2
  exit 1
fi
deb=$tmp/out/storewatch_${version}_$debarch.deb
if [ ! -f "$deb" ]; then
  problem "no $(basename "$deb"); cpack made: $(ls "$tmp/out")"
  exit 1
fi
echo "made $(basename "$deb") ($(stat -c %s "$deb") bytes)"

# Control fields.
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = storewatch ] || problem "Package is '$(field Package)'"
[ "$(field Version)" = "$version" ] || problem "Version is '$(field Version)', want $version"
[ "$(field Architecture)" = "$debarch" ] || problem "Architecture is '$(field Architecture)'"
depends=$(field Depends)
echo "Depends: $depends"
for lib in libc6 libstdc++6 libpaho-mqttpp3 libpaho-mqtt1.3 libsqlite3-0 libcurl4 libsystemd0 \
  libfmt; do
  [[ $depends == *"$lib"* ]] || problem "Depends lacks $lib (dpkg-shlibdeps did not run?)"
done
size=$(field Installed-Size)
[[ $size =~ ^[0-9]+$ ]] && [ "$size" -gt 100 ] || problem "Installed-Size is '$size'"
echo "Installed-Size: $size KiB"

# Files.
dpkg-deb -c "$deb" | awk '{ print $1, $6 }' >"$tmp/files"
for f in ./usr/bin/storewatch ./usr/lib/systemd/system/storewatch.service \
  ./usr/lib/systemd/system/storewatch-hq.service ./usr/lib/sysusers.d/storewatch.conf \
  ./usr/lib/tmpfiles.d/storewatch.conf ./usr/share/polkit-1/rules.d/50-storewatch.rules \
  ./etc/storewatch/storewatch.toml ./usr/share/doc/storewatch/copyright \
  ./usr/share/doc/storewatch/changelog.gz ./usr/share/doc/storewatch/examples/hq.toml \
  ./usr/share/doc/storewatch/examples/mosquitto/storewatch.acl; do
  grep -q " $f\$" "$tmp/files" || problem "the package lacks $f"
done
grep -q '^-rwxr-xr-x ./usr/bin/storewatch$' "$tmp/files" || problem "/usr/bin/storewatch is not 0755"
if grep -v '^d' "$tmp/files" | grep -v -e ' ./usr/' -e ' ./etc/storewatch/storewatch.toml$'; then
  problem "files outside /usr and the conffile (above)"
fi

# Control archive: conffiles and the maintainer scripts.
mkdir "$tmp/control"
dpkg-deb -e "$deb" "$tmp/control"
[ "$(cat "$tmp/control/conffiles" 2>/dev/null)" = /etc/storewatch/storewatch.toml ] ||
  problem "conffiles is not exactly /etc/storewatch/storewatch.toml"
for script in postinst prerm postrm; do
  f=$tmp/control/$script
  if [ ! -x "$f" ]; then
    problem "no executable $script"
    continue
  fi
  sh -n "$f" || problem "$script: syntax error"
  cmp -s "$f" "$src/packaging/debian/$script" || problem "$script is not packaging/debian/$script"
done
grep -q 'systemd-sysusers /usr/lib/sysusers.d/storewatch.conf' "$tmp/control/postinst" ||
  problem "postinst does not create the user from the sysusers snippet"
grep -q 'deb-systemd-helper enable storewatch.service' "$tmp/control/postinst" ||
  problem "postinst does not enable storewatch.service"
if grep -E '^[^#]*(systemctl|deb-systemd-invoke) +(start|restart)' "$tmp/control/postinst"; then
  problem "postinst starts a unit (above); it must only enable, and try-restart on upgrade"
fi
grep -q 'rm -rf /etc/storewatch /var/lib/storewatch' "$tmp/control/postrm" ||
  problem "postrm purge does not remove config and data"

# The packaged binary is the target's, and runs the packaged config.
dpkg-deb -x "$deb" "$tmp/root"
machine=$(LC_ALL=C readelf -h "$tmp/root/usr/bin/storewatch" | sed -n 's/^ *Machine: *//p')
echo "binary: $machine, $(stat -c %s "$tmp/root/usr/bin/storewatch") bytes (stripped)"
if readelf -S "$tmp/root/usr/bin/storewatch" | grep -q '\.debug_info'; then
  problem "/usr/bin/storewatch is not stripped"
fi
if ! out=$("${emulator[@]}" "$tmp/root/usr/bin/storewatch" \
  --config "$tmp/root/etc/storewatch/storewatch.toml" config check 2>&1); then
  problem "the packaged config fails config check: $out"
fi
grep -q "^ExecStart=/usr/bin/storewatch --config /etc/storewatch/storewatch.toml run\$" \
  "$tmp/root/usr/lib/systemd/system/storewatch.service" ||
  problem "storewatch.service does not run /usr/bin/storewatch with /etc/storewatch"

# Opt-in: the real thing, on this machine.
if [ "${STOREWATCH_TEST_DPKG_INSTALL:-0}" != 1 ]; then
  echo "dpkg -i on this machine not tried (STOREWATCH_TEST_DPKG_INSTALL=1, as root, opts in)"
  exit $fail
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "STOREWATCH_TEST_DPKG_INSTALL=1 needs root; skipping the install" >&2
  exit 77
fi
if dpkg-query -W -f='${Status}' storewatch 2>/dev/null | grep -qv 'not-installed'; then
  echo "storewatch is installed on this machine (or its config is left): not touching it" >&2
  exit 77
fi
if [ -e /etc/storewatch ] || [ -e /var/lib/storewatch ]; then
  echo "/etc/storewatch or /var/lib/storewatch exists without the package: not touching it" >&2
  exit 77
fi
trap 'dpkg -P storewatch >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
if [ "$debarch" != "$(dpkg --print-architecture)" ] &&
  ! dpkg --print-foreign-architectures | grep -qx "$debarch"; then
  echo "$debarch is not an architecture of this dpkg; skipping the install" >&2
  exit $fail
fi
dpkg -i "$deb" >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; problem "dpkg -i failed"; exit 1; }
getent passwd storewatch | grep -q ':/var/lib/storewatch:/usr/sbin/nologin$' ||
  problem "dpkg -i made no storewatch user"
[ "$(stat -c '%a %U %G' /var/lib/storewatch 2>/dev/null)" = "750 storewatch storewatch" ] ||
  problem "/var/lib/storewatch is not 0750 storewatch:storewatch"
[ -L /etc/systemd/system/multi-user.target.wants/storewatch.service ] ||
  problem "storewatch.service is not enabled"
if ! out=$("${emulator[@]}" /usr/bin/storewatch config check 2>&1); then
  problem "config check against /etc/storewatch/storewatch.toml failed: $out"
fi
echo '# a local change' >>/etc/storewatch/storewatch.toml
dpkg -r storewatch >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; problem "dpkg -r failed"; }
[ ! -e /usr/bin/storewatch ] || problem "dpkg -r left /usr/bin/storewatch"
grep -q '^# a local change$' /etc/storewatch/storewatch.toml 2>/dev/null ||
  problem "dpkg -r did not keep the changed conffile"
dpkg -i "$deb" >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; problem "reinstall failed"; }
grep -q '^# a local change$' /etc/storewatch/storewatch.toml ||
  problem "reinstall replaced the changed conffile"
touch /var/lib/storewatch/storewatch.db
dpkg -P storewatch >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; problem "dpkg -P failed"; }
for d in /etc/storewatch /var/lib/storewatch /etc/systemd/system/multi-user.target.wants/storewatch.service; do
  [ ! -e "$d" ] && [ ! -L "$d" ] || problem "dpkg -P left $d"
done
echo "dpkg -i, config check, dpkg -r, reinstall, dpkg -P: done"
exit $fail
