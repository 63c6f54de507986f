#!/usr/bin/env bash
# The systemd side of the install (issue 6 item 3, issue 7 item 3):
#   security  `systemd-analyze security --offline=true` rates both units 2.5 or lower;
#   install   `DESTDIR=... cmake --install` with the build's own prefix and (unless cross)
#             with prefix /usr, the .deb's layout; then `systemd-analyze verify --root=` on the installed
#             units passes without one warning, sysusers and tmpfiles apply in that root,
#             the installed example config passes `config check`, and the installed polkit
#             rule is what `storewatch config polkit` makes of that config.
# Usage: units_test.sh security SOURCE_DIR
#        units_test.sh install SOURCE_DIR BUILD_DIR [EMULATOR...]
# Exit 77 (ctest SKIP_RETURN_CODE) only when systemd-analyze is missing.
set -euo pipefail

mode=$1
src=$2
fail=0
problem() {
  echo "FAIL: $*" >&2
  fail=1
}

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "systemd-analyze is missing (package systemd); skipping" >&2
  exit 77
fi

# The overall exposure of one unit file, e.g. "1.7", checked against 2.5.
check_security() {
  local unit=$1 out level
  if ! out=$(systemd-analyze security --offline=true --threshold=25 "$unit" 2>&1); then
    problem "$unit: exposure above 2.5 (or unreadable):"
    echo "$out" | grep -v '✓' >&2
  fi
  level=$(echo "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
  if [ -z "$level" ]; then
    problem "$unit: no exposure level in systemd-analyze's output: $out"
  else
    echo "$unit: exposure $level (limit 2.5)"
  fi
}

if [ "$mode" = security ]; then
  for unit in "$src"/systemd/storewatch.service "$src"/systemd/storewatch-hq.service; do
    check_security "$unit"
  done
  exit $fail
fi

[ "$mode" = install ] || { echo "usage: $0 security|install SOURCE_DIR [BUILD_DIR]" >&2; exit 2; }
build=$3
shift 3
emulator=("$@")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Everything checked in ROOT, where something installed with PREFIX.
check_install() {
  local prefix=$1 root=$2 etc unitdir bin
  if [ "$prefix" = /usr ]; then etc=/etc; else etc=$prefix/etc; fi
  unitdir=$prefix/lib/systemd/system
  bin=$prefix/bin/storewatch

  local expect=("$bin" "$unitdir/storewatch.service" "$unitdir/storewatch-hq.service"
    "$prefix/lib/sysusers.d/storewatch.conf" "$prefix/lib/tmpfiles.d/storewatch.conf"
    "$prefix/share/polkit-1/rules.d/50-storewatch.rules" "$etc/storewatch/storewatch.toml"
    "$prefix/share/doc/storewatch/examples/hq.toml")
  for f in "${expect[@]}"; do
    [ -f "$root$f" ] || problem "prefix $prefix: $f was not installed"
  done
  grep -q "^ExecStart=$bin --config $etc/storewatch/storewatch.toml run\$" \
    "$root$unitdir/storewatch.service" ||
    problem "prefix $prefix: storewatch.service does not start $bin with $etc/storewatch"
  grep -q "^ExecStart=$bin --config $etc/storewatch/hq.toml hq run\$" \
    "$root$unitdir/storewatch-hq.service" ||
    problem "prefix $prefix: storewatch-hq.service does not start $bin with $etc/storewatch"

  # verify loads the units' dependencies (sysinit.target, ...) and checks every
  # command: give the root this machine's system units (never over ours) and
  # the kill of ExecReload, as on a real gateway. /bin is /usr/bin (merged /usr).
  mkdir -p "$root/usr/lib/systemd/system" "$root/usr/bin"
  [ -e "$root/bin" ] || ln -s usr/bin "$root/bin"
  cp -an /usr/lib/systemd/system/. "$root/usr/lib/systemd/system/"
  cp -L /usr/bin/kill "$root/usr/bin/kill"
  local out
  out=$(systemd-analyze verify --man=no --generators=no --root="$root" \
    storewatch.service storewatch-hq.service 2>&1) || problem "prefix $prefix: verify failed"
  if [ -n "$out" ]; then
    problem "prefix $prefix: systemd-analyze verify is not clean:"
    echo "$out" >&2
  else
    echo "prefix $prefix: systemd-analyze verify --root: clean"
  fi
  for unit in storewatch.service storewatch-hq.service; do
    check_security "$root$unitdir/$unit"
  done

  # The service user, then the directories and modes, made in the root.
  mkdir -p "$root/etc"
  if ! out=$(systemd-sysusers --root="$root" 2>&1); then
    problem "prefix $prefix: systemd-sysusers failed: $out"
  fi
  grep -q '^storewatch:x:[0-9]*:[0-9]*:.*:/usr/sbin/nologin$' "$root/etc/passwd" ||
    problem "prefix $prefix: sysusers made no storewatch user"
  if [ "$(id -u)" -eq 0 ]; then
    if ! out=$(systemd-tmpfiles --root="$root" --create 2>&1); then
      problem "prefix $prefix: systemd-tmpfiles failed: $out"
    fi
    local uid gid
    uid=$(awk -F: '$1 == "storewatch" { print $3 }' "$root/etc/passwd")
    gid=$(awk -F: '$1 == "storewatch" { print $3 }' "$root/etc/group")
    for spec in "/var/lib/storewatch 750 $uid $gid" "/etc/storewatch/tls 750 0 $gid" \
      "/etc/storewatch/secrets 750 0 $gid"; do
      set -- $spec
      local got
      got=$(stat -c '%a %u %g' "$root$1" 2>/dev/null || echo missing)
      [ "$got" = "$2 $3 $4" ] || problem "prefix $prefix: $1 is '$got', want '$2 $3 $4'"
    done
  else
    echo "not root: systemd-tmpfiles --create (it chowns) not tried"
  fi

  # The conffile runs, and the packaged polkit rule matches it.
  local cfg=$root$etc/storewatch/storewatch.toml rule
  if ! out=$("${emulator[@]}" "$root$bin" --config "$cfg" config check 2>&1); then
    problem "prefix $prefix: the installed config fails config check: $out"
  fi
  if ! rule=$("${emulator[@]}" "$root$bin" --config "$cfg" config polkit 2>/dev/null); then
    problem "prefix $prefix: config polkit failed"
  elif [ "$rule" != "$(cat "$root$prefix/share/polkit-1/rules.d/50-storewatch.rules")" ]; then
    problem "prefix $prefix: the installed polkit rule is not what config polkit makes of" \
      "the installed config (regenerate systemd/storewatch.rules)"
    diff <(echo "$rule") "$root$prefix/share/polkit-1/rules.d/50-storewatch.rules" >&2 || true
  fi
}

# `cmake --install` logged to LOG; fails the test when it failed or warned.
installed() {
  local what=$1 log=$2 rc=$3
  if [ "$rc" -ne 0 ] || grep -q "CMake Warning" "$log"; then
    problem "$what:"
    cat "$log" >&2
    return 1
  fi
}

# The build's own prefix, as `DESTDIR=... cmake --install BUILD` installs it.
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
export DESTDIR=$tmp/own
mkdir -p "$DESTDIR"
rc=0
cmake --install "$build" >"$tmp/own.log" 2>&1 </dev/null || rc=$?
if installed "cmake --install $build (prefix $prefix)" "$tmp/own.log" $rc; then
  check_install "$prefix" "$DESTDIR"
fi

# The .deb's layout (prefix /usr: /usr/bin, /etc/storewatch), when the build
# has another: the same sources configured with prefix /usr install their
# `system` component, this build's binary goes to /usr/bin.
if [ "$prefix" != /usr ] && [ ${#emulator[@]} -eq 0 ]; then
  generator=$(sed -n 's/^CMAKE_GENERATOR:INTERNAL=//p' "$build/CMakeCache.txt")
  export DESTDIR=$tmp/deb
  mkdir -p "$DESTDIR"
  rc=0
  {
    cmake -S "$src" -B "$tmp/usr-build" -G "$generator" -DCMAKE_INSTALL_PREFIX=/usr \
      -DSTOREWATCH_BUILD_TESTS=OFF &&
      cmake --install "$tmp/usr-build" --component system &&
      cmake --install "$build" --component runtime --prefix /usr
  } >"$tmp/deb.log" 2>&1 </dev/null || rc=$?
  if installed "configure with prefix /usr and install" "$tmp/deb.log" $rc; then
    check_install /usr "$DESTDIR"
  fi
fi
exit $fail
