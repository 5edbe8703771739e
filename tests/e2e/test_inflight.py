"""End-to-end: the adaptive number of requests in flight, --parallel, and a short
Retry-After waited out within the run."""

import json
import unittest

from harness import E2E, EXIT_OK, EXIT_TEMPFAIL, TELEMETRY, ms_iso, now_ms


class InFlight(E2E):

    def test_adaptive_grows_and_status_shows_it(self):
        space = self.space()
        lb = self.langbot(space)
        lb.record_queries(400)
        r = lb.run()
        self.assertExit(r, EXIT_OK)
        self.assertOutcome(lb, "ok", r)
        self.assertEqual(len(space.requests(TELEMETRY)), 400)
        # "... in 0.3 s - 64 in flight (adaptive, peak 64)"
        self.assertRegex(r.summary, r" - \d+ in flight \(adaptive, peak \d+")
        peak = int(r.summary.split("peak ")[1].split(")")[0].split(",")[0])
        self.assertGreater(peak, 4, "the limit never grew past its start")
        self.assertLessEqual(peak, 128)

        st = lb.run("--status")
        self.assertRegex(st.out, r"in flight\s+\d+ at the end of the last sending run "
                                 r"\(adaptive, peak \d+")
        doc = json.loads(lb.run("--status", "--json").out)
        self.assertEqual(doc["in_flight"]["mode"], "adaptive", doc)
        self.assertEqual(doc["in_flight"]["peak"], peak, doc)

    def test_status_before_any_sending_run(self):
        space = self.space()
        lb = self.langbot(space)
        lb.record_queries(1)
        doc = json.loads(lb.run("--status", "--json").out)
        self.assertIsNone(doc["in_flight"])
        self.assertNotIn("in flight", lb.run("--status").out)

    def test_parallel_pins_the_level(self):
        space = self.space()
        lb = self.langbot(space)
        lb.record_queries(100)
        r = lb.run("--parallel", "3")
        self.assertExit(r, EXIT_OK)
        self.assertIn(" - 3 in flight (fixed, peak 3)", r.summary)
        doc = json.loads(lb.run("--status", "--json").out)
        self.assertEqual(doc["in_flight"], {"level": 3, "peak": 3, "cuts": 0, "mode": "fixed"})

    def test_short_retry_after_is_waited_out_within_the_run(self):
        """A 429 with Retry-After: 1 in the middle of a batch: the rest of the batch is not
        started, no request is sent for a second, then the run goes on with a lower limit
        and delivers everything, the throttled row too (Retry-After, not its exponential
        backoff, says when it is due again)."""
        space = self.space({"rules": [{"times": 30, "delay_ms": 20},
                                      {"times": 1, "status": 429, "retry_after": "1"},
                                      {"delay_ms": 20}]})
        lb = self.langbot(space)
        lb.record_queries(200)
        r = lb.run()
        self.assertExit(r, EXIT_TEMPFAIL)  # a retryable answer came during the run
        self.assertOutcome(lb, "ok", r)
        self.assertIn("waited out Retry-After", r.summary)
        self.assertIn("cut", r.summary)
        log = space.requests(TELEMETRY)
        t429 = log[30]["t"]
        # Requests already in flight when the 429 came were read within its 20 ms; none
        # is read after that until the second has passed.
        early = [e["t"] - t429 for e in log[31:] if t429 + 0.1 < e["t"] < t429 + 0.99]
        self.assertEqual(early, [], "requests sent during Retry-After")
        self.assertGreater(log[-1]["t"], t429 + 0.99)
        self.assertTrue(all(ev["state"] == "sent" for ev in lb.events()))
        throttled = log[30]["idempotency_key"]
        self.assertEqual([e["idempotency_key"] for e in log].count(throttled), 2)
        self.assertEqual(len(log), 201, "a request was lost or sent twice")
        self.assertNotIn("retry_after_until", lb.state())

    def catching_up(self):
        """60 events recorded one a minute over the last hour, and a run 5 min ago."""
        space = self.space()
        lb = self.langbot(space)
        lb.record_queries(60)
        now = now_ms()
        for i in range(60):
            lb.execute("UPDATE spool SET created_at = ?, next_attempt_at = ? WHERE id = ?",
                       (ms_iso(now - (60 - i) * 60_000),) * 2 + (i + 1,))
        lb.execute("INSERT OR REPLACE INTO uploader_state (key, value) VALUES"
                   " ('last_run_at', ?)", (str(now - 5 * 60_000),))
        return space, lb, now

    def test_catch_up_pacing_after_a_recent_run(self):
        """The last run began 5 min ago: this one sends 10 min of the hour-old backlog (the
        floor of the window), puts the newer rows back uncharged and says so; the next runs
        go on from there, and --ignore-backoff sends everything."""
        space, lb, now = self.catching_up()
        r = lb.run()
        self.assertExit(r, EXIT_OK)
        self.assertOutcome(lb, "ok", r)
        self.assertIn("catching up: events recorded after", r.summary)
        sent = [ev for ev in lb.events() if ev["state"] == "sent"]
        self.assertEqual(len(sent), 11, r.summary)          # minutes -60 .. -50
        self.assertEqual(len(space.requests(TELEMETRY)), 11)
        rest = [ev for ev in lb.events() if ev["state"] != "sent"]
        self.assertTrue(all(ev["attempts"] == 0 and ev["lease_until"] is None for ev in rest))
        # The next run (a moment later: the 10-minute floor again) goes on from there.
        r2 = lb.run()
        self.assertIn("catching up", r2.summary)
        self.assertEqual(sum(ev["state"] == "sent" for ev in lb.events()), 22)
        r3 = lb.run("--ignore-backoff")
        self.assertExit(r3, EXIT_OK)
        self.assertNotIn("catching up", r3.summary)
        self.assertTrue(all(ev["state"] == "sent" for ev in lb.events()))
        self.assertEqual(len(space.requests(TELEMETRY)), 60, "sent twice or lost")

    def test_no_pacing_without_a_recent_run(self):
        space, lb, now = self.catching_up()
        lb.execute("DELETE FROM uploader_state WHERE key = 'last_run_at'")
        r = lb.run()
        self.assertExit(r, EXIT_OK)
        self.assertNotIn("catching up", r.summary)
        self.assertTrue(all(ev["state"] == "sent" for ev in lb.events()))
        # A run more than a day ago: no pacing either (LangBot was off, not Space).
        lb.record_queries(5, prefix="later")
        lb.execute("INSERT OR REPLACE INTO uploader_state (key, value) VALUES"
                   " ('last_run_at', ?)", (str(now - 25 * 3600_000),))
        lb.execute("UPDATE spool SET created_at = ? WHERE state = 'pending' AND id = "
                   "(SELECT min(id) FROM spool WHERE state = 'pending')",
                   (ms_iso(now - 20 * 3600_000),))
        r = lb.run()
        self.assertNotIn("catching up", r.summary)
        self.assertTrue(all(ev["state"] == "sent" for ev in lb.events()))

    def test_long_retry_after_still_ends_the_run(self):
        space = self.space({"rules": [{"status": 429, "retry_after": "61"}]})
        lb = self.langbot(space)
        lb.record_queries(5)
        r = lb.run()
        self.assertOutcome(lb, "throttled", r)
        self.assertIn("retry_after_until", lb.state())


if __name__ == "__main__":
    unittest.main()
