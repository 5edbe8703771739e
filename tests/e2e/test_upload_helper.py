"""telespool.upload: LangBot running the uploader from its own event loop.

The helper runs the real telespool-upload (TELESPOOL_UPLOAD) against the fake Space from an
asyncio loop, while a ticker measures the loop's longest stall; it bounds a run that hangs,
stops the child when its task is cancelled, never raises, and runs periodically.
"""

from __future__ import annotations

import asyncio
import os
import time

from harness import E2E, TELEMETRY, UPLOAD

from telespool import upload


async def _ticker(stalls: list, stop: asyncio.Event) -> None:
    """Wakes every 10 ms; appends each gap between wake-ups beyond the sleep."""
    last = time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(0.01)
        now = time.monotonic()
        stalls.append(now - last - 0.01)
        last = now


async def _measured(coro):
    """Runs coro while the ticker runs; returns (its result, the longest stall in s)."""
    stalls, stop = [], asyncio.Event()
    ticker = asyncio.ensure_future(_ticker(stalls, stop))
    try:
        result = await coro
    finally:
        stop.set()
        await ticker
    return result, max(stalls, default=0.0)


class TestUploadHelper(E2E):

    def test_a_slow_run_never_stalls_the_loop(self):
        space = self.space({"rules": [{"path": TELEMETRY, "delay_ms": 1500}]})
        lb = self.langbot(space)
        lb.record_queries(3)
        result, stall = asyncio.run(_measured(
            upload.upload_once(cwd=lb.root, program=UPLOAD, max_seconds=60)))
        self.assertEqual((result.outcome, result.exit_code, result.sent, result.pending),
                         ("ok", 0, 3, 0), result)
        self.assertTrue(result.ok)
        self.assertGreaterEqual(result.seconds, 1.0, result)     # the child really took a while
        # A generous bound: it catches a blocking call (subprocess.run, a blocking wait), not
        # scheduling noise.
        self.assertLess(stall, 0.5, f"the event loop stalled {stall:.3f} s")
        self.assertEqual({e["state"] for e in lb.events()}, {"sent"})
        self.assertIn("ok: sent 3", str(result))

    def test_a_hanging_run_is_stopped_at_the_timeout(self):
        space = self.space({"rules": [{"path": TELEMETRY, "action": "stall"}]})
        lb = self.langbot(space)
        lb.record_queries(2)
        t0 = time.monotonic()
        result, stall = asyncio.run(_measured(
            upload.upload_once(cwd=lb.root, program=UPLOAD, max_seconds=60, timeout=1.0)))
        self.assertEqual(result.outcome, "timeout", result)
        self.assertIn("interrupted", result.detail)
        self.assertLess(time.monotonic() - t0, 1.0 + 5.0 + 10.0)   # timeout + SIGKILL grace
        self.assertLess(stall, 0.5)
        # Nothing lost: the events wait for the next run.
        self.assertEqual({e["state"] for e in lb.events()}, {"pending"})
        space.set_behaviour({})
        again = asyncio.run(upload.upload_once(cwd=lb.root, program=UPLOAD))
        self.assertEqual((again.outcome, again.sent), ("ok", 2), again)

    def test_a_run_whose_descendant_holds_the_pipes_still_ends(self):
        # A wrapper (TELESPOOL_UPLOAD may name any program) whose child outlives it with
        # stdout and stderr open: the pipes never reach end-of-file until that child dies.
        lb = self.langbot(url="")
        wrapper = os.path.join(lb.root, "wrapper.sh")
        with open(wrapper, "w") as f:
            f.write('#!/bin/sh\ncase "$*" in *--status*) exit 1;; esac\n'
                    'sleep 600 &\nexec sleep 600\n')
        os.chmod(wrapper, 0o755)
        t0 = time.monotonic()
        result = asyncio.run(asyncio.wait_for(
            upload.upload_once(cwd=lb.root, program=wrapper, timeout=0.5), 120))
        self.assertEqual((result.outcome, result.exit_code), ("timeout", None), result)
        self.assertLess(time.monotonic() - t0, 0.5 + 5.0 + 5.0 + 30.0)

    def test_cancelling_stops_the_child(self):
        space = self.space({"rules": [{"path": TELEMETRY, "action": "stall"}]})
        lb = self.langbot(space)
        lb.record_queries(2)

        async def scenario():
            task = asyncio.ensure_future(upload.upload_once(cwd=lb.root, program=UPLOAD))
            await asyncio.get_running_loop().run_in_executor(
                None, space.wait_for, lambda log: len(log) >= 1, 30)
            task.cancel()
            with self.assertRaises(asyncio.CancelledError):
                await task

        asyncio.run(scenario())
        # The child was stopped and reaped: its run is recorded as ended, its lock released.
        run = lb.runs()[-1]
        self.assertIsNotNone(run["ended_at"], run)
        self.assertEqual(run["outcome"], "interrupted", run)
        space.set_behaviour({})
        res = lb.run()
        self.assertEqual(res.code, 0, repr(res))
        self.assertEqual(res.counts["sent"], 2, repr(res))

    def test_failures_are_results_not_exceptions(self):
        lb = self.langbot(url="")
        lb.record_queries(1)

        async def all_of_them():
            missing = await upload.upload_once(cwd=lb.root, program="/nonexistent/telespool-upload")
            bad_arg = await upload.upload_once(cwd=lb.root, program=UPLOAD, max_seconds=0)
            lb.write_config(raw="space: [broken\n")
            broken = await upload.upload_once(cwd=lb.root, program=UPLOAD)
            no_dir = await upload.upload_once(cwd=lb.root, program=UPLOAD, data_dir="nowhere",
                                              config="data/config.yaml")
            return missing, bad_arg, broken, no_dir

        missing, bad_arg, broken, no_dir = asyncio.run(all_of_them())
        self.assertEqual((missing.outcome, missing.exit_code), ("not_started", None), missing)
        self.assertEqual(bad_arg.outcome, "failed", bad_arg)
        self.assertIn("max_seconds", bad_arg.detail)
        self.assertEqual((broken.outcome, broken.exit_code), ("config_error", 78), broken)
        self.assertIn("config.yaml", broken.detail)     # the reason, not only "exit 78"
        self.assertFalse(broken.ok)
        self.assertEqual(no_dir.exit_code, 78, no_dir)

    def test_a_run_that_records_nothing_is_not_given_the_previous_runs_outcome(self):
        space = self.space()
        lb = self.langbot(space)
        lb.record_queries(1)

        async def back_to_back():
            first = await upload.upload_once(cwd=lb.root, program=UPLOAD)
            # Exits 78 before it records a run; the previous run is the newest one recorded.
            bad = await upload.upload_once(cwd=lb.root, program=UPLOAD, extra_args=["--bogus"])
            return first, bad

        first, bad = asyncio.run(back_to_back())
        self.assertEqual((first.outcome, first.sent), ("ok", 1), first)
        self.assertEqual((bad.outcome, bad.exit_code, bad.sent), ("config_error", 78, 0), bad)
        self.assertIn("--bogus", bad.detail)

    def test_run_periodically_until_cancelled(self):
        space = self.space()
        lb = self.langbot(space)
        results = []

        async def scenario():
            three = asyncio.Event()

            async def on_result(r):
                results.append(r)
                lb.record_queries(1, prefix=f"p{len(results)}")
                if len(results) >= 3:
                    three.set()

            task = upload.start_periodic(0.2, first_delay=0, on_result=on_result, cwd=lb.root,
                                         program=UPLOAD)
            await asyncio.wait_for(three.wait(), 60)
            task.cancel()
            with self.assertRaises(asyncio.CancelledError):
                await task

        asyncio.run(scenario())
        self.assertGreaterEqual(len(results), 3)
        self.assertTrue(all(r.exit_code == 0 for r in results), results)
        # Each run after the first sent the event recorded after the previous one.
        self.assertEqual([r.sent for r in results[1:3]], [1, 1], results)
        with self.assertRaises(ValueError):
            asyncio.run(upload.run_periodically(0))
