"""End-to-end: concurrent uploaders, kill -9 mid-batch, SIGTERM."""

import collections
import signal
import threading
import unittest

from harness import E2E, EXIT_OK, TELEMETRY


class Concurrency(E2E):

    def test_two_uploaders_at_once(self):
        space = self.space({"rules": [{"path": TELEMETRY, "delay_ms": 250}]})
        lb = self.langbot(space)
        lb.record_queries(8)
        runs = [lb.start("--parallel", "2"), lb.start("--parallel", "2")]
        results = [None, None]

        def wait(i):
            results[i] = runs[i].wait()

        threads = [threading.Thread(target=wait, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        losers = [r for r in results if "another telespool-upload is running" in r.err]
        winners = [r for r in results if r not in losers]
        self.assertEqual(len(losers), 1, results)
        self.assertEqual(len(winners), 1, results)
        loser, winner = losers[0], winners[0]
        self.assertExit(loser, EXIT_OK)
        self.assertExit(winner, EXIT_OK)
        self.assertLess(loser.elapsed, winner.elapsed, "the second uploader must exit at "
                                                       "once, not wait for the lock")
        self.assertIn("sent 8", winner.err)
        keys = [e["idempotency_key"] for e in space.requests()]
        self.assertEqual(len(keys), 8)
        self.assertEqual(len(set(keys)), 8, "an event was sent twice")
        self.assertTrue(all(ev["state"] == "sent" for ev in lb.events()))
        # The loser leaves no upload_runs row of its own (it never opened the spool).
        self.assertEqual(len(lb.runs()), 1)

    def test_second_uploader_started_mid_batch(self):
        space = self.space({"rules": [{"path": TELEMETRY, "delay_ms": 300}]})
        lb = self.langbot(space)
        lb.record_queries(6)
        first = lb.start("--parallel", "2")
        space.wait_for_count(1, timeout=20)
        second = lb.run()
        r1 = first.wait()
        self.assertExit(second, EXIT_OK)
        self.assertIn("another telespool-upload is running", second.err)
        self.assertExit(r1, EXIT_OK)
        keys = [e["idempotency_key"] for e in space.requests()]
        self.assertEqual(sorted(keys), sorted(ev["event_id"] for ev in lb.events()))


class HostRecordsWhileUploading(E2E):

    def test_recording_never_fails_during_a_run(self):
        """LangBot keeps recording (default 250 ms busy timeout) while the uploader drains."""
        space = self.space({"rules": [{"delay_ms": 5}]})
        lb = self.langbot(space)
        lb.record_queries(50, prefix="before")
        errors, recorded = [], []
        run = lb.start("--batch", "10")
        space.wait_for_count(1, timeout=20)

        def host():
            with lb.spool() as sp:
                for i in range(200):
                    try:
                        sp.record_query(query_id=f"during-{i}", model_name="m")
                        recorded.append(i)
                    except Exception as e:     # noqa: BLE001  (the test wants to see any)
                        errors.append(repr(e))

        t = threading.Thread(target=host)
        t.start()
        t.join(60)
        r = run.wait()
        self.assertEqual(errors, [])
        self.assertIn(r.code, (EXIT_OK,), repr(r))
        r2 = lb.run()
        self.assertExit(r2, EXIT_OK)
        events = lb.events()
        self.assertEqual(len(events), 250)
        self.assertTrue(all(ev["state"] == "sent" for ev in events))
        keys = [e["idempotency_key"] for e in space.requests()]
        self.assertEqual(len(keys), len(set(keys)), "duplicates without a crash")
        self.assertEqual(set(keys), {ev["event_id"] for ev in events})


class Crash(E2E):

    def test_kill_9_mid_batch_then_rerun(self):
        space = self.space({"rules": [{"path": TELEMETRY, "delay_ms": 300}]})
        lb = self.langbot(space)
        lb.record_queries(16)
        run = lb.start("--parallel", "4")
        space.wait_for_count(6, timeout=20)        # batch 1 done, batch 2 in flight
        run.kill(signal.SIGKILL)
        killed = run.wait()
        self.assertEqual(killed.code, -signal.SIGKILL)
        leased = [ev for ev in lb.events() if ev["lease_until"] is not None]
        self.assertTrue(leased, "expected rows left leased by the killed run")
        self.assertIsNone(lb.runs()[-1]["ended_at"], "the killed run cannot have ended")

        space.set_behaviour({})                    # Space answers at once now
        r = lb.run()
        self.assertExit(r, EXIT_OK)
        events = lb.events()
        self.assertTrue(all(ev["state"] == "sent" for ev in events), events)
        self.assertTrue(all(ev["lease_until"] is None for ev in events), events)

        log = space.requests()
        body_of = {ev["event_id"]: ev["body"] for ev in events}
        delivered = collections.Counter(e["idempotency_key"] for e in log)
        self.assertEqual(set(delivered), set(body_of), "every event delivered at least once")
        for e in log:       # a re-send carries the same key and the same body
            self.assertEqual(body_of[e["idempotency_key"]], e["body"])
        self.assertTrue(any(n > 1 for n in delivered.values()),
                        "expected the requests in flight at the kill to be sent again")
        self.assertOutcome(lb, "ok", r)

    def test_sigterm_ends_the_run_cleanly(self):
        space = self.space({"rules": [{"path": TELEMETRY, "action": "stall"}]})
        lb = self.langbot(space)
        lb.record_queries(5)
        run = lb.start()
        space.wait_for_count(1, timeout=20)
        run.kill(signal.SIGTERM)
        r = run.wait(timeout=10)
        self.assertLess(r.elapsed, 8, "SIGTERM must not wait for the 10 s request timeout")
        self.assertIn(r.code, (EXIT_OK, 75), repr(r))
        self.assertOutcome(lb, "interrupted", r)
        for ev in lb.events():
            self.assertEqual((ev["state"], ev["attempts"]), ("pending", 0), ev)
            self.assertIsNone(ev["lease_until"], ev)


if __name__ == "__main__":
    unittest.main()
