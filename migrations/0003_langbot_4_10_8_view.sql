-- 0003_langbot_4_10_8_view: the `events` view shows LangBot 4.10.8's fields.
--
-- LangBot 4.10.8's query body adds runner_category, workspace_uuid,
-- runtime_instance_id, edition and features; its heartbeat adds
-- workspace_uuid and workspace_create_ts.  The view reads them from the body
-- like the other fields (NULL where a body has no such key), after every
-- column it had, so that queries written for 0002 keep working unchanged.
-- Only the view changes: no row is touched.

DROP VIEW events;

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
           sent_at, lease_until, size,
           json_extract(body, '$.runner_category') AS runner_category,
           json_extract(body, '$.workspace_uuid') AS workspace_uuid,
           json_extract(body, '$.runtime_instance_id') AS runtime_instance_id,
           json_extract(body, '$.edition') AS edition,
           json_extract(body, '$.features') AS features
      FROM spool;
