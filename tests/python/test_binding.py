"""Tests of the ctypes binding lib/python/telespool (standard library only).

Run by ctest (test python_binding), or from the project root after a build:
    TELESPOOL_LIBRARY=build/lib/libtelespool.so PYTHONPATH=lib/python \\
        python3 -m unittest discover -s tests/python -v
Each test works in a fresh temporary directory and checks the spool with the stdlib sqlite3.
"""

from __future__ import annotations

import datetime
import enum
import glob
import json
import math
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import typing
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
try:
    import telespool
except ImportError as e:
    if "No module named" not in str(e):
        raise
    sys.path.insert(0, os.path.join(ROOT, "lib", "python"))
    import telespool

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
# LangBot 4.10.8's query body (pkg/pipeline/process/handlers/chat.py), in its order.
QUERY_KEYS = ["event_type", "query_id", "adapter", "runner", "runner_category", "duration_ms",
              "model_name", "version", "instance_id", "workspace_uuid", "runtime_instance_id",
              "edition", "pipeline_plugins", "features", "error", "timestamp"]
INSTANCE = "instance_0b7d8c1e-5a7f-4a53-9c1e-2f8a6b0d4e11"
VERSION = "v4.3.1"


def parse_ts(text: str) -> datetime.datetime:
    """An ISO 8601 UTC timestamp ('...Z', '+00:00', or naive as datetime.utcnow().isoformat()
    writes it); fails on anything else."""
    if re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?", text):
        text += "+00:00"
    assert text.endswith("Z") or text.endswith("+00:00"), text
    ts = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert ts.utcoffset() == datetime.timedelta(0), text
    return ts


class SpoolTest(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="telespool-py-")
        self.dir = self._tmp.name
        self.db = os.path.join(self.dir, "telemetry.db")

    def tearDown(self):
        self._tmp.cleanup()

    def open(self, **kw):
        kw.setdefault("instance_id", INSTANCE)
        kw.setdefault("version", VERSION)
        sp = telespool.Spool(self.db, **kw)
        self.addCleanup(sp.close)
        return sp

    def sql(self, query, args=()):
        con = sqlite3.connect(self.db)
        try:
            return con.execute(query, args).fetchall()
        finally:
            con.close()

    def bodies(self, event_type=None):
        """Bodies as lists of (key, value) pairs, so that key order is checked."""
        where, args = ("WHERE event_type = ?", (event_type,)) if event_type else ("", ())
        rows = self.sql(f"SELECT body FROM events {where} ORDER BY id", args)
        return [json.loads(b, object_pairs_hook=list) for (b,) in rows]

    def body(self, event_type=None):
        bodies = self.bodies(event_type)
        self.assertEqual(len(bodies), 1)
        return dict(bodies[0])

    def count(self, event_type=None):
        if event_type:
            return self.sql("SELECT count(*) FROM events WHERE event_type = ?",
                            (event_type,))[0][0]
        return self.sql("SELECT count(*) FROM events")[0][0]

    def drops(self):
        return dict(self.sql("SELECT reason, count FROM drops"))

    def add_survey(self, survey_id, body):
        con = sqlite3.connect(self.db)
        with con:
            con.execute("INSERT INTO surveys (survey_id, body, state, received_at)"
                        " VALUES (?, ?, 'pending', ?)",
                        (survey_id, body, datetime.datetime.now(datetime.timezone.utc)
                         .strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"))
        con.close()


class TestModule(unittest.TestCase):
    def test_version_and_constants(self):
        self.assertTrue(telespool.library_version().startswith("0."))
        self.assertTrue(os.path.exists(telespool.LIBRARY_PATH) or
                        "/" not in telespool.LIBRARY_PATH)
        self.assertEqual((telespool.OK, telespool.ERROR, telespool.EINVAL, telespool.EBUSY,
                          telespool.EFULL, telespool.ESCHEMA, telespool.EDISABLED,
                          telespool.ECORRUPT, telespool.EIO, telespool.ENOMEM),
                         (0, -1, -2, -3, -4, -5, -6, -7, -8, -9))
        self.assertEqual((telespool.CORRUPT_REFUSE, telespool.CORRUPT_MOVE_ASIDE), (0, 1))
        self.assertEqual(telespool.strerror(telespool.OK), "ok")
        self.assertIn("disabled", telespool.strerror(telespool.EDISABLED))
        self.assertTrue(telespool.strerror(12345))

    def test_error_classes(self):
        E = telespool
        for cls, code in [(E.InvalidArgument, E.EINVAL), (E.BusyError, E.EBUSY),
                          (E.FullError, E.EFULL), (E.SchemaError, E.ESCHEMA),
                          (E.DisabledError, E.EDISABLED), (E.CorruptError, E.ECORRUPT),
                          (E.StorageError, E.EIO), (E.OutOfMemoryError, E.ENOMEM)]:
            self.assertTrue(issubclass(cls, E.Error))
            self.assertIs(type(E._error(code, "detail")), cls)
        self.assertIs(type(E._error(E.ERROR, "x")), E.Error)
        self.assertIs(type(E._error(-99, "x")), E.Error)
        self.assertTrue(issubclass(E.InvalidArgument, ValueError))
        self.assertTrue(issubclass(E.OutOfMemoryError, MemoryError))
        e = E.BusyError(E.EBUSY, "locked for 250 ms")
        self.assertEqual((e.code, e.message), (E.EBUSY, "locked for 250 ms"))
        self.assertIn("locked for 250 ms", str(e))
        self.assertEqual(str(E.Error(E.ENOMEM)), E.strerror(E.ENOMEM))

    def run_import(self, env):
        env = {**os.environ, **env}
        code = "import telespool; print(telespool.LIBRARY_PATH)"
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=60)

    def test_library_env_that_does_not_load(self):
        r = self.run_import({"TELESPOOL_LIBRARY": "/nonexistent/libtelespool.so"})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("ImportError", r.stderr)
        self.assertIn("TELESPOOL_LIBRARY", r.stderr)
        self.assertIn("/nonexistent/libtelespool.so", r.stderr)

    def test_library_from_build_dir(self):
        lib = os.path.realpath(telespool.LIBRARY_PATH)
        if os.path.basename(os.path.dirname(lib)) != "lib":
            self.skipTest("the library under test is not in a build tree")
        build = os.path.dirname(os.path.dirname(lib))
        env = {"TELESPOOL_BUILD_DIR": build, "TELESPOOL_LIBRARY": ""}
        r = self.run_import(env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), os.path.join(build, "lib", "libtelespool.so"))


class TestQuery(SpoolTest):
    def test_body_matches_protocol(self):
        sp = self.open()
        before = datetime.datetime.now(datetime.timezone.utc)
        sp.record_query(query_id="q-1", adapter="TelegramAdapter", runner="local-agent",
                        model_name="gpt-4o", duration_ms=812, pipeline_plugins=["hello", "w"],
                        error=None)
        after = datetime.datetime.now(datetime.timezone.utc)
        (pairs,) = self.bodies()
        self.assertEqual([k for k, _ in pairs], QUERY_KEYS)
        b = dict(pairs)
        self.assertEqual(b, {**b, "event_type": "query", "query_id": "q-1",
                             "adapter": "TelegramAdapter", "runner": "local-agent",
                             "model_name": "gpt-4o", "duration_ms": 812, "version": VERSION,
                             "instance_id": INSTANCE, "pipeline_plugins": ["hello", "w"],
                             "error": "", "runner_category": "", "workspace_uuid": "",
                             "runtime_instance_id": INSTANCE, "edition": "", "features": []})
        for k in QUERY_KEYS:   # (bodies() reads objects as lists of pairs)
            want = {"duration_ms": int, "pipeline_plugins": list, "features": list}.get(k, str)
            self.assertIs(type(b[k]), want, k)
        ts = parse_ts(b["timestamp"])
        slack = datetime.timedelta(seconds=2)
        self.assertTrue(before - slack <= ts <= after + slack, (before, ts, after))
        (row,) = self.sql("SELECT event_id, event_type, query_id, adapter, runner, model_name,"
                          " duration_ms, version, instance_id, pipeline_plugins, error,"
                          " timestamp, state FROM events")
        self.assertRegex(row[0], UUID4)
        self.assertEqual(row[1:], ("query", "q-1", "TelegramAdapter", "local-agent", "gpt-4o",
                                   812, VERSION, INSTANCE, '["hello","w"]', "",
                                   b["timestamp"], "pending"))

    def test_optional_fields(self):
        sp = self.open(edition="community")
        sp.record_query(query_id="q", adapter="a", runner="r", model_name="m", duration_ms=1,
                        pipeline_plugins=[], error="", runner_category="agent",
                        features={"tool_calls": {"mcp": 2}}, instance_id="inst-q",
                        workspace_uuid="ws-1", runtime_instance_id="inst-rt")
        (pairs,) = self.bodies()
        self.assertEqual([k for k, _ in pairs], QUERY_KEYS)
        b = dict(pairs)
        self.assertEqual((b["runner_category"], b["edition"]), ("agent", "community"))
        self.assertEqual(b["pipeline_plugins"], [])
        self.assertEqual((b["instance_id"], b["workspace_uuid"], b["runtime_instance_id"]),
                         ("inst-q", "ws-1", "inst-rt"))
        self.assertEqual(b["features"], [("tool_calls", [("mcp", 2)])])

    def test_nulls_are_normalised(self):
        sp = self.open()
        sp.record_query()
        (pairs,) = self.bodies()
        self.assertEqual([k for k, _ in pairs], QUERY_KEYS)
        b = dict(pairs)
        for k in ("query_id", "adapter", "runner", "model_name", "error"):
            self.assertEqual(b[k], "", k)
        # pipeline_plugins None is LangBot's "every plugin": null, not [].
        self.assertEqual((b["duration_ms"], b["pipeline_plugins"]), (0, None))

    def test_positional_and_error_text(self):
        sp = self.open()
        tb = 'Traceback (most recent call last):\n  File "x.py", line 3, in f\nKeyError: 1\n'
        with self.assertRaises(TypeError):   # keyword-only
            sp.record_query("q", "AiocqhttpAdapter", "dify-service-api", "deepseek-chat", 5,
                            ("p1",), tb)
        sp.record_query(query_id="q", adapter="AiocqhttpAdapter", runner="dify-service-api",
                        model_name="deepseek-chat", duration_ms=5, pipeline_plugins=("p1",),
                        error=tb)
        b = self.body()
        self.assertEqual((b["adapter"], b["runner"], b["model_name"], b["pipeline_plugins"]),
                         ("AiocqhttpAdapter", "dify-service-api", "deepseek-chat", ["p1"]))
        self.assertIn("KeyError", b["error"])
        self.assertIn('File "x.py", line 3, in f', b["error"])

    def test_duration_conversion(self):
        sp = self.open()
        values = [812.9, True, None, -5, float("nan"), 10 ** 30, float("inf"), float("-inf"),
                  2 ** 63, -(2 ** 70)]
        for i, value in enumerate(values):
            sp.record_query(query_id=f"d{i}", duration_ms=value)
        got = [dict(b)["duration_ms"] for b in self.bodies("query")]
        self.assertEqual(len(got), len(values))
        for v in got:
            self.assertIs(type(v), int)
        self.assertEqual(got[:5], [812, 1, 0, 0, 0])
        huge = got[5]
        self.assertGreater(huge, 0)
        self.assertEqual(got[6:], [huge, 0, huge, 0])
        for bad in ("812", b"1", [1], object()):
            with self.assertRaises(TypeError):
                sp.record_query(query_id="bad", duration_ms=bad)
        self.assertEqual(self.count(), len(values))

    def test_string_field_types(self):
        sp = self.open()

        class Name(str):
            pass

        sp.record_query(query_id=123, adapter=1.5, runner=Name("local-agent"),
                        model_name=False, pipeline_plugins=("a", None, 3, Name("n")))
        b = self.body()
        self.assertEqual((b["query_id"], b["adapter"], b["runner"], b["model_name"]),
                         ("123", "1.5", "local-agent", "False"))
        self.assertEqual(b["pipeline_plugins"], ["a", "3", "n"])
        sp.record_query(query_id="gen", pipeline_plugins=(p for p in ["x", "y"]))
        self.assertEqual(dict(self.bodies()[1])["pipeline_plugins"], ["x", "y"])
        for kw in ({"adapter": object()}, {"adapter": b"TelegramAdapter"},
                   {"error": ["tb"]}, {"runner_category": {}}, {"pipeline_plugins": "hello"},
                   {"pipeline_plugins": b"hello"}, {"pipeline_plugins": 5},
                   {"pipeline_plugins": [object()]}):
            with self.assertRaises(TypeError, msg=kw):
                sp.record_query(query_id="bad", **kw)
        self.assertEqual(self.count(), 2)

    def test_repeated_plugin_lists(self):
        """The binding keeps the arrays of plugin lists it has seen: every body still has
        its own list, in order, however many distinct lists there are."""
        sp = self.open()
        lists = [[f"p{i}", "shared", f"q{i % 3}"] for i in range(300)]
        for rnd in range(2):
            for i, lst in enumerate(lists):
                sp.record_query(query_id=f"r{rnd}-{i}", pipeline_plugins=lst)
        lists[0][0] = "changed"  # the caller's list changing later changes nothing stored
        sp.record_query(query_id="after", pipeline_plugins=lists[0])
        sp.record_query(query_id="nul", pipeline_plugins=["a\0b", "shared"])
        sp.record_query(query_id="nul2", pipeline_plugins=["a\0b", "shared"])
        got = [dict(b)["pipeline_plugins"] for b in self.bodies()]
        want = [[f"p{i}", "shared", f"q{i % 3}"] for i in range(300)] * 2
        want += [["changed", "shared", "q0"], ["ab", "shared"], ["ab", "shared"]]
        self.assertEqual(got, want)

    def test_nuls_are_removed(self):
        sp = self.open(instance_id="inst\x00ance", version="v4\x00.3")
        sp.record_query(query_id="ab\x00cd", adapter="\x00Tele\x00gram", error="l1\x00l2\n",
                        pipeline_plugins=["he\x00llo", "\x00"])
        b = self.body()
        self.assertEqual((b["query_id"], b["adapter"]), ("abcd", "Telegram"))
        self.assertEqual((b["instance_id"], b["version"]), ("instance", "v4.3"))
        self.assertIn("l1l2", b["error"])
        self.assertEqual(b["pipeline_plugins"][0], "hello")
        self.assertNotIn("\x00", json.dumps(b, ensure_ascii=False))

    def test_lone_surrogates_become_replacement_characters(self):
        sp = self.open()
        sp.record_query(query_id="q\ud800", adapter="Tele\udc80gram",
                        error="boom \udfff end", pipeline_plugins=["p\ud83d"])
        # sqlite3 decodes every text column as UTF-8: this fails on invalid UTF-8.
        b = self.body()
        self.assertTrue(b["adapter"].startswith("Tele") and b["adapter"].endswith("gram"))
        self.assertIn("\ufffd", b["adapter"])
        self.assertIn("\ufffd", b["query_id"])
        self.assertIn("\ufffd", b["error"])
        self.assertIn("\ufffd", b["pipeline_plugins"][0])
        for v in (b["adapter"], b["query_id"], b["error"], b["pipeline_plugins"][0]):
            v.encode("utf-8")  # no surrogate left
        (adapter,) = self.sql("SELECT adapter FROM events")[0]
        self.assertEqual(adapter, b["adapter"])

    def test_non_ascii_text(self):
        sp = self.open()
        sp.record_query(query_id="q", adapter="微信Adapter", model_name="模型-é")
        b = self.body()
        self.assertEqual((b["adapter"], b["model_name"]), ("微信Adapter", "模型-é"))


class TestOtherEvents(SpoolTest):
    def test_heartbeat(self):
        sp = self.open(edition="community", instance_create_ts=1700000000)
        when = datetime.date(2024, 1, 2)
        sp.record_heartbeat(features={"bots": 2, "pipelines": 3, "名": "値", "when": when})
        (pairs,) = self.bodies("instance_heartbeat")
        self.assertEqual([k for k, _ in pairs],
                         ["event_type", "instance_id", "version", "edition",
                          "instance_create_ts", "features", "timestamp"])
        b = dict(pairs)
        self.assertEqual((b["event_type"], b["instance_id"], b["version"], b["edition"],
                          b["instance_create_ts"]),
                         ("instance_heartbeat", INSTANCE, VERSION, "community", 1700000000))
        self.assertEqual(dict(b["features"]),
                         {"bots": 2, "pipelines": 3, "名": "値", "when": "2024-01-02"})
        parse_ts(b["timestamp"])
        sp.record_heartbeat(features='{"bots": 7}')
        sp.record_heartbeat()
        sp.record_heartbeat(features=None)
        got = [dict(dict(x)["features"]) for x in self.bodies("instance_heartbeat")]
        self.assertEqual(got[1:], [{"bots": 7}, {}, {}])

    def test_survey_trigger_once(self):
        sp = self.open()
        sp.record_survey_trigger(event="first_bot_response_success")
        sp.record_survey_trigger("first_bot_response_success")
        sp.record_survey_trigger("bot_response_success_100")
        bodies = self.bodies("survey_trigger")
        self.assertEqual([[k for k, _ in b] for b in bodies], [["instance_id", "event"]] * 2)
        self.assertEqual([dict(b)["event"] for b in bodies],
                         ["first_bot_response_success", "bot_response_success_100"])
        self.assertEqual(dict(bodies[0])["instance_id"], INSTANCE)
        self.assertEqual(sorted(r[0] for r in self.sql("SELECT event FROM survey_milestones")),
                         ["bot_response_success_100", "first_bot_response_success"])

    def test_pending_survey_response_and_dismiss(self):
        sp = self.open()
        self.assertIsNone(sp.pending_survey())
        survey = {"survey_id": "s-1", "title": "How is it going? 👋",
                  "questions": [{"id": "q1", "type": "rating"}]}
        self.add_survey("s-1", json.dumps(survey, ensure_ascii=False))
        self.assertEqual(sp.pending_survey(), survey)
        self.assertEqual(sp.pending_survey(), survey)  # still there until answered
        sp.record_survey_response(survey_id="s-1", answers={"q1": 5, "q2": "好"},
                                  completed=True)
        self.assertIsNone(sp.pending_survey())
        self.assertEqual(self.sql("SELECT state FROM surveys WHERE survey_id='s-1'"),
                         [("answered",)])
        (pairs,) = self.bodies("survey_response")
        self.assertEqual([k for k, _ in pairs],
                         ["survey_id", "instance_id", "answers", "metadata", "completed"])
        b = dict(pairs)
        self.assertEqual((b["survey_id"], b["instance_id"], dict(b["answers"]), b["completed"]),
                         ("s-1", INSTANCE, {"q1": 5, "q2": "好"}, True))
        self.assertEqual(b["metadata"], [("version", VERSION), ("instance_id", INSTANCE)])

        self.add_survey("s-2", '{"survey_id": "s-2"}')
        self.assertEqual(sp.pending_survey(), {"survey_id": "s-2"})
        sp.record_survey_dismiss(survey_id="s-2")
        self.assertIsNone(sp.pending_survey())
        self.assertEqual(self.sql("SELECT state FROM surveys WHERE survey_id='s-2'"),
                         [("dismissed",)])
        (pairs,) = self.bodies("survey_dismiss")
        self.assertEqual(pairs, [("survey_id", "s-2"), ("instance_id", INSTANCE)])

        sp.record_survey_response("s-3", '{"q": [1, 2]}', completed=False)
        b = dict(self.bodies("survey_response")[1])
        self.assertEqual((dict(b["answers"]), b["completed"]), ({"q": [1, 2]}, False))

    def test_pending_survey_that_is_not_json(self):
        sp = self.open()
        self.add_survey("s-bad", "this is not json")
        with self.assertRaises(telespool.Error) as cm:
            sp.pending_survey()
        self.assertEqual(cm.exception.code, telespool.ERROR)


class TestOptions(SpoolTest):
    def test_max_events(self):
        sp = self.open(max_events=5)
        for i in range(8):
            sp.record_query(query_id=f"q{i}")
        self.assertEqual([dict(b)["query_id"] for b in self.bodies()],
                         ["q3", "q4", "q5", "q6", "q7"])
        self.assertEqual(self.drops().get("evicted_max_events"), 3)

    def test_max_bytes(self):
        limit = 2 * 65536
        sp = self.open(max_bytes=limit)
        for i in range(12):
            sp.record_query(query_id=f"q{i}", error="x" * 20000)
        # max_bytes bounds the file's used pages; the newest event may
        # overshoot by at most itself (64 KiB).
        (used,) = self.sql("SELECT (page_count - freelist_count) * page_size"
                           " FROM pragma_page_count(), pragma_freelist_count(),"
                           " pragma_page_size()")[0]
        self.assertLessEqual(used, limit + 65536)
        self.assertLess(self.count(), 12)
        self.assertGreater(self.drops().get("evicted_max_bytes", 0), 0)
        self.assertEqual(dict(self.bodies()[-1])["query_id"], "q11")

    def test_max_age_days(self):
        sp = self.open(max_age_days=1)
        con = sqlite3.connect(self.db)
        with con:
            con.execute("INSERT INTO spool (event_id, event_type, body, next_attempt_at,"
                        " created_at, size) VALUES ('00000000-0000-4000-8000-000000000000',"
                        " 'query', '{}', '2000-01-01T00:00:00.000Z',"
                        " '2000-01-01T00:00:00.000Z', 10)")
        con.close()
        sp.record_query(query_id="new")  # the first record on a handle checks ages
        self.assertEqual([dict(b).get("query_id") for b in self.bodies()], ["new"])
        self.assertEqual(self.drops().get("evicted_max_age"), 1)

    def test_disabled(self):
        self.open().close()
        self.add_survey("s-1", '{"survey_id": "s-1"}')
        sp = self.open(disabled=True)
        self.assertTrue(sp.disabled)
        calls = [lambda: sp.record_query(query_id="q"), lambda: sp.record_heartbeat({}),
                 lambda: sp.record_survey_trigger("first_bot_response_success"),
                 lambda: sp.record_survey_response("s-1", {"a": 1}),
                 lambda: sp.record_survey_dismiss("s-1")]
        for call in calls:
            with self.assertRaises(telespool.DisabledError) as cm:
                call()
            self.assertEqual(cm.exception.code, telespool.EDISABLED)
            self.assertTrue(cm.exception.message)
        self.assertIsNone(sp.pending_survey())
        self.assertEqual(self.count(), 0)
        self.assertEqual(self.sql("SELECT state FROM surveys"), [("pending",)])

    def test_strict_errors(self):
        tb = ('Traceback (most recent call last):\n'
              '  File "/app/pipeline.py", line 42, in process\n'
              '    raise ValueError(text)\n'
              'ValueError: the user wrote something private\n')
        self.open().record_query(query_id="lax", error=tb)
        self.open(strict_errors=True).record_query(query_id="strict", error=tb)
        got = {b["query_id"]: b["error"] for b in map(dict, self.bodies())}
        self.assertIn("something private", got["lax"])
        self.assertNotIn("something private", got["strict"])
        self.assertIn("ValueError", got["strict"])
        self.assertIn('File "/app/pipeline.py", line 42, in process', got["strict"])

    def test_busy_timeout_and_busy_error(self):
        sp = self.open(busy_timeout_ms=100)
        sp.record_query(query_id="before")
        con = sqlite3.connect(self.db, isolation_level=None, timeout=0)
        con.execute("BEGIN EXCLUSIVE")
        try:
            t = time.monotonic()
            with self.assertRaises(telespool.BusyError) as cm:
                sp.record_query(query_id="blocked")
            elapsed = time.monotonic() - t
            self.assertGreaterEqual(elapsed, 0.05)
            self.assertLess(elapsed, 2.0)
            self.assertEqual(cm.exception.code, telespool.EBUSY)
            self.assertIn("lock", cm.exception.message)
            t = time.monotonic()
            with self.assertRaises(telespool.BusyError):
                sp.record_heartbeat({})
            self.assertLess(time.monotonic() - t, 2.0)
        finally:
            con.execute("ROLLBACK")
            con.close()
        sp.record_query(query_id="after")
        self.assertEqual([dict(b)["query_id"] for b in self.bodies()], ["before", "after"])

    def test_busy_on_open(self):
        con = sqlite3.connect(self.db, isolation_level=None, timeout=0)
        con.execute("BEGIN EXCLUSIVE")
        try:
            t = time.monotonic()
            with self.assertRaises(telespool.BusyError) as cm:
                self.open(busy_timeout_ms=100)
            self.assertLess(time.monotonic() - t, 2.0)
            self.assertTrue(cm.exception.message)  # telespool_open_errmsg()
        finally:
            con.execute("ROLLBACK")
            con.close()
        self.open(busy_timeout_ms=100).record_query()

    def test_invalid_options(self):
        for kw in ({"busy_timeout_ms": -1}, {"busy_timeout_ms": 60001},
                   {"busy_timeout_ms": 2 ** 40}, {"max_events": -1}, {"max_bytes": 1000},
                   {"max_age_days": 4000}, {"max_age_days": -2}, {"on_corrupt": 7},
                   {"on_corrupt": "bogus"}):
            with self.assertRaises(telespool.InvalidArgument, msg=kw) as cm:
                self.open(**kw)
            self.assertIsInstance(cm.exception, ValueError)
            self.assertEqual(cm.exception.code, telespool.EINVAL)
            self.assertTrue(cm.exception.message, kw)
        for kw in ({"busy_timeout_ms": "100"}, {"max_events": [1]}, {"instance_id": object()}):
            with self.assertRaises(TypeError, msg=kw):
                self.open(**kw)
        with self.assertRaises(telespool.InvalidArgument):
            telespool.Spool("")
        with self.assertRaises(telespool.InvalidArgument):
            telespool.Spool(self.db + "\x00x")
        self.assertFalse(os.path.exists(self.db))
        sp = self.open(busy_timeout_ms=60000, max_events=10, max_bytes=2 * 65536,
                       max_age_days=3650, on_corrupt=telespool.CORRUPT_REFUSE,
                       instance_create_ts=1.5e9)
        sp.record_query()


    def test_durability(self):
        with self.assertRaises(telespool.InvalidArgument) as cm:
            self.open(durability="paranoid")
        self.assertIn("durability", cm.exception.message)
        for level in ("full", "normal"):
            sp = self.open(durability=level)
            sp.record_query(query_id=level)
            sp.close()
        self.assertEqual(self.count(), 2)


class TestErrors(SpoolTest):
    def test_invalid_arguments(self):
        sp = self.open()
        calls = {
            "survey_id empty (response)": lambda: sp.record_survey_response("", {"a": 1}),
            "survey_id None (response)": lambda: sp.record_survey_response(None, {"a": 1}),
            "survey_id empty (dismiss)": lambda: sp.record_survey_dismiss(""),
            "survey_id NUL only": lambda: sp.record_survey_dismiss("\x00"),
            "survey_id None (dismiss)": lambda: sp.record_survey_dismiss(None),
            "milestone empty": lambda: sp.record_survey_trigger(""),
            "milestone None": lambda: sp.record_survey_trigger(None),
            "features a JSON array": lambda: sp.record_heartbeat("[1, 2]"),
            "features a list": lambda: sp.record_heartbeat([1, 2]),
            "features not JSON": lambda: sp.record_heartbeat("{nope"),
            "features a number": lambda: sp.record_heartbeat(3),
            "answers a JSON array": lambda: sp.record_survey_response("s", "[]"),
            "answers None": lambda: sp.record_survey_response("s", None),
        }
        for what, call in calls.items():
            with self.assertRaises(telespool.InvalidArgument, msg=what) as cm:
                call()
            self.assertEqual(cm.exception.code, telespool.EINVAL, what)
            self.assertTrue(cm.exception.message, what)
            self.assertIsInstance(cm.exception, ValueError)
        self.assertEqual(self.count(), 0)

    def test_unserialisable_json(self):
        sp = self.open()
        loop = {}
        loop["self"] = loop
        with self.assertRaises(TypeError):
            sp.record_heartbeat(loop)
        with self.assertRaises(TypeError):
            sp.record_heartbeat({("tuple", "key"): 1})
        sp.record_heartbeat({"odd": object.__new__(object)})  # default=str
        self.assertEqual(self.count(), 1)

    def test_nothing_deep_escapes_as_a_python_error(self):
        # Deeper than json.dumps can go: stored with the library's 8 levels.
        sp = self.open()
        deep = leaf = {}
        for _ in range(2000):
            leaf["x"] = {}
            leaf = leaf["x"]
        sp.record_heartbeat(features=deep)
        (body,) = self.sql("SELECT body FROM events WHERE event_type = 'instance_heartbeat'")[0]
        features = json.loads(body)["features"]
        depth = 0
        while isinstance(features, dict) and features:
            features, depth = features.get("x"), depth + 1
        self.assertLessEqual(depth, 8)
        self.assertGreaterEqual(depth, 7)
        # Deep and with a key json cannot encode: the same TypeError as when shallow.
        for value in ({(1, 2): 3, "deep": deep}, {"deep": deep, "odd": {(1, 2): 3}}):
            with self.assertRaises(TypeError) as cm:
                sp.record_heartbeat(features=value)
            self.assertIn("telespool: features cannot be serialised as JSON", str(cm.exception))
        # A survey stored by some other means, deeper than json.loads goes: an Error.
        self.add_survey("s-deep", "[" * 5000 + "]" * 5000)
        with self.assertRaises(telespool.Error) as cm:
            sp.pending_survey()
        self.assertEqual(cm.exception.code, telespool.ERROR)
        # And invalid UTF-8 in one decodes with replacement characters.
        con = sqlite3.connect(self.db)
        with con:
            con.execute("DELETE FROM surveys")
            con.execute("INSERT INTO surveys (survey_id, body, state, received_at)"
                        " VALUES ('s-u8', CAST(? AS TEXT), 'pending', '2026-01-01T00:00:00.000Z')",
                        (b'{"t": "a\xffb"}',))
        con.close()
        self.assertEqual(sp.pending_survey(), {"t": "a\ufffdb"})

    def test_schema_error(self):
        self.open().close()
        con = sqlite3.connect(self.db)
        con.execute("PRAGMA user_version = 999")
        con.commit()
        con.close()
        with open(self.db, "rb") as f:
            before = f.read()
        with self.assertRaises(telespool.SchemaError) as cm:
            telespool.Spool(self.db)
        self.assertEqual(cm.exception.code, telespool.ESCHEMA)
        self.assertIn("999", cm.exception.message)
        with open(self.db, "rb") as f:
            self.assertEqual(f.read(), before)

    def test_corrupt_error_leaves_file(self):
        junk = b"this is not a database, just junk bytes\n" * 200
        with open(self.db, "wb") as f:
            f.write(junk)
        with self.assertRaises(telespool.CorruptError) as cm:
            telespool.Spool(self.db)
        self.assertEqual(cm.exception.code, telespool.ECORRUPT)
        self.assertTrue(cm.exception.message)
        with open(self.db, "rb") as f:
            self.assertEqual(f.read(), junk)
        self.assertEqual(glob.glob(self.db + ".corrupt-*"), [])

    def test_foreign_sqlite_database(self):
        con = sqlite3.connect(self.db)
        con.execute("CREATE TABLE t (x)")
        con.commit()
        con.close()
        with self.assertRaises(telespool.CorruptError):
            telespool.Spool(self.db)
        self.assertEqual(self.sql("SELECT name FROM sqlite_schema"), [("t",)])

    def test_corrupt_move_aside(self):
        junk = b"\x01junk" * 1000
        for on_corrupt in ("move_aside", telespool.CORRUPT_MOVE_ASIDE):
            for old in glob.glob(self.db + "*"):
                os.unlink(old)
            with open(self.db, "wb") as f:
                f.write(junk)
            sp = self.open(on_corrupt=on_corrupt)
            self.assertIn("moved aside", sp.open_message)
            sp.record_query(query_id="fresh")
            (moved,) = [p for p in glob.glob(self.db + ".corrupt-*")
                        if not p.endswith(("-wal", "-shm"))]
            with open(moved, "rb") as f:
                self.assertEqual(f.read(), junk)
            self.assertEqual(self.drops().get("corrupt_spool"), 1)
            self.assertEqual(self.count(), 1)
            sp.close()
        self.assertEqual(self.open().open_message, "")

    def test_storage_error(self):
        with self.assertRaises(telespool.StorageError) as cm:
            telespool.Spool(os.path.join(self.dir, "no", "such", "dir", "t.db"))
        self.assertEqual(cm.exception.code, telespool.EIO)
        self.assertIn("no/such/dir", cm.exception.message)

    def test_full_error(self):
        # A real full disk: a 2 MiB tmpfs in a private mount namespace (needs root or user
        # namespaces; skipped otherwise).  A ballast file is deleted after the failure so
        # that the next record gets through and counts the drop.
        script = os.path.join(self.dir, "fill.py")
        with open(script, "w") as f:
            f.write(textwrap.dedent("""
                import json, os, sqlite3, sys, telespool
                db = os.path.join(sys.argv[1], "t.db")
                ballast = os.path.join(sys.argv[1], "ballast")
                with open(ballast, "wb") as f:
                    f.write(b"b" * 512 * 1024)
                sp = telespool.Spool(db, instance_id="i", version="v")
                sp.record_query(query_id="first")
                full = None
                for i in range(1000):
                    try:
                        sp.record_query(query_id="q%d" % i, error="x" * 30000)
                    except telespool.FullError as e:
                        full = e
                        break
                os.unlink(ballast)
                sp.record_query(query_id="after")
                sp.close()
                con = sqlite3.connect(db)
                ids = [r[0] for r in con.execute("SELECT query_id FROM events ORDER BY id")]
                drops = dict(con.execute("SELECT reason, count FROM drops"))
                print(json.dumps({"code": full and full.code, "message": full and full.message,
                                  "failed_at": "q%d" % i, "ids": ids, "drops": drops}))
            """))
        mnt = os.path.join(self.dir, "mnt")
        os.mkdir(mnt)
        try:
            r = subprocess.run(
                ["unshare", "-m", "sh", "-c",
                 'mount -t tmpfs -o size=2m tmpfs "$1" || exit 77; exec "$2" "$3" "$1"',
                 "sh", mnt, sys.executable, script],
                capture_output=True, text=True, timeout=120)
        except FileNotFoundError:
            self.skipTest("no unshare command")
        if r.returncode in (1, 77) and not r.stdout:
            self.skipTest("cannot mount a small tmpfs here: " + r.stderr.strip())
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        got = json.loads(r.stdout)
        self.assertEqual(got["code"], telespool.EFULL, got)
        self.assertIn("full", got["message"])
        self.assertEqual((got["ids"][0], got["ids"][-1]), ("first", "after"))
        self.assertNotIn(got["failed_at"], got["ids"])  # nothing stored on failure
        self.assertEqual(got["drops"].get("disk_full"), 1)


class TestCountDrops(SpoolTest):
    def test_counts_add_up_per_reason(self):
        sp = self.open()
        sp.count_drops("queue_full", 3)
        sp.count_drops("queue_full", n=2)
        sp.count_drops("shutdown")
        sp.count_drops("a" * telespool.DROP_REASON_MAX, telespool.MAX_DROP_COUNT)
        self.assertEqual(self.drops(), {"queue_full": 5, "shutdown": 1,
                                        "a" * 40: telespool.MAX_DROP_COUNT})
        for (last_at,) in self.sql("SELECT last_at FROM drops"):
            parse_ts(last_at)
        self.assertEqual(self.count(), 0)  # drops are not events

    def test_arguments(self):
        sp = self.open()
        for reason, why in [("", "empty"), ("Queue", "a-z"), ("queue-full", "a-z"),
                            ("a\x00b", "a-z"), ("caf\u00e9", "a-z"), ("\ud800", "a-z"),
                            ("a" * 41, "longer than 40"), ("disk_full", "counts itself"),
                            ("wal_pinned", "counts itself"), ("expired", "counts itself")]:
            with self.assertRaises(telespool.InvalidArgument, msg=repr(reason)) as cm:
                sp.count_drops(reason, 1)
            self.assertEqual(cm.exception.code, telespool.EINVAL)
            self.assertIn(why, cm.exception.message)
        for n in (0, -1, telespool.MAX_DROP_COUNT + 1, 1 << 70):
            with self.assertRaises(telespool.InvalidArgument, msg=repr(n)):
                sp.count_drops("queue_full", n)
        for reason, n in ((None, 1), (b"queue_full", 1), (7, 1), ("queue_full", 1.0),
                          ("queue_full", True), ("queue_full", "1"), ("queue_full", None)):
            with self.assertRaises(telespool.ArgumentTypeError, msg=repr((reason, n))):
                sp.count_drops(reason, n)
        with self.assertRaises(TypeError):
            sp.count_drops("queue_full", 1, 2)  # no third positional argument
        self.assertEqual(self.drops(), {})
        sp.close()
        with self.assertRaises(telespool.InvalidArgument):
            sp.count_drops("queue_full", 1)

    def test_disabled_counts_nothing(self):
        sp = self.open(disabled=True)
        with self.assertRaises(telespool.DisabledError) as cm:
            sp.count_drops("queue_full", 1)
        self.assertEqual(cm.exception.code, telespool.EDISABLED)
        self.assertEqual(self.drops(), {})

    def test_busy(self):
        sp = self.open(busy_timeout_ms=50)
        con = sqlite3.connect(self.db, isolation_level=None, timeout=0)
        con.execute("BEGIN EXCLUSIVE")
        try:
            with self.assertRaises(telespool.BusyError):
                sp.count_drops("queue_full", 2)
        finally:
            con.execute("ROLLBACK")
            con.close()
        self.assertEqual(self.drops(), {})
        sp.count_drops("queue_full", 2)
        self.assertEqual(self.drops(), {"queue_full": 2})


class TestLifecycle(SpoolTest):
    def test_close_and_context_manager(self):
        with telespool.Spool(self.db, instance_id=INSTANCE, version=VERSION) as sp:
            self.assertFalse(sp.closed)
            sp.record_query(query_id="q")
            self.assertIn("open", repr(sp))
        self.assertTrue(sp.closed)
        self.assertIn("closed", repr(sp))
        sp.close()
        sp.close()
        calls = [lambda: sp.record_query(query_id="q"), lambda: sp.record_heartbeat({}),
                 lambda: sp.record_survey_trigger("first_bot_response_success"),
                 lambda: sp.record_survey_response("s", {}),
                 lambda: sp.record_survey_dismiss("s"), sp.pending_survey]
        for call in calls:
            with self.assertRaises(telespool.Error) as cm:
                call()
            self.assertIn("closed", str(cm.exception))
        self.assertEqual(self.count(), 1)

    def test_del_closes(self):
        sp = telespool.Spool(self.db)
        sp.record_query()
        del sp
        # A handle left open would keep the WAL: after the last close it is checkpointed.
        con = sqlite3.connect(self.db)
        self.assertEqual(con.execute("SELECT count(*) FROM events").fetchone(), (1,))
        con.close()
        self.assertFalse(os.path.exists(self.db + "-wal"))

    def test_accepts_path_like(self):
        import pathlib
        with telespool.Spool(pathlib.Path(self.db)) as sp:
            sp.record_query()
            self.assertEqual(sp.path, self.db)
        self.assertEqual(self.count(), 1)

    @unittest.skipUnless(hasattr(os, "fork"), "needs fork()")
    def test_use_after_fork_is_refused(self):
        sp = self.open()
        sp.record_query(query_id="parent")
        pid = os.fork()
        if pid == 0:  # child: must raise, not touch the parent's SQLite connection
            code = 1
            try:
                sp.record_query(query_id="child")
            except telespool.InvalidArgument:
                code = 0
            except BaseException:
                code = 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        sp.record_query(query_id="parent2")
        self.assertEqual([dict(b)["query_id"] for b in self.bodies()], ["parent", "parent2"])


class TestConcurrency(SpoolTest):
    def test_error_detail_belongs_to_the_failing_call(self):
        sp = self.open()
        failures = []
        stop = threading.Event()

        def good():
            while not stop.is_set():
                sp.record_query(query_id="ok")

        def bad():
            for _ in range(300):
                try:
                    sp.record_survey_dismiss("")
                except telespool.InvalidArgument as e:
                    if e.message != "survey_id is empty":
                        failures.append(e.message)
            stop.set()

        threads = [threading.Thread(target=good), threading.Thread(target=bad)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(failures, [])

    def test_10000_events_from_2_processes_x_2_threads_with_a_reader(self):
        per_thread = 2500
        script = os.path.join(self.dir, "writer.py")
        with open(script, "w") as f:
            f.write(textwrap.dedent("""
                import sys, threading, telespool
                db, proc, mode, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
                opts = dict(instance_id="instance_p" + proc, version="v4.3.1",
                            busy_timeout_ms=5000)
                shared = telespool.Spool(db, **opts) if mode == "shared" else None
                errors = []

                def run(t):
                    sp = shared or telespool.Spool(db, **opts)
                    try:
                        for i in range(n):
                            sp.record_query(query_id="%s-%d-%d" % (proc, t, i),
                                            adapter="TelegramAdapter", runner="local-agent",
                                            model_name="gpt-4o", duration_ms=i,
                                            pipeline_plugins=["hello", "p%s" % proc],
                                            error=None)
                    except Exception as e:
                        errors.append(repr(e))
                    finally:
                        if sp is not shared:
                            sp.close()

                threads = [threading.Thread(target=run, args=(t,)) for t in range(2)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                if shared:
                    shared.close()
                print(errors)
                sys.exit(1 if errors else 0)
            """))
        self.open().close()  # the schema exists before the reader starts
        reader = sqlite3.connect(self.db, isolation_level=None)
        reader.execute("BEGIN")
        (seen,) = reader.execute("SELECT count(*) FROM events").fetchone()
        self.assertEqual(seen, 0)
        t = time.monotonic()
        procs = [subprocess.Popen([sys.executable, script, self.db, str(p), mode,
                                   str(per_thread)], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
                 for p, mode in ((0, "shared"), (1, "per-thread"))]
        try:
            outs = [p.communicate(timeout=240)[0] for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        elapsed = time.monotonic() - t
        # The read transaction was open the whole time: it still sees its snapshot.
        self.assertEqual(reader.execute("SELECT count(*) FROM events").fetchone(), (0,))
        reader.execute("ROLLBACK")
        reader.close()
        for p, out in zip(procs, outs):
            self.assertEqual(p.returncode, 0, out)

        rows = self.sql("SELECT event_id, query_id, instance_id, body FROM events")
        self.assertEqual(len(rows), 4 * per_thread)
        event_ids = [r[0] for r in rows]
        self.assertEqual(len(set(event_ids)), len(event_ids))
        for e in event_ids:
            self.assertRegex(e, UUID4)
        expected = {f"{p}-{t}-{i}" for p in (0, 1) for t in (0, 1) for i in range(per_thread)}
        self.assertEqual({r[1] for r in rows}, expected)
        for event_id, query_id, instance_id, body in rows:
            pairs = json.loads(body, object_pairs_hook=list)
            self.assertEqual([k for k, _ in pairs], QUERY_KEYS)
            b = dict(pairs)
            proc, _, i = query_id.split("-")
            self.assertEqual(b, {**b, "event_type": "query", "query_id": query_id,
                                 "adapter": "TelegramAdapter", "runner": "local-agent",
                                 "model_name": "gpt-4o", "duration_ms": int(i),
                                 "version": "v4.3.1", "instance_id": "instance_p" + proc,
                                 "pipeline_plugins": ["hello", "p" + proc], "error": ""})
            self.assertEqual(instance_id, b["instance_id"])
            parse_ts(b["timestamp"])
        sys.stderr.write(f"\n  10,000 events from 2 processes x 2 threads in {elapsed:.2f} s "
                         f"({4 * per_thread / elapsed:.0f} events/s)\n")


class TestRecordBytes(SpoolTest):
    """record() stores json.dumps(sender_normalise(payload), ensure_ascii=False,
    separators=(",", ":"), allow_nan=False): checked over values where C and Python print
    differently unless done with care."""

    @staticmethod
    def dumps(payload):
        return json.dumps(telespool.sender_normalise(payload), ensure_ascii=False,
                          separators=(",", ":"), allow_nan=False)

    def last(self):
        return self.sql("SELECT body FROM spool ORDER BY id DESC LIMIT 1")[0][0]

    def test_floats_as_python_prints_them(self):
        import random
        import struct
        rng = random.Random(20260821)
        values = [0.0, -0.0, 1.0, 0.1, 1e16, 1e15, 1e-4, 1e-5, 5e-324, 2.2250738585072014e-308,
                  1.7976931348623157e308, 9007199254740993.0, 0.30000000000000004, 123456.789]
        values += [float(2 ** e) for e in range(-1074, 1024, 7)]
        while len(values) < 3000:
            x = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
            if math.isfinite(x):
                values.append(x)
        sp = self.open()
        for i in range(0, len(values), 200):
            payload = {"features": {"v": values[i:i + 200]}}
            sp.record(payload)
            self.assertEqual(self.last(), self.dumps(payload))

    def test_ints_strings_and_order(self):
        sp = self.open()
        payload = {"z": 2 ** 200, "a": -(10 ** 30), "event_type": "query",
                   "s": "中文 \u2028 \U0001F600 \"q\" \\ \n\t", "n": None, "t": True,
                   "nested": {"b": [1, 2.5, {"c": "d"}], "a": {}}, "query_id": 7}
        sp.record(payload)
        self.assertEqual(self.last(), self.dumps(payload))
        self.assertEqual(list(json.loads(self.last())), list(payload))   # order kept


class TestApi(SpoolTest):
    def test_return_codes_are_an_intenum_with_aliases(self):
        self.assertTrue(issubclass(telespool.RC, enum.IntEnum))
        self.assertIs(telespool.EBUSY, telespool.RC.EBUSY)
        self.assertEqual(telespool.EBUSY, -3)
        self.assertEqual(telespool.RC(-6).name, "EDISABLED")
        sp = self.open(disabled=True)
        with self.assertRaises(telespool.DisabledError) as cm:
            sp.record({"event_type": "query"})
        self.assertIs(cm.exception.code, telespool.RC.EDISABLED)

    def test_every_failure_is_an_error(self):
        for bad in (lambda: telespool.Spool(3.5), lambda: telespool.Spool(None),
                    lambda: self.open().record_query(adapter=object()),
                    lambda: self.open().record({1, 2}),
                    lambda: self.open().record({"features": {"x": float("nan")}})):
            with self.assertRaises(telespool.Error):
                bad()
        with self.assertRaises(TypeError):       # also a TypeError, as before
            self.open().record_query(adapter=object())

    def test_typed_package(self):
        pkg = os.path.dirname(telespool.__file__)
        self.assertTrue(os.path.exists(os.path.join(pkg, "py.typed")))
        hints = typing.get_type_hints(telespool.Spool.record)
        self.assertIn("payload", hints)


if __name__ == "__main__":
    unittest.main()