"""A graceful stop: SIGTERM or SIGINT (docker stop, a pod's termination) mid-run.

The first signal claims and starts nothing more and lets the requests in flight finish for
up to --stop-timeout (default 5 s), recording their outcomes: events Space answered are sent,
not released to be sent again.  Past the bound, or at a second signal, the requests still in
flight are abandoned at once and their events released (nothing lost).  The fake Space holds
its answers ("hold") until the test releases them; the tests wait on its request log and on
the uploader's stderr, never on sleeps, and times are only generous upper bounds.
"""

from __future__ import annotations

import collections
import os
import signal
import time
import unittest

from harness import E2E, EXIT_TEMPFAIL, TELEMETRY
from test_every import Sidecar, _query_id

_STOPPING = "stopping: waiting up to"


def _held_after(answered: int) -> dict:
    """Space answers the first `answered` telemetry requests, then holds the others."""
    rules = [{"path": TELEMETRY, "action": "hold"}]
    if answered:
        rules.insert(0, {"path": TELEMETRY, "times": answered})
    return {"rules": rules}


def _wait_text(test: unittest.TestCase, read, text: str, proc, timeout: float = 30.0) -> None:
    """Waits until read() contains text (polls a file; the bound is only a bound)."""
    end = time.monotonic() + timeout
    while text not in read():
        if proc.poll() is not None:
            test.fail(f"the uploader exited ({proc.returncode}) before {text!r}:\n{read()}")
        if time.monotonic() > end:
            test.fail(f"no {text!r} within {timeout} s:\n{read()}")
        time.sleep(0.02)     # polling a file, not synchronising with it


class TestGracefulStop(E2E):

    def _sidecar_mid_batch(self, *args):
        """20 events; Space answers the first batch (4), then holds the 4 requests in flight
        of the second batch (16 rows claimed, 12 not started).  Returns (space, lb, car)."""
        space = self.space(_held_after(4))
        lb = self.langbot(space)
        lb.record_queries(20)
        car = Sidecar(self, lb, "--every", "1h", "--batch", "16", "--parallel", "4", *args)
        space.wait_for(lambda log: len(log) >= 8, 30)
        return space, lb, car

    def test_sigterm_lets_the_requests_in_flight_finish(self):
        space, lb, car = self._sidecar_mid_batch()
        held = {_query_id(r["body"]) for r in space.requests()[4:]}
        self.assertEqual(len(held), 4)

        car.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        _wait_text(self, car.err, _STOPPING, car.proc)
        self.assertIn("waiting up to 5.0 s for 4 requests in flight", car.err())
        space.release()
        code = car.proc.wait(30)
        seconds = time.monotonic() - t0
        self.assertEqual(code, 0, car.err())
        self.assertLess(seconds, 5 + 10, car.err())

        # No request started after the signal; the held ones were answered and are sent.
        self.assertEqual(len(space.requests()), 8, car.err())
        events = {_query_id(e["body"]): e for e in lb.events()}
        sent = {q for q, e in events.items() if e["state"] == "sent"}
        self.assertEqual(len(sent), 8)
        self.assertLessEqual(held, sent)
        # The others were never sent: given back untouched, none leased, none dead.
        rest = [e for q, e in events.items() if q not in sent]
        self.assertEqual(len(rest), 12)
        for e in rest:
            self.assertEqual((e["state"], e["attempts"], e["lease_until"]),
                             ("pending", 0, None), e)
        run = lb.runs()[-1]
        self.assertEqual(run["outcome"], "stopped", run)
        self.assertIn("nothing in flight abandoned", run["detail"])
        self.assertRegex(car.err(), r"run 1: exit 75 \(events left for a later run\); "
                                    r"stopping\n")
        self.assertIn("stopped by signal 15", car.err())

        # A later run sends the rest, and nothing twice.
        res = lb.run()
        self.assertEqual(res.code, 0, repr(res))
        ids = collections.Counter(_query_id(r["body"]) for r in space.requests())
        self.assertEqual(set(ids), {f"q-{i}" for i in range(20)})
        self.assertEqual(max(ids.values()), 1, ids)

    def test_space_that_never_answers_is_abandoned_after_the_bound(self):
        space, lb, car = self._sidecar_mid_batch("--stop-timeout", "2")
        car.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        _wait_text(self, car.err, "waiting up to 2.0 s for 4 requests", car.proc)
        code = car.proc.wait(30)
        seconds = time.monotonic() - t0
        self.assertEqual(code, 0, car.err())
        self.assertLess(seconds, 2 + 10, car.err())

        self.assertEqual(len(space.requests()), 8, car.err())
        run = lb.runs()[-1]
        self.assertEqual(run["outcome"], "interrupted", run)
        self.assertIn("4 requests in flight abandoned", run["detail"])
        # Nothing lost: the 4 sent before, the other 16 pending and released.
        states = collections.Counter(e["state"] for e in lb.events())
        self.assertEqual(states, {"sent": 4, "pending": 16})
        self.assertTrue(all(e["lease_until"] is None for e in lb.events()))
        space.set_behaviour({})
        space.release()
        res = lb.run()
        self.assertEqual(res.code, 0, repr(res))
        self.assertEqual({e["state"] for e in lb.events()}, {"sent"})

    def test_second_signal_stops_at_once(self):
        space, lb, car = self._sidecar_mid_batch("--stop-timeout", "120")
        car.proc.send_signal(signal.SIGTERM)
        # The first signal must have been taken before the second is sent (two pending
        # signals of one kind would be one).
        _wait_text(self, car.err, "waiting up to 120.0 s", car.proc)
        code, seconds = car.stop(signal.SIGINT)
        self.assertEqual(code, 0, car.err())
        self.assertLess(seconds, 10, car.err())    # far below the 120 s bound
        self.assertEqual(lb.runs()[-1]["outcome"], "interrupted")
        self.assertEqual(collections.Counter(e["state"] for e in lb.events()),
                         {"sent": 4, "pending": 16})
        self.assertTrue(all(e["lease_until"] is None for e in lb.events()))

    def test_stop_timeout_zero_abandons_at_once(self):
        space, lb, car = self._sidecar_mid_batch("--stop-timeout", "0")
        code, seconds = car.stop(signal.SIGTERM)
        self.assertEqual(code, 0, car.err())
        self.assertLess(seconds, 10, car.err())
        self.assertNotIn(_STOPPING, car.err())
        self.assertEqual(lb.runs()[-1]["outcome"], "interrupted")
        self.assertEqual(len(space.requests()), 8)

    def test_opt_out_during_the_grace_still_purges_at_once(self):
        """An opt-out written while a graceful stop waits for Space (a long --stop-timeout)
        is honoured at once: the requests in flight are abandoned, everything is purged."""
        space, lb, car = self._sidecar_mid_batch("--stop-timeout", "120")
        car.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        _wait_text(self, car.err, "waiting up to 120.0 s", car.proc)
        lb.write_config(url=space.url, disable="true")
        code = car.proc.wait(60)
        self.assertEqual(code, 0, car.err())
        self.assertLess(time.monotonic() - t0, 60, car.err())   # far below the 120 s
        self.assertEqual(lb.query("SELECT count(*) AS n FROM events")[0]["n"], 0, car.err())
        self.assertEqual(lb.runs()[-1]["outcome"], "purged", car.err())
        self.assertEqual(len(space.requests()), 8, car.err())   # none started after
        space.release()

    def test_stop_during_a_config_rewrite_is_a_stop(self):
        """A signal while the config is mid-rewrite (unreadable: the batch is held) ends the
        run as stopped, not as a config error: a stopping run does not wait the 2 s for the
        file, the next run reads it."""
        space, lb, car = self._sidecar_mid_batch("--stop-timeout", "120")
        lb.replace_config("space: [\n")            # what a rewrite in place can leave
        car.proc.send_signal(signal.SIGTERM)
        _wait_text(self, car.err, "waiting up to 120.0 s", car.proc)
        space.release()
        code = car.proc.wait(60)
        self.assertEqual(code, 0, car.err())
        run = lb.runs()[-1]
        self.assertEqual(run["outcome"], "stopped", car.err())
        self.assertEqual(collections.Counter(e["state"] for e in lb.events()),
                         {"sent": 8, "pending": 12})

    def test_one_shot_run_stops_gracefully_too(self):
        space = self.space(_held_after(0))
        lb = self.langbot(space)
        lb.record_queries(3)
        running = lb.start("--parallel", "4")
        space.wait_for(lambda log: len(log) >= 3, 30)
        running.kill(signal.SIGTERM)
        # The signal is taken when it interrupts the wait for answers: wait for the line.
        _wait_text(self, lambda: _read(running), _STOPPING, running.proc)
        space.release()
        res = running.wait()
        self.assertEqual(res.code, 0, repr(res))   # everything was sent after all
        self.assertEqual(res.outcome, "stopped", repr(res))
        self.assertEqual({e["state"] for e in lb.events()}, {"sent"})
        self.assertEqual(len(space.requests()), 3)

    def test_bad_stop_timeouts_are_refused(self):
        lb = self.langbot(url="")
        for bad in ("-1", "301", "1.5", "x", ""):
            res = lb.run("--stop-timeout", bad)
            self.assertEqual(res.code, 78, repr(res))
            self.assertIn("--stop-timeout must be a number from 0 to 300", res.err)


def _read(running) -> str:
    """What a Running uploader wrote to stderr so far (pread: the child shares the file's
    offset, which a seek would move under it)."""
    return os.pread(running._err.fileno(), 1 << 20, 0).decode("utf-8", "replace")


if __name__ == "__main__":
    unittest.main()
