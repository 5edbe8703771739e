"""End-to-end: the uploader drains a spool that LangBot keeps at its bounds.

While writers record flat out into a spool at max_bytes, every record call
evicts the oldest rows -- exactly the rows a claim picks.  A claim that
loses that race must look again, not report "nothing due"."""

import threading

from harness import E2E, EXIT_TEMPFAIL, EXIT_OK, TELEMETRY

LIMIT = 4 * 1024 * 1024


class AtBounds(E2E):

    def test_drains_while_writers_evict_the_oldest_rows(self):
        space = self.space()
        lb = self.langbot(space)
        with lb.spool(max_bytes=LIMIT) as sp:
            for i in range(3000):
                sp.record_query(query_id=f"backlog-{i}", error="x" * 1000)
        stop = threading.Event()

        def writer():
            with lb.spool(max_bytes=LIMIT) as s:
                while not stop.is_set():
                    s.record_query(query_id="w", error="y" * 1000)

        threads = [threading.Thread(target=writer) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            r = lb.run("--max-seconds", "3")
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertIn(r.code, (EXIT_OK, EXIT_TEMPFAIL), repr(r))
        self.assertNotEqual(r.outcome, "nothing_due", repr(r))
        self.assertGreater(len(space.requests(TELEMETRY)), 100, repr(r))
        self.assertGreater(lb.drops().get("evicted_max_bytes", 0), 0)
