#!/usr/bin/env bash
# Installs the dependencies, checks formatting, builds storewatch and runs the
# whole test suite twice: in the dev build (-Werror) and under the asan preset
# (ASan + UBSan).
#
#   scripts/test.sh            both legs
#   scripts/test.sh dev        one leg (dev | asan | release)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/bootstrap.sh"

# Formatting first: it takes a second and fails fast.
echo "==> format (clang-format --dry-run --Werror)"
git ls-files '*.cpp' '*.h' | xargs clang-format --dry-run --Werror

legs=("$@")
[ ${#legs[@]} -gt 0 ] || legs=(dev asan)
jobs=$(nproc)

for leg in "${legs[@]}"; do
  start=$(date +%s)
  echo "==> [$leg] configure and build"
  cmake --preset "$leg" >/dev/null
  cmake --build --preset "$leg" -j "$jobs"
  echo "==> [$leg] test"
  ctest --preset "$leg" -j "$jobs"
  echo "==> [$leg] passed in $(( $(date +%s) - start )) s"
done
