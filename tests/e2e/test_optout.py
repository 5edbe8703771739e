"""End-to-end: opt-out (space.disable_telemetry / SPACE__DISABLE_TELEMETRY) purges everything,
sends nothing, shrinks the file and leaves none of the recorded values on disk."""

import os
import sqlite3
import unittest

from harness import EXIT_ERROR, EXIT_OK, E2E, TELEMETRY, clean_env

MARK = b"PURGEMARK"
SURVEY = {"survey_id": "PURGEMARK-survey-1", "title": "PURGEMARK-title how is it?",
          "questions": [{"id": "q1", "text": "PURGEMARK-question"}]}


class OptOut(E2E):

    def populated(self, keep_open=False):
        """A spool with sent and pending events and a stored survey, all carrying markers.
        Returns (langbot, space, open spool or None)."""
        space = self.space({"surveys": {"first_bot_response_success": SURVEY}})
        lb = self.langbot(space)
        with lb.spool() as sp:
            for i in range(150):
                sp.record_query(query_id=f"PURGEMARK-q-{i:04d}", adapter="TelegramAdapter",
                                runner="local-agent", model_name="PURGEMARK-model-123",
                                duration_ms=i, pipeline_plugins=["PURGEMARK-plugin"],
                                error=None)
            sp.record_heartbeat(features={"PURGEMARK-feature": 3})
            sp.record_survey_trigger("first_bot_response_success")
        r = lb.run()
        self.assertExit(r, EXIT_OK)
        self.assertEqual(sum(ev["state"] == "sent" for ev in lb.events()), 152)
        sp = lb.spool()
        self.assertEqual(sp.pending_survey(), SURVEY)
        for i in range(150):
            sp.record_query(query_id=f"PURGEMARK-q-late-{i:04d}", adapter="TelegramAdapter",
                            runner="local-agent", model_name="PURGEMARK-model-123",
                            duration_ms=i, pipeline_plugins=["PURGEMARK-plugin"], error=None)
        sp.record_survey_response("PURGEMARK-survey-1", {"q1": "PURGEMARK-answer"})
        if not keep_open:
            sp.close()
            sp = None
        else:
            self.addCleanup(sp.close)
        space.reset()
        return lb, space, sp

    def assert_purged(self, lb, space, r, size_before):
        self.assertExit(r, EXIT_OK)
        self.assertEqual(space.requests(), [], "a request was sent after opt-out")
        # Raw bytes first: opening the file with SQLite below could checkpoint or rewrite it.
        blob = lb.spool_bytes()
        size_after = os.path.getsize(lb.db_path)
        self.assertNotIn(MARK, blob, "a purged value is still in telemetry.db or its WAL")
        self.assertLess(size_after, size_before, "the file did not shrink")
        self.assertEqual(lb.query("SELECT count(*) AS n FROM events")[0]["n"], 0)
        self.assertEqual(lb.query("SELECT count(*) AS n FROM surveys")[0]["n"], 0)
        self.assertEqual(lb.query("SELECT count(*) AS n FROM survey_milestones")[0]["n"], 0)
        run = self.assertOutcome(lb, "purged", r)
        self.assertEqual(run["purged"], 303 + 1)   # 302 events + the response event, 1 survey

    def before(self, lb):
        blob = lb.spool_bytes()
        self.assertIn(MARK, blob, "sanity: the markers are on disk before the purge")
        return os.path.getsize(lb.db_path)

    def test_opt_out_by_config(self):
        lb, space, _ = self.populated()
        size = self.before(lb)
        lb.write_config(url=space.url, disable="true")
        r = lb.run()
        self.assert_purged(lb, space, r, size)
        self.assertIn("telemetry disabled (config)", r.err)
        # And the next run has nothing left to do or send.
        r2 = lb.run()
        self.assertExit(r2, EXIT_OK)
        self.assertEqual(space.requests(), [])

    def test_opt_out_while_langbot_holds_the_spool_open(self):
        lb, space, sp = self.populated(keep_open=True)
        size = self.before(lb)
        lb.write_config(url=space.url, disable="true")
        r = lb.run()
        self.assert_purged(lb, space, r, size)
        self.assertIsNone(sp.pending_survey())

    def test_opt_out_removes_side_files_and_waits_out_a_reader(self):
        """Everything telespool wrote goes, the copies of damaged spools too; a reader
        holding a transaction keeps the old pages until it ends, and --status says so; the
        next run after it finishes the purge."""
        lb, space, _ = self.populated()
        aside = lb.db_path + ".corrupt-20260101T000000Z"
        for path in (aside, aside + "-wal", lb.db_path + ".new-1-0badf00d"):
            with open(path, "wb") as f:
                f.write(MARK + b" in a file beside the spool")
        holder = sqlite3.connect(lb.db_path)   # idle: the reader's close is not the last
        self.addCleanup(holder.close)
        holder.execute("SELECT count(*) FROM spool").fetchall()
        reader = sqlite3.connect(lb.db_path, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM spool").fetchall()
        lb.write_config(url=space.url, disable="true")
        r = lb.run()
        self.assertExit(r, EXIT_ERROR)
        self.assertOutcome(lb, "purge_incomplete", r)
        self.assertFalse([n for n in os.listdir(lb.data) if ".corrupt-" in n or ".new-" in n])
        st = lb.run("--status")
        self.assertIn("purge        INCOMPLETE since", st.out)
        self.assertIn(MARK, lb.spool_bytes(), "sanity: the reader holds the old pages")
        reader.execute("COMMIT")
        reader.close()
        r = lb.run()
        self.assertExit(r, EXIT_OK)
        self.assertNotIn(MARK, lb.spool_bytes())
        self.assertNotIn("INCOMPLETE", lb.run("--status").out)
        self.assertEqual(space.requests(), [])

    def test_opt_out_by_environment(self):
        for spelling in ("true", "1", "yes", "on", "TRUE", "On"):
            with self.subTest(SPACE__DISABLE_TELEMETRY=spelling):
                lb, space, _ = self.populated()
                size = self.before(lb)
                r = lb.run(env=clean_env(SPACE__DISABLE_TELEMETRY=spelling))
                self.assert_purged(lb, space, r, size)
                self.assertIn("telemetry disabled (env)", r.err)

    def test_environment_false_does_not_opt_out(self):
        space = self.space()
        lb = self.langbot(space, disable="false")
        lb.record_queries(2)
        for spelling in ("false", "0", "off", "no", ""):
            with self.subTest(SPACE__DISABLE_TELEMETRY=spelling):
                r = lb.run("--ignore-backoff", env=clean_env(SPACE__DISABLE_TELEMETRY=spelling))
                self.assertExit(r, EXIT_OK)
                self.assertNotEqual(r.outcome, "purged", repr(r))
        self.assertEqual(len(space.requests()), 2)
        self.assertEqual(len(lb.events()), 2)

    def test_environment_overrides_config_false(self):
        """Config says enabled; the environment says disabled: the environment wins."""
        lb, space, _ = self.populated()
        lb.write_config(url=space.url, disable="false")
        size = self.before(lb)
        r = lb.run(env=clean_env(SPACE__DISABLE_TELEMETRY="yes"))
        self.assert_purged(lb, space, r, size)


class OptOutMidRun(E2E):
    """The flag is flipped while a run is sending."""

    def flip_during(self, n_events, batch, parallel, flip_at):
        space = self.space({"rules": [{"path": TELEMETRY, "delay_ms": 200}]})
        lb = self.langbot(space)
        lb.record_queries(n_events, prefix="PURGEMARK-q", model_name="PURGEMARK-model-123")
        run = lb.start("--batch", str(batch), "--parallel", str(parallel))
        try:
            space.wait_for_count(flip_at, timeout=20)
            at_flip = len(space.requests())
            lb.write_config(url=space.url, disable="true")
        finally:
            r = run.wait()
        return lb, space, r, at_flip

    def test_flip_during_first_batch(self):
        lb, space, r, _ = self.flip_during(n_events=30, batch=5, parallel=1, flip_at=1)
        self.assertExit(r, EXIT_OK)
        self.assertLessEqual(len(space.requests()), 5, "more than one batch after opt-out")
        self.assertEqual(lb.query("SELECT count(*) AS n FROM events")[0]["n"], 0)
        self.assertOutcome(lb, "purged", r)
        self.assertIn("during the run", r.err)
        self.assertNotIn(b"PURGEMARK", lb.spool_bytes())

    def test_flip_mid_batch_stops_claimed_rows(self):
        """LESSONS 6: nothing is sent after opt-out, not even rows already claimed.  The
        flag flips while the 2nd batch (10 rows, one request at a time) is being sent: at
        most the request in flight at that moment (and one racing it) may still go out."""
        lb, space, r, at_flip = self.flip_during(n_events=30, batch=10, parallel=1,
                                                 flip_at=3)
        self.assertExit(r, EXIT_OK)
        self.assertEqual(lb.query("SELECT count(*) AS n FROM events")[0]["n"], 0)
        self.assertOutcome(lb, "purged", r)
        self.assertLessEqual(len(space.requests()), at_flip + 1,
                             f"{len(space.requests()) - at_flip} requests were sent after "
                             "telemetry was disabled")


if __name__ == "__main__":
    unittest.main()
