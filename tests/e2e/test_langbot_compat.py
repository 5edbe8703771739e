"""End-to-end: the bytes Space receives are the bytes LangBot 4.10.8 would have POSTed.

LangBot 4.10.8 (langbot-app/LangBot, commit 962366c) builds its payloads in
``src/langbot/pkg/pipeline/process/handlers/chat.py`` (query events),
``src/langbot/pkg/telemetry/heartbeat.py`` (one heartbeat per workspace) and
``src/langbot/pkg/survey/manager.py`` (the three survey bodies), normalises telemetry payloads
in ``src/langbot/pkg/telemetry/telemetry.py`` (``TelemetryManager.send``), and POSTs with
httpx 0.28.1's ``json=``, which encodes ``json.dumps(payload, ensure_ascii=False,
separators=(",", ":"), allow_nan=False).encode("utf-8")``.

``langbot_send_body`` below re-states that normalisation and encoding independently of
telespool's own code, so that this test checks telespool against LangBot, not against itself.
To check a newer LangBot: update the payload builders and ``langbot_send_body`` from its
source and run ``ctest --test-dir build -R e2e_upload`` (this file is part of it).
"""

import datetime
import json
import re
import unittest

import telespool
from harness import DISMISS, E2E, EXIT_OK, PENDING, RESPOND, TELEMETRY

INSTANCE = "instance_3f2a9c1e-7b4d-4e8f-9a6b-0c1d2e3f4a5b"     # constants.instance_id
VERSION = "v4.10.8"                                             # constants.semantic_version
EDITION = "community"                                           # constants.edition
CREATED = 1732400000                                            # constants.instance_create_ts
WS_A = "6d9f3a2b-1c4e-4f5a-8b7c-9d0e1f2a3b4c"
WS_B = "0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d"


def langbot_send_body(payload: dict) -> bytes:
    """What TelemetryManager.send() POSTs for payload (LangBot 4.10.8, telemetry.py)."""
    sanitized = dict(payload)
    if "query_id" in sanitized:
        sanitized["query_id"] = "" if sanitized["query_id"] is None \
            else str(sanitized["query_id"])
    for sfield in ("adapter", "runner", "runner_category", "model_name", "version", "edition",
                   "error", "timestamp", "event_type"):
        if sfield not in sanitized:
            continue
        v = sanitized.get(sfield)
        sanitized[sfield] = "" if v is None else str(v)
    if not sanitized.get("event_type"):
        sanitized["event_type"] = "query"
    if "features" in sanitized and not isinstance(sanitized["features"], dict):
        sanitized["features"] = {}
    if "duration_ms" in sanitized:
        try:
            sanitized["duration_ms"] = (int(sanitized["duration_ms"])
                                        if sanitized["duration_ms"] is not None else 0)
        except Exception:
            sanitized["duration_ms"] = 0
    return httpx_json(sanitized)


def httpx_json(body: dict) -> bytes:
    """httpx 0.28.1's encode_json (the survey manager POSTs its bodies with it as they are)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")


def utcnow_iso() -> str:
    """datetime.utcnow().isoformat(), without the deprecation warning of 3.12."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None).isoformat()


def query_payload(**over) -> dict:
    """chat.py's payload, keys in its order (identity from workspace_identity())."""
    p = {
        "event_type": "query",
        "query_id": 42,                        # query.query_id: a per-process counter (int)
        "adapter": "TelegramAdapter",
        "runner": "local-agent",
        "runner_category": "agent",
        "duration_ms": 812,
        "model_name": "deepseek-chat",
        "version": VERSION,
        "instance_id": INSTANCE,
        "workspace_uuid": WS_A,
        "runtime_instance_id": INSTANCE,
        "edition": EDITION,
        "pipeline_plugins": None,              # the pipeline enables every plugin
        "features": {
            "tool_calls": {"mcp": 2, "plugin": 1, "builtin": 0},
            "tool_call_rounds": 3,
            "knowledge_base": {"used": True, "kb_count": 1, "score": 0.75},
            "sandbox": {"execs": 1, "ratio": 1.0, "tiny": 1e-7, "huge": 1e16},
            "activated_skills": ["翻译助手", "web-search"],
            "mcp_servers": None,
            "big": 2 ** 70,
        },
        "error": None,
        "timestamp": utcnow_iso(),
    }
    p.update(over)
    return p


ERROR_TB = ('Traceback (most recent call last):\n'
            '  File "/app/src/langbot/pkg/provider/runners/localagent.py", line 118, in run\n'
            '    async for msg in self._stream(query):\n'
            '  File "/app/src/langbot/pkg/provider/modelmgr/requester.py", line 57, in invoke\n'
            '    raise RequesterError(f"model {name} not found")\n'
            'RequesterError: model deepseek-chat not found\n')


def heartbeat_payload(workspace_uuid: str, create_ts: int, bots: int) -> dict:
    """heartbeat.py's build_heartbeat_payload(), keys in its order."""
    features = {
        "deploy_platform": "docker", "database": "sqlite", "vdb": "chroma",
        "box": {"enabled": True, "available": False, "backend": "local", "shares_fs": True},
        "bot_count": bots, "adapters": ["AiocqhttpAdapter", "TelegramAdapter"],
        "pipeline_count": 2, "mcp_server_count": -1, "knowledge_base_count": 0,
        "plugin_count": 5, "skill_count": 3,
    }
    return {
        "event_type": "instance_heartbeat",
        "query_id": "",
        "version": VERSION,
        "instance_id": INSTANCE,
        "workspace_uuid": workspace_uuid,
        "workspace_create_ts": create_ts,
        "instance_create_ts": CREATED,
        "edition": EDITION,
        "features": features,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }


SURVEY_BODIES = [   # survey/manager.py: _fetch_pending_survey, submit_response, dismiss_survey
    (PENDING, {"instance_id": INSTANCE, "event": "first_bot_response_success"}),
    (RESPOND, {"survey_id": "sv-2026-08", "instance_id": INSTANCE,
               "answers": {"nps": 9, "ease": 4.5, "uses": ["agents", "知识库"], "comment": ""},
               "metadata": {"version": VERSION, "instance_id": INSTANCE},
               "completed": True}),
    (DISMISS, {"survey_id": "sv-2026-09", "instance_id": INSTANCE}),
]


def telemetry_payloads() -> list:
    return [
        query_payload(),                                               # success, plugins null
        query_payload(query_id=43, error=ERROR_TB, pipeline_plugins=["hello", "weather"],
                      duration_ms=15003),                              # with error, listed
        query_payload(query_id=44, adapter=None, runner=None, runner_category=None,
                      model_name=None, duration_ms=None, edition=None,
                      pipeline_plugins=[], features={}),               # None fields
        query_payload(query_id=None, workspace_uuid=WS_B, instance_id="instance_other",
                      features={"note": "中文 \u2028 line sep, 😀 non-BMP, \"q\" \\ \t",
                                "nested": {"a": {"b": {"c": [1, [2, [3]]]}}}},
                      future_field={"x": [1, 2.5, None, False]}),      # unknown key kept
        heartbeat_payload(WS_A, 1732000000, 2),                        # a heartbeat per
        heartbeat_payload(WS_B, 0, 0),                                 # active workspace
    ]


class Unprintable:
    def __str__(self):
        raise RuntimeError("no str")


class LangBotBytes(E2E):
    """Every body recorded for LangBot's payload is POSTed with LangBot's exact bytes."""

    def upload(self, lb, space, n):
        r = lb.run()
        self.assertExit(r, EXIT_OK)
        events = lb.events()
        self.assertEqual(len(events), n)
        log = {e["idempotency_key"]: e for e in space.requests()}
        self.assertEqual(len(log), n, log)
        return [(ev, log[ev["event_id"]]) for ev in events]

    def open(self, lb):
        return lb.spool(instance_id=INSTANCE, version=VERSION, edition=EDITION,
                        instance_create_ts=CREATED)

    def test_record_sends_langbots_bytes(self):
        space = self.space()
        lb = self.langbot(space)
        payloads = telemetry_payloads()
        with self.open(lb) as sp:
            for p in payloads:
                sp.record(p)
            for endpoint, body in SURVEY_BODIES:
                sp.record(body, endpoint=endpoint)
        want = [(TELEMETRY, langbot_send_body(p)) for p in payloads]
        want += [(endpoint, httpx_json(body)) for endpoint, body in SURVEY_BODIES]
        sent = self.upload(lb, space, len(want))
        for i, ((ev, req), (path, body)) in enumerate(zip(sent, want)):
            with self.subTest(i=i, event_type=ev["event_type"]):
                self.assertEqual(req["path"], path)
                self.assertEqual(req["body"].encode("utf-8"), body)
        self.assertEqual([ev["event_type"] for ev, _ in sent],
                         ["query"] * 4 + ["instance_heartbeat"] * 2
                         + ["survey_trigger", "survey_response", "survey_dismiss"])

    def test_typed_calls_send_the_same_bytes(self):
        """The typed calls make their own timestamp: the expected bytes are LangBot's for
        the payload with the timestamp that was sent (whose format is checked too)."""
        space = self.space()
        lb = self.langbot(space)
        payloads = telemetry_payloads()
        with self.open(lb) as sp:
            for p in payloads[:4]:
                plugins = p["pipeline_plugins"]
                sp.record_query(query_id=p["query_id"], adapter=p["adapter"],
                                runner=p["runner"], runner_category=p["runner_category"],
                                duration_ms=p["duration_ms"], model_name=p["model_name"],
                                pipeline_plugins=plugins, features=p["features"],
                                error=p["error"], instance_id=p["instance_id"],
                                workspace_uuid=p["workspace_uuid"])
            for p in payloads[4:]:
                sp.record_workspace_heartbeat(workspace_uuid=p["workspace_uuid"],
                                              workspace_create_ts=p["workspace_create_ts"],
                                              features=p["features"])
            sp.record_survey_trigger(SURVEY_BODIES[0][1]["event"])
            respond = SURVEY_BODIES[1][1]
            sp.record_survey_response(respond["survey_id"], respond["answers"],
                                      completed=respond["completed"])
            sp.record_survey_dismiss(SURVEY_BODIES[2][1]["survey_id"])
        # The typed query has no unknown keys and sends edition from the Spool's options.
        typed = [dict(p) for p in payloads]
        del typed[3]["future_field"]
        typed[2]["edition"] = EDITION
        sent = self.upload(lb, space, len(typed) + len(SURVEY_BODIES))
        naive = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$")
        aware = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00$")
        for i, ((ev, req), p) in enumerate(zip(sent, typed)):
            with self.subTest(i=i, event_type=ev["event_type"]):
                ts = json.loads(req["body"])["timestamp"]
                self.assertRegex(ts, naive if p["event_type"] == "query" else aware)
                self.assertEqual(req["path"], TELEMETRY)
                self.assertEqual(req["body"].encode("utf-8"),
                                 langbot_send_body({**p, "timestamp": ts}))
        for (ev, req), (path, body) in zip(sent[len(typed):], SURVEY_BODIES):
            with self.subTest(event_type=ev["event_type"]):
                self.assertEqual(req["path"], path)
                self.assertEqual(req["body"].encode("utf-8"), httpx_json(body))

    def test_sender_normalisation_edge_cases(self):
        """Values LangBot's sender converts: each body equals LangBot's bytes."""
        space = self.space()
        lb = self.langbot(space)
        cases = [
            {"event_type": "", "query_id": 7, "duration_ms": "  1_200 "},
            {"query_id": True, "adapter": 3.5, "runner": False, "duration_ms": 12.9},
            {"event_type": None, "duration_ms": float("inf"), "features": ["not", "a", "dict"]},
            {"duration_ms": "12.5", "features": None, "error": 404, "timestamp": 1.0},
            {"duration_ms": 10 ** 20, "version": 4.1, "custom": {"deep": [0.1, -0.0, 1e300]}},
        ]
        with self.open(lb) as sp:
            for c in cases:
                sp.record(c)
        sent = self.upload(lb, space, len(cases))
        for (ev, req), c in zip(sent, cases):
            with self.subTest(case=c):
                want = langbot_send_body(c)
                if c["duration_ms"] == 10 ** 20:   # telespool's one cap on the way
                    want = want.replace(b'"duration_ms":100000000000000000000',
                                        b'"duration_ms":1000000000000')
                self.assertEqual(req["body"].encode("utf-8"), want)

    def test_what_langbot_cannot_send_is_refused(self):
        lb = self.langbot(self.space())
        with self.open(lb) as sp:
            for what, bad in (("NaN", {"features": {"x": float("nan")}}),
                              ("Infinity", {"duration_ms": 1, "x": float("inf")}),
                              ("5001 digits", {"big": 10 ** 5000}),
                              ("str() raises", {"adapter": Unprintable()})):
                with self.subTest(what):
                    with self.assertRaises(telespool.InvalidArgument):
                        sp.record(bad)
            with self.assertRaises(telespool.ArgumentTypeError):
                sp.record({"x": {1, 2}})
            with self.assertRaises(telespool.ArgumentTypeError):
                sp.record(["not", "a", "dict"])
            with self.assertRaises(telespool.InvalidArgument):
                sp.record({"survey_id": ""}, endpoint=RESPOND)
            with self.assertRaises(telespool.InvalidArgument):
                sp.record({}, endpoint="/api/v1/other")
        self.assertEqual(lb.events(), [])


if __name__ == "__main__":
    unittest.main()
