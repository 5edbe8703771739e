"""End-to-end: data/config.yaml rewritten in place while a run is sending (LangBot
rewrites it on every settings change; editors and config-management tools rewrite files
too).  A rewrite that leaves the settings the run sends with as they were aborts nothing:
every event reaches Space exactly once.  Other Space settings: nothing more goes to the
old endpoint, and the requests already in flight finish there instead of being sent
again.  (An opt-out appearing mid-run: test_optout.OptOutMidRun.)"""

import collections
import threading
import unittest

from harness import EXIT_OK, EXIT_TEMPFAIL, E2E, TELEMETRY

EVENTS = 30
REWRITES = 10


class Rewriter(threading.Thread):
    """Rewrites the config in place, as LangBot does (open for writing, which truncates,
    then write): for a moment the file is empty or partial.  Cycles through texts, one
    rewrite every 10-50 ms, until stop()."""

    def __init__(self, path: str, texts: list):
        super().__init__(daemon=True)
        self.path, self.texts = path, texts
        self.done = threading.Event()
        self.enough = threading.Event()  # REWRITES done
        self.count = 0

    def run(self) -> None:
        while not self.done.is_set():
            text = self.texts[self.count % len(self.texts)]
            with open(self.path, "w", encoding="utf-8") as f:
                f.write(text[: len(text) // 2])
                f.flush()
                f.write(text[len(text) // 2:])
            self.count += 1
            if self.count >= REWRITES:
                self.enough.set()
            # Paces the rewrites (10-50 ms apart); nothing waits on it.
            self.done.wait(0.01 + 0.01 * (self.count % 5))

    def stop(self) -> None:
        self.done.set()
        self.join(10)


class ConfigRewrittenMidRun(E2E):

    def config_text(self, url: str, port: int = 5300) -> str:
        return ("# LangBot configuration (e2e test)\nadmins: []\n"
                f"api:\n  port: {port}\n"
                f"space:\n  url: '{url}'\n  disable_telemetry: false\n"
                "system:\n  instance_id: ''\nplugin:\n  enable: true\n")

    def run_while_rewriting(self, texts_for):
        """Starts a run of EVENTS events (batches of 5), holds Space's answers to the
        first requests until the config has been rewritten REWRITES times with
        texts_for(space) (so those rewrites happen while requests are in flight), then
        lets Space answer while the rewrites go on until the run ends.  Returns (lb,
        space, result, rewrites)."""
        space = self.space({"rules": [{"path": TELEMETRY, "action": "hold"}]})
        lb = self.langbot(space)
        lb.record_queries(EVENTS)
        run = lb.start("--batch", "5", "--parallel", "2")
        rw = Rewriter(lb.config_path, texts_for(space))
        try:
            space.wait_for_count(1, timeout=20)
            rw.start()
            self.assertTrue(rw.enough.wait(30), "the config was not rewritten")
        finally:
            space.release()
            r = run.wait()
            rw.stop()
        return lb, space, r, rw.count

    def assert_each_once(self, lb, space, r):
        keys = collections.Counter(q["idempotency_key"] for q in space.requests(TELEMETRY))
        twice = {k: n for k, n in keys.items() if n > 1}
        self.assertEqual(twice, {}, f"Idempotency-Key sent more than once; {r!r}")
        self.assertEqual(set(keys), {ev["event_id"] for ev in lb.events()})
        self.assertTrue(all(ev["state"] == "sent" for ev in lb.events()), lb.events())
        self.assertNotIn("abandoned", r.err)

    def assert_nothing_aborted(self, texts_for):
        """A run while the config is rewritten with texts_for(space), each sending the
        way the first does: it ends ok, every event sent exactly once."""
        lb, space, r, n = self.run_while_rewriting(texts_for)
        self.assertGreaterEqual(n, REWRITES)
        self.assertExit(r, EXIT_OK)
        self.assertEqual(self.assertOutcome(lb, "ok", r)["sent"], EVENTS)
        self.assert_each_once(lb, space, r)

    def test_same_content(self):
        self.assert_nothing_aborted(lambda space: [self.config_text(space.url)])

    def test_unrelated_key_changes(self):
        """LangBot's own settings change (api.port here), Space's stay the same."""
        self.assert_nothing_aborted(
            lambda space: [self.config_text(space.url, 5300 + i) for i in range(3)])

    def test_url_changes(self):
        """Another space.url mid-run: nothing more goes to the old Space and nothing to the
        new one during this run; the requests in flight finish (their rows are sent, not
        sent again); the next run sends the rest to the new Space.  Across both, every
        event once."""
        new = self.space()
        space = self.space({"rules": [{"path": TELEMETRY, "delay_ms": 300}]})
        lb = self.langbot(space)
        lb.record_queries(EVENTS)
        run = lb.start("--batch", "5", "--parallel", "2")
        try:
            space.wait_for_count(2, timeout=20)
            lb.write_config(url=new.url)
        finally:
            r = run.wait()
        self.assertExit(r, EXIT_TEMPFAIL)
        self.assertOutcome(lb, "config_changed", r)
        self.assertNotIn("abandoned", r.err)
        self.assertEqual(new.requests(), [])
        old_keys = [q["idempotency_key"] for q in space.requests(TELEMETRY)]
        self.assertLess(len(old_keys), EVENTS)
        sent = {ev["event_id"] for ev in lb.events() if ev["state"] == "sent"}
        self.assertEqual(sent, set(old_keys), "a request in flight was not finished")

        r2 = lb.run()
        self.assertExit(r2, EXIT_OK)
        new_keys = [q["idempotency_key"] for q in new.requests(TELEMETRY)]
        both = collections.Counter(old_keys + new_keys)
        self.assertEqual({k: n for k, n in both.items() if n > 1}, {})
        self.assertEqual(set(both), {ev["event_id"] for ev in lb.events()})


if __name__ == "__main__":
    unittest.main()
