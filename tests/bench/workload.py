"""The benchmark's workload: what LangBot records, as a deterministic cycle of query events.

Every benchmark (the C program, the Python binding, the pure-Python spool, the httpx sender)
cycles through the same EVENTS, so every figure compares the same rows.  Nine events in ten are
successful chat queries (no traceback); one in ten carries a realistic 1.5-2.5 KB traceback with
secrets in it (API keys, a DSN, a bearer token, an e-mail address), which the library redacts.

    python3 tests/bench/workload.py OUT.json      writes EVENTS as JSON (for bench_record.c)
    python3 tests/bench/workload.py --traceback-kib 10 OUT.json
                                                 the same, every event with a 10 KiB traceback
"""

from __future__ import annotations

import json
import sys

INSTANCE_ID = "instance_4f1c2b7e-8d1a-4c55-9a0e-3b8f6e2d9c10"
VERSION = "v4.3.1"

ADAPTERS = ["TelegramAdapter", "AiocqhttpAdapter", "DiscordAdapter", "WecomAdapter",
            "LarkAdapter", "DingTalkAdapter", "SlackAdapter"]
RUNNERS = ["local-agent", "dify-service-api", "n8n-service-api", "langflow-api"]
MODELS = ["gpt-4o", "gpt-4o-mini", "deepseek-chat", "claude-3-5-sonnet-20241022",
          "qwen-max", "moonshot-v1-8k", "glm-4-plus"]
PLUGINS = [[], ["hello"], ["hello", "weather"], ["WebSearch", "ImageGen", "Memory"],
           ["RSSReader"], ["hello", "weather", "Calculator", "Translator"]]

_TB_HEAD = (
    'Traceback (most recent call last):\n'
    '  File "/home/alice/LangBot/pkg/pipeline/process/handlers/chat.py", line 112, in handle\n'
    '    async for result in runner.run(query):\n'
    '  File "/home/alice/LangBot/pkg/provider/runners/localagent.py", line 61, in run\n'
    '    msg = await query.use_llm_model.requester.invoke_llm(\n'
    '          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n'
    '  File "/home/alice/LangBot/pkg/provider/modelmgr/requesters/chatcmpl.py", line 160, '
    'in invoke_llm\n'
    '    msg = await self._closure(query=query, req_messages=req_messages, use_model=model, '
    'use_funcs=funcs, extra_args=extra_args)\n'
    '          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n'
    '  File "/home/alice/LangBot/pkg/provider/modelmgr/requesters/chatcmpl.py", line 52, '
    'in _req\n'
    '    return await self.client.chat.completions.create(**args, extra_body=extra_body)\n'
    '           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n'
    '  File "/home/alice/LangBot/.venv/lib/python3.11/site-packages/openai/_base_client.py", '
    'line 1742, in post\n'
    '    return await self.request(cast_to, opts, stream=stream, stream_cls=stream_cls)\n'
    '           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n'
)

TRACEBACKS = [
    _TB_HEAD +
    "openai.AuthenticationError: Error code: 401 - {'error': {'message': 'Incorrect API key "
    "provided: sk-proj-Xa7fK2mQ9vR4tY8uW1eZ3oP6sD0gH5jL7cB2nM4xV9qA1. You can find your API key "
    "at https://platform.openai.com/account/api-keys.', 'type': 'invalid_request_error', "
    "'param': None, 'code': 'invalid_api_key'}} (user alice@example.com)\n",

    'Traceback (most recent call last):\n'
    '  File "/home/bob/LangBot/pkg/persistence/mgr.py", line 77, in initialize\n'
    '    await self.db.initialize()\n'
    '  File "/home/bob/LangBot/pkg/persistence/databases/postgresql.py", line 31, in initialize\n'
    '    self.engine = sqlalchemy_asyncio.create_async_engine(url)\n'
    '  File "/usr/lib/python3/dist-packages/sqlalchemy/ext/asyncio/engine.py", line 118, in '
    'create_async_engine\n'
    '    sync_engine = _create_engine(url, **kw)\n'
    '  File "/usr/lib/python3/dist-packages/asyncpg/connect_utils.py", line 922, in '
    '__connect_addr\n'
    '    await compat.wait_for(connected, timeout=timeout)\n'
    'asyncpg.exceptions.InvalidPasswordError: password authentication failed for user '
    '"langbot" (dsn postgresql://langbot:S3cr3t-Pa55w0rd@10.0.3.17:5432/langbot?sslmode=require)'
    '\n',

    _TB_HEAD +
    '  File "/home/carol/LangBot/plugins/WebSearch/main.py", line 44, in search\n'
    '    resp = await client.get(url, headers={"Authorization": f"Bearer {token}"})\n'
    '  File "/usr/lib/python3/dist-packages/httpx/_client.py", line 1757, in get\n'
    '    return await self.request(\n'
    'httpx.HTTPStatusError: Client error \'403 Forbidden\' for url '
    '\'https://api.search.example.com/v1/search?q=weather&key=AIzaSyD3x8Kq0-9mZ4rT6vW2yB7nC1hJ5fL8pE0\''
    '\nrequest headers: Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwi'
    'bmFtZSI6IkpvaG4gRG9lIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U from 192.168.1.23\n',
]

CYCLE = 100  # events before the cycle repeats


def _event(i: int) -> dict:
    return {
        "query_id": f"{(i * 2654435761) & 0xffffffff:08x}-{i:06d}",
        "adapter": ADAPTERS[i % len(ADAPTERS)],
        "runner": RUNNERS[i % len(RUNNERS)],
        "model_name": MODELS[i % len(MODELS)],
        "duration_ms": 300 + (i * 7919) % 9000,
        "pipeline_plugins": PLUGINS[i % len(PLUGINS)],
        "error": TRACEBACKS[(i // 10) % len(TRACEBACKS)] if i % 10 == 9 else None,
    }


EVENTS = [_event(i) for i in range(CYCLE)]


def langbot_payload(ev: dict, timestamp: str) -> dict:
    """The body LangBot's in-process sender builds for a query (before telespool)."""
    return {
        "event_type": "query",
        "query_id": ev["query_id"],
        "adapter": ev["adapter"],
        "runner": ev["runner"],
        "model_name": ev["model_name"],
        "duration_ms": ev["duration_ms"],
        "version": VERSION,
        "instance_id": INSTANCE_ID,
        "pipeline_plugins": ev["pipeline_plugins"],
        "error": ev["error"] or "",
        "timestamp": timestamp,
    }


def long_traceback(size: int) -> str:
    """The three tracebacks chained ("During handling of ...") up to size bytes: the
    record benchmark's traceback case (every event carries it)."""
    tb, i = "", 0
    while len(tb.encode()) < size:
        if tb:
            tb += "\nDuring handling of the above exception, another exception occurred:\n\n"
        tb += TRACEBACKS[i % len(TRACEBACKS)]
        i += 1
    return tb.encode()[:size].decode("utf-8", "ignore")


if __name__ == "__main__":
    # workload.py [--traceback-kib N] OUT.json
    events = EVENTS
    if len(sys.argv) == 4 and sys.argv[1] == "--traceback-kib":
        tb = long_traceback(int(sys.argv[2]) * 1024)
        events = [dict(ev, error=tb) for ev in EVENTS]
    with open(sys.argv[-1], "w", encoding="utf-8") as f:
        json.dump({"instance_id": INSTANCE_ID, "version": VERSION, "events": events}, f)
