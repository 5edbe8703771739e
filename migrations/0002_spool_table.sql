-- 0002_spool_table: one record call writes one table page.
--
-- In 0001 every insert also wrote a page of the events_pending index, and
-- each row repeated the body's fields in ten more columns; together they
-- doubled the pages and bytes one record call writes.  Now:
--
--   * The rows live in `spool`, which keeps the body once and only the
--     columns delivery needs: small ones first, the body last, so that a
--     scan of states never reads a large body's overflow pages.
--   * `events` is a view over it with every column of 0001, the body's
--     fields read from the body, so the sqlite3 queries of 0001 still work.
--     (Change rows through `spool`; the view is read-only.)
--   * There is no index on pending rows.  Instead uploader_state keeps
--     'pending_from': no pending row has a smaller id.  The uploader moves it
--     forward as it delivers; rows below it are sent or dead.  A query for
--     pending rows starts there (see the `pending` view) and costs what is
--     left to send, not what was ever sent.  telespool gives a new row an id
--     at or above it (after the newest rows were deleted, SQLite's own
--     max(id) + 1 could be below it), and a row set back to 'pending' lowers
--     it through the trigger below.
--
-- The rows of a 0001 spool are copied over, once, when a telespool with this
-- migration first opens it.

DROP VIEW pending;
DROP VIEW sent;
DROP VIEW dead;
DROP VIEW summary;

CREATE TABLE spool (
    id               INTEGER PRIMARY KEY,  -- insertion order: oldest first
    state            TEXT NOT NULL DEFAULT 'pending'
                     -- (not "IN (...)": SQLite builds a temporary table
                     -- for that on every insert)
                     CHECK (state = 'pending' OR state = 'sent'
                            OR state = 'dead'),
    attempts         INTEGER NOT NULL DEFAULT 0, -- delivery attempts so far
    next_attempt_at  TEXT NOT NULL,        -- not sent before this time
    lease_until      TEXT,                 -- claimed by an uploader until then
    created_at       TEXT NOT NULL,        -- when it was recorded
    sent_at          TEXT,                 -- when Space accepted it
    size             INTEGER NOT NULL,     -- about how many bytes the row takes
    event_id         TEXT NOT NULL,        -- random UUID v4; the Idempotency-Key
                                           -- (not indexed: a random key would
                                           -- make every insert touch a random
                                           -- page of a growing index)
    event_type       TEXT NOT NULL,        -- query, instance_heartbeat,
                                           -- survey_trigger, survey_response,
                                           -- survey_dismiss
    last_error       TEXT,                 -- why the last attempt failed
    body             TEXT NOT NULL         -- the exact JSON body to POST
);

INSERT INTO spool (id, state, attempts, next_attempt_at, lease_until,
                   created_at, sent_at, size, event_id, event_type,
                   last_error, body)
    SELECT id, state, attempts, next_attempt_at, lease_until, created_at,
           sent_at, length(CAST(body AS BLOB)) + 160, event_id, event_type,
           last_error, body
      FROM events ORDER BY id;

DROP TABLE events;  -- and its indexes

-- Sent and dead audit copies by age: the uploader's retention.  (A new row
-- is pending, so a record call never writes to it.  Leased rows need no
-- index: they are pending, at or above pending_from.)
CREATE INDEX spool_done ON spool (created_at) WHERE state <> 'pending';

INSERT OR REPLACE INTO uploader_state (key, value)
    SELECT 'pending_from',
           coalesce((SELECT min(id) FROM spool WHERE state = 'pending'),
                    (SELECT coalesce(max(id), 0) + 1 FROM spool));

-- A row set back to pending (by hand, say, to send it again) must not hide
-- below pending_from.
CREATE TRIGGER spool_pending_again AFTER UPDATE OF state ON spool
    WHEN new.state = 'pending' AND old.state <> 'pending'
BEGIN
    UPDATE uploader_state SET value = new.id
     WHERE key = 'pending_from' AND CAST(value AS INTEGER) > new.id;
END;

-- Every event, with the columns of 0001.
CREATE VIEW events AS
    SELECT id, event_id, event_type,
           json_extract(body, '$.query_id') AS query_id,
           json_extract(body, '$.adapter') AS adapter,
           json_extract(body, '$.runner') AS runner,
           json_extract(body, '$.model_name') AS model_name,
           json_extract(body, '$.duration_ms') AS duration_ms,
           coalesce(json_extract(body, '$.version'),
                    json_extract(body, '$.metadata.version')) AS version,
           json_extract(body, '$.instance_id') AS instance_id,
           json_extract(body, '$.pipeline_plugins') AS pipeline_plugins,
           json_extract(body, '$.error') AS error,
           json_extract(body, '$.timestamp') AS timestamp,
           body, state, attempts, next_attempt_at, last_error, created_at,
           sent_at, lease_until, size
      FROM spool;

-- What is waiting to be sent, oldest first.
CREATE VIEW pending AS
    SELECT id, event_id, event_type, attempts, next_attempt_at, last_error,
           created_at, body
      FROM spool
     WHERE id >= coalesce((SELECT CAST(value AS INTEGER) FROM uploader_state
                            WHERE key = 'pending_from'), 0)
       AND state = 'pending'
     ORDER BY id;

-- What left the machine, newest first.
CREATE VIEW sent AS
    SELECT id, event_id, event_type, sent_at, attempts, body
      FROM spool WHERE state = 'sent' ORDER BY sent_at DESC;

-- What was given up on, and why.
CREATE VIEW dead AS
    SELECT id, event_id, event_type, attempts, last_error, created_at, body
      FROM spool WHERE state = 'dead' ORDER BY id;

-- One line per state: how many, how big, oldest and newest.
CREATE VIEW summary AS
    SELECT state, count(*) AS events, sum(size) AS bytes,
           min(created_at) AS oldest, max(created_at) AS newest
      FROM spool GROUP BY state;
