#!/usr/bin/env bash
# The fleet simulation: 10,000 telespool uploaders running the uploader's own policy code
# (uploader/src/concurrency.c, policy.c, drain.c's rules) against a Space with 3x the fleet's
# steady-state capacity, through a one-hour outage and the recovery, in simulated time.
# Prints the table (also kept in tests/fleet/fleet.txt) and plots tests/fleet/fleet.png, the
# plot the README links; the per-minute CSV goes to ${TMPDIR:-/tmp}/telespool-fleet.csv.
# About a second of simulation on 2 cores (plus a build the first time).
#
#   bash tests/fleet/run.sh [fleet options...]     e.g. --instances 20000 --capacity 2
#
# BUILD_DIR=DIR uses an existing build tree (its tests/fleet); otherwise one is built in
# ${TMPDIR:-/tmp}/telespool-fleet-build.  Plotting needs Debian's python3-matplotlib.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
if [ -z "${BUILD_DIR:-}" ]; then
  BUILD_DIR="${TMPDIR:-/tmp}/telespool-fleet-build"
  cmake -S "$root" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >"$BUILD_DIR.log" 2>&1 \
    || { cat "$BUILD_DIR.log" >&2; exit 1; }
  cmake --build "$BUILD_DIR" --target fleet -j"${JOBS:-2}" >>"$BUILD_DIR.log" 2>&1 \
    || { tail -40 "$BUILD_DIR.log" >&2; exit 1; }
fi
csv="${TMPDIR:-/tmp}/telespool-fleet.csv"
"$BUILD_DIR/tests/fleet" --csv "$csv" "$@" | tee "$here/fleet.txt"
if /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
  /usr/bin/python3 "$here/plot.py" "$csv" "$here/fleet.png" \
    "$(head -1 "$here/fleet.txt")"
  echo "plot: $here/fleet.png"
else
  echo "run.sh: no matplotlib (apt-get install python3-matplotlib): no plot" >&2
fi
