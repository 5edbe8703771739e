"""Reliability: network faults against the fake Space (and raw sockets where it cannot).

Each fault ends in its documented outcome (README's answer table, drain.c), the run respects
its time bounds (--max-seconds; 5 s connect, 10 s per request), and nothing is lost: every
event is still there, pending or sent (or dead where the policy says so, counted in drops).
"""

import email.utils
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import unittest

from relutil import (BACKOFF_BASE_MS, EXIT_OK, EXIT_TEMPFAIL, REQUEST_TIMEOUT_S,
                     RETRY_AFTER_MAX_MS, TELEMETRY, FakeSpace, Workdir, iso_ms, now_ms,
                     refused_port, summary)

N = 4           # events per scenario: exactly the first batch of a run (--parallel 4)
SLACK_S = 3.0   # on top of a documented bound (a loaded 2-core machine)


class RawServer:
    """A TCP server on 127.0.0.1 that reads each request and answers with fixed bytes (or
    nothing), for answers the fake Space cannot produce."""

    def __init__(self, answer: bytes | None, close: bool = True):
        self.answer, self.close = answer, close
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self.conns = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        try:
            while True:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                while len(body) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    body += chunk
                with self.lock:
                    self.requests += 1
                if self.answer is None:
                    continue            # never answer
                conn.sendall(self.answer)
                if self.close:
                    conn.shutdown(socket.SHUT_RDWR)
                    return
        except OSError:
            return
        finally:
            if self.close and self.answer is not None:
                conn.close()

    def stop(self):
        # shutdown() first: it wakes the accept() thread, which a bare close()
        # leaves blocked on a descriptor number the next socket may reuse.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def ok_response(status=200, reason="OK", headers=(), body=b'{"code": 0, "msg": "ok", "data": {}}'):
    lines = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Net(unittest.TestCase):
    maxDiff = None

    def space(self, behaviour=None, **kw) -> FakeSpace:
        fs = FakeSpace(behaviour=behaviour, **kw).start()
        self.addCleanup(fs.stop)
        return fs

    def workdir(self, url) -> Workdir:
        wd = Workdir(self, url=url)
        wd.record(N)
        return wd

    def assertNothingLost(self, wd, fault, states=("pending", "sent"), tried=N):
        events = wd.events()
        lost = N - len(events) + sum(ev["state"] not in states for ev in events)
        summary(fault, tried, lost)
        self.assertEqual(len(events), N, "events disappeared")
        self.assertEqual([ev for ev in events if ev["state"] not in states], [])
        self.assertTrue(all(ev["lease_until"] is None for ev in events),
                        "a finished run left rows claimed")
        return events

    def assertRetried(self, wd, res, fault, *words, code=EXIT_TEMPFAIL, outcome="server_down"):
        self.assertEqual(res.code, code, repr(res))
        self.assertEqual(res.outcome, outcome, repr(res))
        events = self.assertNothingLost(wd, fault, states=("pending",))
        now = now_ms()
        for ev in events:
            self.assertEqual(ev["attempts"], 1, ev)
            self.assertGreater(iso_ms(ev["next_attempt_at"]), now, "no backoff scheduled")
            for w in words:
                self.assertRegex(ev["last_error"].lower(), w, ev)
        return events

    # -- connection-level failures

    def test_connection_refused(self):
        sock, port = refused_port()
        self.addCleanup(sock.close)
        wd = self.workdir(f"http://127.0.0.1:{port}")
        res = wd.run()
        self.assertLess(res.elapsed, 5 + SLACK_S)
        self.assertRetried(wd, res, "connection refused", "connect")
        self.assertIn("down_until", wd.state())

    def test_dns_failure(self):
        wd = self.workdir("http://telespool-reliability.invalid")
        res = wd.run()
        self.assertLess(res.elapsed, 5 + SLACK_S, "a name lookup is bounded by the "
                                                  "connect timeout")
        self.assertRetried(wd, res, "DNS failure (.invalid host)", "resolv|timed out")

    def test_accepts_then_closes_without_answer(self):
        raw = RawServer(b"")
        self.addCleanup(raw.stop)
        wd = self.workdir(raw.url)
        res = wd.run()
        self.assertRetried(wd, res, "connection closed before any answer", "connect|protocol|nothing|empty")

    def test_garbage_instead_of_http(self):
        raw = RawServer(b"SSH-2.0-OpenSSH_9.2\r\nthis is not HTTP at all\r\n" * 20)
        self.addCleanup(raw.stop)
        wd = self.workdir(raw.url)
        res = wd.run()
        self.assertRetried(wd, res, "garbage instead of an HTTP answer", "protocol|connect")

    def test_tls_self_signed_refused_then_trusted_with_cacert(self):
        if shutil.which("openssl") is None:
            self.skipTest("openssl is not installed")
        d = tempfile.mkdtemp(prefix="telespool-rel-tls-")
        self.addCleanup(shutil.rmtree, d, True)
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-days", "1", "-subj", "/CN=127.0.0.1",
                            "-addext", "subjectAltName=IP:127.0.0.1",
                            "-keyout", key, "-out", cert], capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        space = self.space(tls_cert=cert, tls_key=key)
        wd = self.workdir(space.url)
        res = wd.run()
        self.assertEqual(space.requests(), [], "a request went over an unverified TLS link")
        self.assertEqual(res.code, EXIT_TEMPFAIL, repr(res))
        for ev in wd.events():
            self.assertEqual((ev["state"], ev["attempts"]), ("pending", 1))
            self.assertRegex(ev["last_error"], "TLS|certificate")
        res = wd.run("--cacert", cert, "--ignore-backoff")
        self.assertEqual(res.code, EXIT_OK, repr(res))
        self.assertEqual(len(space.requests(TELEMETRY)), N)
        self.assertNothingLost(wd, "TLS: self-signed certificate refused, then --cacert",
                               states=("sent",), tried=2)

    # -- slow, stalled, cut-off answers

    def test_stall_respects_max_seconds(self):
        """--max-seconds 3 ends the run at 3 s although a request may take 10 s: the batch
        deadline is min(run deadline, lease).  The rows are released, not charged an
        attempt, and the run says why it stopped."""
        space = self.space({"rules": [{"path": TELEMETRY, "action": "stall"}]})
        wd = self.workdir(space.url)
        res = wd.run("--max-seconds", "3")
        self.assertEqual(len(space.requests()), N)
        self.assertLess(res.elapsed, 3 + SLACK_S, repr(res))
        self.assertGreaterEqual(res.elapsed, 2.9, repr(res))
        events = self.assertNothingLost(wd, "stalled server with --max-seconds 3",
                                        states=("pending",))
        self.assertTrue(all(ev["attempts"] == 0 for ev in events), events)
        self.assertEqual(res.code, EXIT_TEMPFAIL, "rows given back unsent wait for a later "
                                                  f"run: {res!r}")
        self.assertEqual(res.outcome, "time_limit",
                         f"the run was cut by --max-seconds with {N} events left: {res!r}")

    def test_request_timeouts(self):
        """Three servers that never finish an answer, run side by side (each costs the 10 s
        request timeout): a stall, a byte every 2 s (below the 1 B/s floor), a 101."""
        cases = {
            "stall": {"rules": [{"path": TELEMETRY, "action": "stall"}]},
            "too slow": {"rules": [{"path": TELEMETRY, "byte_delay_ms": 2000}]},
            "101 without switching": {"rules": [{"path": TELEMETRY, "status": 101}]},
        }
        runs = {}
        for name, behaviour in cases.items():
            space = self.space(behaviour)
            wd = self.workdir(space.url)
            runs[name] = (wd, wd.start())
        for name, (wd, run) in runs.items():
            res = run.wait(timeout=REQUEST_TIMEOUT_S + 30)
            with self.subTest(name):
                self.assertLess(res.elapsed, REQUEST_TIMEOUT_S + 5 + SLACK_S, repr(res))
                self.assertRetried(wd, res, f"request timeout ({name})", "timed out")

    def test_slow_answer_within_timeouts_is_sent(self):
        space = self.space({"rules": [{"path": TELEMETRY, "byte_delay_ms": 3}]})
        wd = self.workdir(space.url)
        res = wd.run()
        self.assertEqual(res.code, EXIT_OK, repr(res))
        self.assertNothingLost(wd, "slow answer, byte by byte (3 ms/byte)", states=("sent",))

    def test_reset_mid_response(self):
        for after in (0, 12, 60):
            with self.subTest(after_bytes=after):
                space = self.space({"rules": [{"path": TELEMETRY, "action": "reset",
                                               "after_bytes": after}]})
                wd = self.workdir(space.url)
                res = wd.run()
                self.assertRetried(wd, res, f"connection reset after {after} bytes",
                                   "reset|connect|protocol")

    def test_huge_response_body(self):
        for status, state in ((200, "sent"), (503, "pending")):
            with self.subTest(status=status):
                space = self.space({"rules": [{"path": TELEMETRY, "status": status,
                                               "body_size": 10_000_000}]})
                wd = self.workdir(space.url)
                res = wd.run()
                self.assertLess(res.elapsed, REQUEST_TIMEOUT_S, repr(res))
                events = self.assertNothingLost(wd, f"10 MB response body (HTTP {status})",
                                                states=(state,))
                if status == 503:
                    self.assertTrue(all(ev["last_error"] == "HTTP 503" for ev in events),
                                    "the status of a huge answer is kept")

    def test_huge_2xx_error_envelope_is_not_taken_for_success(self):
        """A 2xx whose JSON envelope says code 500 (retry) or 422 (refused) must not count
        as delivered just because the body is longer than the 64 KiB kept: Space said the
        event was not taken, so marking it sent loses it.  (Every request gets the 422, so
        the events are kept: a refusal of everything is about the endpoint.)"""
        for code, state in ((500, "pending"), (422, "pending")):
            with self.subTest(code=code):
                space = self.space({"rules": [{"path": TELEMETRY, "status": 200, "code": code,
                                               "body_size": 200_000}]})
                wd = self.workdir(space.url)
                wd.run()
                events = wd.events()
                lost = sum(ev["state"] == "sent" for ev in events)
                summary(f"200 with code {code} in a 200 kB body", N, lost)
                self.assertEqual([ev["state"] for ev in events], [state] * N,
                                 "an event Space refused was marked sent")

    # -- an endpoint that refuses everything

    def test_a_refusal_every_request_gets_keeps_the_backlog(self):
        """Issue 13, item 1: a wrong path in space.url (404, 405, 410) or an auth outage
        (401, 403) used to turn a whole backlog dead in one run.  Now: at most the first
        batch is tried, nothing becomes dead, the run exits 75 naming the answer, the next
        run sends one probe, and once Space accepts again everything is delivered."""
        backlog, tried, lost = 1000, 0, 0
        for status in (401, 403, 404, 405, 410):
            with self.subTest(status=status):
                space = self.space({"rules": [{"status": status}]})
                wd = Workdir(self, url=space.url)
                wd.record(backlog)
                res = wd.run()
                self.assertEqual(res.code, EXIT_TEMPFAIL, repr(res))
                self.assertEqual(res.outcome, "refused", repr(res))
                self.assertIn(f"HTTP {status}", res.err)
                self.assertLessEqual(len(space.requests()), N)
                res = wd.run()
                self.assertEqual(res.code, EXIT_TEMPFAIL, repr(res))
                self.assertLessEqual(len(space.requests()), N + 1, "one probe only")
                states = [ev["state"] for ev in wd.events()]
                self.assertEqual(states, ["pending"] * backlog)
                self.assertEqual(wd.drops(), {})
                # Fixed (the token renewed, the URL corrected): all of it goes.
                space.set_behaviour({})
                res = wd.run("--ignore-backoff")
                self.assertEqual(res.code, EXIT_OK, repr(res))
                events = wd.events()
                tried += 1
                lost += backlog - sum(ev["state"] == "sent" for ev in events)
        summary(f"Space refusing every request (401/403/404/405/410), "
                f"a backlog of {backlog}", tried, lost)
        self.assertEqual(lost, 0)

    # -- odd statuses

    def test_redirects_are_not_followed(self):
        """policy.h: redirects are not followed; a 3xx final answer says that space.url (or a
        proxy) is wrong, not the event: TSU_RETRY.  (README's table still says dead.)"""
        target = self.space()
        for status in (301, 302, 303, 307, 308):
            with self.subTest(status=status):
                space = self.space({"rules": [{"path": TELEMETRY, "status": status,
                                               "location": target.url + TELEMETRY}]})
                wd = self.workdir(space.url)
                res = wd.run()
                self.assertEqual(len(space.requests()), N)
                self.assertRetried(wd, res, f"redirect {status} (not followed, retried)",
                                   f"http {status}", "redirect")
        self.assertEqual(target.requests(), [], "a redirect was followed")

    def test_1xx_and_3xx_oddities(self):
        cases = [  # (label, fake Space behaviour or raw answer, expected state, last_error)
            ("100 as the final answer", {"rules": [{"path": TELEMETRY, "status": 100}]},
             "pending", "protocol"),
            ("199 as the final answer", {"rules": [{"path": TELEMETRY, "status": 199}]},
             "pending", "protocol"),
            ("300 Multiple Choices", {"rules": [{"path": TELEMETRY, "status": 300}]},
             "pending", "HTTP 300"),
            ("304 Not Modified", {"rules": [{"path": TELEMETRY, "status": 304}]},
             "pending", "HTTP 304"),
            ("100 Continue, then 200",
             b"HTTP/1.1 100 Continue\r\n\r\n" + ok_response(), "sent", None),
            # A 103 carries a Retry-After that the final 200 does not: it must be forgotten.
            ("103 with Retry-After, then 200",
             b"HTTP/1.1 103 Early Hints\r\nRetry-After: 86400\r\n\r\n" + ok_response(),
             "sent", None),
        ]
        for label, spec, state, pattern in cases:
            with self.subTest(label):
                if isinstance(spec, dict):
                    url = self.space(spec).url
                else:
                    raw = RawServer(spec)
                    self.addCleanup(raw.stop)
                    url = raw.url
                wd = self.workdir(url)
                res = wd.run()
                self.assertLess(res.elapsed, REQUEST_TIMEOUT_S, repr(res))
                events = self.assertNothingLost(wd, f"{label} -> {state}", states=(state,))
                if pattern:
                    self.assertTrue(all(pattern.lower() in ev["last_error"].lower()
                                        for ev in events), events)
                if state == "sent":
                    self.assertEqual(res.code, EXIT_OK, repr(res))
                    self.assertNotIn("retry_after_until", wd.state())

    def test_interim_retry_after_is_not_kept_for_the_final_answer(self):
        """100 Continue with Retry-After: 5, then a 503 without: the final answer carries no
        Retry-After, so there is no run-wide wait from the interim one."""
        raw = RawServer(b"HTTP/1.1 100 Continue\r\nRetry-After: 5\r\n\r\n"
                        + ok_response(503, "Service Unavailable"))
        self.addCleanup(raw.stop)
        wd = self.workdir(raw.url)
        res = wd.run()
        self.assertEqual(res.code, EXIT_TEMPFAIL, repr(res))
        self.assertNotEqual(res.outcome, "throttled", repr(res))
        self.assertNotIn("retry_after_until", wd.state())
        self.assertNothingLost(wd, "interim 1xx with Retry-After", states=("pending",))

    # -- Retry-After

    def retry_after(self, value, status=503):
        space = self.space({"rules": [{"path": TELEMETRY, "status": status,
                                       "retry_after": value}]})
        wd = self.workdir(space.url)
        t0 = now_ms()
        res = wd.run()
        t1 = now_ms()
        self.assertEqual(res.code, EXIT_TEMPFAIL, repr(res))
        self.assertEqual(res.outcome, "throttled", repr(res))
        until = int(wd.state()["retry_after_until"])
        events = wd.events()
        # The next run sends nothing: the wait is run-wide and persisted.
        again = wd.run()
        self.assertEqual(again.code, EXIT_OK, repr(again))
        self.assertEqual(again.outcome, "throttled", repr(again))
        self.assertEqual(len(space.requests()), N, "a request was sent during the wait")
        return t0, t1, until, events, wd

    def test_retry_after_seconds(self):
        t0, t1, until, events, wd = self.retry_after("120")
        self.assertGreaterEqual(until, t0 + 120_000)
        self.assertLessEqual(until, t1 + 120_000)
        for ev in events:
            self.assertGreaterEqual(iso_ms(ev["next_attempt_at"]), t0 + 120_000,
                                    "Retry-After is a floor for the rows' next attempt")
        self.assertNothingLost(wd, "Retry-After: 120 (seconds)", states=("pending",), tried=2)

    def test_retry_after_http_date(self):
        when = (now_ms() // 1000 + 300)
        value = email.utils.formatdate(when, usegmt=True)
        t0, t1, until, events, wd = self.retry_after(value, status=429)
        self.assertGreaterEqual(until, when * 1000 - 1000)
        self.assertLessEqual(until, when * 1000 + 1000)
        for ev in events:
            self.assertGreaterEqual(iso_ms(ev["next_attempt_at"]), when * 1000 - 1000)
        self.assertNothingLost(wd, "Retry-After as an HTTP date", states=("pending",), tried=2)

    def test_retry_after_garbage_is_ignored(self):
        """A Retry-After that is not seconds or a date is ignored: a 503 is then a plain
        retryable failure (no run-wide wait), a 429 throttles for the default 30 s."""
        for value in ("soon", "-5", "12.5", "Thu, 99 Foo 2024 25:61:61 GMT", " "):
            for status in (503, 429):
                with self.subTest(value=value, status=status):
                    space = self.space({"rules": [{"path": TELEMETRY, "status": status,
                                                   "retry_after": value}]})
                    wd = self.workdir(space.url)
                    t0 = now_ms()
                    res = wd.run()
                    t1 = now_ms()
                    self.assertEqual(res.code, EXIT_TEMPFAIL, repr(res))
                    state = wd.state()
                    if status == 503:
                        self.assertEqual(res.outcome, "server_down", repr(res))
                        self.assertNotIn("retry_after_until", state)
                    else:
                        self.assertEqual(res.outcome, "throttled", repr(res))
                        until = int(state["retry_after_until"])
                        self.assertGreaterEqual(until, t0 + BACKOFF_BASE_MS)
                        self.assertLessEqual(until, t1 + BACKOFF_BASE_MS)
                    for ev in wd.events():
                        self.assertLessEqual(iso_ms(ev["next_attempt_at"]),
                                             t1 + BACKOFF_BASE_MS)
                    self.assertNothingLost(wd, f"Retry-After garbage {value!r} (HTTP {status})",
                                           states=("pending",))

    def test_retry_after_enormous_is_clamped_to_24h(self):
        for value in ("99999999999999999999999999", "31536000",
                      "Fri, 31 Dec 9999 23:59:59 GMT"):
            with self.subTest(value=value):
                t0, t1, until, events, wd = self.retry_after(value)
                self.assertGreaterEqual(until, t0 + RETRY_AFTER_MAX_MS)
                self.assertLessEqual(until, t1 + RETRY_AFTER_MAX_MS)
                for ev in events:
                    self.assertLessEqual(iso_ms(ev["next_attempt_at"]),
                                         t1 + RETRY_AFTER_MAX_MS)
                self.assertNothingLost(wd, f"Retry-After enormous {value!r} (clamped to 24 h)",
                                       states=("pending",), tried=2)


if __name__ == "__main__":
    unittest.main()
