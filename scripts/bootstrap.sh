#!/usr/bin/env bash
# Installs every build, test and demo dependency of storewatch from Debian's
# archive. Idempotent: packages already present are skipped, so a second run
# costs one dpkg query. Runs as root, or through sudo when not root.
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config make
  libboost-dev libpaho-mqttpp-dev libpaho-mqtt-dev libssl-dev libsqlite3-dev
  libcurl4-openssl-dev libcli11-dev libgtest-dev googletest nlohmann-json3-dev
  libtomlplusplus-dev libsystemd-dev libfmt-dev libhowardhinnant-date-dev tzdata
  mosquitto mosquitto-clients sqlite3 python3 procps clang-format
  openssl dbus-daemon monitoring-plugins-basic monit fping iproute2
  systemd polkitd util-linux dpkg-dev file
  clang-14 libclang-rt-14-dev
  libpq-dev postgresql
  python3-paho-mqtt
)
# systemd: systemd-analyze (unit security and verify), systemd-sysusers and
# systemd-tmpfiles for tests/systemd; polkitd: polkitd and pkcheck judge the
# polkit rule there (util-linux: its unshare and setpriv). dpkg-dev and file:
# cpack's .deb (dpkg-shlibdeps computes Depends) for tests/packaging.
# clang-14 and libclang-rt-14-dev: the preset fuzz (tests/fuzz), whose
# -fsanitize=fuzzer links libFuzzer from the compiler-rt package (the
# standalone libfuzzer-14-dev is not needed). g++'s TSan runtime (libtsan2)
# comes with g++. libpq-dev: HQ's PostgreSQL backend; postgresql: the server
# the tests start their own throwaway clusters of (initdb and pg_ctl in a
# temporary directory; the package's own cluster is left as installed).
# python3-paho-mqtt: the MQTT clients of tests/bench/fleet_sim.py (HQ fleet benchmark).

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "bootstrap: all ${#packages[@]} packages present"
  exit 0
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo_cmd=(sudo)
  else
    echo "bootstrap: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "bootstrap: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The mosquitto package starts a system broker on 1883; storewatch's demo and
# tests start their own on free ports, so the system one is left as installed.
echo "bootstrap: done"
