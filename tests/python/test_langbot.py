"""telespool.langbot: LangBot's TelemetryManager / SurveyManager interfaces over the spool."""

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import sys
import tempfile
import threading
import types
import unittest
import unittest.mock

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
try:
    import telespool
except ImportError as e:
    if "No module named" not in str(e):
        raise
    sys.path.insert(0, os.path.join(ROOT, "lib", "python"))
    import telespool
from telespool import langbot  # noqa: E402

INSTANCE = "instance_5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b"
URL = "http://127.0.0.1:9"


def make_ap(space):
    data = {"space": space} if space is not ... else {}
    return types.SimpleNamespace(instance_config=types.SimpleNamespace(data=data),
                                 logger=logging.getLogger("test_langbot"))


def query(i=1):
    return {"event_type": "query", "query_id": i, "adapter": "TelegramAdapter",
            "runner": "local-agent", "runner_category": "agent", "duration_ms": 10,
            "model_name": "m", "version": "v4.10.8", "instance_id": INSTANCE,
            "workspace_uuid": "ws", "runtime_instance_id": INSTANCE, "edition": "community",
            "pipeline_plugins": None, "features": {}, "error": None,
            "timestamp": "2026-08-21T04:07:38.462774"}


class AdapterTest(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="telespool-lb-")
        self.db = os.path.join(self._tmp.name, "telemetry.db")

    def tearDown(self):
        self._tmp.cleanup()

    def rows(self, sql="SELECT event_type, body FROM spool ORDER BY id"):
        if not os.path.exists(self.db):
            return []
        with contextlib.closing(sqlite3.connect(self.db)) as db:
            return db.execute(sql).fetchall()

    def drops(self):
        """The spool's drops table as {reason: count}."""
        return dict(self.rows("SELECT reason, count FROM drops"))

    def spy_count_drops(self, tm):
        """Wraps the manager's Spool.count_drops: the threads it ran in."""
        spool, threads = tm._rec.spool, []
        real = spool.count_drops

        def spy(*args, **kw):
            threads.append(threading.current_thread())
            return real(*args, **kw)

        spool.count_drops = spy
        return threads


class TestTelemetryManager(AdapterTest):
    # space section -> does LangBot 4.10.8 send?  (TelemetryManager.send: `if not cfg`,
    # `if cfg.get('disable_telemetry', False)`, `if not cfg.get('url')`; the values are what
    # LangBot's load_config leaves after its environment override: a string stays a string.)
    TABLE = [
        (..., False),                                         # no space section
        (None, False),                                        # `space:` with nothing
        ({}, False),
        ({"url": ""}, False),
        ({"url": None}, False),
        ({"disable_telemetry": False}, False),                # no url
        ({"url": URL}, True),                                 # key absent: enabled
        ({"url": URL, "disable_telemetry": False}, True),
        ({"url": URL, "disable_telemetry": 0}, True),
        ({"url": URL, "disable_telemetry": ""}, True),        # empty string is falsy
        ({"url": URL, "disable_telemetry": True}, False),
        ({"url": URL, "disable_telemetry": "false"}, False),  # a non-empty string: truthy
        ({"url": URL, "disable_telemetry": "no"}, False),
        ({"url": URL, "disable_telemetry": "0"}, False),
        ({"url": URL, "disable_telemetry": "true "}, False),
        ({"url": URL, "disable_telemetry": 1}, False),
    ]

    def test_opt_out_decided_as_langbot(self):
        for space, enabled in self.TABLE:
            with self.subTest(space=space):
                if os.path.exists(self.db):
                    os.unlink(self.db)
                self.assertEqual(langbot.telemetry_enabled(
                    langbot.space_config(make_ap(space))), enabled)

                async def run():
                    tm = langbot.TelemetryManager(make_ap(space), path=self.db)
                    await tm.initialize()
                    await tm.start_send_task(query(1))
                    await tm.send(query(2))
                    await tm.send({"event_type": "instance_heartbeat", "features": {"n": 1}})
                    await tm.shutdown()
                    return tm

                tm = asyncio.run(run())
                self.assertEqual(tm.enabled, enabled)
                self.assertEqual(len(self.rows()), 3 if enabled else 0)
                self.assertEqual(tm.recorded, 3 if enabled else 0)

    def test_stores_langbots_bytes(self):
        async def run():
            tm = langbot.TelemetryManager(make_ap({"url": URL}), path=self.db)
            await tm.initialize()
            await tm.send(query(7))
            await tm.shutdown()

        asyncio.run(run())
        (row,) = self.rows()
        want = dict(query(7), query_id="7", error="")
        self.assertEqual(row, ("query", json.dumps(want, ensure_ascii=False,
                                                   separators=(",", ":"))))

    def test_queue_bound_drops_and_counts(self):
        async def run():
            tm = langbot.TelemetryManager(make_ap({"url": URL}), path=self.db, max_queued=5)
            await tm.initialize()
            gate = threading.Event()
            tm._rec._executor.submit(gate.wait)      # the worker is busy
            for i in range(8):
                await tm.start_send_task(query(i))   # returns at once, worker or not
            self.assertEqual(tm.dropped, 3)
            self.assertEqual(self.drops(), {})       # counted in memory, no I/O here
            gate.set()
            await tm.send(query(9))                  # after the 5 queued ones
            # Written by the worker before its next record, not only at shutdown.
            self.assertEqual(self.drops(), {"queue_full": 3})
            await tm.shutdown()
            return tm

        tm = asyncio.run(run())
        self.assertEqual((tm.recorded, tm.dropped), (6, 3))
        self.assertEqual(tm.drops, {"queue_full": 3})
        self.assertEqual(len(self.rows()), 6)
        self.assertEqual(self.drops(), {"queue_full": 3})

    def test_drops_are_written_by_the_worker_only(self):
        """count_drops (a write that may wait busy_timeout_ms) never runs on the loop."""
        async def run():
            tm = langbot.TelemetryManager(make_ap({"url": URL}), path=self.db, max_queued=1)
            await tm.initialize()
            threads.append(self.spy_count_drops(tm))
            gate = threading.Event()
            tm._rec._executor.submit(gate.wait)
            for i in range(3):
                await tm.start_send_task(query(i))
            gate.set()
            await tm.send(query(3))
            for i in range(4, 7):                    # dropped after the last record
                tm._rec._count(langbot.DROP_QUEUE_FULL, True)
            await tm.shutdown()                      # written as the spool closes
            return threading.current_thread()

        threads = []
        loop_thread = asyncio.run(run())
        calls = threads[0]
        self.assertEqual(len(calls), 2)
        self.assertNotIn(loop_thread, calls)
        self.assertTrue(all(t.name.startswith("telespool") for t in calls), calls)
        self.assertEqual(self.drops(), {"queue_full": 5})

    def test_drops_not_written_are_kept_for_later(self):
        """count_drops failing (locked past the busy timeout) loses nothing and raises
        nothing: the counts are written by a later try."""
        async def run():
            tm = langbot.TelemetryManager(make_ap({"url": URL}), path=self.db, max_queued=1)
            await tm.initialize()
            spool, real, fails = tm._rec.spool, tm._rec.spool.count_drops, [2]

            def flaky(reason, n):
                if fails[0]:
                    fails[0] -= 1
                    raise telespool.BusyError(telespool.EBUSY, "locked")
                return real(reason, n)

            spool.count_drops = flaky
            gate = threading.Event()
            tm._rec._executor.submit(gate.wait)
            for i in range(4):
                await tm.start_send_task(query(i))   # 1 queued, 3 dropped
            gate.set()
            await tm.send(query(4))                  # before q0 and q4: kept twice
            self.assertEqual(self.drops(), {})
            tm._rec._count(langbot.DROP_QUEUE_FULL, True)
            await tm.send(query(5))                  # written before q5
            self.assertEqual(self.drops(), {"queue_full": 4})
            await tm.shutdown()
            return tm

        tm = asyncio.run(run())
        self.assertEqual(tm.recorded, 3)
        self.assertEqual(self.drops(), {"queue_full": 4})

    def test_opt_out_at_runtime(self):
        """LangBot's send() reads the space section (the dict it took at initialize) at
        every call: set disable_telemetry in it at runtime and nothing more is sent."""
        async def run():
            ap = make_ap({"url": URL})
            tm = langbot.TelemetryManager(ap, path=self.db)
            await tm.initialize()
            await tm.send(query(1))
            ap.instance_config.data["space"]["disable_telemetry"] = True
            await tm.send(query(2))
            await tm.start_send_task(query(3))
            await tm.shutdown()
            return tm

        tm = asyncio.run(run())
        self.assertEqual(tm.recorded, 1)
        self.assertEqual(len(self.rows()), 1)

    def test_a_cancelled_send_frees_its_place(self):
        """A send() cancelled while its event waits for the worker (LangBot cancels its
        tasks at shutdown) does not keep a place in the queue bound."""
        async def run():
            tm = langbot.TelemetryManager(make_ap({"url": URL}), path=self.db, max_queued=1)
            await tm.initialize()
            gate = threading.Event()
            tm._rec._executor.submit(gate.wait)      # the worker is busy
            task = asyncio.ensure_future(tm.send(query(1)))
            await asyncio.sleep(0)                   # send() hands its event over
            self.assertEqual(tm._rec._queued, 1)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            gate.set()
            await tm.start_send_task(query(2))       # the place is free again
            await tm.shutdown()
            return tm

        tm = asyncio.run(run())
        self.assertEqual((tm.recorded, tm.dropped), (1, 0))
        self.assertEqual(len(self.rows()), 1)

    def test_shutdown_timeout_abandons_the_queue(self):
        """At shutdown_timeout the events still queued are dropped (and counted): a worker
        stuck behind a lock must not keep LangBot's process from exiting while it works
        through the queue one busy timeout at a time."""
        gate = threading.Event()

        async def run():
            tm = langbot.TelemetryManager(make_ap({"url": URL}), path=self.db,
                                          shutdown_timeout=0.1)
            await tm.initialize()
            tm._rec._executor.submit(gate.wait)      # the worker is stuck
            for i in range(50):
                await tm.start_send_task(query(i))
            await tm.shutdown()                      # times out: the gate is still shut
            gate.set()
            return tm

        tm = asyncio.run(run())                      # waits for the worker to finish
        self.assertEqual((tm.recorded, tm.dropped), (0, 50))
        self.assertEqual(self.rows(), [])
        # The worker counted them as it went through the queue and wrote the count
        # before closing the spool.
        self.assertEqual(tm.drops, {"shutdown": 50})
        self.assertEqual(self.drops(), {"shutdown": 50})

    def test_event_loop_runs_while_the_spool_is_locked(self):
        """The uploader holds the write lock: start_send_task returns without the event
        stored, and while send() waits for its record, other tasks on the loop run (the
        lock is released only once one of them has)."""
        async def run():
            tm = langbot.TelemetryManager(make_ap({"url": URL}), path=self.db,
                                          busy_timeout_ms=60000)
            await tm.initialize()
            holder = sqlite3.connect(self.db, timeout=10, isolation_level=None,
                                     check_same_thread=False)
            holder.execute("BEGIN IMMEDIATE")
            await tm.start_send_task(query(1))
            self.assertEqual(tm.recorded, 0)          # returned before the write
            ticked = asyncio.Event()
            released = threading.Event()

            def release_after_tick(loop):
                asyncio.run_coroutine_threadsafe(ticked.wait(), loop).result(60)
                holder.execute("COMMIT")
                holder.close()
                released.set()

            loop = asyncio.get_running_loop()
            threading.Thread(target=release_after_tick, args=(loop,)).start()
            loop.call_soon(ticked.set)                # runs only if send() yields the loop
            await tm.send(query(2))
            self.assertTrue(released.is_set())
            await tm.shutdown()
            return tm

        tm = asyncio.run(run())
        self.assertEqual(tm.recorded, 2)
        self.assertEqual(len(self.rows()), 2)

    def test_never_raises(self):
        class BrokenAp:
            logger = logging.getLogger("test_langbot")

            @property
            def instance_config(self):
                raise RuntimeError("no config")

        async def run():
            tm = langbot.TelemetryManager(BrokenAp(), path=self.db)
            await tm.initialize()
            await tm.start_send_task(query())
            await tm.send({"features": {"x": float("nan")}})
            await tm.shutdown()
            await tm.shutdown()
            tm2 = langbot.TelemetryManager(make_ap({"url": URL}), path=self.db)
            await tm2.send(query())                  # before initialize
            await tm2.initialize()
            await tm2.send({"features": {"x": float("nan")}})   # refused, counted
            await tm2.send(["not", "a", "dict"])
            await tm2.shutdown()
            await tm2.send(query())                  # after shutdown
            return tm2

        tm2 = asyncio.run(run())
        self.assertEqual(tm2.failed, 1)
        self.assertEqual(self.rows(), [])
        self.assertEqual(self.drops(), {"record_failed": 1})

    def test_spool_busy_at_start_is_opened_later(self):
        """The uploader holds the spool's lock while LangBot starts (it is creating or
        migrating it): the open fails, and the next event opens it once it is free,
        rather than nothing being recorded until LangBot restarts."""
        holder = sqlite3.connect(self.db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")

        async def run():
            tm = langbot.TelemetryManager(make_ap({"url": URL}), path=self.db,
                                          busy_timeout_ms=10)
            await tm.initialize()
            self.assertIsNone(tm._rec.spool)
            await tm.send(query(1))                  # still locked: not recorded
            holder.execute("COMMIT")
            holder.close()
            await tm.send(query(2))
            await tm.shutdown()
            return tm

        tm = asyncio.run(run())
        self.assertEqual((tm.recorded, tm.failed), (1, 1))
        self.assertEqual([json.loads(b)["query_id"] for _, b in self.rows()], ["2"])
        self.assertEqual(self.drops(), {"spool_unavailable": 1})

    def test_record_busy_is_counted(self):
        """A record that waited busy_timeout_ms in vain is counted as spool_busy; one
        refused for a full disk is not counted again (the library counts it)."""
        async def run():
            tm = langbot.TelemetryManager(make_ap({"url": URL}), path=self.db,
                                          busy_timeout_ms=20)
            await tm.initialize()
            holder = sqlite3.connect(self.db, isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")
            try:
                await tm.send(query(1))
            finally:
                holder.execute("COMMIT")
                holder.close()
            real = tm._rec.spool.record

            def full(*a, **kw):
                raise telespool.FullError(telespool.EFULL, "disk full")

            tm._rec.spool.record = full
            await tm.send(query(2))
            tm._rec.spool.record = real
            await tm.send(query(3))
            await tm.shutdown()
            return tm

        tm = asyncio.run(run())
        self.assertEqual((tm.recorded, tm.failed, tm.dropped), (1, 2, 0))
        self.assertEqual(tm.drops, {"spool_busy": 1})
        self.assertEqual(self.drops(), {"spool_busy": 1})

    def test_unopenable_spool(self):
        async def run():
            tm = langbot.TelemetryManager(make_ap({"url": URL}),
                                          path=os.path.join(self.db, "missing", "x.db"))
            await tm.initialize()
            await tm.send(query())
            await tm.shutdown()
            return tm

        self.assertEqual(asyncio.run(run()).recorded, 0)


class TestSurveyManager(AdapterTest):
    def manager(self, space):
        return langbot.SurveyManager(make_ap(space), path=self.db, instance_id=INSTANCE,
                                     version="v4.10.8")

    def test_milestones_responses_and_pending(self):
        async def run():
            sm = self.manager({"url": URL})
            await sm.initialize()
            self.assertIsNone(sm.get_pending_survey())
            await sm.trigger_event("first_bot_response_success")
            await sm.trigger_event("first_bot_response_success")
            for _ in range(langbot.BOT_RESPONSE_MILESTONE + 3):
                await sm.record_bot_response_success()
            # The uploader stores what survey/pending answered; do it by hand here.
            with contextlib.closing(sqlite3.connect(self.db)) as db, db:
                db.execute("INSERT INTO surveys (survey_id, body, received_at) VALUES "
                           "('sv-1', '{\"survey_id\": \"sv-1\", \"q\": []}', "
                           "'2026-08-21T00:00:00.000Z')")
            self.assertEqual(sm.get_pending_survey(), {"survey_id": "sv-1", "q": []})
            self.assertTrue(await sm.submit_response("sv-1", {"nps": 9}, True))
            self.assertIsNone(sm.get_pending_survey())
            self.assertTrue(await sm.dismiss_survey("sv-2"))
            self.assertFalse(await sm.submit_feedback("text", []))   # not LangBot: no delegate
            await sm.shutdown()

        asyncio.run(run())
        rows = self.rows()
        self.assertEqual([r[0] for r in rows],
                         ["survey_trigger", "survey_trigger", "survey_response",
                          "survey_dismiss"])
        self.assertEqual(json.loads(rows[0][1]),
                         {"instance_id": INSTANCE, "event": "first_bot_response_success"})
        self.assertEqual(json.loads(rows[1][1])["event"], "bot_response_success_100")
        self.assertEqual(rows[2][1], json.dumps(
            {"survey_id": "sv-1", "instance_id": INSTANCE, "answers": {"nps": 9},
             "metadata": {"version": "v4.10.8", "instance_id": INSTANCE}, "completed": True},
            separators=(",", ":")))
        with open(self.db + "-survey.json") as f:
            self.assertEqual(json.load(f)["bot_response_count"], langbot.BOT_RESPONSE_MILESTONE)

        # A restart remembers the milestones and the count.
        async def again():
            sm = self.manager({"url": URL})
            await sm.initialize()
            await sm.trigger_event("first_bot_response_success")
            await sm.record_bot_response_success()
            await sm.shutdown()

        asyncio.run(again())
        self.assertEqual(len(self.rows()), 4)

    def test_takes_over_langbots_own_survey_state(self):
        """Switching over keeps what LangBot's own SurveyManager persisted: a milestone it
        already fired is not fired again, and its count towards 100 carries on."""
        class LangBotSurveyManager:
            def __init__(self, ap):
                self.ap = ap

            async def initialize(self):   # LangBot loads these from its metadata table
                self._triggered_events = {"first_bot_response_success"}
                self._bot_response_count = langbot.BOT_RESPONSE_MILESTONE - 1

        names = ["langbot", "langbot.pkg", "langbot.pkg.survey", "langbot.pkg.survey.manager"]
        fake = {n: types.ModuleType(n) for n in names}
        fake["langbot.pkg.survey.manager"].SurveyManager = LangBotSurveyManager
        for parent, child in zip(names, names[1:]):
            setattr(fake[parent], child.rsplit(".", 1)[1], fake[child])

        async def run():
            sm = self.manager({"url": URL})
            await sm.initialize()
            await sm.trigger_event("first_bot_response_success")
            await sm.record_bot_response_success()
            await sm.shutdown()

        with unittest.mock.patch.dict(sys.modules, fake):
            asyncio.run(run())
        self.assertEqual([json.loads(body)["event"] for _, body in self.rows()],
                         ["bot_response_success_100"])

    def test_opted_out_records_nothing(self):
        for space in (..., {"url": ""}, {"url": URL, "disable_telemetry": "false"}):
            with self.subTest(space=space):
                async def run():
                    sm = self.manager(space)
                    await sm.initialize()
                    await sm.trigger_event("first_bot_response_success")
                    await sm.record_bot_response_success()
                    self.assertFalse(await sm.submit_response("s", {"a": 1}))
                    self.assertFalse(await sm.dismiss_survey("s"))
                    self.assertIsNone(sm.get_pending_survey())
                    await sm.shutdown()

                asyncio.run(run())
                self.assertEqual(self.rows(), [])


if __name__ == "__main__":
    unittest.main()
