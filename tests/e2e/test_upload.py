"""End-to-end: delivery, answer classification, backoff and run-wide gates."""

import email.utils
import json
import sys
import time
import unittest

from harness import (DISMISS, E2E, EXIT_CONFIG, EXIT_OK, EXIT_TEMPFAIL, INSTANCE_ID, LANGBOT_VERSION,
                     PENDING, RESPOND, TELEMETRY, clean_env, iso_ms, now_ms, refused_port,
                     upload_version)

ENDPOINT = {"query": TELEMETRY, "instance_heartbeat": TELEMETRY,
            "survey_trigger": PENDING, "survey_response": RESPOND, "survey_dismiss": DISMISS}


def record_all_kinds(lb):
    with lb.spool() as sp:
        sp.record_query(query_id="q-happy-1", adapter="TelegramAdapter", runner="local-agent",
                        model_name="gpt-4o", duration_ms=812, pipeline_plugins=["hello", "x"],
                        error=None)
        sp.record_heartbeat(features={"bots": 2, "pipelines": 1})
        sp.record_survey_trigger("first_bot_response_success")
        sp.record_survey_response("survey-1", {"q1": "great"}, completed=True)
        sp.record_survey_dismiss("survey-2")


class HappyPath(E2E):

    def check_delivery(self, token):
        space = self.space()
        lb = self.langbot(space)
        record_all_kinds(lb)
        before = now_ms()
        env = clean_env(LANGBOT_TELEMETRY_INGEST_TOKEN=token) if token is not None else None
        r = lb.run(env=env)
        self.assertExit(r, EXIT_OK)
        self.assertIn("sent 5, retried 0, dead 0", r.err)

        events = lb.events()
        log = space.requests()
        self.assertEqual(len(events), 5)
        self.assertEqual(len(log), 5, log)
        by_key = {e["idempotency_key"]: e for e in log}
        self.assertEqual(set(by_key), {ev["event_id"] for ev in events}, "one request per event")
        ua = f"telespool/{upload_version()}"
        for ev in events:
            req = by_key[ev["event_id"]]
            with self.subTest(event_type=ev["event_type"]):
                self.assertEqual(req["method"], "POST")
                self.assertEqual(req["path"], ENDPOINT[ev["event_type"]])
                self.assertEqual(req["body"], ev["body"], "the exact stored body is sent")
                self.assertEqual(req["headers"].get("content-type"), "application/json")
                self.assertEqual(req["headers"].get("user-agent"), ua)
                self.assertEqual(req["headers"].get("idempotency-key"), ev["event_id"])
                if token and token.strip() and req["path"] == "/api/v1/telemetry":
                    # Stripped as LangBot does, and on the telemetry endpoint only.
                    self.assertEqual(req["headers"].get("x-langbot-telemetry-token"),
                                     token.strip())
                else:
                    self.assertNotIn("x-langbot-telemetry-token", req["headers"])
                self.assertNotIn("authorization", req["headers"])
                self.assertEqual(ev["state"], "sent")
                self.assertEqual(ev["attempts"], 1)
                self.assertIsNone(ev["lease_until"])
                self.assertIsNone(ev["last_error"])
                self.assertIsNotNone(ev["sent_at"])
                self.assertGreaterEqual(iso_ms(ev["sent_at"]), before - 1000)
        # The bodies are what LangBot itself would send.
        query = json.loads(by_key[events[0]["event_id"]]["body"])
        self.assertEqual(query["event_type"], "query")
        self.assertEqual(query["query_id"], "q-happy-1")
        self.assertEqual(query["instance_id"], INSTANCE_ID)
        self.assertEqual(query["version"], LANGBOT_VERSION)
        self.assertEqual(query["pipeline_plugins"], ["hello", "x"])
        run = self.assertOutcome(lb, "ok", r)
        self.assertEqual((run["sent"], run["retried"], run["dead"], run["purged"]),
                         (5, 0, 0, 0))

        # A second run right after has nothing to do.
        r2 = lb.run()
        self.assertExit(r2, EXIT_OK)
        self.assertOutcome(lb, "nothing_due", r2)
        self.assertEqual(len(space.requests()), 5)

    def test_all_kinds_reach_their_endpoints(self):
        self.check_delivery(token=None)

    def test_ingest_token_header(self):
        self.check_delivery(token="tok-e2e-123")

    def test_empty_ingest_token_sends_no_header(self):
        self.check_delivery(token="")

    def test_ingest_token_is_stripped(self):
        """A token with a trailing newline (a file read into the variable) is stripped
        with Python's whitespace set, as LangBot does, instead of failing every run."""
        self.check_delivery(token="\u3000 tok-e2e-456\n")

    def test_ingest_token_with_a_control_character_is_a_config_error(self):
        space = self.space()
        lb = self.langbot(space)
        lb.record_queries(2)
        files = lb.files()
        r = lb.run(env=clean_env(LANGBOT_TELEMETRY_INGEST_TOKEN="tok\x01en"))
        self.assertExit(r, EXIT_CONFIG)
        self.assertIn("LANGBOT_TELEMETRY_INGEST_TOKEN", r.err)
        self.assertNotIn("tok", r.err.replace("LANGBOT_TELEMETRY_INGEST_TOKEN", ""))
        self.assertEqual(space.requests(), [])
        self.assertEqual(lb.files(), files, "nothing may change")
        # An opt-out is still honoured with such a token.
        lb.write_config(url=space.url, disable="true")
        r = lb.run(env=clean_env(LANGBOT_TELEMETRY_INGEST_TOKEN="tok\x01en"))
        self.assertExit(r, EXIT_OK)
        self.assertOutcome(lb, "purged", r)


class Outcomes(E2E):
    """Each class of answer, on a fresh spool of two query events."""

    def one_run(self, rule, *args):
        space = self.space({"rules": [rule]})
        lb = self.langbot(space)
        lb.record_queries(2)
        t0 = now_ms()
        r = lb.run(*args)
        return lb, space, r, t0

    def assert_retry(self, lb, space, r, t0, error_text):
        self.assertExit(r, EXIT_TEMPFAIL)
        self.assertEqual(len(space.requests()), 2)
        for ev in lb.events():
            self.assertEqual(ev["state"], "pending", ev)
            self.assertEqual(ev["attempts"], 1, ev)
            self.assertIn(error_text, ev["last_error"] or "", ev)
            self.assertGreater(iso_ms(ev["next_attempt_at"]), now_ms(), ev)
            self.assertIsNone(ev["lease_until"], ev)
        self.assertEqual(lb.drops(), {})

    def test_retryable_statuses(self):
        for status in (500, 502, 503, 408):
            with self.subTest(status=status):
                lb, space, r, t0 = self.one_run({"status": status})
                self.assert_retry(lb, space, r, t0, f"HTTP {status}")
                self.assertIn(r.outcome, ("server_down", "throttled"), repr(r))

    def test_status_503_without_retry_after_is_server_down(self):
        """Only 429 or a Retry-After means "slow down"; a bare 503 means down."""
        lb, space, r, t0 = self.one_run({"status": 503})
        self.assertOutcome(lb, "server_down", r)
        self.assertNotIn("retry_after_until", lb.state())
        self.assertIn("down_until", lb.state())

    def test_status_500_marks_server_down(self):
        lb, space, r, t0 = self.one_run({"status": 500})
        self.assertOutcome(lb, "server_down", r)
        self.assertIn("down_until", lb.state())

    def test_429_with_retry_after(self):
        lb, space, r, t0 = self.one_run({"status": 429, "retry_after": "120"})
        self.assert_retry(lb, space, r, t0, "429")
        self.assertOutcome(lb, "throttled", r)
        for ev in lb.events():
            self.assertGreaterEqual(iso_ms(ev["next_attempt_at"]), t0 + 119_000, ev)
        until = int(lb.state()["retry_after_until"])
        self.assertGreaterEqual(until, t0 + 119_000)
        self.assertLessEqual(until, now_ms() + 121_000)

    def test_a_refusal_every_request_gets_keeps_the_events(self):
        """A 4xx (or a 2xx with code 4xx) that every request gets is about the endpoint or
        the credentials, not the events: kept, retried with backoff, the run stops (75)
        and says what Space answered and what to check (issue 13, item 1)."""
        cases = [({"status": 401}, "HTTP 401", "LANGBOT_TELEMETRY_INGEST_TOKEN"),
                 ({"status": 403}, "HTTP 403", "LANGBOT_TELEMETRY_INGEST_TOKEN"),
                 ({"status": 404}, "HTTP 404", "space.url"),
                 ({"status": 405}, "HTTP 405", "space.url"),
                 ({"status": 410}, "HTTP 410", "space.url"),
                 ({"status": 400}, "HTTP 400", "space.url"),
                 ({"status": 422}, "HTTP 422", "space.url"),
                 ({"status": 200, "code": 422, "msg": "bad event"}, "code 422", "space.url")]
        for rule, text, advice in cases:
            with self.subTest(rule=rule):
                lb, space, r, t0 = self.one_run(rule)
                self.assert_retry(lb, space, r, t0, text)
                run = self.assertOutcome(lb, "refused", r)
                self.assertEqual(run["dead"], 0)
                self.assertIn(text, run["detail"])
                self.assertIn(advice, run["detail"])
                self.assertIn("/api/v1/telemetry", run["detail"])
                self.assertIn("down_until", lb.state())
                st = lb.run("--status")
                self.assertIn(text, st.out)
                self.assertRegex(st.out, rf"attention +Space answered .*{text}")
                self.assertRegex(st.out, "refused +one probe per run until")
                # The next run probes with one request, and keeps that one too.
                lb.record_queries(3, prefix="later")
                space.reset()
                space.set_behaviour({"rules": [rule]})
                r2 = lb.run()
                self.assertExit(r2, EXIT_TEMPFAIL)
                self.assertEqual(len(space.requests()), 1)
                self.assertEqual([ev["state"] for ev in lb.events()], ["pending"] * 5)
                self.assertEqual(lb.drops(), {})

    def test_a_refusal_among_successes_is_dead(self):
        """Space rejects some events' content (400, 413, 422) while accepting others: those
        are dead."""
        for status in (400, 413, 422):
            with self.subTest(status=status):
                space = self.space({"rules": [{"body_contains": '"query_id":"q-bad',
                                               "status": status, "msg": "bad event"}]})
                lb = self.langbot(space)
                with lb.spool() as sp:
                    sp.record_query(query_id="q-bad-1", model_name="gpt-4o")
                    sp.record_query(query_id="q-good-1", model_name="gpt-4o")
                r = lb.run()
                self.assertExit(r, EXIT_OK)
                self.assertEqual([ev["state"] for ev in lb.events()], ["dead", "sent"])
                self.assertIn(str(status), lb.events()[0]["last_error"])
                self.assertEqual(lb.drops(), {"rejected": 1})
                self.assertOutcome(lb, "ok", r)

    def test_credential_or_path_refusals_among_successes_are_kept(self):
        """401/403/404 for some events only (one workspace's token expired, a survey that
        is gone) are not about the event's content: kept with backoff, never dead at once."""
        for status in (401, 403, 404):
            with self.subTest(status=status):
                space = self.space({"rules": [{"body_contains": '"query_id":"q-bad',
                                               "status": status}]})
                lb = self.langbot(space)
                with lb.spool() as sp:
                    sp.record_query(query_id="q-bad-1", model_name="gpt-4o")
                    sp.record_query(query_id="q-good-1", model_name="gpt-4o")
                r = lb.run()
                self.assertExit(r, EXIT_TEMPFAIL)
                events = lb.events()
                self.assertEqual([ev["state"] for ev in events], ["pending", "sent"])
                self.assertEqual(events[0]["attempts"], 1)
                self.assertGreater(iso_ms(events[0]["next_attempt_at"]), now_ms())
                self.assertEqual(lb.drops(), {})

    def test_a_lone_refusal_after_the_endpoint_accepted_others_is_dead(self):
        """Small batches: the endpoint accepted events earlier in the run, so a batch
        of one refused event is about that event."""
        space = self.space({"rules": [{"body_contains": '"query_id":"q-bad',
                                       "status": 422}]})
        lb = self.langbot(space)
        lb.record_queries(3, prefix="good")
        with lb.spool() as sp:
            sp.record_query(query_id="q-bad-last", model_name="gpt-4o")
        r = lb.run("--batch", "1", "--parallel", "1")
        self.assertExit(r, EXIT_OK)
        self.assertEqual([ev["state"] for ev in lb.events()], ["sent"] * 3 + ["dead"])

    def test_a_survey_endpoint_refusing_does_not_stop_telemetry(self):
        """A Space without the survey endpoints (404) while telemetry works: the survey
        rows are kept (retried with backoff), the telemetry is delivered."""
        space = self.space({"rules": [{"path": "/api/v1/survey/pending", "status": 404}]})
        lb = self.langbot(space)
        lb.record_queries(2)
        with lb.spool() as sp:
            sp.record_survey_trigger("first_bot_response_success")
        r = lb.run()
        self.assertExit(r, EXIT_TEMPFAIL)
        states = {ev["event_type"]: ev["state"] for ev in lb.events()}
        self.assertEqual(states, {"query": "sent", "survey_trigger": "pending"})
        self.assertEqual(lb.drops(), {})

    def test_a_single_pending_event_refused_is_kept(self):
        space = self.space({"rules": [{"status": 400}]})
        lb = self.langbot(space)
        lb.record_queries(1)
        r = lb.run()
        self.assertExit(r, EXIT_TEMPFAIL)
        self.assertOutcome(lb, "refused", r)
        ev = lb.events()[0]
        self.assertEqual((ev["state"], ev["attempts"]), ("pending", 1))
        self.assertGreater(iso_ms(ev["next_attempt_at"]), now_ms())

    def test_200_with_code_503_is_retried(self):
        lb, space, r, t0 = self.one_run({"status": 200, "code": 503, "msg": "busy"})
        self.assert_retry(lb, space, r, t0, "503")

    def test_connection_reset_is_retried(self):
        for after in (0, 20):
            with self.subTest(after_bytes=after):
                lb, space, r, t0 = self.one_run({"action": "reset", "after_bytes": after})
                self.assert_retry(lb, space, r, t0, "")
                self.assertOutcome(lb, "server_down", r)

    def test_connection_refused_is_retried(self):
        sock, port = refused_port()
        self.addCleanup(sock.close)
        lb = self.langbot(url=f"http://127.0.0.1:{port}")
        lb.record_queries(3)
        r = lb.run()
        self.assertExit(r, EXIT_TEMPFAIL)
        self.assertOutcome(lb, "server_down", r)
        for ev in lb.events():
            self.assertEqual((ev["state"], ev["attempts"]), ("pending", 1), ev)
            self.assertTrue(ev["last_error"], ev)
            self.assertGreater(iso_ms(ev["next_attempt_at"]), now_ms(), ev)

    def test_stall_leaves_events_pending(self):
        """A Space that never answers: --max-seconds ends the run; nothing is lost, no lease
        stays behind, and the run says that it hit the time limit."""
        space = self.space({"rules": [{"action": "stall"}]})
        lb = self.langbot(space)
        lb.record_queries(3)
        r = lb.run("--max-seconds", "1")
        self.assertLess(r.elapsed, 8, "the run must end near --max-seconds, not after "
                                      "the 10 s request timeout")
        self.assertGreaterEqual(len(space.requests()), 1)
        for ev in lb.events():
            self.assertEqual(ev["state"], "pending", ev)
            self.assertIsNone(ev["lease_until"], ev)
        # Events are left for a later run: the run must not call itself "nothing_due"/"ok".
        self.assertOutcome(lb, "time_limit", r)
        self.assertExit(r, EXIT_TEMPFAIL)

    def test_time_limit_exit_code_does_not_depend_on_timing(self):
        """--max-seconds may run out mid-request (rows released) or between two batches
        (nothing released): the outcome is time_limit with exit 75 either way, as events are
        left (issue 13, item 9).  Several request durations put the deadline at different
        points of a batch; with instant answers it mostly falls between batches."""
        for delay in (0, 0, 2, 20, 70):
            with self.subTest(delay_ms=delay):
                space = self.space({"rules": [{"delay_ms": delay}]} if delay else None)
                lb = self.langbot(space)
                lb.record_queries(3000 if delay < 5 else 100)
                r = lb.run("--max-seconds", "1", "--batch", "1", "--parallel", "1")
                states = [ev["state"] for ev in lb.events()]
                self.assertIn(r.outcome, ("time_limit", "ok"), repr(r))
                if r.outcome == "time_limit":
                    self.assertExit(r, EXIT_TEMPFAIL)
                    self.assertIn("pending", states)
                else:
                    self.assertExit(r, EXIT_OK)
                    self.assertNotIn("pending", states)
        print("--max-seconds ending mid-request or between batches: tried 5 times, "
              "lost 0 (time_limit always exits 75)", file=sys.stderr)

    def test_stall_of_first_request_only(self):
        """Only the first request stalls; the others of the batch are delivered."""
        space = self.space({"rules": [{"action": "stall", "times": 1}]})
        lb = self.langbot(space)
        lb.record_queries(4)
        r = lb.run("--max-seconds", "1")
        self.assertLess(r.elapsed, 8)
        events = lb.events()
        self.assertEqual(sum(ev["state"] == "sent" for ev in events), 3, events)
        stalled = [ev for ev in events if ev["state"] != "sent"]
        self.assertEqual(len(stalled), 1)
        self.assertEqual(stalled[0]["state"], "pending")
        self.assertIsNone(stalled[0]["lease_until"])
        # The next run delivers it.
        r2 = lb.run("--ignore-backoff")
        self.assertExit(r2, EXIT_OK)
        self.assertTrue(all(ev["state"] == "sent" for ev in lb.events()))


class Policy(E2E):

    def test_retry_after_is_clamped_to_a_day(self):
        space = self.space({"rules": [{"status": 429, "retry_after": "9999999"}]})
        lb = self.langbot(space)
        lb.record_queries(1)
        r = lb.run()
        self.assertExit(r, EXIT_TEMPFAIL)
        until = int(lb.state()["retry_after_until"])
        self.assertLessEqual(until, now_ms() + 24 * 3600 * 1000 + 1000)
        self.assertGreater(until, now_ms() + 23 * 3600 * 1000)

    def test_max_attempts_then_dead(self):
        space = self.space({"rules": [{"status": 500}]})
        lb = self.langbot(space)
        lb.record_queries(2)
        lb.execute("UPDATE spool SET attempts = 29")      # the default limit is 30
        r = lb.run()
        self.assertEqual(len(space.requests()), 2)
        for ev in lb.events():
            self.assertEqual((ev["state"], ev["attempts"]), ("dead", 30), ev)
        self.assertEqual(lb.drops(), {"max_attempts": 2})
        self.assertExit(r, EXIT_OK)

    def test_unknown_event_type_is_dead_not_sent(self):
        space = self.space()
        lb = self.langbot(space)
        lb.record_queries(2)
        lb.execute("UPDATE spool SET event_type = 'from_the_future' WHERE id = "
                   "(SELECT min(id) FROM events)")
        r = lb.run()
        self.assertExit(r, EXIT_OK)
        events = lb.events()
        self.assertEqual(events[0]["state"], "dead")
        self.assertIn("unknown event type", events[0]["last_error"])
        self.assertEqual(events[1]["state"], "sent")
        self.assertEqual(len(space.requests()), 1)
        self.assertEqual(lb.drops(), {"rejected": 1})

    def test_redirect_is_not_followed(self):
        """A 3xx is never followed (the body must not go to another host); it
        says space.url is wrong, not the event, so the event is kept."""
        other = self.space()
        space = self.space({"rules": [{"status": 307, "location": other.url + TELEMETRY}]})
        lb = self.langbot(space)
        lb.record_queries(1)
        r = lb.run()
        self.assertEqual(other.requests(), [])
        ev = lb.events()[0]
        self.assertEqual(ev["state"], "pending", ev)
        self.assertIn("307", ev["last_error"])
        self.assertIn("check space.url", ev["last_error"])
        self.assertExit(r, EXIT_TEMPFAIL)

    def test_huge_answer_is_bounded(self):
        space = self.space({"rules": [{"body_size": 5_000_000}]})
        lb = self.langbot(space)
        lb.record_queries(2)
        r = lb.run()
        self.assertIn(r.code, (EXIT_OK, EXIT_TEMPFAIL), repr(r))
        for ev in lb.events():
            self.assertIn(ev["state"], ("sent", "pending"), ev)
            self.assertIsNone(ev["lease_until"])


class Backoff(E2E):

    def test_backoff_persists_between_runs(self):
        space = self.space({"rules": [{"status": 500, "times": 3}]})
        lb = self.langbot(space)
        lb.record_queries(3)
        r1 = lb.run()
        self.assertExit(r1, EXIT_TEMPFAIL)
        self.assertEqual(len(space.requests()), 3)
        first = {ev["id"]: ev["next_attempt_at"] for ev in lb.events()}

        # Right after: nothing is due (the probe of a down Space finds nothing due either).
        r2 = lb.run()
        self.assertExit(r2, EXIT_OK)
        self.assertOutcome(lb, "nothing_due", r2)
        self.assertEqual(len(space.requests()), 3, "a backed-off event was sent again")
        self.assertEqual({ev["id"]: ev["next_attempt_at"] for ev in lb.events()}, first)
        self.assertTrue(all(ev["attempts"] == 1 for ev in lb.events()))

        # A manual flush sends them now.
        r3 = lb.run("--ignore-backoff")
        self.assertExit(r3, EXIT_OK)
        self.assertOutcome(lb, "ok", r3)
        log = space.requests()
        self.assertEqual(len(log), 6)
        for ev in lb.events():
            self.assertEqual((ev["state"], ev["attempts"]), ("sent", 2), ev)
            keys = [e["idempotency_key"] for e in log if e["body"] == ev["body"]]
            self.assertEqual(keys, [ev["event_id"]] * 2, "retries carry the same key")
        self.assertNotIn("down_until", lb.state())

    def test_retry_after_honoured_across_runs(self):
        space = self.space({"rules": [{"status": 429, "retry_after": "120", "times": 2}]})
        lb = self.langbot(space)
        lb.record_queries(2)
        r1 = lb.run()
        self.assertExit(r1, EXIT_TEMPFAIL)
        self.assertOutcome(lb, "throttled", r1)

        # A new event, due now: the run-wide wait still holds it back.
        lb.record_queries(1, prefix="later")
        r2 = lb.run()
        self.assertExit(r2, EXIT_OK)
        self.assertOutcome(lb, "throttled", r2)
        self.assertIn("asked to wait", r2.err)
        self.assertEqual(len(space.requests()), 2, "sent before Retry-After passed")

        r3 = lb.run("--ignore-backoff")
        self.assertExit(r3, EXIT_OK)
        self.assertEqual(len(space.requests()), 5)
        self.assertTrue(all(ev["state"] == "sent" for ev in lb.events()))

    def test_retry_after_as_http_date(self):
        when = email.utils.formatdate(time.time() + 180, usegmt=True)
        space = self.space({"rules": [{"status": 429, "times": 1, "retry_after": when}]})
        lb = self.langbot(space)
        lb.record_queries(1)
        t0 = now_ms()
        r = lb.run()
        self.assertExit(r, EXIT_TEMPFAIL)
        self.assertOutcome(lb, "throttled", r)
        ev = lb.events()[0]
        self.assertEqual(ev["state"], "pending")
        self.assertGreaterEqual(iso_ms(ev["next_attempt_at"]), t0 + 170_000, ev)

    def test_garbage_retry_after_still_throttles(self):
        space = self.space({"rules": [{"status": 429, "times": 1, "retry_after": "soon-ish"}]})
        lb = self.langbot(space)
        lb.record_queries(1)
        r = lb.run()
        self.assertExit(r, EXIT_TEMPFAIL)
        self.assertOutcome(lb, "throttled", r)
        ev = lb.events()[0]
        self.assertEqual(ev["state"], "pending")
        self.assertGreater(iso_ms(ev["next_attempt_at"]), now_ms())

    def test_one_permanent_reject_does_not_block_the_others(self):
        space = self.space({"rules": [{"body_contains": '"query_id":"q-poison"',
                                       "status": 400, "msg": "bad event"}]})
        lb = self.langbot(space)
        with lb.spool() as sp:
            sp.record_query(query_id="q-poison", model_name="gpt-4o")   # oldest: first claimed
        lb.record_queries(6)
        r = lb.run()
        self.assertExit(r, EXIT_OK)
        self.assertOutcome(lb, "ok", r)
        events = lb.events()
        self.assertEqual(events[0]["state"], "dead")
        self.assertIn("400", events[0]["last_error"])
        self.assertEqual([ev["state"] for ev in events[1:]], ["sent"] * 6)
        self.assertEqual(lb.drops(), {"rejected": 1})
        self.assertEqual(len(space.requests()), 7)
        # It is never retried.
        lb.run("--ignore-backoff")
        self.assertEqual(len(space.requests()), 7)


class ServerDown(E2E):

    def test_down_then_one_probe_per_run(self):
        sock, port = refused_port()
        self.addCleanup(sock.close)
        lb = self.langbot(url=f"http://127.0.0.1:{port}")
        lb.record_queries(3, prefix="old")
        r1 = lb.run()
        self.assertExit(r1, EXIT_TEMPFAIL)
        self.assertOutcome(lb, "server_down", r1)
        self.assertIn("down_until", lb.state())

        # New events are due now, Space still failing: one probe request, no more.
        space = self.space({"rules": [{"status": 500}]})
        lb.write_config(url=space.url)
        lb.record_queries(5, prefix="new")
        r2 = lb.run()
        self.assertEqual(len(space.requests()), 1, space.requests())
        self.assertExit(r2, EXIT_TEMPFAIL)
        self.assertOutcome(lb, "server_down", r2)

        # Space is back: the probe goes through and the run goes on with what is due.
        space.reset()
        r3 = lb.run()
        self.assertExit(r3, EXIT_OK)
        self.assertOutcome(lb, "ok", r3)
        self.assertEqual(len(space.requests()), 4)
        states = {ev["event_id"]: ev["state"] for ev in lb.events()}
        self.assertEqual(sorted(states.values()), ["pending"] * 4 + ["sent"] * 4)
        self.assertNotIn("down_until", lb.state())


if __name__ == "__main__":
    unittest.main()


class Urls(E2E):
    """space.url of any length is joined whole; a query string or fragment is refused at
    config time (issue 13, item 2)."""

    def test_a_long_url_is_never_cut(self):
        base = "/" + "/".join(f"segment-{i:04d}" for i in range(400))    # ~5 KB of path
        space = self.space({"rules": [{"path": base + TELEMETRY, "status": 200}]})
        lb = self.langbot(url=space.url + base + "/")
        self.assertGreater(len(space.url + base), 4000)
        lb.record_queries(3)
        r = lb.run()
        self.assertExit(r, EXIT_OK)
        self.assertEqual([req["path"] for req in space.requests()], [base + TELEMETRY] * 3)
        self.assertEqual([ev["state"] for ev in lb.events()], ["sent"] * 3)
        summary_line = f"space.url of {len(space.url + base)} bytes: tried 3 times, lost 0"
        print(summary_line, file=sys.stderr)

    def test_query_string_or_fragment_is_refused(self):
        for suffix in ("/?token=abc", "/base#frag", "?x"):
            with self.subTest(suffix=suffix):
                space = self.space()
                lb = self.langbot(url=space.url + suffix)
                lb.record_queries(2)
                files = lb.files()
                r = lb.run()
                self.assertExit(r, EXIT_CONFIG)
                self.assertIn("query string or a fragment", r.err)
                self.assertEqual(space.requests(), [])
                self.assertEqual(lb.files(), files)
                st = lb.run("--status")
                self.assertIn("query string or a fragment", st.out)

    def test_status_never_shows_the_url_password(self):
        space = self.space()
        url = space.url.replace("http://", "http://operator:hunter2-SECRET@")
        lb = self.langbot(url=url)
        lb.record_queries(1)
        r = lb.run("--verbose")
        self.assertExit(r, EXIT_OK)
        self.assertEqual(len(space.requests()), 1)
        self.assertNotIn("hunter2", r.err + r.out)
        self.assertIn("operator:***@", r.err)
        lb.record_queries(1, prefix="later")
        for args in (("--status",), ("--status", "--json"), ("--dry-run", "--verbose")):
            with self.subTest(args=args):
                st = lb.run(*args)
                self.assertNotIn("hunter2", st.out + st.err)
                self.assertIn("operator:***@", st.out + st.err)
