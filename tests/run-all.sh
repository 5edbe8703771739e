#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run runs exactly this):
#   1. a gcc -Werror build and every test (C, Python binding, end to end,
#      reliability, install/.deb, the wheel built from a clean copy and
#      installed into a fresh venv: ctest label "wheel"), then the C tests
#      again under valgrind;
#   2. a clang -Werror build with AddressSanitizer + UndefinedBehaviorSanitizer
#      and the libFuzzer targets: every test that does not load the library
#      into Python, then each fuzz target (corpus replay + a short fuzz);
#   3. a clang ThreadSanitizer build: the threaded tests;
#   4. the clang-format check.
# Build trees go to build-test/ (override with BUILD_ROOT).  A stage can be
# skipped with SKIP="asan tsan fuzz valgrind format" (for a quick local run).
set -euo pipefail
cd "$(dirname "$0")/.."
root=${BUILD_ROOT:-build-test}
mkdir -p "$root" && root=$(cd "$root" && pwd)
jobs=${JOBS:-2}
skip=" ${SKIP:-} "
started=$(date +%s)

bash .ci/deps --test

step() { printf '\n=== %s (%ss)\n' "$*" "$(($(date +%s) - started))"; }
skipped() { [[ "$skip" == *" $1 "* ]]; }
ctest_run() { ctest --test-dir "$1" --output-on-failure -j"$jobs" "${@:2}"; }

step "gcc build with -Werror, every test"
cmake -S . -B "$root/gcc" -DTELESPOOL_WERROR=ON >/dev/null
cmake --build "$root/gcc" -j"$jobs"
ctest_run "$root/gcc" -LE 'valgrind|tsan'

if ! skipped valgrind; then
  step "the C tests under valgrind memcheck"
  ctest_run "$root/gcc" -L valgrind
fi

if ! skipped asan; then
  step "clang build with -Werror, AddressSanitizer + UndefinedBehaviorSanitizer, libFuzzer targets"
  CC=clang cmake -S . -B "$root/asan" -DTELESPOOL_WERROR=ON \
    -DTELESPOOL_SANITIZE=address,undefined -DTELESPOOL_FUZZ=ON \
    -DTELESPOOL_FUZZ_SECONDS="${FUZZ_SECONDS:-20}" >/dev/null
  cmake --build "$root/asan" -j"$jobs"
  # Everything but what loads the library into Python (python), valgrind,
  # tsan, the install check and the fuzzers (next).
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  ctest_run "$root/asan" -LE 'python|valgrind|tsan|fuzz|install'
  step "the end-to-end tests with the sanitized uploader (the Python side loads the gcc library)"
  TELESPOOL_LIBRARY="$root/gcc/lib/libtelespool.so" \
  TELESPOOL_UPLOAD="$root/asan/uploader/telespool-upload" \
  PYTHONPATH="$PWD/lib/python:$PWD/tests" \
    python3 -m unittest discover -s tests/e2e
  if ! skipped fuzz; then
    step "fuzz targets: replay the corpus, then fuzz ${FUZZ_SECONDS:-20} s each"
    ctest --test-dir "$root/asan" --output-on-failure -j"$jobs" -L fuzz
  fi
fi

if ! skipped tsan; then
  step "clang build with ThreadSanitizer: the threaded tests"
  CC=clang cmake -S . -B "$root/tsan" -DTELESPOOL_WERROR=ON -DTELESPOOL_SANITIZE=thread >/dev/null
  cmake --build "$root/tsan" -j"$jobs"
  ctest_run "$root/tsan" -L tsan
fi

if ! skipped format; then
  step "clang-format"
  files=$(git ls-files '*.c' '*.h' 2>/dev/null || find lib uploader tests -name '*.c' -o -name '*.h')
  clang-format --style=file --dry-run --Werror $files
  echo "clang-format: $(echo "$files" | wc -w) files clean"
fi

step "all stages passed"
