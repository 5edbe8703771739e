"""End-to-end: Authorization (issue 11, item 5).  By default none is sent; with
--auth-command a credential helper is run at send time with the event's workspace_uuid, its
token is used in memory for that run's requests only (one helper call per workspace per run),
never stored, logged or shown; a failing or hanging helper is a clear, bounded error that
loses nothing."""

import json
import os
import stat
import sys
import time

from harness import E2E, EXIT_OK, EXIT_TEMPFAIL, TELEMETRY, clean_env

SECRET = "tok-SECRET-7f3a"


class Auth(E2E):

    def helper(self, lb, body: str) -> tuple[str, str]:
        """A helper script in the LangBot dir; returns (command, its call log)."""
        log = os.path.join(lb.root, "helper.log")
        path = os.path.join(lb.root, "helper.sh")
        with open(path, "w") as f:
            f.write("#!/bin/sh\n" f'echo "$#:$1" >> "{log}"\n' + body)
        os.chmod(path, stat.S_IRWXU)
        return f"'{path}' --extra-arg", log

    def spool_with_workspaces(self, lb):
        """Three events of ws-a, two of ws-b, one without a workspace, one survey."""
        lb.record_queries(6)
        with lb.spool() as sp:
            sp.record_survey_trigger("first_bot_response_success")
        ids = [ev["id"] for ev in lb.events()]
        for row_id, ws in zip(ids, ["ws-a", "ws-b", "ws-a", " ws-b ", "ws-a", None]):
            if ws is not None:
                lb.execute("UPDATE spool SET body = json_set(body, '$.workspace_uuid', ?) "
                           "WHERE id = ?", (ws, row_id))

    def test_helper_token_per_workspace(self):
        space = self.space()
        lb = self.langbot(space)
        self.spool_with_workspaces(lb)
        cmd, log = self.helper(lb, f'echo "  Bearer {SECRET}-$2"\n')
        r = lb.run("--auth-command", cmd, "--verbose")
        self.assertExit(r, EXIT_OK)
        reqs = space.requests()
        self.assertEqual(len(reqs), 7)
        for req in reqs:
            body = json.loads(req["body"])
            ws = (body.get("workspace_uuid") or "").strip()
            auth = req["headers"].get("authorization")
            if req["path"] == TELEMETRY and ws:
                self.assertEqual(auth, f"Bearer {SECRET}-{ws}", req)
            else:
                self.assertIsNone(auth, req)
        # Once per workspace per run; the workspace is an argument, after the command's own.
        with open(log) as f:
            calls = sorted(f.read().split())
        self.assertEqual(calls, ["2:--extra-arg", "2:--extra-arg"])
        # Never stored, logged or shown.
        self.assertNotIn(SECRET.encode(), lb.spool_bytes())
        self.assertNotIn(SECRET, r.err + r.out)
        st = lb.run("--status", "--json")
        self.assertNotIn(SECRET, st.out + st.err)

    def test_workspace_reaches_the_helper_as_one_argument(self):
        space = self.space()
        lb = self.langbot(space)
        lb.record_queries(1)
        lb.execute("UPDATE spool SET body = json_set(body, '$.workspace_uuid', ?)",
                   ("ws; touch pwned $(id)",))
        cmd, log = self.helper(lb, 'printf "%s" "$2" | tr -c "a-z0-9" "_"\n')
        r = lb.run("--auth-command", cmd)
        self.assertExit(r, EXIT_OK)
        self.assertFalse(os.path.exists(os.path.join(lb.root, "pwned")))
        self.assertEqual(space.requests()[0]["headers"]["authorization"],
                         "Bearer ws__touch_pwned___id_")

    def test_no_authorization_by_default_and_token_wins(self):
        space = self.space()
        lb = self.langbot(space)
        self.spool_with_workspaces(lb)
        cmd, log = self.helper(lb, f'echo "{SECRET}"\n')
        r = lb.run("--auth-command", cmd,
                   env=clean_env(LANGBOT_TELEMETRY_INGEST_TOKEN="ingest-1"))
        self.assertExit(r, EXIT_OK)
        for req in space.requests():
            self.assertNotIn("authorization", req["headers"])
        self.assertFalse(os.path.exists(log), "the helper ran although a token is set")

    def test_empty_output_means_no_header(self):
        space = self.space()
        lb = self.langbot(space)
        self.spool_with_workspaces(lb)
        cmd, _ = self.helper(lb, "echo\n")
        r = lb.run("--auth-command", cmd)
        self.assertExit(r, EXIT_OK)
        self.assertTrue(all("authorization" not in q["headers"] for q in space.requests()))

    def test_failing_helpers_keep_the_events(self):
        cases = [("exit 3\n", "exited with status 3"),
                 ("printf 'tok\\001en\\n'\n", "control or non-ASCII"),
                 ("kill -KILL $$\n", "exited with status 137")]
        for body, text in cases:
            with self.subTest(text=text):
                space = self.space()
                lb = self.langbot(space)
                self.spool_with_workspaces(lb)
                cmd, _ = self.helper(lb, body)
                r = lb.run("--auth-command", cmd)
                self.assertExit(r, EXIT_TEMPFAIL)
                run = self.assertOutcome(lb, "auth_failed", r)
                self.assertIn(text, run["detail"])
                self.assertIn("--auth-command", run["detail"])
                self.assertEqual(space.requests(), [])
                for ev in lb.events():
                    self.assertEqual((ev["state"], ev["attempts"]), ("pending", 0))
                    self.assertIsNone(ev["lease_until"])
        print(f"--auth-command failing (exit status, bad token, killed): tried {len(cases)} "
              "times, lost 0", file=sys.stderr)

    def test_hanging_helper_is_killed(self):
        space = self.space()
        lb = self.langbot(space)
        self.spool_with_workspaces(lb)
        marker = os.path.join(lb.root, "child-survived")
        cmd, _ = self.helper(lb, f"(sleep 30; touch '{marker}') &\nsleep 60\n")
        t0 = time.monotonic()
        r = lb.run("--auth-command", cmd, timeout=40)
        self.assertLess(time.monotonic() - t0, 25, "the helper's time is bounded (10 s)")
        self.assertExit(r, EXIT_TEMPFAIL)
        run = self.assertOutcome(lb, "auth_failed", r)
        self.assertIn("timed out", run["detail"])
        self.assertEqual(space.requests(), [])
        # Its whole process group went with it (the background subshell too).
        script = os.path.join(lb.root, "helper.sh").encode()
        for p in [p for p in os.listdir("/proc") if p.isdigit()]:
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    self.assertNotIn(script, f.read())
            except OSError:
                pass
