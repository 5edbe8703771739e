"""End-to-end: the adaptive number of requests in flight, --parallel, and a short
Retry-After waited out within the run."""

import json
import unittest

from harness import E2E, EXIT_OK, EXIT_TEMPFAIL, TELEMETRY


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
        """429 with Retry-After: 1: no request for a second, then the run goes on with a
        lower limit and delivers the rest; the throttled row waits for its backoff."""
        space = self.space({"rules": [{"status": 429, "retry_after": "1", "times": 1}]})
        lb = self.langbot(space)
        lb.record_queries(40)
        r = lb.run()
        self.assertExit(r, EXIT_TEMPFAIL)
        self.assertOutcome(lb, "ok", r)
        self.assertIn("waited out Retry-After", r.summary)
        self.assertIn("cut", r.summary)
        log = space.requests(TELEMETRY)
        first_429 = log[0]["t"]
        later = [e["t"] for e in log[1:] if e["t"] > first_429 + 0.05]
        # Requests already in flight may land just after the 429; none is sent
        # between 0.05 s and 1 s after it.
        self.assertTrue(all(t >= first_429 + 1.0 - 0.01 for t in later), log[:5])
        states = [ev["state"] for ev in lb.events()]
        self.assertEqual((states.count("sent"), states.count("pending")), (39, 1))
        self.assertNotIn("retry_after_until", lb.state())

    def test_long_retry_after_still_ends_the_run(self):
        space = self.space({"rules": [{"status": 429, "retry_after": "61"}]})
        lb = self.langbot(space)
        lb.record_queries(5)
        r = lb.run()
        self.assertOutcome(lb, "throttled", r)
        self.assertIn("retry_after_until", lb.state())


if __name__ == "__main__":
    unittest.main()
