#!/usr/bin/env bash
# The whole telespool story on a built-in default, in a scratch LangBot
# working directory: record events through the library (Python binding),
# try to upload while LangBot Space is unreachable (everything stays
# spooled, backoff scheduled), bring up a fake Space on loopback and upload
# again (everything delivered), show the status and upload_runs, then opt
# out and watch the purge.
#
# Usage: bash uploader/demo.sh [BUILD_DIR]     (default: build)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)
upload="$build/uploader/telespool-upload"
export TELESPOOL_LIBRARY="$build/lib/libtelespool.so"
export PYTHONPATH="$here/lib/python${PYTHONPATH:+:$PYTHONPATH}"
unset SPACE__URL SPACE__DISABLE_TELEMETRY LANGBOT_TELEMETRY_INGEST_TOKEN

work=$(mktemp -d "${TMPDIR:-/tmp}/telespool-demo.XXXXXX")
space_pid=
cleanup() {
  [ -n "$space_pid" ] && kill "$space_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
mkdir -p data/labels
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
show() { printf '$ sqlite3 data/telemetry.db "%s"\n' "$1"; sqlite3 -header -column data/telemetry.db "$1"; }

cat > data/config.yaml <<'YAML'
# A LangBot data/config.yaml (only the keys telespool reads matter here).
space:
  url: 'http://127.0.0.1:9'      # nothing listens here: Space is "down"
  disable_telemetry: false
system:
  instance_id: ''
YAML
echo '{"instance_id": "instance_4f1c2b7e-8d1a-4c55-9a0e-3b8f6e2d9c10", "instance_create_ts": 1760000000}' \
  > data/labels/instance_id.json

say "1. LangBot records events through libtelespool (no network, ~microseconds each)"
python3 - <<'PY'
import telespool
with telespool.Spool("data/telemetry.db",
                     instance_id="instance_4f1c2b7e-8d1a-4c55-9a0e-3b8f6e2d9c10",
                     version="v4.3.1") as sp:
    for i in range(5):
        sp.record_query(query_id=f"q-{i}", adapter="TelegramAdapter", runner="local-agent",
                        model_name="gpt-4o", duration_ms=800 + i,
                        pipeline_plugins=["hello", "weather"], error=None)
    sp.record_query(query_id="q-err", adapter="AiocqhttpAdapter", runner="local-agent",
                    model_name="deepseek-chat", duration_ms=1203, pipeline_plugins=[],
                    error='Traceback (most recent call last):\n'
                          '  File "/home/alice/LangBot/pkg/provider/runner.py", line 88, in run\n'
                          '    resp = await client.chat(messages)\n'
                          'openai.AuthenticationError: Incorrect API key provided: '
                          'sk-proj-Abc123Def456Ghi789Jkl012Mno345Pqr (user alice@example.com)\n')
    sp.record_heartbeat(features={"bots": 2, "pipelines": 3, "plugins": 5})
    sp.record_survey_trigger(event="first_bot_response_success")
print("recorded 8 events")
PY
show "SELECT id, event_type, state, attempts, created_at FROM events"
echo "The failed query's traceback, as stored (and as it would be sent):"
show "SELECT error FROM events WHERE query_id = 'q-err'"

say "2. Upload while Space is unreachable: nothing is lost, backoff is scheduled"
set +e; run "$upload"; code=$?; set -e
echo "exit code $code (75 = events left for a later run)"
show "SELECT state, attempts, count(*) AS events, min(next_attempt_at) AS next_attempt, last_error FROM events GROUP BY state, attempts"
echo "The first 4 events were tried and got a backoff; the run then stopped instead of"
echo "trying every event against a dead server, and the next runs send one probe first:"
run "$upload" --status

say "3. Space comes back (a fake LangBot Space on loopback)"
python3 "$here/tests/fake_space.py" --port 0 --port-file "$work/port" --log "$work/space.log" \
  --behaviour '{"surveys": {"first_bot_response_success": {"survey_id": "s-demo", "title": "How is LangBot?"}}}' \
  >/dev/null 2>&1 &
space_pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
[ -s "$work/port" ] || { echo "the fake Space did not start"; exit 1; }
export SPACE__URL="http://127.0.0.1:$(cat "$work/port")"
echo "SPACE__URL=$SPACE__URL"
echo "(--ignore-backoff: an operator's manual flush instead of waiting for the backoff)"
run "$upload" --ignore-backoff
echo "Space received $(wc -l < "$work/space.log") requests, each with its Idempotency-Key."
show "SELECT state, count(*) AS events FROM events GROUP BY state"
echo "The survey Space offered, as LangBot's pending_survey() now returns it:"
python3 -c 'import telespool; sp = telespool.Spool("data/telemetry.db"); print(sp.pending_survey()); sp.close()'

say "4. What the operator sees"
run "$upload" --status
show "SELECT id, started_at, sent, retried, dead, purged, outcome FROM upload_runs"

say "5. The user opts out: space.disable_telemetry: true"
sed -i 's/disable_telemetry: false/disable_telemetry: true/' data/config.yaml
before=$(stat -c %s data/telemetry.db)
run "$upload"
after=$(stat -c %s data/telemetry.db)
show "SELECT count(*) AS events_left FROM events"
show "SELECT id, outcome, purged, detail FROM upload_runs ORDER BY id DESC LIMIT 1"
echo "spool file: $before bytes before, $after bytes after the purge"
if grep -qa "q-err" data/telemetry.db data/telemetry.db-wal 2>/dev/null; then
  echo "a purged value is still readable in the file!"; exit 1
fi
echo "no purged value is readable in the database file or its WAL."
