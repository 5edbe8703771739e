"""telespool-upload --every: the uploader as a long-running sidecar (no cron).

Several runs against the fake Space while events are recorded; SIGTERM in the middle of a slow
batch with --stop-timeout 0 (exit 0 within a second, nothing lost, nothing sent twice except
the requests that were in flight; test_stop.py has the graceful stop); the config read again by every run; a bad duration refused; memory checked with
valgrind over a few runs and by the resident size over many.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from harness import E2E, EXIT_CONFIG, TELEMETRY, UPLOAD, clean_env

_RUN_LINE = re.compile(r"telespool-upload: run (\d+): exit (\d+) \(([^)]*)\); next run in "
                       r"[0-9.]+ s$", re.M)


class Sidecar:
    """telespool-upload --every started in a LangBot directory; stderr goes to a file that
    can be read while it runs."""

    def __init__(self, test: unittest.TestCase, lb, *args, prefix=(), preexec_fn=None):
        self.test = test
        fd, self.err_path = tempfile.mkstemp(prefix="telespool-every-", suffix=".err")
        os.close(fd)
        test.addCleanup(os.unlink, self.err_path)
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen([*prefix, UPLOAD, *args], cwd=lb.root, env=clean_env(),
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=err, preexec_fn=preexec_fn)
        test.addCleanup(self._kill)

    def _kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def err(self) -> str:
        with open(self.err_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def runs(self) -> list[tuple[int, int, str]]:
        """(run number, exit code, meaning) of every finished run so far."""
        return [(int(n), int(c), m) for n, c, m in _RUN_LINE.findall(self.err())]

    def wait_runs(self, n: int, timeout: float = 60.0) -> list:
        """Waits until n runs have finished (polls the log; the bound is only a bound)."""
        end = time.monotonic() + timeout
        while True:
            runs = self.runs()
            if len(runs) >= n:
                return runs
            if self.proc.poll() is not None:
                self.test.fail(f"the uploader exited ({self.proc.returncode}):\n{self.err()}")
            if time.monotonic() > end:
                self.test.fail(f"fewer than {n} runs within {timeout} s:\n{self.err()}")
            time.sleep(0.02)     # polling a file, not synchronising with it

    def stop(self, sig=signal.SIGTERM, timeout: float = 30.0) -> tuple[int, float]:
        """Sends sig; returns (exit code, seconds from the signal to the exit)."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - t0


def _query_id(body: str) -> str | None:
    m = re.search(r'"query_id":"([^"]*)"', body)
    return m.group(1) if m else None


def _sanitized() -> bool:
    with open(UPLOAD, "rb") as f:
        binary = f.read()
    return b"__asan_init" in binary or b"__tsan_init" in binary


class TestEvery(E2E):

    def test_runs_until_sigterm_mid_batch_and_loses_nothing(self):
        space = self.space()
        lb = self.langbot(space)
        lb.record_queries(5, prefix="a")
        # --stop-timeout 0: the requests in flight are abandoned at once (test_stop.py has
        # the graceful stop).
        car = Sidecar(self, lb, "--every", "200ms", "--batch", "10", "--parallel", "2",
                      "--stop-timeout", "0")

        # Runs go on while LangBot records: each new event is sent by a later run.
        space.wait_for(lambda log: len(log) >= 5, 30)
        lb.record_queries(5, prefix="b")
        space.wait_for(lambda log: len(log) >= 10, 30)
        done = car.wait_runs(3)
        self.assertEqual([n for n, _, _ in done], list(range(1, len(done) + 1)))
        self.assertTrue(all(c == 0 and m == "done" for _, c, m in done), done)

        # A slow Space: the next batch is in flight when SIGTERM comes.
        space.set_behaviour({"rules": [{"path": TELEMETRY, "delay_ms": 20000}]})
        before = len(space.requests())
        lb.record_queries(20, prefix="c")
        space.wait_for(lambda log: len(log) > before, 30)
        code, seconds = car.stop(signal.SIGTERM)
        self.assertEqual(code, 0, car.err())
        self.assertLess(seconds, 1.0, car.err())
        self.assertIn("stopped by signal 15", car.err())
        # The interrupted run has its exit line too (75: its events wait for a later run).
        self.assertRegex(car.err(), r"run \d+: exit 75 \(events left for a later run\); "
                                    r"stopping\n")
        interrupted = {_query_id(r["body"]) for r in space.requests()[before:]}
        self.assertTrue(interrupted)

        # Nothing lost: a later run sends everything left; nothing is sent twice except
        # the requests that were in flight at the signal.
        self.assertFalse(any(e["state"] == "dead" for e in lb.events()))
        space.set_behaviour({})
        res = lb.run()
        self.assertEqual(res.code, 0, repr(res))
        self.assertEqual({e["state"] for e in lb.events()}, {"sent"})
        ids = collections.Counter(_query_id(r["body"]) for r in space.requests()
                                  if _query_id(r["body"]))
        recorded = {f"{p}-{i}" for p, n in (("a", 5), ("b", 5), ("c", 20)) for i in range(n)}
        self.assertEqual(set(ids), recorded)
        # At most the --parallel 2 in flight; not necessarily among `interrupted`, as
        # Space may log an abandoned request only after the uploader exited.
        twice = {q for q, n in ids.items() if n > 1}
        self.assertLessEqual(len(twice), 2, ids)
        self.assertTrue(all(q.startswith("c-") for q in twice), ids)

    def test_config_read_again_every_run(self):
        space = self.space()
        lb = self.langbot(url="")        # no URL yet: events are kept
        lb.record_queries(3)
        car = Sidecar(self, lb, "--every", "200ms")
        car.wait_runs(1)
        self.assertEqual(space.requests(), [])
        lb.write_config(url=space.url)   # the next run sees the URL
        space.wait_for(lambda log: len(log) >= 3, 30)
        lb.write_config(raw="space: [broken\n")
        n = len(car.runs())
        runs = car.wait_runs(n + 2)
        self.assertIn((EXIT_CONFIG, "configuration invalid, nothing sent or deleted"),
                      [(c, m) for _, c, m in runs[n:]])
        code, _ = car.stop(signal.SIGINT)
        self.assertEqual(code, 0, car.err())

    def test_bad_durations_are_refused(self):
        lb = self.langbot(url="")
        for bad in ("0", "5ms", "99ms", "25h", "15x", "m", "1h1", "-5", "", "1.5m"):
            res = lb.run("--every", bad)
            self.assertEqual(res.code, EXIT_CONFIG, repr(res))
            self.assertIn("--every must be a duration", res.err)
        for bad in ("--status", "--dry-run"):
            res = lb.run("--every", "15m", bad)
            self.assertEqual(res.code, EXIT_CONFIG, repr(res))

    def test_sigterm_while_waiting_exits_at_once(self):
        lb = self.langbot(url="")
        car = Sidecar(self, lb, "--every", "1h")
        car.wait_runs(1)
        code, seconds = car.stop(signal.SIGTERM)
        self.assertEqual(code, 0, car.err())
        self.assertLess(seconds, 1.0, car.err())

    def test_sigterm_reaches_it_when_the_parent_blocked_it(self):
        # A container's init or a supervisor may start it with the signals blocked.
        lb = self.langbot(url="")
        car = Sidecar(self, lb, "--every", "1h", preexec_fn=lambda: signal.pthread_sigmask(
            signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT}))
        car.wait_runs(1)
        code, seconds = car.stop(signal.SIGTERM)
        self.assertEqual(code, 0, car.err())
        self.assertLess(seconds, 1.0, car.err())

    @unittest.skipUnless(shutil.which("valgrind"), "valgrind is not installed")
    def test_no_leak_per_run_under_valgrind(self):
        if _sanitized():
            self.skipTest("a sanitized uploader (LeakSanitizer checks it at exit instead)")
        space = self.space()
        lb = self.langbot(space)
        lb.record_queries(3, prefix="v")
        car = Sidecar(self, lb, "--every", "100ms",
                      prefix=("valgrind", "--error-exitcode=99", "--leak-check=full",
                              "--errors-for-leak-kinds=definite,indirect",
                              "--show-leak-kinds=definite,indirect", "--quiet"))
        space.wait_for(lambda log: len(log) >= 3, 120)
        n = len(car.runs())
        lb.record_queries(3, prefix="w")
        space.wait_for(lambda log: len(log) >= 6, 120)
        car.wait_runs(n + 3, timeout=120)
        code, _ = car.stop(signal.SIGTERM, timeout=120)
        self.assertEqual(code, 0, car.err())

    def test_resident_memory_flat_over_many_runs(self):
        if _sanitized():
            self.skipTest("a sanitized uploader keeps freed memory in quarantine")
        space = self.space()
        lb = self.langbot(space)
        car = Sidecar(self, lb, "--every", "100ms")

        def rss_kb() -> int:
            with open(f"/proc/{car.proc.pid}/status") as f:
                return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1))

        # Each run sends one event, so libcurl is set up and torn down every run.
        for i in range(10):
            lb.record_queries(1, prefix=f"warm{i}")
            space.wait_for(lambda log, n=i + 1: len(log) >= n, 30)
        first = rss_kb()
        for i in range(40):
            lb.record_queries(1, prefix=f"many{i}")
            space.wait_for(lambda log, n=i + 11: len(log) >= n, 30)
        last = rss_kb()
        code, _ = car.stop(signal.SIGTERM)
        self.assertEqual(code, 0, car.err())
        self.assertLess(last - first, 1024, f"resident size grew from {first} kB to {last} kB "
                        "over 40 runs")


if __name__ == "__main__":
    unittest.main()
