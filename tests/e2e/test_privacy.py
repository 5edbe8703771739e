"""End-to-end privacy: LangBot-like tracebacks carrying known secrets (the corpus in
tests/corpus/tracebacks) are recorded through the Python binding and uploaded to the fake
Space.  None of the secrets may be in the raw bytes of the database or its WAL, nor in any
request Space received; the frames and exception types must still be there.  Random dirty
input must always give a valid JSON body under the 64 KiB cap."""

import json
import os
import random
import unittest

from harness import EXIT_OK, E2E, TELEMETRY

CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "corpus", "tracebacks")
BODY_MAX = 64 * 1024


def corpus():
    """(name, traceback, secrets, keep, strict_secrets) for each corpus entry."""
    out = []
    for name in sorted(os.listdir(CORPUS)):
        if not name.endswith(".txt"):
            continue
        stem = os.path.join(CORPUS, name[:-4])

        def lines(ext):
            try:
                with open(stem + ext, encoding="utf-8") as f:
                    return [line.rstrip("\n") for line in f if line.strip()]
            except FileNotFoundError:
                return []

        with open(stem + ".txt", encoding="utf-8") as f:
            text = f.read()
        out.append((name[:-4], text, lines(".secrets"), lines(".keep"),
                    lines(".strict-secrets")))
    return out


class Privacy(E2E):

    def test_corpus_secrets_never_stored_nor_sent(self):
        entries = corpus()
        self.assertGreaterEqual(len(entries), 8, "the traceback corpus is missing")
        space = self.space()
        lb = self.langbot(space)
        with lb.spool() as sp:
            for i, (name, text, _, _, _) in enumerate(entries):
                sp.record_query(query_id=f"priv-{i}", adapter="AiocqhttpAdapter",
                                runner="local-agent", model_name="gpt-4o", duration_ms=5,
                                pipeline_plugins=["hello"], error=text)
        raw = lb.spool_bytes()          # database + WAL, before anything is sent
        r = lb.run()
        self.assertExit(r, EXIT_OK)
        requests = space.requests(TELEMETRY)
        self.assertEqual(len(requests), len(entries))
        wire = "\n".join(req["body"] for req in requests)
        errors = {json.loads(req["body"])["query_id"]: json.loads(req["body"])["error"]
                  for req in requests}
        for i, (name, _, secrets, keep, _) in enumerate(entries):
            for secret in secrets:
                with self.subTest(entry=name, secret=secret):
                    self.assertNotIn(secret.encode(), raw, "stored on disk")
                    self.assertNotIn(secret, wire, "sent to Space")
                    self.assertNotIn(secret, errors[f"priv-{i}"], "sent to Space")
            for k in keep:
                with self.subTest(entry=name, keep=k):
                    self.assertIn(k, errors[f"priv-{i}"],
                                  "a useful part of the traceback was lost")

    def test_strict_mode_drops_exception_messages(self):
        entries = [e for e in corpus() if e[4]]
        self.assertTrue(entries, "no strict-secrets in the corpus")
        space = self.space()
        lb = self.langbot(space)
        with lb.spool(strict_errors=True) as sp:
            for i, (_, text, _, _, _) in enumerate(entries):
                sp.record_query(query_id=f"strict-{i}", error=text)
        raw = lb.spool_bytes()
        self.assertExit(lb.run(), EXIT_OK)
        sent = "\n".join(json.loads(req["body"])["error"]
                         for req in space.requests(TELEMETRY))
        self.assertIn("Traceback (most recent call last):", sent)
        for name, _, secrets, _, strict in entries:
            for secret in secrets + strict:
                with self.subTest(entry=name, secret=secret):
                    self.assertNotIn(secret.encode(), raw)
                    self.assertNotIn(secret, sent)

    def test_random_dirty_input_gives_valid_bodies_under_the_cap(self):
        rng = random.Random(20261124)
        pieces = ["sk-proj-" + "A1b2" * 10, "alice@example.com", "\x00", "\ud800", "\udfff",
                  "+86 138 0013 8000", "192.168.1.20:8080", "/home/bob/x.py", "é", "𝄞",
                  "\x1b[31m", "\r\n", "\t", '"', "\\", "{", "}", "Traceback", "\n" * 50]
        lb = self.langbot(None)
        with lb.spool() as sp:
            for i in range(300):
                def junk(n):
                    # Secrets appear as they do in real text: between separators
                    # (glued to other letters no pattern can tell them apart).
                    return "".join(" " + rng.choice(pieces) + " " if rng.random() < 0.3
                                   else chr(rng.randrange(1, 0x3000)) for _ in range(n))
                size = rng.choice([0, 10, 200, 5000, 70000, 200000])
                sp.record_query(query_id=junk(rng.randrange(0, 300)),
                                adapter=junk(rng.randrange(0, 300)),
                                runner=junk(20), model_name=junk(rng.randrange(0, 500)),
                                duration_ms=rng.choice([-5, 0, 10 ** 15, 812]),
                                pipeline_plugins=[junk(30) for _ in range(rng.randrange(0, 100))],
                                error=junk(size))
                if i % 10 == 0:
                    sp.record_heartbeat(features={junk(10): junk(rng.randrange(0, 9000))
                                                  for _ in range(rng.randrange(0, 400))})
        for ev in lb.events():
            body = ev["body"]
            self.assertLessEqual(len(body.encode("utf-8")), BODY_MAX)
            obj = json.loads(body)
            self.assertIsInstance(obj, dict)
            if ev["event_type"] == "query":
                self.assertLessEqual(len(obj["pipeline_plugins"]), 64)
                for key in ("query_id", "adapter", "runner", "model_name"):
                    self.assertLessEqual(len(obj[key].encode("utf-8")), 128)
                    self.assertFalse(any(ord(c) < 32 for c in obj[key]), obj[key])
                self.assertGreaterEqual(obj["duration_ms"], 0)
            self.assertNotIn("A1b2A1b2A1b2", body)
            self.assertNotIn("alice@example.com", body)


if __name__ == "__main__":
    unittest.main()
