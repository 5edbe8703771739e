"""End-to-end: a Space whose survey endpoints are missing or failing does not slow telemetry."""

import json
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


def survey_requests(space):
    return [r for p in SURVEY for r in space.requests(path=p)]


class SurveyEndpointsDown(E2E):

    def check(self, rule):
        """The oldest events (a whole first batch and more) are surveys that Space refuses
        or fails: every telemetry event is still sent in the same run; the survey rows
        are kept (the first batch's tried once, the rest left alone behind the survey
        gate); the telemetry down gate stays open; --status shows the survey gate; the
        next run sends new telemetry at once (no probe) and no survey event."""
        survey_rules = {"rules": [dict(rule, path=p) for p in SURVEY]}
        space = self.space(survey_rules)
        lb = self.langbot(space)
        record_surveys(lb, 4)                      # 12 survey rows, the oldest
        lb.record_queries(30)
        r = lb.run("--parallel", "2", "--batch", "4")
        self.assertExit(r, EXIT_TEMPFAIL)          # the survey rows wait for a later run
        self.assertEqual(len(space.requests(path=TELEMETRY)), 30)
        events = lb.events()
        queries = [ev for ev in events if ev["event_type"] == "query"]
        self.assertEqual([ev["state"] for ev in queries], ["sent"] * 30)
        surveys = [ev for ev in events if ev["event_type"] != "query"]
        self.assertEqual([ev["state"] for ev in surveys], ["pending"] * 12)
        self.assertEqual([ev["attempts"] for ev in surveys], [1, 1] + [0] * 10,
                         "the first batch (--parallel 2) only")
        self.assertEqual(len(survey_requests(space)), 2)
        for ev in surveys[:2]:
            self.assertGreater(iso_ms(ev["next_attempt_at"]), now_ms(), ev)
        self.assertEqual(lb.drops(), {})
        state = lb.state()
        self.assertNotIn("down_until", state)
        self.assertNotIn("down_count", state)
        self.assertGreater(int(state["survey_down_until"]), now_ms())
        self.assertEqual(state["survey_down_count"], "1")
        run = self.assertOutcome(lb, "ok", r)
        self.assertIn("the survey endpoints answered", run["detail"])
        st = lb.run("--status")
        self.assertRegex(st.out, "surveys down +survey endpoints refused or failing")
        self.assertNotIn("one probe per run", st.out)
        st = lb.run("--status", "--json")
        self.assertIsNotNone(json.loads(st.out)["survey_down_until"])

        # The next run: new telemetry goes out in full batches, not one probe,
        # and the survey events wait behind their gate.
        lb.record_queries(10, prefix="later")
        space.reset()
        space.set_behaviour(survey_rules)
        r2 = lb.run("--parallel", "2", "--batch", "4")
        self.assertEqual(len(space.requests(path=TELEMETRY)), 10)
        self.assertEqual(survey_requests(space), [])
        self.assertExit(r2, EXIT_OK)
        self.assertNotIn("down_until", lb.state())
        self.assertEqual(lb.state()["survey_down_count"], "1")
        surveys = [ev for ev in lb.events() if ev["event_type"] != "query"]
        self.assertEqual([ev["state"] for ev in surveys], ["pending"] * 12)

        # --ignore-backoff (a manual flush) tries them; Space has them again.
        space.reset()
        r3 = lb.run("--ignore-backoff")
        self.assertExit(r3, EXIT_OK)
        self.assertEqual(len(survey_requests(space)), 12)
        self.assertEqual({ev["state"] for ev in lb.events()}, {"sent"})
        self.assertNotIn("survey_down_until", lb.state())
        self.assertNotIn("survey_down_count", lb.state())

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

    def test_survey_gate_far_in_the_future_is_ignored(self):
        """A survey gate further ahead than any backoff (the clock went back, a bad value
        written) is ignored as the other gates are: the survey events are sent, and a
        delivered one clears the gate."""
        space = self.space()
        lb = self.langbot(space)
        record_surveys(lb, 1)
        lb.execute("INSERT OR REPLACE INTO uploader_state (key, value) VALUES"
                   " ('survey_down_until', ?), ('survey_down_count', '3')",
                   (str(now_ms() + 10 * 365 * 86400 * 1000),))
        r = lb.run()
        self.assertExit(r, EXIT_OK)
        self.assertEqual(len(survey_requests(space)), 3)
        self.assertEqual({ev["state"] for ev in lb.events()}, {"sent"})
        self.assertNotIn("survey_down_until", lb.state())

if __name__ == "__main__":
    unittest.main()
