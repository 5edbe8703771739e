-- 0001_init: the telespool spool.
--
-- One row per recorded event in `events`; `body` is the exact JSON that is
-- POSTed to LangBot Space, the other columns repeat its fields so that the
-- sqlite3 shell can answer questions without JSON functions.
-- All times are ISO 8601 UTC text, 'YYYY-MM-DDTHH:MM:SS.sssZ', which sorts
-- in time order.  Migrations are append-only: never edit a landed file.

-- Every event LangBot recorded and that is still kept.
CREATE TABLE events (
    id               INTEGER PRIMARY KEY,  -- insertion order: oldest first
    event_id         TEXT NOT NULL,        -- random UUID v4; the Idempotency-Key
                                           -- (not indexed: a random key would
                                           -- make every insert touch a random
                                           -- page of a growing index)
    event_type       TEXT NOT NULL,        -- query, instance_heartbeat,
                                           -- survey_trigger, survey_response,
                                           -- survey_dismiss
    query_id         TEXT,
    adapter          TEXT,
    runner           TEXT,
    model_name       TEXT,
    duration_ms      INTEGER,
    version          TEXT,                 -- LangBot version
    instance_id      TEXT,
    pipeline_plugins TEXT,                 -- JSON array of plugin names
    error            TEXT,                 -- redacted traceback ('' if none)
    timestamp        TEXT,                 -- the event's time, as sent
    body             TEXT NOT NULL,        -- the exact JSON body to POST
    state            TEXT NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'sent', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0, -- delivery attempts so far
    next_attempt_at  TEXT NOT NULL,        -- not sent before this time
    last_error       TEXT,                 -- why the last attempt failed
    created_at       TEXT NOT NULL,        -- when it was recorded
    sent_at          TEXT,                 -- when Space accepted it
    lease_until      TEXT,                 -- claimed by an uploader until then
    size             INTEGER NOT NULL      -- about how many bytes the row takes
);

-- The uploader's drain: pending rows, oldest first.
CREATE INDEX events_pending ON events (id) WHERE state = 'pending';
-- Sent and dead audit copies by age: the uploader's retention.
CREATE INDEX events_done ON events (created_at) WHERE state <> 'pending';

-- Rows an uploader holds a lease on (few at any time), so that a crashed
-- run's leases are found without a scan.
CREATE INDEX events_leased ON events (id) WHERE lease_until IS NOT NULL;

-- Events that were not stored or were evicted, counted by reason:
--   evicted_max_events, evicted_max_bytes, evicted_max_age  (oldest pending
--   events pushed out by a newer one), disk_full, corrupt_spool,
--   expired (too old to send), and the uploader's own reasons.
CREATE TABLE drops (
    reason  TEXT PRIMARY KEY,
    count   INTEGER NOT NULL DEFAULT 0,
    last_at TEXT                      -- when the last one was counted
);

-- Milestones already turned into a pending-survey check (at most once each).
CREATE TABLE survey_milestones (
    event       TEXT PRIMARY KEY,     -- e.g. first_bot_response_success
    recorded_at TEXT NOT NULL
);

-- Surveys LangBot Space offered, as the JSON object it sent.
CREATE TABLE surveys (
    survey_id   TEXT PRIMARY KEY,
    body        TEXT NOT NULL,        -- data.survey from /api/v1/survey/pending
    state       TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'answered', 'dismissed')),
    received_at TEXT NOT NULL,
    closed_at   TEXT                  -- when answered or dismissed
);

-- One row per telespool-upload run: what left the machine, and when.
CREATE TABLE upload_runs (
    id         INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,
    ended_at   TEXT,                  -- NULL while running (or if it crashed)
    sent       INTEGER NOT NULL DEFAULT 0, -- events Space accepted
    retried    INTEGER NOT NULL DEFAULT 0, -- failed attempts left pending
    dead       INTEGER NOT NULL DEFAULT 0, -- events given up on
    purged     INTEGER NOT NULL DEFAULT 0, -- rows deleted by an opt-out purge
    outcome    TEXT,                  -- ok, nothing_due, retry_later,
                                      -- server_down, throttled, purged,
                                      -- no_url, error, ...
    detail     TEXT                   -- one line for a human
);

-- Small key/value state the uploader keeps between runs, e.g.
-- 'retry_after_until' (Space asked us to wait) and 'down_until'
-- (Space looked down: send one probe until then).
CREATE TABLE uploader_state (
    key   TEXT PRIMARY KEY,
    value TEXT
);

-- What is waiting to be sent, oldest first.
CREATE VIEW pending AS
    SELECT id, event_id, event_type, attempts, next_attempt_at, last_error,
           created_at, body
      FROM events WHERE state = 'pending' ORDER BY id;

-- What left the machine, newest first.
CREATE VIEW sent AS
    SELECT id, event_id, event_type, sent_at, attempts, body
      FROM events WHERE state = 'sent' ORDER BY sent_at DESC;

-- What was given up on, and why.
CREATE VIEW dead AS
    SELECT id, event_id, event_type, attempts, last_error, created_at, body
      FROM events WHERE state = 'dead' ORDER BY id;

-- One line per state: how many, how big, oldest and newest.
CREATE VIEW summary AS
    SELECT state, count(*) AS events, sum(size) AS bytes,
           min(created_at) AS oldest, max(created_at) AS newest
      FROM events GROUP BY state;
