#!/usr/bin/env bash
# The polkit rule of `storewatch config polkit`, judged by the real polkitd:
# in a private mount namespace the test binds its own rules.d directories (the
# packaged rule for the example config in /usr/share, one generated from a test
# config in /etc), a passwd with user storewatch, starts a private system bus
# and polkitd on it, and asks with pkcheck about a process running as
# storewatch. Exactly the config's units may be restarted; nothing else; the
# /etc rule overrides the packaged one.
# Usage: polkit_rule_test.sh STOREWATCH_BIN SOURCE_DIR [EMULATOR...]
# Exit 77 (skipped) without root (for the mount namespace) or without
# polkitd/pkcheck/dbus-daemon (scripts/bootstrap.sh installs them).
set -uo pipefail

polkitd=/usr/lib/polkit-1/polkitd
if [ -z "${STOREWATCH_POLKIT_NS:-}" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "not root: cannot make the mount namespace; skipping" >&2
    exit 77
  fi
  for tool in unshare setpriv pkcheck dbus-daemon "$polkitd"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      echo "$tool is missing (scripts/bootstrap.sh installs it); skipping" >&2
      exit 77
    fi
  done
  STOREWATCH_POLKIT_NS=1 exec unshare --mount --propagation private bash "$0" "$@"
fi

bin=$1
src=$2
shift 2
emulator=("$@")
fail=0
problem() {
  echo "FAIL: $*" >&2
  fail=1
}

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  umount /etc/polkit-1/rules.d /usr/share/polkit-1/rules.d /etc/passwd /etc/group 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
chmod 755 "$tmp" # polkitd runs as user polkitd and must reach the bus socket
mkdir -p "$tmp/etc-rules" "$tmp/usr-rules" "$tmp/data"

# The generated rule, from a config with two systemd-restart remediations (one
# a bare name, one with an escape, as systemd names mounts and devices) and an
# exec one.
cat >"$tmp/storewatch.toml" <<TOML
[store]
id = "store-0042"
name = "Springfield"

[agent]
data_dir = "$tmp/data"
control_socket = "$tmp/control.sock"

[sync]
broker = "tcp://127.0.0.1:1883"

[[probe]]
name = "printer-01"
type = "tcp"
host = "127.0.0.1"
port = 9100
remediation = "restart-spooler"

[[probe]]
name = "backup-disk"
type = "tcp"
host = "127.0.0.1"
port = 9101
remediation = "restart-fsck"

[[probe]]
name = "lane-01-pos"
type = "tcp"
host = "127.0.0.1"
port = 9102
remediation = "restart-pos"

[[remediation]]
name = "restart-spooler"
type = "systemd-restart"
unit = "printer-spooler"

[[remediation]]
name = "restart-fsck"
type = "systemd-restart"
unit = "systemd-fsck@dev-disk-by\\\\x2dlabel-data.service"

[[remediation]]
name = "restart-pos"
type = "exec"
command = ["/bin/true"]
TOML
rules=$tmp/etc-rules/50-storewatch.rules
if ! "${emulator[@]}" "$bin" --config "$tmp/storewatch.toml" config polkit -o "$rules" \
  2>"$tmp/polkit.err"; then
  problem "config polkit -o failed: $(cat "$tmp/polkit.err")"
  exit 1
fi
[ "$(stat -c %a "$rules")" = 644 ] || problem "config polkit -o made mode $(stat -c %a "$rules")"
# A config with errors: exit 2, and the rule written before stays as it was.
cp "$rules" "$tmp/rule.before"
printf '[store]\nid = "bad id!"\n' >"$tmp/bad.toml"
"${emulator[@]}" "$bin" --config "$tmp/bad.toml" config polkit -o "$rules" 2>/dev/null
rc=$?
[ $rc -eq 2 ] || problem "config polkit on a bad config exited $rc, not 2"
cmp -s "$rules" "$tmp/rule.before" || problem "config polkit on a bad config changed the rule"
cp "$src/systemd/storewatch.rules" "$tmp/usr-rules/50-storewatch.rules"

# User storewatch (the host may not have one), and the rules directories.
cp /etc/passwd "$tmp/passwd"
cp /etc/group "$tmp/group"
if ! getent passwd storewatch >/dev/null; then
  echo "storewatch:x:64999:64999::/nonexistent:/usr/sbin/nologin" >>"$tmp/passwd"
  echo "storewatch:x:64999:" >>"$tmp/group"
fi
mount --bind "$tmp/passwd" /etc/passwd
mount --bind "$tmp/group" /etc/group
mount --bind "$tmp/etc-rules" /etc/polkit-1/rules.d
mount --bind "$tmp/usr-rules" /usr/share/polkit-1/rules.d
uid=$(getent passwd storewatch | cut -d: -f3)
gid=$(getent passwd storewatch | cut -d: -f4)

cat >"$tmp/bus.conf" <<XML
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$tmp/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
XML
dbus-daemon --config-file="$tmp/bus.conf" --nofork --nopidfile 2>"$tmp/bus.log" &
pids+=($!)
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$tmp/bus
for _ in $(seq 100); do
  [ -S "$tmp/bus" ] && break
  sleep 0.05
done
"$polkitd" >"$tmp/polkitd.log" 2>&1 &
pids+=($!)
setpriv --reuid="$uid" --regid="$gid" --clear-groups sleep 300 &
storewatch_pid=$!
pids+=($storewatch_pid)
setpriv --reuid=65534 --regid=65534 --clear-groups sleep 300 &
nobody_pid=$!
pids+=($nobody_pid)

# pkcheck: 0 authorized, 1 not, 2 needs authentication, 127 no answer.
ask() {
  pkcheck --action-id org.freedesktop.systemd1.manage-units --process "$1" \
    --detail unit "$2" --detail verb "$3" >/dev/null 2>&1
  echo $?
}
ready=0
for _ in $(seq 200); do
  if [ "$(ask "$storewatch_pid" x.service restart)" != 127 ]; then
    ready=1
    break
  fi
  sleep 0.05
done
if [ $ready -ne 1 ]; then
  problem "polkitd did not answer:"
  cat "$tmp/polkitd.log" "$tmp/bus.log" >&2
  exit 1
fi
if grep -qi "error" "$tmp/polkitd.log"; then
  problem "polkitd reported errors loading the rules:"
  cat "$tmp/polkitd.log" >&2
fi

expect() {
  local want=$1 who=$2 pid=$3 unit=$4 verb=$5 got
  got=$(ask "$pid" "$unit" "$verb")
  if [ "$want" = yes ] && [ "$got" != 0 ]; then
    problem "$who may not $verb $unit (pkcheck $got), but the config names it"
  elif [ "$want" = no ] && [ "$got" = 0 ]; then
    problem "$who may $verb $unit, but should not"
  else
    echo "ok: $who $verb $unit -> pkcheck $got"
  fi
}
expect yes storewatch "$storewatch_pid" printer-spooler.service restart
expect yes storewatch "$storewatch_pid" 'systemd-fsck@dev-disk-by\x2dlabel-data.service' restart
expect no storewatch "$storewatch_pid" 'systemd-fsck@dev-disk-by-label-data.service' restart
expect no storewatch "$storewatch_pid" printer-spooler restart
expect no storewatch "$storewatch_pid" printer-spooler.service stop
expect no storewatch "$storewatch_pid" printer-spooler.service start
expect no storewatch "$storewatch_pid" printer-spooler.service reload-or-restart
expect no storewatch "$storewatch_pid" ssh.service restart
# Only in the packaged rule (the example config): the /etc rule of the same
# name is read first and answers NO.
expect no storewatch "$storewatch_pid" pos-sync.service restart
expect no nobody "$nobody_pid" printer-spooler.service restart

# Without the /etc rule, the packaged one holds: the example's unit only.
rm "$tmp/etc-rules/50-storewatch.rules"
for _ in $(seq 200); do
  [ "$(ask "$storewatch_pid" pos-sync.service restart)" = 0 ] && break
  sleep 0.05
done
expect yes storewatch "$storewatch_pid" pos-sync.service restart
expect no storewatch "$storewatch_pid" printer-spooler.service restart
expect no storewatch "$storewatch_pid" pos-sync.service stop
exit $fail
