"""Reliability: load.

8 threads in this process (sharing one handle, as a LangBot process would) and 2 more host
processes record continuously for a few seconds, while telespool-upload drains in a loop of
runs against a slow fake Space (5-20 ms per request), a `sqlite3` shell counts the events in
a loop, and another process holds a read transaction open the whole time.

Zero lost (every acknowledged query_id is in the spool and delivered), zero duplicated in the
fake Space's log (no Idempotency-Key twice, since nothing crashed), zero BusyError at the
default 250 ms bound.
"""

import collections
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from relutil import (EXIT_OK, EXIT_TEMPFAIL, FakeSpace, WriterProcess, Workdir, integrity,
                     seed, summary, telespool)

SECONDS = 5.0
THREADS = 8
PROCESSES = 2
PACE_MS = 40        # each writer waits 0..40 ms between records (spreads the load)

READ_TX = r"""
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
db.execute("BEGIN")
n = db.execute("SELECT count(*) FROM events").fetchone()[0]
print("reading", n, flush=True)
sys.stdin.read()                      # hold the read transaction until told
m = db.execute("SELECT count(*) FROM events").fetchone()[0]
db.execute("COMMIT")
print("snapshot", "stable" if m == n else f"changed {n} -> {m}", flush=True)
"""


class Load(unittest.TestCase):

    def test_threads_processes_uploader_and_readers(self):
        rnd = random.Random(seed())
        behaviour = {"rules": [
            {"body_contains": '"query_id":"t', "delay_ms": 5},
            {"body_contains": '"query_id":"p', "delay_ms": 20},
            {"delay_ms": 12},
        ]}
        with FakeSpace(behaviour) as space:
            wd = Workdir(self, url=space.url)
            wd.record(1, prefix="warmup")       # the schema exists before anyone races
            acked = ["warmup-0"]
            errors = []
            latencies = []
            lock = threading.Lock()
            stop = threading.Event()

            # Readers: a read transaction held throughout, and a sqlite3 shell in a loop.
            holder = subprocess.Popen([sys.executable, "-c", READ_TX, wd.db_path],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            self.assertTrue(holder.stdout.readline().startswith("reading"))
            shell_stderr = tempfile.TemporaryFile()     # a file: errors never block it
            shell = subprocess.Popen(["sqlite3", wd.db_path], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=shell_stderr,
                                     text=True, bufsize=1)
            shell.stdin.write(".timeout 2000\n")
            shell_counts = []

            def shell_loop():
                while not stop.is_set():
                    # A marker after each query, so a failed query cannot leave us waiting.
                    shell.stdin.write("SELECT count(*) FROM events;\nSELECT 'end';\n")
                    shell.stdin.flush()
                    while True:
                        line = shell.stdout.readline()
                        if not line:
                            errors.append("the sqlite3 shell died")
                            return
                        if line.strip() == "end":
                            break
                        shell_counts.append(int(line))
                    stop.wait(0.005)        # a loop, not a busy spin on 2 cores

            # The uploader, run after run, while the writers write.
            runs = []

            def uploader_loop():
                # Default --max-seconds: a run ends when nothing is due, so no request is
                # ever cut off by a deadline (that would be re-sent, legitimately).
                while not stop.is_set():
                    runs.append(wd.run("--parallel", "8"))

            sp = wd.spool()
            self.addCleanup(sp.close)

            def thread_writer(t):
                r = random.Random(rnd.random())
                end = time.monotonic() + SECONDS
                i = 0
                while time.monotonic() < end:
                    qid = f"t{t}-{i}"
                    t0 = time.monotonic()
                    try:
                        sp.record_query(query_id=qid, adapter="TelegramAdapter",
                                        runner="local-agent", model_name="gpt-4o",
                                        duration_ms=i, pipeline_plugins=["hello"])
                    except telespool.Error as e:     # BusyError included: must not happen
                        with lock:
                            errors.append(f"{qid}: {type(e).__name__}: {e}")
                    else:
                        with lock:
                            acked.append(qid)
                            latencies.append(time.monotonic() - t0)
                    i += 1
                    time.sleep(r.uniform(0, PACE_MS) / 1000)   # load shaping only

            procs = [WriterProcess(wd.db_path, f"p{k}", pace_ms=PACE_MS, seconds=SECONDS)
                     for k in range(PROCESSES)]
            aux = [threading.Thread(target=shell_loop), threading.Thread(target=uploader_loop)]
            writers = [threading.Thread(target=thread_writer, args=(t,))
                       for t in range(THREADS)]
            for t in aux + writers:
                t.start()
            for t in writers:
                t.join()
            for p in procs:
                self.assertEqual(p.finish(timeout=60), 0, p.errors)
                errors += p.errors
                acked += p.acked
            stop.set()
            for t in aux:
                t.join(120)
            holder.stdin.close()
            snapshot = holder.stdout.readline().strip()
            holder.wait(30)
            holder.stdout.close()
            shell.stdin.close()
            shell.wait(30)
            shell.stdout.close()
            shell_stderr.seek(0)
            shell_err = shell_stderr.read().decode("utf-8", "replace")
            shell_stderr.close()
            sp.close()

            final = wd.run()
            self.assertEqual(final.code, EXIT_OK, repr(final))
            log = space.requests()

        events = wd.events()
        by_qid = {ev["query_id"]: ev for ev in events}
        lost = [q for q in acked if q not in by_qid]
        keys = collections.Counter(e["idempotency_key"] for e in log)
        dups = {k: n for k, n in keys.items() if n > 1}
        undelivered = [ev["query_id"] for ev in events if ev["event_id"] not in keys]
        summary(f"load: {THREADS} threads + {PROCESSES} processes recording, uploader loop, "
                "2 readers", len(acked), len(lost) + len(undelivered))
        lat = sorted(latencies)
        print(f"load: {len(acked)} events recorded, {len(runs)} uploader runs during the "
              f"load, {len(log)} requests, {len(shell_counts)} shell reads; record latency "
              f"p50 {lat[len(lat) // 2] * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms",
              file=sys.stderr)

        self.assertEqual(errors, [], "record calls failed (BusyError at 250 ms?)")
        self.assertEqual(lost, [], "acknowledged events are missing from the spool")
        self.assertEqual(undelivered, [], "events never delivered")
        self.assertEqual(dups, {}, "events sent twice without any crash")
        self.assertEqual(set(keys), {ev["event_id"] for ev in events})
        self.assertTrue(all(ev["state"] == "sent" for ev in events))
        self.assertEqual(len(by_qid), len(events), "a query_id was stored twice")
        self.assertEqual(snapshot, "snapshot stable", "the read transaction saw a change")
        self.assertEqual(shell_err.strip(), "", "the sqlite3 shell reported errors")
        self.assertTrue(shell_counts == sorted(shell_counts), "the count went backwards")
        self.assertGreater(len(runs), 0)
        for r in runs:
            self.assertEqual(r.code, EXIT_OK, repr(r))
        self.assertEqual(integrity(wd.db_path), "ok")
        # Every delivered body is the stored one.
        body_of = {ev["event_id"]: ev["body"] for ev in events}
        self.assertTrue(all(e["body"] == body_of[e["idempotency_key"]] for e in log))
        json.loads(log[0]["body"])

    def test_runs_cut_by_max_seconds_under_load(self):
        """Under sustained load a run only ends at --max-seconds; requests in flight then are
        abandoned and sent again by the next run, with the same key.  At-least-once: at most
        as many re-sends per run as it had requests in flight (its peak), nothing lost."""
        with FakeSpace({"rules": [{"delay_ms": 15}]}) as space:
            wd = Workdir(self, url=space.url)
            procs = [WriterProcess(wd.db_path, f"p{k}", pace_ms=10, seconds=4)
                     for k in range(2)]
            runs = []
            while any(p.proc.poll() is None for p in procs):
                runs.append(wd.run("--max-seconds", "1"))
            acked = []
            for p in procs:
                self.assertEqual(p.finish(), 0, p.errors)
                self.assertEqual(p.errors, [])
                acked += p.acked
            final = wd.run()
            self.assertEqual(final.code, EXIT_OK, repr(final))
            log = space.requests()
        events = wd.events()
        stored = {ev["query_id"] for ev in events}
        keys = collections.Counter(e["idempotency_key"] for e in log)
        lost = [q for q in acked if q not in stored]
        undelivered = [ev for ev in events if ev["event_id"] not in keys]
        resent = sum(n - 1 for n in keys.values())
        summary("load: uploader runs cut by --max-seconds 1 while 2 processes record",
                len(acked), len(lost) + len(undelivered))
        print(f"{len(runs)} runs of 1 s re-sent {resent} events", file=sys.stderr)
        self.assertEqual(lost, [])
        self.assertEqual(undelivered, [])
        # Each summary line names the run's peak number of requests in flight.
        peaks = [int(m.group(1)) if (m := re.search(r"in flight \(\w+, peak (\d+)",
                                                    r.summary or "")) else 0 for r in runs]
        self.assertLessEqual(resent, sum(peaks), "more re-sends than requests in flight")
        for r in runs:      # 75 when the deadline gave claimed rows back unsent
            self.assertIn(r.code, (EXIT_OK, EXIT_TEMPFAIL), repr(r))

    def test_a_reader_pins_the_wal_while_two_writers_record(self):
        """Issue 13: a sqlite3 shell left inside BEGIN kept every checkpoint from resetting
        the WAL, which grew without bound (357 MiB in 60 s).  Now the WAL stops at its bound
        (max_bytes / 2: 64 MiB by default), what cannot be stored is refused (FullError)
        and counted as wal_pinned, the uploader claims nothing (exit 75), and every event
        acknowledged is there."""
        wd = Workdir(self, url="http://127.0.0.1:9/")
        wd.record(1, prefix="warmup")
        shell = subprocess.Popen(["sqlite3", wd.db_path], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True, bufsize=1)
        self.addCleanup(shell.kill)
        shell.stdin.write("BEGIN;\nSELECT count(*) FROM spool;\n")
        shell.stdin.flush()
        self.assertEqual(shell.stdout.readline().strip(), "1")   # the snapshot is held
        writers = [WriterProcess(wd.db_path, f"w{i}", count=20000) for i in range(2)]
        for w in writers:
            self.assertEqual(w.finish(timeout=300), 0, w.errors[-3:])
        wal = os.path.getsize(wd.db_path + "-wal")
        refused = sum(1 for w in writers for e in w.errors if e.startswith("ERR FullError"))
        others = [e for w in writers for e in w.errors if not e.startswith("ERR FullError")]
        self.assertEqual(others, [])
        self.assertGreater(refused, 0, "the WAL never reached its bound")
        bound = 64 * 1024 * 1024 + 2 * 512 * 1024
        self.assertLessEqual(wal, bound, f"the WAL reached {wal} bytes")
        res = wd.run()
        self.assertEqual(res.code, EXIT_TEMPFAIL, repr(res))
        self.assertIn("reader", res.err)
        shell.stdin.write("COMMIT;\n.quit\n")
        shell.stdin.close()
        shell.wait(30)
        shell.stdout.close()
        acked = ["warmup-0"] + [q for w in writers for q in w.acked]
        stored = {r["query_id"] for r in wd.query("SELECT query_id FROM events")}
        lost = [q for q in acked if q not in stored]
        counted = wd.query("SELECT count FROM drops WHERE reason = 'wal_pinned'")
        self.assertEqual(lost, [])
        self.assertEqual(counted[0]["count"] if counted else 0, refused)
        self.assertIn("wal_pinned", wd.run("--status").out)
        summary(f"a sqlite3 shell in BEGIN pins the WAL while 2 writers record 40,000 events "
                f"(WAL {wal / 2**20:.1f} MiB, refused and counted {refused})", len(acked),
                len(lost))


if __name__ == "__main__":
    unittest.main()
