"""Reliability: kill -9 at random points, many times over.

1. Host processes (writer_child.py) record events in a loop and are SIGKILLed at random
   moments: afterwards PRAGMA integrity_check is ok and every event whose record call
   returned success is in the spool.
2. telespool-upload is SIGKILLed at random points of a drain against the fake Space (with a
   delay, so requests are in flight): after a final clean run every event was delivered at
   least once, re-sends carried the same Idempotency-Key and body, no row stays claimed, and
   the re-sends per kill are bounded by what was claimed (at most one batch).
"""

import collections
import os
import random
import subprocess
import sys
import unittest

from relutil import (EXIT_OK, HERE, TELEMETRY, FakeSpace, WriterProcess, Workdir, clean_env,
                     integrity, iso_ms, now_ms, seed, summary)

WRITER_ROUNDS = 30
UPLOADER_ROUNDS = 30
BATCH = 8              # --batch: the most rows one kill can leave claimed
PARALLEL = 4


class WriterCrash(unittest.TestCase):

    def test_kill_9_writers_at_random_points(self):
        rnd = random.Random(seed())
        wd = Workdir(self, url=None)
        acked = []
        for rnd_no in range(WRITER_ROUNDS):
            # Two host processes share the file; each dies at its own random moment.
            writers = [WriterProcess(wd.db_path, f"r{rnd_no}w{w}") for w in range(2)]
            for w in writers:
                w.read_until(rnd.randint(1, 120))
                w.kill()
            for w in writers:
                code = w.finish()
                self.assertEqual(code, -9, f"writer ended with {code}: {w.errors}")
                self.assertEqual(w.errors, [], "a record call failed before the kill")
                acked += w.acked
            self.assertEqual(integrity(wd.db_path), "ok", f"round {rnd_no}")

        # Every acknowledged event is there (the first open recovers the WAL).
        with wd.spool() as sp:      # and the spool still opens and records through the binding
            sp.record_query(query_id="after-the-crashes")
        stored = {r["query_id"] for r in wd.query("SELECT query_id FROM events")}
        lost = [q for q in acked if q not in stored]
        summary("host process killed (kill -9) while recording", WRITER_ROUNDS * 2, len(lost))
        self.assertEqual(lost, [], f"{len(lost)} acknowledged events are missing")
        self.assertIn("after-the-crashes", stored)
        self.assertEqual(integrity(wd.db_path), "ok")
        self.assertEqual(len(stored), len(wd.query("SELECT event_id FROM events")),
                         "query ids are unique per event")


class UploaderCrash(unittest.TestCase):

    def test_kill_9_uploader_at_random_points(self):
        rnd = random.Random(seed())
        with FakeSpace({"rules": [{"path": TELEMETRY, "delay_ms": 40}]}) as space:
            wd = Workdir(self, url=space.url)
            wd.record(600)
            claimed_at_kill = []        # per kill: event_ids left claimed (pending + lease)
            for rnd_no in range(UPLOADER_ROUNDS):
                before = len(space.requests())
                run = wd.start("--batch", str(BATCH), "--parallel", str(PARALLEL))
                target = rnd.randint(0, 14)     # 0: kill at once (open, housekeeping, ...)
                if target:
                    space.wait_for(lambda log, n=before + target: len(log) >= n
                                   or run.proc.poll() is not None, timeout=30)
                if run.proc.poll() is not None:
                    self.fail(f"the uploader ended before the kill: {run.wait()!r}")
                run.kill()
                killed = run.wait()
                self.assertEqual(killed.code, -9, repr(killed))
                self.assertEqual(integrity(wd.db_path), "ok", f"round {rnd_no}")
                leased = wd.query("SELECT event_id, state FROM events"
                                  " WHERE lease_until IS NOT NULL")
                self.assertLessEqual(len(leased), BATCH,
                                     f"round {rnd_no}: more rows claimed than one batch")
                self.assertTrue(all(r["state"] == "pending" for r in leased), leased)
                claimed_at_kill.append({r["event_id"] for r in leased})

            space.set_behaviour({})             # the final clean run: Space answers at once
            final = wd.run()
            self.assertEqual(final.code, EXIT_OK, repr(final))
            log = space.requests(TELEMETRY)

        events = wd.events()
        body_of = {ev["event_id"]: ev["body"] for ev in events}
        delivered = collections.Counter(e["idempotency_key"] for e in log)
        lost = [k for k in body_of if k not in delivered]
        summary("uploader killed (kill -9) mid-drain", UPLOADER_ROUNDS, len(lost))
        self.assertEqual(lost, [], "events never delivered")
        self.assertEqual(set(delivered), set(body_of), "a request carried an unknown key")
        for e in log:           # a re-send carries the same key and the same body
            self.assertEqual(e["body"], body_of[e["idempotency_key"]])
        self.assertTrue(all(ev["state"] == "sent" for ev in events),
                        [ev for ev in events if ev["state"] != "sent"][:3])
        now = now_ms()
        stuck = [ev["event_id"] for ev in events
                 if ev["lease_until"] is not None and iso_ms(ev["lease_until"]) > now]
        self.assertEqual(stuck, [], "rows still claimed after the final run")
        # Re-sends: only rows that a kill left claimed, once per such kill.
        for key, n in delivered.items():
            kills = sum(key in c for c in claimed_at_kill)
            self.assertLessEqual(n - 1, kills,
                                 f"{key} was sent {n} times but left claimed by {kills} kills")
        resent = sum(n - 1 for n in delivered.values())
        self.assertLessEqual(resent, BATCH * UPLOADER_ROUNDS)
        print(f"re-sent {resent} events over {UPLOADER_ROUNDS} kills "
              f"(at most {max(map(len, claimed_at_kill))} claimed at one kill)",
              file=sys.stderr)


HOST = r"""
import sys, telespool, relutil
path, handles = sys.argv[1], int(sys.argv[2])
opts = dict(instance_id=relutil.INSTANCE_ID, version=relutil.LANGBOT_VERSION)
first = telespool.Spool(path, **opts)
first.record_query(query_id="first-0")
others = [telespool.Spool(path, **opts) for _ in range(handles - 1)]   # same process
for i, sp in enumerate(others):
    sp.record_query(query_id=f"other-{i}")
print("ready", flush=True)
sys.stdin.readline()
for i in range(5):
    first.record_query(query_id=f"acked-{i}")
    print(f"OK acked-{i}", flush=True)
print("done", flush=True)
sys.stdin.readline()
"""


class HandlesInOneProcess(unittest.TestCase):
    """README: any number of handles, threads and processes - and a sqlite3 shell - can use
    one file at once.  A host process with two handles on the spool, a sqlite3 shell that
    opens and closes it, then kill -9 of the host: every acknowledged event must survive."""

    def scenario(self, handles):
        wd = Workdir(self, url=None)
        env = clean_env(PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
        host = subprocess.Popen([sys.executable, "-c", HOST, wd.db_path, str(handles)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                env=env)
        self.addCleanup(host.kill)
        self.assertEqual(host.stdout.readline().strip(), "ready")
        shell = subprocess.run(["sqlite3", wd.db_path, "SELECT count(*) FROM events"],
                               capture_output=True, text=True, timeout=30)
        self.assertEqual(shell.returncode, 0, shell.stderr)
        side_files = sorted(n for n in os.listdir(wd.data) if n.startswith("telemetry.db-"))
        host.stdin.write("go\n")
        host.stdin.flush()
        acked = []
        for line in host.stdout:
            if line.startswith("OK "):
                acked.append(line[3:].strip())
            if line.strip() == "done":
                break
        host.kill()
        host.wait()
        host.stdout.close()
        host.stdin.close()
        stored = {r["query_id"] for r in wd.query("SELECT query_id FROM events")}
        lost = [q for q in acked if q not in stored]
        summary(f"host with {handles} handle(s) on the spool, a sqlite3 shell, then kill -9",
                1, len(lost))
        self.assertEqual(len(acked), 5)
        self.assertEqual(lost, [], "acknowledged events lost")
        self.assertEqual(side_files, ["telemetry.db-shm", "telemetry.db-wal"],
                         "the sqlite3 shell deleted the WAL of a spool that is still open")
        self.assertEqual(integrity(wd.db_path), "ok")

    def test_one_handle(self):
        self.scenario(1)

    def test_two_handles(self):
        self.scenario(2)


if __name__ == "__main__":
    unittest.main()
