#!/usr/bin/env bash
# sqlite_queries.sh - the sqlite3 shell queries a user runs against a spool
# (the README shows the same ones) must work on a real spool and answer with
# the expected rows.  The sample spool comes from `test_spool_internal --make-sample`:
# 45 query events + a heartbeat + a survey trigger with max_events 40 (so 7
# evicted), then one upload run that sent 10, retried 3 and rejected 2.
#
# Usage: sqlite_queries.sh TEST_SPOOL_INTERNAL_BINARY [SQLITE3_SHELL]
#
# The queries, one per entry: "what it answers|SQL".  Copy them as they are:
#   sqlite3 data/telemetry.db 'SELECT * FROM summary'
QUERIES=(
  "What is waiting to be sent|SELECT * FROM pending;"
  "How many events in each state|SELECT * FROM summary;"
  "What was sent today (UTC)|SELECT event_id, event_type, sent_at FROM sent WHERE date(sent_at) = date('now');"
  "The exact JSON that left this machine|SELECT sent_at, body FROM sent;"
  "What was dropped, and why|SELECT reason, count FROM drops;"
  "Each upload run: when, and how much left the machine|SELECT * FROM upload_runs;"
  "The last delivery errors|SELECT event_id, attempts, last_error FROM events WHERE last_error IS NOT NULL;"
  "Events by model|SELECT model_name, count(*) FROM events GROUP BY model_name;"
  "Events by workspace|SELECT workspace_uuid, count(*) FROM events GROUP BY workspace_uuid;"
  "The table's columns|.schema spool"
)

set -u
spool_bin=${1:?usage: sqlite_queries.sh TEST_SPOOL_INTERNAL_BINARY [SQLITE3_SHELL]}
sqlite=${2:-sqlite3}
dir=$(mktemp -d "${TMPDIR:-/tmp}/sqlite_queries-XXXXXX")
db="$dir/telemetry.db"
failed=0
passed=0

"$spool_bin" --make-sample "$db" || { echo "cannot make the sample spool"; exit 1; }

# run N: runs query N, fails on any error or stderr output; output in $out.
run() {
  local desc=${QUERIES[$1]%%|*} sql=${QUERIES[$1]#*|}
  out=$("$sqlite" -bail -batch "$db" "$sql" 2>"$dir/stderr")
  local rc=$?
  if [ $rc -ne 0 ] || [ -s "$dir/stderr" ]; then
    echo "FAIL [$desc] $sql: exit $rc: $(cat "$dir/stderr")"
    failed=$((failed + 1))
    out=""
    return 1
  fi
  echo "-- $desc: $sql ($(printf '%s\n' "$out" | grep -c .) lines)"
  return 0
}

# expect DESC PATTERN: $out has a line matching the extended regex.
expect() {
  if printf '%s\n' "$out" | grep -Eq -- "$2"; then
    passed=$((passed + 1))
  else
    echo "FAIL [$1] no line matches /$2/ in:"
    printf '%s\n' "$out" | head -20
    failed=$((failed + 1))
  fi
}

# lines DESC N: $out has exactly N non-empty lines.
lines() {
  local n
  n=$(printf '%s\n' "$out" | grep -c .)
  if [ "$n" -eq "$2" ]; then
    passed=$((passed + 1))
  else
    echo "FAIL [$1] $n lines, want $2"
    failed=$((failed + 1))
  fi
}

# 0: pending, oldest first: 25 queries, the heartbeat, the trigger
run 0 && {
  lines pending 28
  expect pending '\|query\|1\|[0-9T:.-]+Z\|HTTP 503 from /api/v1/telemetry\|'
  expect pending '"query_id":"sample-q44"'
  expect pending '\|instance_heartbeat\|0\|'
  expect pending '\|survey_trigger\|0\|'
  first=$(printf '%s\n' "$out" | head -1)
  case $first in *'"query_id":"sample-q17"'*) passed=$((passed + 1)) ;;
    *) echo "FAIL [pending] oldest first: $first"; failed=$((failed + 1)) ;;
  esac
}
# 1: summary
run 1 && {
  lines summary 3
  expect summary '^dead\|2\|[0-9]+\|'
  expect summary '^pending\|28\|[0-9]+\|[0-9T:.-]+Z\|[0-9T:.-]+Z$'
  expect summary '^sent\|10\|'
}
# 2: sent today
run 2 && {
  lines "sent today" 10
  expect "sent today" '^[0-9a-f-]{36}\|query\|[0-9T:.-]+Z$'
}
# 3: bodies that left
run 3 && {
  lines "sent bodies" 10
  expect "sent bodies" '"query_id":"sample-q07"'
  expect "sent bodies" '"instance_id":"instance_7d9e3c2a-1b4f-4e8d-a6c5-0f1e2d3c4b5a"'
}
# 4: drops
run 4 && {
  lines drops 2
  expect drops '^evicted_max_events\|7$'
  expect drops '^rejected\|2$'
}
# 5: upload runs
run 5 && {
  lines runs 1
  expect runs '^1\|[0-9T:.-]+Z\|[0-9T:.-]+Z\|10\|3\|2\|0\|retry_later\|sent 10, 3 to retry, 2 rejected$'
}
# 6: last errors
run 6 && {
  lines errors 5
  expect errors '^[0-9a-f-]{36}\|1\|HTTP 503 from /api/v1/telemetry$'
  expect errors '^[0-9a-f-]{36}\|1\|HTTP 400 from /api/v1/telemetry: bad event$'
}
# 7: by model (only query events have one)
run 7 && {
  expect models '^gpt-4o\|[0-9]+$'
  expect models '^deepseek-chat\|[0-9]+$'
}
# 8: by workspace (the sample's queries name none: ""; the heartbeat and the
# trigger have no such key: NULL)
run 8 && {
  lines workspaces 2
  expect workspaces '^\|[0-9]+$'
}
# 9: .schema
run 9 && {
  expect schema 'CREATE TABLE spool'
  expect schema 'event_id +TEXT NOT NULL,'
  expect schema 'CREATE INDEX spool_done'
  expect schema 'CREATE TRIGGER spool_pending_again'
}

rm -rf "$dir"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
