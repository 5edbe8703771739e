"""Reliability: the wall clock jumps.

The uploader runs under libfaketime (LD_PRELOAD, FAKETIME='-1y' ...; the monotonic clock is
left alone).  A jump must neither make rows unsendable for ever nor make them retried in a
storm:

  - rows given a backoff, then the clock goes back a year: the next run sends them (claim
    treats next_attempt_at beyond a horizon as due; run-wide waits beyond it are ignored);
  - the clock goes forward a year: rows older than the maximum age become dead (documented
    expiry, counted in drops 'expired'), nothing is sent;
  - a Retry-After stored, then the clock goes back (or was stored by a clock in the future):
    it does not block for ever.
"""

import os
import subprocess
import sys
import unittest

from relutil import (EXIT_OK, EXIT_TEMPFAIL, HERE, RETRY_AFTER_MAX_MS, TELEMETRY, FakeSpace,
                     WriterProcess, Workdir, faketime_env, faketime_library, iso_ms, now_ms,
                     summary)

N = 4           # events per test: exactly the first batch of a run (--parallel 4)


@unittest.skipIf(faketime_library() is None, "libfaketime is not installed")
class Clock(unittest.TestCase):
    maxDiff = None

    def setup(self, behaviour=None, host_clock=None):
        """A fake Space and a spool of N events, recorded by a host whose clock is off by
        host_clock (e.g. '+1y'), or right."""
        space = FakeSpace(behaviour).start()
        self.addCleanup(space.stop)
        wd = Workdir(self, url=space.url)
        if host_clock is None:
            wd.record(N)
        else:
            w = WriterProcess(wd.db_path, "future", count=N, env=faketime_env(host_clock))
            self.assertEqual(w.finish(), 0, w.errors)
            self.assertEqual(len(w.acked), N, w.errors)
        return space, wd

    def delivered(self, space):
        return {e["idempotency_key"] for e in space.requests(TELEMETRY)}

    def test_backoff_then_clock_back_one_year(self):
        space, wd = self.setup({"rules": [{"path": TELEMETRY, "status": 500}]})
        first = wd.run()
        self.assertEqual(first.code, EXIT_TEMPFAIL, repr(first))
        self.assertEqual(first.outcome, "server_down", repr(first))
        now = now_ms()
        for ev in wd.events():
            self.assertGreater(iso_ms(ev["next_attempt_at"]), now, "no backoff given")
        self.assertIn("down_until", wd.state())
        space.set_behaviour({})
        before = len(space.requests())
        control = wd.run()              # the real clock: the backoff holds
        self.assertEqual(control.code, EXIT_OK, repr(control))
        self.assertEqual(len(space.requests()), before, "sent before the backoff passed")

        res = wd.run(env=faketime_env("-1y"))
        self.assertEqual(res.code, EXIT_OK, repr(res))
        events = wd.events()
        stuck = [ev for ev in events if ev["state"] != "sent"]
        summary("wall clock back 1 year after a backoff", N, len(stuck))
        self.assertEqual(stuck, [], "rows unsendable after the clock went back")
        self.assertEqual(self.delivered(space), {ev["event_id"] for ev in events})

    def test_clock_forward_one_year_expires_instead_of_a_storm(self):
        space, wd = self.setup({"rules": [{"path": TELEMETRY, "status": 500}]})
        first = wd.run()
        self.assertEqual(first.code, EXIT_TEMPFAIL, repr(first))
        sent_before = len(space.requests())
        space.set_behaviour({})
        res = wd.run(env=faketime_env("+1y"))
        self.assertEqual(res.code, EXIT_OK, repr(res))
        events = wd.events()
        self.assertEqual(len(space.requests()), sent_before,
                         "events older than the maximum age were sent")
        # Dead and expired (the audit copy may be pruned at once: it is older than the
        # 7-day retention too), and counted: none silently gone, none sent.
        self.assertTrue(all(ev["state"] == "dead" and ev["last_error"].startswith("expired")
                            for ev in events), events)
        drops = wd.drops()
        summary("wall clock forward 1 year (expired, counted in drops)", N,
                N - drops.get("expired", 0))
        self.assertEqual(drops.get("expired"), N, drops)
        again = wd.run(env=faketime_env("+1y"))
        self.assertEqual(again.code, EXIT_OK, repr(again))
        self.assertEqual(len(space.requests()), sent_before, "a storm after the jump")
        self.assertEqual(wd.drops().get("expired"), N, "expired rows counted twice")

    def test_host_clock_forward_evicts_by_age_and_counts(self):
        """The host's clock jumps: the library's max_age_days eviction counts what it drops."""
        wd = Workdir(self, url=None)
        wd.record(N)
        code = ("import sys, telespool, relutil\n"
                "with telespool.Spool(sys.argv[1], instance_id=relutil.INSTANCE_ID) as sp:\n"
                "    sp.record_query(query_id='from-the-future')\n")
        env = faketime_env("+1y", PYTHONPATH=os.pathsep.join(
            [HERE, os.environ.get("PYTHONPATH", "")]))
        p = subprocess.run([sys.executable, "-c", code, wd.db_path], env=env,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        left = [ev["query_id"] for ev in wd.events()]
        drops = wd.drops()
        summary("host clock forward 1 year (evicted by age, counted)", N,
                N - drops.get("evicted_max_age", 0))
        self.assertEqual(left, ["from-the-future"])
        self.assertEqual(drops.get("evicted_max_age"), N, drops)

    def test_retry_after_then_clock_back(self):
        space, wd = self.setup({"rules": [{"path": TELEMETRY, "status": 503,
                                           "retry_after": "86400"}]})
        first = wd.run()
        self.assertEqual(first.outcome, "throttled", repr(first))
        until = int(wd.state()["retry_after_until"])
        self.assertLessEqual(until, now_ms() + RETRY_AFTER_MAX_MS)
        space.set_behaviour({})
        control = wd.run()
        self.assertEqual(control.outcome, "throttled", repr(control))
        self.assertEqual(len(space.requests()), N, "sent during the wait")
        tried = 0
        for offset in ("-1y", "-2h"):
            with self.subTest(offset=offset):
                # Put the rows back as they were after the 503 (for the second offset).
                wd.execute("UPDATE spool SET state = 'pending', sent_at = NULL,"
                           " next_attempt_at = ?", (self.iso(until),))
                wd.execute("INSERT OR REPLACE INTO uploader_state VALUES"
                           " ('retry_after_until', ?)", (str(until),))
                n0 = len(space.requests())
                res = wd.run(env=faketime_env(offset))
                tried += 1
                self.assertEqual(res.code, EXIT_OK, repr(res))
                self.assertEqual(len(space.requests()) - n0, N,
                                 "a 24 h Retry-After blocked after the clock went back")
                self.assertTrue(all(ev["state"] == "sent" for ev in wd.events()))
        summary("Retry-After (24 h) stored, then the clock back 1 year / 2 hours", tried, 0)

    def test_retry_after_stored_by_a_clock_in_the_future(self):
        space, wd = self.setup({"rules": [{"path": TELEMETRY, "status": 429,
                                           "retry_after": "3600"}]}, host_clock="+1y")
        first = wd.run(env=faketime_env("+1y"))
        self.assertEqual(first.outcome, "throttled", repr(first))
        until = int(wd.state()["retry_after_until"])
        self.assertGreater(until, now_ms() + 300 * 86400 * 1000)
        space.set_behaviour({})
        res = wd.run()                      # the clock is right again
        self.assertEqual(res.code, EXIT_OK, repr(res))
        events = wd.events()
        stuck = [ev for ev in events if ev["state"] != "sent"]
        summary("Retry-After stored by a clock 1 year ahead, then the clock right", N,
                len(stuck))
        self.assertEqual(stuck, [])
        self.assertEqual(self.delivered(space), {ev["event_id"] for ev in events})

    def test_lease_taken_by_a_clock_in_the_future(self):
        """An uploader with a clock a year ahead is killed mid-batch: its leases (a year
        away) must not keep the rows from the next, correct, uploader."""
        space, wd = self.setup({"rules": [{"path": TELEMETRY, "action": "stall"}]},
                               host_clock="+1y")
        run = wd.start(env=faketime_env("+1y"))
        space.wait_for_count(1, timeout=30)
        run.kill()
        run.wait()
        leased = [ev for ev in wd.events() if ev["lease_until"] is not None]
        self.assertTrue(leased)
        self.assertTrue(all(iso_ms(ev["lease_until"]) > now_ms() + 300 * 86400 * 1000
                            for ev in leased))
        space.set_behaviour({})
        res = wd.run()
        self.assertEqual(res.code, EXIT_OK, repr(res))
        events = wd.events()
        stuck = [ev for ev in events if ev["state"] != "sent"]
        summary("lease taken by a clock 1 year ahead, uploader killed", N, len(stuck))
        self.assertEqual(stuck, [])

    @staticmethod
    def iso(ms):
        import datetime
        dt = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


if __name__ == "__main__":
    unittest.main()
