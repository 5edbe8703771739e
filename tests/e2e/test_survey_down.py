"""End-to-end: a Space whose survey endpoints are missing or failing does not slow telemetry."""

import unittest

from harness import (DISMISS, E2E, EXIT_OK, EXIT_TEMPFAIL, PENDING, RESPOND, TELEMETRY, iso_ms,
                     now_ms)

SURVEY = (PENDING, RESPOND, DISMISS)


def record_surveys(lb, n):
    """n survey events, recorded before anything else so they are claimed first."""
    with lb.spool() as sp:
        for i in range(n):
            sp.record_survey_trigger(f"milestone_{i}")
            sp.record_survey_response(f"survey-{i}", {"q1": i}, completed=True)
            sp.record_survey_dismiss(f"survey-d{i}")


class SurveyEndpointsDown(E2E):

    def check_survey_rows_kept(self, lb, n_survey):
        survey = [ev for ev in lb.events() if ev["event_type"].startswith("survey_")]
        self.assertEqual(len(survey), n_survey)
        for ev in survey:
            self.assertEqual(ev["state"], "pending", ev)
            self.assertGreater(iso_ms(ev["next_attempt_at"]), now_ms(), ev)
        self.assertEqual(lb.drops(), {})

    def check(self, rule):
        """The oldest events (a whole first batch and more) are surveys that Space refuses
        or fails: every telemetry event is still sent in the same run, the survey rows
        are kept with their own backoff, the telemetry down gate stays open, and the
        next run sends new telemetry at once (no probe)."""
        space = self.space({"rules": [dict(rule, path=p) for p in SURVEY]})
        lb = self.langbot(space)
        record_surveys(lb, 4)                      # 12 survey rows, the oldest
        lb.record_queries(30)
        r = lb.run("--parallel", "2", "--batch", "4")
        self.assertExit(r, EXIT_TEMPFAIL)          # the survey rows wait for a later run
        self.assertEqual(len(space.requests(path=TELEMETRY)), 30)
        sent = [ev for ev in lb.events() if ev["event_type"] == "query"]
        self.assertEqual([ev["state"] for ev in sent], ["sent"] * 30)
        self.check_survey_rows_kept(lb, 12)
        state = lb.state()
        self.assertNotIn("down_until", state)
        self.assertNotIn("down_count", state)
        self.assertOutcome(lb, "ok", r)

        # The next run: new telemetry goes out in full batches, not one probe.
        lb.record_queries(10, prefix="later")
        space.reset()
        space.set_behaviour({"rules": [dict(rule, path=p) for p in SURVEY]})
        r2 = lb.run("--parallel", "2", "--batch", "4")
        self.assertEqual(len(space.requests(path=TELEMETRY)), 10)
        self.assertEqual(space.requests(path=PENDING) + space.requests(path=RESPOND)
                         + space.requests(path=DISMISS), [], "the survey rows are in backoff")
        self.assertExit(r2, EXIT_OK)
        self.assertNotIn("down_until", lb.state())
        self.check_survey_rows_kept(lb, 12)

    def test_survey_endpoints_missing(self):
        self.check({"status": 404})

    def test_survey_endpoints_failing(self):
        self.check({"status": 503})

    def test_telemetry_down_still_closes_the_gate(self):
        """The reverse: telemetry failing while a survey is answered is Space down for
        telemetry: the survey is delivered, the run stops, and the next run sends one
        probe to the telemetry endpoint."""
        rule = {"rules": [{"path": TELEMETRY, "status": 503}]}
        space = self.space(rule)
        lb = self.langbot(space)
        with lb.spool() as sp:
            sp.record_survey_dismiss("survey-x")
        lb.record_queries(8)
        r = lb.run("--parallel", "2", "--batch", "4")
        self.assertExit(r, EXIT_TEMPFAIL)
        self.assertOutcome(lb, "server_down", r)
        self.assertIn("down_until", lb.state())
        states = {ev["event_type"]: ev["state"] for ev in lb.events()}
        self.assertEqual(states, {"survey_dismiss": "sent", "query": "pending"})
        space.reset()
        space.set_behaviour(rule)
        lb.run("--parallel", "2", "--batch", "4")
        self.assertEqual(len(space.requests(path=TELEMETRY)), 1, "one probe")
        self.assertIn("down_until", lb.state())

if __name__ == "__main__":
    unittest.main()
