#!/usr/bin/env bash
# storewatch demo: a fake store, a broker, HQ and the agent on this machine.
#
# Installs what it needs, builds storewatch, starts a mosquitto on a free
# loopback port, the store simulator (tests/lab/storelab.py) playing the
# devices of config/examples/demo.toml, `storewatch hq run` and
# `storewatch run`; then takes one device down and back up and shows the
# incident opening locally, arriving at HQ and resolving. Everything it
# started is stopped when it ends or on Ctrl-C.
#
# The broker is set up as docs/SYNC.md says every one must be: a login for
# the store (demo-store) and one for HQ (storewatch-hq), no anonymous
# clients, and the ACL of config/examples/mosquitto/storewatch.acl (each
# store only its own topics); HQ takes in only the stores it lists and signs
# its commands with the store's key, which the store demands.
#
#   scripts/demo.sh [DEVICE]      (default DEVICE: lane-02-pos)
#   scripts/demo.sh --help        (usage and the devices)
#
# The argument is checked before anything is installed or built: an unknown
# device lists the devices and exits 2 at once.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
config="$root/config/examples/demo.toml"
t0=$(date +%s.%N)

# The devices the store simulator plays: the [[probe]]s of the config with a
# host or a url (the system probe gateway-disk is the gateway itself).
devices() {
  awk '
    function flush() { if (name != "" && addr) printf "%s %s\n", name, type; name = ""; type = ""; addr = 0 }
    /^\[\[probe\]\]/ { flush(); in_probe = 1; next }
    /^\[/ { flush(); in_probe = 0; next }
    in_probe && /^name *=/ { name = $0; sub(/^name *= *"/, "", name); sub(/".*/, "", name) }
    in_probe && /^type *=/ { type = $0; sub(/^type *= *"/, "", type); sub(/".*/, "", type) }
    in_probe && /^(host|url) *=/ { addr = 1 }
    END { flush() }' "$config"
}
list_devices() {
  echo "devices (the [[probe]]s of config/examples/demo.toml the store simulator plays):"
  devices | while read -r name type; do printf '  %-14s %s\n' "$name" "$type"; done
}
usage() {
  cat <<USAGE
usage: scripts/demo.sh [DEVICE]

Builds storewatch (release preset; the first build takes about 10 minutes),
then runs a fake store, a broker, HQ and the agent on this machine, takes
DEVICE down and back up (default lane-02-pos) and shows the incident opening
locally, arriving at HQ and resolving. Everything it starts is stopped when
it ends or on Ctrl-C.

USAGE
  list_devices
}

case $# in
  0) device=lane-02-pos ;;
  1)
    case $1 in
      -h | --help) usage; exit 0 ;;
      -*) echo "demo.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    device=$1
    ;;
  *) echo "demo.sh: one DEVICE at most, got $#: $*" >&2; usage >&2; exit 2 ;;
esac
if ! devices | awk -v d="$device" '$1 == d { found = 1 } END { exit !found }'; then
  echo "demo.sh: no device \"$device\" in config/examples/demo.toml" >&2
  list_devices >&2
  exit 2
fi

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
note() { printf '    %s\n' "$*"; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

step "Installing dependencies and building storewatch (release)"
"$root/scripts/bootstrap.sh"
cmake --preset release >/dev/null
t_build=$(date +%s.%N)
# Ninja's own progress, "[n/total]", a line per 5 % (one line redrawn on a
# terminal); compiler messages go to a log, shown when the build fails.
build_log="$root/build/release/demo-build.log"
if ! NINJA_STATUS='[%f/%t] ' cmake --build --preset release --target storewatch 2>&1 \
  | "$root/scripts/build_progress.sh" "$build_log"; then
  echo "the build failed; its messages ($build_log):" >&2
  grep -B2 -A8 -E 'error|FAILED' "$build_log" | head -n 60 >&2 || tail -n 40 "$build_log" >&2
  exit 1
fi
note "built in $(elapsed "$t_build") s"
sw="$root/build/release/cli/storewatch"
lab="$root/tests/lab/storelab.py"

work=$(mktemp -d /tmp/storewatch-demo.XXXXXX)
pids=()
cleanup() {
  local rc=$?
  # A second Ctrl-C must not cut the clean-up short.
  trap - EXIT
  trap '' INT TERM
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [ "$rc" -eq 130 ]; then
    echo "demo interrupted; stopped everything it started" >&2
  elif [ "$rc" -ne 0 ]; then
    echo "demo failed (exit $rc); last lines of each log:" >&2
    for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }; done
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Polls "$@" every 0.1 s for up to $timeout seconds; true once it succeeds.
wait_for() {
  local timeout=$1; shift
  local deadline=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
port_open() { python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$1"; }

step "Making the logins and the command key (per store, as in production)"
secrets="$work/secrets"
mkdir -m 0700 "$secrets" "$work/hq-keys"
# Random passwords and key, in files only (never on a command line).
for who in demo-store storewatch-hq; do
  python3 -c 'import secrets; print(secrets.token_urlsafe(24))' > "$secrets/$who.password"
done
python3 -c 'import secrets; print(secrets.token_hex(32))' > "$secrets/command.key"  # = openssl rand -hex 32
cp "$secrets/command.key" "$work/hq-keys/demo-store.key"
: > "$work/mosquitto.passwd"
for who in demo-store storewatch-hq; do
  # mosquitto_passwd reads the password twice from stdin.
  { cat "$secrets/$who.password"; cat "$secrets/$who.password"; } | mosquitto_passwd "$work/mosquitto.passwd" "$who" >/dev/null
done
note "broker logins demo-store and storewatch-hq ($work/mosquitto.passwd), passwords in $secrets"
note "HQ signs commands with $work/hq-keys/demo-store.key; the store demands it ($secrets/command.key)"

step "Starting mosquitto on 127.0.0.1:$port (logins only, the ACL of docs/SYNC.md)"
# Started as root, mosquitto would drop to the mosquitto user, who may not
# enter $work (mktemp makes it 0700).
cat > "$work/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous false
password_file $work/mosquitto.passwd
acl_file $root/config/examples/mosquitto/storewatch.acl
persistence false
$( [ "$(id -u)" -eq 0 ] && echo "user root" )
CONF
mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 &
pids+=($!)
wait_for 10 port_open "$port" || { echo "mosquitto did not start" >&2; exit 1; }
if mosquitto_pub -h 127.0.0.1 -p "$port" -V mqttv5 -q 1 -t storewatch/v1/stores/demo-store/events -m forged >/dev/null 2>&1; then
  echo "mosquitto took an anonymous client" >&2; exit 1
fi
note "an anonymous client is refused (mosquitto_pub: not authorized)"

step "Starting the store simulator (devices of $(basename "$config"))"
python3 "$lab" serve --config "$config" --control "$work/lab.sock" > "$work/storelab.log" 2>&1 &
pids+=($!)
wait_for 10 test -S "$work/lab.sock" || { echo "storelab did not start" >&2; exit 1; }
python3 "$lab" ctl --control "$work/lab.sock" list | python3 -c '
import json, sys
for d in json.load(sys.stdin)["devices"]:
    print("    %-14s %s:%d" % (d["name"], d["host"], d["port"]))'

step "Starting HQ (storewatch hq run)"
cat > "$work/hq.toml" <<CONF
[hq]
broker = "tcp://127.0.0.1:$port"
database = "$work/hq/hq.db"
username = "storewatch-hq"
password_file = "$secrets/storewatch-hq.password"
enroll = "list"
stores = ["demo-store"]
command_keys_dir = "$work/hq-keys"
CONF
"$sw" hq run --config "$work/hq.toml" > "$work/hq.log" 2>&1 &
pids+=($!)
wait_for 10 test -f "$work/hq/hq.db" || { echo "HQ did not start" >&2; exit 1; }

step "Starting the agent (storewatch run --config config/examples/demo.toml)"
mkdir -p "$work/conf.d"
cat > "$work/conf.d/10-demo.toml" <<CONF
# The demo's drop-in: its own broker port, data dir, socket and secrets.
[agent]
data_dir = "$work/agent"
control_socket = "$work/agent/control.sock"
[sync]
broker = "tcp://127.0.0.1:$port"
password_file = "$secrets/demo-store.password"
command_key_file = "$secrets/command.key"
CONF
agent=("$sw" --config "$config" --conf-dir "$work/conf.d")
hq=("$sw" hq --config "$work/hq.toml")
"${agent[@]}" run > "$work/agent.log" 2>&1 &
pids+=($!)

all_ok() {
  "${agent[@]}" status --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
sys.exit(0 if s["sync"]["connected"] and all(p["state"] == "ok" for p in s["probes"]) else 1)'
}
wait_for 30 all_ok || { echo "probes did not all turn ok" >&2; exit 1; }
"${agent[@]}" status

has_incident() {  # has_incident LOCAL|HQ STATE
  local out
  if [ "$1" = LOCAL ]; then out=$("${agent[@]}" incidents --all --json); else out=$("${hq[@]}" incidents --json); fi
  DEVICE=$device STATE=$2 python3 -c '
import json, os, sys
l = json.load(sys.stdin)
sys.exit(0 if any(i["probe"] == os.environ["DEVICE"] and i["state"] == os.environ["STATE"] for i in l) else 1)' <<< "$out"
}

step "Taking $device down"
python3 "$lab" ctl --control "$work/lab.sock" down "$device" >/dev/null
t_down=$(date +%s.%N)
wait_for 30 has_incident LOCAL open || { echo "no local incident" >&2; exit 1; }
note "incident opened locally after $(elapsed "$t_down") s (bound: fail_after 2 × interval 1s + timeout 500ms = 2.5 s):"
"${agent[@]}" incidents
wait_for 10 has_incident HQ open || { echo "incident did not reach HQ" >&2; exit 1; }
note "seen at HQ $(elapsed "$t_down") s after the device went down (CLI polling included):"
"${hq[@]}" incidents

step "Bringing $device back up"
python3 "$lab" ctl --control "$work/lab.sock" up "$device" >/dev/null
t_up=$(date +%s.%N)
wait_for 30 has_incident LOCAL resolved || { echo "incident did not resolve" >&2; exit 1; }
note "resolved locally after $(elapsed "$t_up") s (recover_after 2 × interval 1s):"
"${agent[@]}" incidents --all
wait_for 10 has_incident HQ resolved || { echo "resolution did not reach HQ" >&2; exit 1; }
note "seen resolved at HQ $(elapsed "$t_up") s after it came back (CLI polling included):"
"${hq[@]}" incidents
echo
"${hq[@]}" stores
uid=$("${agent[@]}" incidents --all --json | DEVICE=$device python3 -c '
import json, os, sys
print(next(i["uid"] for i in json.load(sys.stdin) if i["probe"] == os.environ["DEVICE"]))')
echo
"${agent[@]}" incident show "$uid"

step "Done in $(elapsed "$t0") s; stopping everything the demo started"
