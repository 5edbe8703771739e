"""End-to-end: command line, configuration errors, --status, --dry-run, surveys, retention."""

import json
import os
import sys
import time
import unittest

from harness import (DISMISS, E2E, EXIT_CONFIG, EXIT_ERROR, EXIT_OK, INSTANCE_ID,
                     LANGBOT_VERSION, PENDING, RESPOND, clean_env, iso_ms, ms_iso, now_ms,
                     upload_version)

DAY_MS = 86400 * 1000
CONFIG = "data/config.yaml"   # as the uploader names it (run from the LangBot dir)


class CommandLine(E2E):

    def test_help_and_version(self):
        lb = self.langbot()
        r = lb.run("--help")
        self.assertExit(r, EXIT_OK)
        self.assertIn("Usage: telespool-upload", r.out)
        self.assertIn("--dry-run", r.out)
        r = lb.run("--version")
        self.assertExit(r, EXIT_OK)
        self.assertRegex(r.out, r"^telespool-upload \d+\.\d+\.\d+ \(libtelespool \d+\.\d+\.\d+\)")
        self.assertFalse(os.path.exists(lb.db_path))

    def test_bad_options_exit_78(self):
        lb = self.langbot()
        for args in (["--bogus"], ["--batch", "0"], ["--batch", "x"], ["--parallel", "129"],
                     ["--max-seconds", "-1"], ["stray-argument"], ["--max-seconds"],
                     ["--json"]):
            with self.subTest(args=args):
                r = lb.run(*args)
                self.assertExit(r, EXIT_CONFIG)
                self.assertIn("telespool-upload:", r.err)
        self.assertFalse(os.path.exists(lb.db_path))

    def test_no_spool(self):
        space = self.space()
        lb = self.langbot(space)
        before = sorted(os.listdir(lb.data))
        r = lb.run()
        self.assertExit(r, EXIT_OK)
        self.assertIn("no spool", r.err)
        r = lb.run("--status")
        self.assertExit(r, EXIT_OK)
        self.assertIn("no spool", r.err)
        r = lb.run("--dry-run")
        self.assertExit(r, EXIT_OK)
        self.assertEqual(sorted(os.listdir(lb.data)), before, "a file was created")
        self.assertEqual(space.requests(), [])


class ConfigErrors(E2E):
    """A broken config stops the run before anything is sent or deleted."""

    def check(self, lb, space, expect_in_message, opted_out_env=False):
        lb.record_queries(3)
        files = lb.files()
        env = clean_env(SPACE__URL=space.url)     # would reach the fake if it sent anything
        r = lb.run(env=env)
        self.assertExit(r, EXIT_CONFIG)
        for text in expect_in_message:
            self.assertIn(text, r.err)
        self.assertEqual(space.requests(), [])
        self.assertEqual(lb.files(), files, "the spool (or another file in data/) changed")
        return r

    def test_yaml_syntax_error(self):
        space = self.space()
        lb = self.langbot(space)
        lb.write_config(raw="api:\n  port: 5300\nspace:\n  url: 'http://127.0.0.1:1\n"
                            "  disable_telemetry: false\nsystem:\n  instance_id: ''\n")
        r = self.check(lb, space, [CONFIG])
        self.assertRegex(r.err, r"data/config\.yaml:\d+(:\d+)?:", "no line number")

    def test_yaml_bad_indentation(self):
        space = self.space()
        lb = self.langbot(space)
        lb.write_config(raw="space:\n  url: 'x'\n   disable_telemetry: true\n")
        r = self.check(lb, space, [CONFIG])
        self.assertRegex(r.err, r"config\.yaml:3")

    def test_missing_config(self):
        space = self.space()
        lb = self.langbot(space)
        os.unlink(lb.config_path)
        self.check(lb, space, [CONFIG])

    def test_space_is_a_list(self):
        space = self.space()
        lb = self.langbot(space)
        lb.write_config(raw="space: [1, 2]\nsystem:\n  instance_id: ''\n")
        self.check(lb, space, [CONFIG])

    def test_url_is_a_list(self):
        space = self.space()
        lb = self.langbot(space)
        lb.write_config(raw="space:\n  url: [a, b]\n  disable_telemetry: false\n")
        self.check(lb, space, [CONFIG])

    def test_disable_telemetry_is_a_mapping(self):
        """A non-empty mapping is true to Python, so LangBot reads it as disabled: purge."""
        space = self.space()
        lb = self.langbot(space)
        lb.write_config(raw=f"space:\n  url: '{space.url}'\n  disable_telemetry: {{a: 1}}\n")
        lb.record_queries(3)
        r = lb.run(env=clean_env(SPACE__URL=space.url))
        self.assertExit(r, EXIT_OK)
        self.assertOutcome(lb, "purged", r)
        self.assertEqual(space.requests(), [])

    def test_config_error_with_status(self):
        space = self.space()
        lb = self.langbot(space)
        lb.record_queries(1)
        lb.write_config(raw="space: [\n")
        r = lb.run("--status", "--json")
        self.assertExit(r, EXIT_OK)
        doc = json.loads(r.out)
        self.assertIn("error", doc["config"])
        self.assertEqual(doc["pending"], 1)


class Paths(E2E):

    def test_data_dir_option_from_elsewhere(self):
        space = self.space()
        lb = self.langbot(space)
        lb.record_queries(2)
        r = lb.run("--data-dir", lb.data)
        self.assertExit(r, EXIT_OK)
        self.assertEqual(len(space.requests()), 2)

    def test_config_and_db_options(self):
        space = self.space()
        lb = self.langbot(space)
        lb.record_queries(1)
        os.rename(lb.config_path, os.path.join(lb.root, "other.yaml"))
        os.rename(lb.db_path, os.path.join(lb.root, "spool.db"))
        r = lb.run("--config", "other.yaml", "--db", "spool.db")
        self.assertExit(r, EXIT_OK)
        self.assertEqual(len(space.requests()), 1)

    def test_corrupt_spool_is_refused_untouched(self):
        space = self.space()
        lb = self.langbot(space)
        with open(lb.db_path, "wb") as f:
            f.write(b"this is not a database, it is a LangBot user's file\n" * 200)
        with open(lb.db_path, "rb") as f:
            before = f.read()
        r = lb.run()
        self.assertExit(r, 1)
        self.assertIn("telemetry.db", r.err)
        self.assertEqual(space.requests(), [])
        with open(lb.db_path, "rb") as f:
            self.assertEqual(f.read(), before)
        r = lb.run("--status")
        self.assertExit(r, 1)


class ConfigBreaksMidRun(E2E):

    def test_config_broken_during_the_run(self):
        space = self.space({"rules": [{"delay_ms": 200}]})
        lb = self.langbot(space)
        lb.record_queries(20)
        run = lb.start("--batch", "5", "--parallel", "1")
        space.wait_for_count(1, timeout=20)
        lb.write_config(raw="space: [\n")
        r = run.wait()
        self.assertExit(r, EXIT_CONFIG)
        self.assertLessEqual(len(space.requests()), 5)
        self.assertEqual(len(lb.events()), 20, "nothing may be deleted")
        self.assertTrue(all(ev["lease_until"] is None for ev in lb.events()))
        self.assertOutcome(lb, "config_error", r)


def stderr_so_far(run) -> str:
    """What a background uploader has written to stderr until now."""
    return os.pread(run._err.fileno(), 1 << 20, 0).decode("utf-8", "replace")


def wait_for_stderr(run, text, timeout=20.0) -> None:
    """Waits (polling the output file; the bound is an upper limit only) until the
    uploader has printed text, or has exited."""
    end = time.monotonic() + timeout
    while text not in stderr_so_far(run):
        if run.proc.poll() is not None or time.monotonic() > end:
            return
        time.sleep(0.005)


def rewrite_in_place(path, first: str, rest: str, between) -> None:
    """Writes path the way LangBot's yaml.dump does (open "w": truncate, then write),
    calling between() while only first is in the file."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(first)
        f.flush()
        between()
        f.write(rest)


class ConfigRewrittenInPlace(E2E):
    """A config read mid-rewrite (empty or partial) is read again for a bounded time
    before exit 78; an opt-out written by truncate-then-write is honoured in the same run
    (issue 13, item 8)."""

    def test_config_empty_at_start_then_written(self):
        space = self.space()
        lb = self.langbot(space)
        lb.record_queries(3)
        with open(lb.config_path, encoding="utf-8") as f:
            full = f.read()
        run = None

        def start_and_wait():
            nonlocal run
            run = lb.start()
            wait_for_stderr(run, "waiting up to")
        rewrite_in_place(lb.config_path, "", full, start_and_wait)
        r = run.wait()
        self.assertIn("waiting up to", r.err)
        self.assertExit(r, EXIT_OK)
        self.assertEqual(len(space.requests()), 3)

    def test_opt_out_by_truncate_then_write_during_a_run(self):
        rounds, lost = 3, 0
        for i in range(rounds):
            with self.subTest(round=i):
                space = self.space({"rules": [{"delay_ms": 100}]})
                lb = self.langbot(space)
                lb.record_queries(40)
                run = lb.start("--batch", "5", "--parallel", "1")
                space.wait_for_count(2, timeout=20)
                with open(lb.config_path, encoding="utf-8") as f:
                    text = f.read()
                optout = text.replace("space:\n", "space:\n  disable_telemetry: true\n")
                self.assertNotEqual(optout, text)
                sent_before = []

                def truncated():
                    wait_for_stderr(run, "waiting up to")
                    sent_before.append(len(space.requests()))
                # A partial first write, as a buffered yaml.dump would leave it.
                cut = optout.index("space:")
                rewrite_in_place(lb.config_path, optout[:cut], optout[cut:], truncated)
                r = run.wait()
                self.assertIn("waiting up to", r.err)
                self.assertExit(r, EXIT_OK)
                self.assertOutcome(lb, "purged", r)
                self.assertEqual(lb.events(), [])
                # Nothing was sent once the rewrite began (one request may have been
                # in flight when the file was truncated).
                self.assertLessEqual(len(space.requests()), sent_before[0] + 1)
                lost += 0 if r.code == EXIT_OK else 1
        print(f"opt-out written by truncate-then-write during a run: tried {rounds} times, "
              f"lost {lost}", file=sys.stderr)

    def test_config_broken_for_good_still_exits_78(self):
        space = self.space()
        lb = self.langbot(space)
        lb.record_queries(1)
        lb.write_config(raw="space: [\n")
        r = lb.run()
        self.assertExit(r, EXIT_CONFIG)
        self.assertIn("waiting up to", r.err)
        self.assertEqual(space.requests(), [])


class NoUrl(E2E):

    def test_empty_url_keeps_events(self):
        for url in ("", None):
            with self.subTest(url=url):
                space = self.space()
                lb = self.langbot(url=url)
                lb.record_queries(3)
                r = lb.run()
                self.assertExit(r, EXIT_OK)
                self.assertOutcome(lb, "no_url", r)
                self.assertEqual(space.requests(), [])
                events = lb.events()
                self.assertEqual(len(events), 3)
                for ev in events:
                    self.assertEqual((ev["state"], ev["attempts"]), ("pending", 0), ev)
                    self.assertIsNone(ev["lease_until"])

    def test_env_url_overrides_empty_config(self):
        space = self.space()
        lb = self.langbot(url="")
        lb.record_queries(2)
        r = lb.run(env=clean_env(SPACE__URL=space.url + "/"))
        self.assertExit(r, EXIT_OK)
        self.assertEqual([e["path"] for e in space.requests()], ["/api/v1/telemetry"] * 2)


class LibcurlOnDemand(E2E):
    """libcurl is loaded only when there is something to send (TELESPOOL_LIBCURL names
    the library to load; here one that does not exist)."""

    NO_CURL = "/nonexistent/libcurl.so.4"

    def test_idle_run_does_not_load_libcurl(self):
        space = self.space()
        lb = self.langbot(space)
        lb.record_queries(1)
        self.assertExit(lb.run(), EXIT_OK)
        r = lb.run(env=clean_env(TELESPOOL_LIBCURL=self.NO_CURL))
        self.assertExit(r, EXIT_OK)
        self.assertOutcome(lb, "nothing_due", r)
        self.assertNotIn("libcurl", r.err)

    def test_missing_libcurl_loses_nothing(self):
        space = self.space()
        lb = self.langbot(space)
        lb.record_queries(3)
        r = lb.run(env=clean_env(TELESPOOL_LIBCURL=self.NO_CURL))
        self.assertExit(r, EXIT_ERROR)
        self.assertIn(f"cannot load libcurl ({self.NO_CURL})", r.err)
        run = self.assertOutcome(lb, "error", r)
        # The reason is in the run's record too, for --status.
        self.assertIn(f"cannot load libcurl ({self.NO_CURL})", run["detail"])
        self.assertEqual(space.requests(), [])
        for ev in lb.events():
            self.assertEqual((ev["state"], ev["attempts"]), ("pending", 0), ev)
            self.assertIsNone(ev["lease_until"])
        # With the library back, the same events go out.
        self.assertExit(lb.run(), EXIT_OK)
        self.assertEqual(len(space.requests()), 3)


class StatusAndDryRun(E2E):

    def mixed_spool(self):
        """One sent, one dead (rejected), two pending (one backed off)."""
        space = self.space({"rules": [
            {"body_contains": '"query_id":"q-bad"', "status": 422},
            {"body_contains": '"query_id":"q-later"', "status": 500},
        ]})
        lb = self.langbot(space)
        with lb.spool() as sp:
            sp.record_query(query_id="q-good", model_name="m")
            sp.record_query(query_id="q-bad", model_name="m")
            sp.record_query(query_id="q-later", model_name="m")
        lb.run()
        lb.record_queries(1, prefix="q-new")
        space.reset()
        return lb, space

    def test_status_text_and_json(self):
        lb, space = self.mixed_spool()
        before = lb.events()
        r = lb.run("--status")
        self.assertExit(r, EXIT_OK)
        self.assertRegex(r.out, r"pending\s+2 events")
        self.assertRegex(r.out, r"sent\s+1 event kept")
        self.assertRegex(r.out, r"dead\s+1 event given")
        self.assertIn("rejected", r.out)

        r = lb.run("--status", "--json")
        self.assertExit(r, EXIT_OK)
        doc = json.loads(r.out)
        self.assertEqual((doc["pending"], doc["sent"], doc["dead"]), (2, 1, 1), doc)
        self.assertEqual(doc["drops"], {"rejected": 1})
        self.assertEqual(doc["leased"], 0)
        self.assertEqual(doc["config"]["space_url"], space.url)
        self.assertFalse(doc["config"]["telemetry_disabled"])
        self.assertIsInstance(doc["runs"], list)
        self.assertEqual(len(doc["runs"]), 1)
        self.assertEqual(doc["runs"][0]["sent"], 1)
        self.assertEqual(doc["runs"][0]["dead"], 1)
        self.assertEqual(doc["runs"][0]["retried"], 1)
        self.assertIsNotNone(doc["next_attempt"])
        # --status sends nothing and changes nothing.
        self.assertEqual(space.requests(), [])
        self.assertEqual(lb.events(), before)
        self.assertEqual(len(lb.runs()), 1)

    def test_dry_run(self):
        space = self.space()
        lb = self.langbot(space)
        lb.record_queries(3, prefix="q-dry")
        before = lb.events()
        r = lb.run("--dry-run")
        self.assertExit(r, EXIT_OK)
        self.assertEqual(space.requests(), [])
        for ev in before:
            self.assertIn(f"would POST {space.url}/api/v1/telemetry  Idempotency-Key: "
                          f"{ev['event_id']}", r.out)
        self.assertNotIn("q-dry-0", r.out, "bodies only with --verbose")
        self.assertEqual(lb.events(), before, "a dry run changed the rows (or left a lease)")
        self.assertEqual(lb.runs(), [], "a dry run is not recorded as an upload run")
        self.assertIn("3 events would be sent", r.err)

        r = lb.run("--dry-run", "--verbose")
        self.assertExit(r, EXIT_OK)
        for ev in before:
            self.assertIn(ev["body"], r.out)
        self.assertEqual(space.requests(), [])
        self.assertEqual(lb.events(), before)

        # ... and the real run afterwards sends them all, once.
        r = lb.run()
        self.assertExit(r, EXIT_OK)
        self.assertEqual(len(space.requests()), 3)

    def test_dry_run_changes_no_row_at_all(self):
        """A dry run must not change the spool: no retention pruning, no expiry either."""
        space = self.space()
        lb = self.langbot(space)
        lb.record_queries(2)
        self.assertExit(lb.run(), EXIT_OK)
        lb.execute("UPDATE spool SET sent_at = ?", (ms_iso(now_ms() - 8 * DAY_MS),))
        lb.record_queries(1, prefix="q-dry")
        before = lb.events()
        r = lb.run("--dry-run")
        self.assertExit(r, EXIT_OK)
        self.assertEqual(r.out.count("would POST"), 1, r.out)
        self.assertEqual([ev["id"] for ev in lb.events()], [ev["id"] for ev in before],
                         "the dry run deleted rows (retention pruning ran)")
        self.assertEqual(lb.events(), before, "the dry run changed rows")

    def test_dry_run_of_backed_off_events(self):
        lb, space = self.mixed_spool()
        before = lb.events()
        r = lb.run("--dry-run", "--ignore-backoff")
        self.assertExit(r, EXIT_OK)
        self.assertEqual(r.out.count("would POST"), 2, r.out)
        self.assertIn("attempt 2", r.out)
        self.assertEqual(space.requests(), [])
        self.assertEqual(lb.events(), before)


class Surveys(E2E):

    def test_survey_round_trip(self):
        survey = {"survey_id": "s-1", "title": "How is LangBot?",
                  "questions": [{"id": "q1", "type": "rating"}]}
        other = {"survey_id": "s-2", "title": "And now?"}
        space = self.space({"surveys": {"first_bot_response_success": survey,
                                        "bot_response_success_100": other}})
        lb = self.langbot(space)
        sp = lb.spool()          # LangBot keeps its handle open while the uploader runs
        self.addCleanup(sp.close)
        sp.record_survey_trigger("first_bot_response_success")
        sp.record_survey_trigger("first_bot_response_success")     # at most once
        self.assertIsNone(sp.pending_survey())

        r = lb.run()
        self.assertExit(r, EXIT_OK)
        pending = space.requests(PENDING)
        self.assertEqual(len(pending), 1, pending)
        self.assertEqual(json.loads(pending[0]["body"]),
                         {"instance_id": INSTANCE_ID, "event": "first_bot_response_success"})
        self.assertEqual(sp.pending_survey(), survey)

        sp.record_survey_response("s-1", {"q1": 5}, completed=True)
        self.assertIsNone(sp.pending_survey())
        r = lb.run()
        self.assertExit(r, EXIT_OK)
        respond = space.requests(RESPOND)
        self.assertEqual(len(respond), 1)
        self.assertEqual(json.loads(respond[0]["body"]),
                         {"survey_id": "s-1", "instance_id": INSTANCE_ID, "answers": {"q1": 5},
                          "metadata": {"version": LANGBOT_VERSION, "instance_id": INSTANCE_ID},
                          "completed": True})
        self.assertIsNone(sp.pending_survey())

        # The milestone again, later: still no second check.
        sp.record_survey_trigger("first_bot_response_success")
        lb.run()
        self.assertEqual(len(space.requests(PENDING)), 1)
        self.assertIsNone(sp.pending_survey(), "an answered survey came back")

        # A second milestone offers another survey, which is dismissed.
        sp.record_survey_trigger("bot_response_success_100")
        lb.run()
        self.assertEqual(sp.pending_survey(), other)
        sp.record_survey_dismiss("s-2")
        self.assertIsNone(sp.pending_survey())
        lb.run()
        dismiss = space.requests(DISMISS)
        self.assertEqual(len(dismiss), 1)
        self.assertEqual(json.loads(dismiss[0]["body"]),
                         {"survey_id": "s-2", "instance_id": INSTANCE_ID})
        self.assertIsNone(sp.pending_survey())

    def test_no_survey_offered(self):
        space = self.space()
        lb = self.langbot(space)
        with lb.spool() as sp:
            sp.record_survey_trigger("first_bot_response_success")
        self.assertExit(lb.run(), EXIT_OK)
        self.assertEqual(len(space.requests(PENDING)), 1)
        with lb.spool() as sp:
            self.assertIsNone(sp.pending_survey())
        self.assertEqual(lb.query("SELECT count(*) AS n FROM surveys")[0]["n"], 0)

    def test_survey_not_fetched_when_disabled(self):
        space = self.space({"surveys": {"first_bot_response_success": {"survey_id": "s"}}})
        lb = self.langbot(space, disable="true")
        with lb.spool() as sp:
            sp.record_survey_trigger("first_bot_response_success")
        self.assertExit(lb.run(), EXIT_OK)
        self.assertEqual(space.requests(), [])
        with lb.spool() as sp:
            self.assertIsNone(sp.pending_survey())


class Retention(E2E):

    def test_old_sent_rows_are_pruned(self):
        space = self.space()
        lb = self.langbot(space)
        lb.record_queries(4)
        self.assertExit(lb.run(), EXIT_OK)
        ids = [ev["id"] for ev in lb.events()]
        old = ms_iso(now_ms() - 8 * DAY_MS)
        recent = ms_iso(now_ms() - 6 * DAY_MS)
        # As if recorded and sent 8 days ago (two) and 6 days ago (one).
        lb.execute("UPDATE spool SET created_at = ?, sent_at = ? WHERE id IN (?, ?)",
                   (old, old, ids[0], ids[1]))
        lb.execute("UPDATE spool SET created_at = ?, sent_at = ? WHERE id = ?",
                   (recent, recent, ids[2]))
        # A pending event older than the maximum age: given up on, counted, never sent.
        with lb.spool() as sp:
            sp.record_query(query_id="q-ancient", model_name="m")
        lb.execute("UPDATE spool SET created_at = ?, next_attempt_at = ? "
                   "WHERE body LIKE '%q-ancient%'", (old, old))
        space.reset()

        r = lb.run()
        self.assertExit(r, EXIT_OK)
        self.assertEqual(space.requests(), [], "an expired event was sent")
        left = {ev["id"]: ev for ev in lb.events()}
        self.assertEqual(sorted(left), ids[2:], "wrong rows pruned")
        self.assertTrue(all(ev["state"] == "sent" for ev in left.values()))
        self.assertEqual(lb.drops().get("expired"), 1)
        self.assertGreaterEqual(iso_ms(left[ids[2]]["sent_at"]), now_ms() - 7 * DAY_MS)


if __name__ == "__main__":
    unittest.main()


class LockPath(E2E):
    """Something other than a regular file at data/telemetry.db.upload-lock: a clear error
    naming it (and --status says so), never a file created through a symlink (issue 13,
    item 9)."""

    def test_dangling_symlink_directory_and_fifo(self):
        kinds = ("dangling symlink", "symlink to a file", "directory", "fifo")
        self.addCleanup(print, "a symlink, directory or FIFO at the uploader lock: tried "
                        f"{len(kinds)} times, lost 0", file=sys.stderr)
        for kind in kinds:
            with self.subTest(kind=kind):
                space = self.space()
                lb = self.langbot(space)
                lb.record_queries(2)
                lock = lb.db_path + ".upload-lock"
                target = os.path.join(lb.root, "elsewhere")
                if kind == "dangling symlink":
                    os.symlink(target, lock)
                elif kind == "symlink to a file":
                    with open(target, "w") as f:
                        f.write("not yours\n")
                    os.symlink(target, lock)
                elif kind == "directory":
                    os.mkdir(lock)
                else:
                    os.mkfifo(lock)
                r = lb.run()
                self.assertExit(r, EXIT_ERROR)
                self.assertIn(lock.replace(lb.root + "/", ""), r.err)
                self.assertRegex(r.err, "symbolic link|directory|not a regular file")
                self.assertIn("remove it", r.err)
                self.assertEqual(space.requests(), [])
                if kind == "dangling symlink":
                    self.assertFalse(os.path.exists(target), "a file was created through it")
                if kind == "symlink to a file":
                    with open(target) as f:
                        self.assertEqual(f.read(), "not yours\n")
                st = lb.run("--status")
                self.assertExit(st, EXIT_OK)
                self.assertIn("upload-lock", st.out)
                self.assertIn("every upload run fails until it is removed", st.out)
                js = json.loads(lb.run("--status", "--json").out)
                self.assertIn("upload-lock", js["lock_error"])
                # Removed, the next run delivers.
                if os.path.isdir(lock) and not os.path.islink(lock):
                    os.rmdir(lock)
                else:
                    os.unlink(lock)
                r = lb.run()
                self.assertExit(r, EXIT_OK)
                self.assertEqual(len(space.requests()), 2)
                self.assertIsNone(json.loads(lb.run("--status", "--json").out)["lock_error"])
