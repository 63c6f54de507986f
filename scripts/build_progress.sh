#!/usr/bin/env bash
# Shows a build's progress from ninja's status lines on stdin ("[n/total]
# what", NINJA_STATUS='[%f/%t] '): on a terminal one line redrawn in place,
# otherwise a line each time the build passes another 5 %, the last step
# included. Every other line (a compiler's warning or error, cmake's own
# messages) passes through whole, or, given a LOG file, goes there and a
# last line says how many there were. scripts/demo.sh pipes its build into
# it with a log: GCC 12's false alarms at -O2 inside libstdc++
# (-Wmaybe-uninitialized, -Wrestrict) would bury the progress.
#
#   cmake --build --preset release 2>&1 | scripts/build_progress.sh [LOG]
set -uo pipefail

log=${1:-}
kept=0
[ -n "$log" ] && : > "$log"

tty=0
[ -t 1 ] && tty=1
last=-1
open_line=0
status_re='^\[([0-9]+)/([0-9]+)\] (.*)$'
while IFS= read -r line; do
  if [[ $line =~ $status_re ]]; then
    n=${BASH_REMATCH[1]} total=${BASH_REMATCH[2]} what=${BASH_REMATCH[3]}
    pct=$(( total > 0 ? n * 100 / total : 100 ))
    if [ "$tty" -eq 1 ]; then
      printf '\r\033[K    [%d/%d] %3d%% %.60s' "$n" "$total" "$pct" "$what"
      open_line=1
    elif [ $(( pct / 5 )) -ne "$last" ] || [ "$n" -eq "$total" ]; then
      last=$(( pct / 5 ))
      printf '    [%d/%d] %3d%% %s\n' "$n" "$total" "$pct" "$what"
    fi
  else
    if [ -n "$log" ]; then
      printf '%s\n' "$line" >> "$log"
      kept=$(( kept + 1 ))
      continue
    fi
    if [ "$open_line" -eq 1 ]; then printf '\n'; open_line=0; fi
    printf '%s\n' "$line"
  fi
done
if [ "$open_line" -eq 1 ]; then printf '\n'; fi
if [ "$kept" -gt 0 ]; then
  printf '    compiler messages (%d lines): %s\n' "$kept" "$log"
fi
