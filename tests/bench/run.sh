#!/usr/bin/env bash
# telespool's benchmark suite: prints one table of figures, each a ratio measured side by
# side in this run, and how the costs grow with the spool's size.  Not part of the test run.
#
#   bash tests/bench/run.sh [--quick] [--wan-only]
#
# --quick (about a minute on 2 cores) stops at 100,000-event spools; the full run (about
# 3 minutes) goes to 1,000,000.  --wan-only (about a minute) prints only the round-trip and
# rate-limit rows.  BUILD_DIR=DIR uses an existing build tree (its lib/libtelespool.so and
# uploader/telespool-upload; a Release build gives the figures the targets mean); otherwise
# a Release tree is built in ${TMPDIR:-/tmp}/telespool-bench-build.
# KEEP=1 keeps the scratch directory (spools, nginx logs, results.json).
#
# Needs, besides the build dependencies (.ci/deps): nginx-light, python3-httpx, time, openssl
#   apt-get install nginx-light python3-httpx time openssl
# A throwaway nginx is started on a free loopback port from the scratch directory and stopped
# at the end; the system's nginx is never touched.  What each figure means: README.md here.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

quick=
wan=
for arg in "$@"; do
  case "$arg" in
    --quick) quick=--quick ;;
    --wan-only) wan=--wan-only ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument '$arg' (only --quick, --wan-only)" >&2; exit 2 ;;
  esac
done

missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
/usr/bin/python3 -c 'import httpx' 2>/dev/null || missing+=(python3-httpx)
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
  echo "run.sh: missing Debian packages: ${missing[*]}" >&2
  echo "        apt-get install ${missing[*]}" >&2
  exit 2
fi
export PATH="$PATH:/usr/sbin"
export PYTHONDONTWRITEBYTECODE=1

if [ -z "${BUILD_DIR:-}" ]; then
  BUILD_DIR="${TMPDIR:-/tmp}/telespool-bench-build"
  echo "run.sh: building a Release tree in $BUILD_DIR" >&2
  cmake -S "$root" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DTELESPOOL_BUILD_TESTS=OFF \
    >"${TMPDIR:-/tmp}/telespool-bench-cmake.log" 2>&1 \
    || { cat "${TMPDIR:-/tmp}/telespool-bench-cmake.log" >&2; exit 1; }
  cmake --build "$BUILD_DIR" -j"${JOBS:-2}" >>"${TMPDIR:-/tmp}/telespool-bench-cmake.log" 2>&1 \
    || { tail -40 "${TMPDIR:-/tmp}/telespool-bench-cmake.log" >&2; exit 1; }
fi
BUILD_DIR=$(cd "$BUILD_DIR" && pwd)
for f in lib/libtelespool.so uploader/telespool-upload; do
  [ -e "$BUILD_DIR/$f" ] || { echo "run.sh: $BUILD_DIR/$f is missing" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/telespool-bench.XXXXXX")
cleanup() {
  # bench.py stops nginx itself; this is the safety net if it was killed.
  if [ -s "$work/nginx/nginx.pid" ]; then
    kill -QUIT "$(cat "$work/nginx/nginx.pid")" 2>/dev/null || true
  fi
  if [ "${KEEP:-0}" = 1 ]; then
    echo "run.sh: kept $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# The C benchmark, without CMake: against the build tree's shared library.
cc -O2 -Wall -Wextra -o "$work/bench_record" "$here/bench_record.c" -I"$root/lib/include" -I"$BUILD_DIR/lib/include" \
  -L"$BUILD_DIR/lib" -Wl,-rpath,"$BUILD_DIR/lib" -ltelespool -lsqlite3 -lcjson -lpthread

/usr/bin/python3 "$here/bench.py" --build-dir "$BUILD_DIR" --bench-bin "$work/bench_record" \
  --work "$work" $quick $wan
