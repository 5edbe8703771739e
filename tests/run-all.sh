#!/usr/bin/env bash
# The whole test suite, as CI runs it: a -Werror build and every ctest test,
# then the same tests under AddressSanitizer + UndefinedBehaviorSanitizer,
# the C unit tests under valgrind, the threaded tests under
# ThreadSanitizer, the fuzz targets for a short fixed time, and the
# clang-format check.  Build trees go to build-test/ (override: BUILD_ROOT).
set -euo pipefail
cd "$(dirname "$0")/.."
root=${BUILD_ROOT:-build-test}
jobs=${JOBS:-2}

bash .ci/deps --test

step() { printf '\n=== %s\n' "$*"; }

step "build (gcc, -Werror) and every test"
cmake -S . -B "$root/gcc" -DTELESPOOL_WERROR=ON >/dev/null
cmake --build "$root/gcc" -j"$jobs"
ctest --test-dir "$root/gcc" --output-on-failure -j"$jobs"
