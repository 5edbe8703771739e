"""Tests of the fake LangBot Space (tests/fake_space.py): each behaviour, quickly.

Run from the project root:  python3 -m unittest tests/test_fake_space.py -v
Standard library only; the TLS tests need the openssl command and are skipped without it.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_space import (DISMISS, PENDING, RESPOND, TELEMETRY, FakeSpace,  # noqa: E402
                        FakeSpaceProcess)

EVENT = json.dumps({"event_type": "query", "query_id": "q-1", "adapter": "TelegramAdapter"})
OK = {"code": 0, "msg": "ok", "data": {}}


def post(url: str, path: str, body: str = EVENT, headers: dict | None = None,
         timeout: float = 5.0) -> tuple[int, http.client.HTTPMessage, bytes]:
    """POST body to url+path on a fresh connection; return (status, headers, body bytes)."""
    host_port = url.split("://", 1)[1]
    conn = http.client.HTTPConnection(host_port, timeout=timeout)
    try:
        conn.request("POST", path, body=body,
                     headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def raw_exchange(port: int, path: str = TELEMETRY, body: bytes = b"{}",
                 timeout: float = 5.0) -> tuple[bytes, BaseException | None]:
    """Send one request on a plain socket; return (every byte received, how reading ended)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    received = b""
    try:
        sock.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return received, None
            received += chunk
    except OSError as exc:
        return received, exc
    finally:
        sock.close()


class DefaultAnswers(unittest.TestCase):
    """The protocol as SPACE_PROTOCOL.md describes it, with no rules."""

    def setUp(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.log_path = os.path.join(self.tmp.name, "requests.jsonl")
        surveys = {"first_bot_response_success": {"survey_id": "s1", "title": "How is it?"}}
        self.space = FakeSpace(behaviour={"surveys": surveys}, log_path=self.log_path).start()

    def tearDown(self) -> None:
        self.space.stop()
        self.tmp.cleanup()

    def test_every_endpoint_answers_ok(self) -> None:
        for path in (TELEMETRY, PENDING, RESPOND, DISMISS):
            status, _, body = post(self.space.url, path, "{}")
            self.assertEqual((status, json.loads(body)), (200, OK), path)

    def test_pending_returns_the_configured_survey_only_for_its_event(self) -> None:
        body = json.dumps({"instance_id": "instance_x", "event": "first_bot_response_success"})
        status, _, answer = post(self.space.url, PENDING, body)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(answer), {"code": 0, "msg": "ok", "data": {
            "survey": {"survey_id": "s1", "title": "How is it?"}}})
        body = json.dumps({"instance_id": "instance_x", "event": "bot_response_success_100"})
        self.assertEqual(json.loads(post(self.space.url, PENDING, body)[2]), OK)

    def test_unknown_path_404_and_wrong_method_405(self) -> None:
        self.assertEqual(post(self.space.url, "/api/v1/nope")[0], 404)
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(self.space.url + TELEMETRY, timeout=5)   # a GET
        self.assertEqual(caught.exception.code, 405)
        self.assertEqual(caught.exception.headers["Allow"], "POST")
        self.assertEqual([r["status"] for r in self.space.requests()], [404, 405])

    def test_log_entry_in_memory_and_in_file(self) -> None:
        before = time.time()
        post(self.space.url, TELEMETRY, EVENT,
             {"Idempotency-Key": "5b0c1f9e-0000-4000-8000-000000000001",
              "X-LangBot-Telemetry-Token": "tok"})
        [entry] = self.space.requests()
        self.assertGreaterEqual(entry["t"], before)
        self.assertEqual(entry["method"], "POST")
        self.assertEqual(entry["path"], TELEMETRY)
        self.assertEqual(entry["body"], EVENT)
        self.assertEqual(entry["status"], 200)
        self.assertEqual(entry["idempotency_key"], "5b0c1f9e-0000-4000-8000-000000000001")
        self.assertEqual(entry["headers"]["x-langbot-telemetry-token"], "tok")
        self.assertEqual(entry["headers"]["content-type"], "application/json")
        with open(self.log_path, encoding="utf-8") as f:
            self.assertEqual([json.loads(line) for line in f], [entry])

    def test_keep_alive_reuses_one_connection(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.space.port, timeout=5)
        try:
            for i in range(3):
                conn.request("POST", TELEMETRY, body=EVENT)
                response = conn.getresponse()
                self.assertEqual(response.getheader("Content-Length"),
                                 str(len(json.dumps(OK))))
                self.assertEqual(json.loads(response.read()), OK)
        finally:
            conn.close()
        self.assertEqual(len({r["connection"] for r in self.space.requests()}), 1)
        post(self.space.url, TELEMETRY)
        self.assertEqual(len({r["connection"] for r in self.space.requests()}), 2)

    def test_chunked_request_body_is_read(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.space.port, timeout=5)
        try:
            conn.request("POST", TELEMETRY, body=iter([b'{"a":', b' 1}']),
                         encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
            self.assertEqual(conn.getresponse().status, 200)
        finally:
            conn.close()
        self.assertEqual(self.space.requests()[0]["body"], '{"a": 1}')


class Rules(unittest.TestCase):
    """Each misbehaviour, one test each, against an in-process server."""

    def setUp(self) -> None:
        self.space = FakeSpace().start()

    def tearDown(self) -> None:
        self.space.stop()

    def statuses(self) -> list:
        return [r["status"] for r in self.space.requests()]

    def test_status_with_retry_after_for_the_first_n_requests_of_one_path(self) -> None:
        self.space.set_behaviour({"rules": [
            {"path": TELEMETRY, "times": 2, "status": 503, "retry_after": "120"}]})
        status, headers, body = post(self.space.url, TELEMETRY)
        self.assertEqual((status, headers["Retry-After"]), (503, "120"))
        self.assertEqual(json.loads(body)["code"], 503)
        self.assertEqual(post(self.space.url, DISMISS, "{}")[0], 200)   # other path: normal
        self.assertEqual(post(self.space.url, TELEMETRY)[0], 503)
        status, headers, _ = post(self.space.url, TELEMETRY)              # budget spent
        self.assertEqual((status, headers["Retry-After"]), (200, None))
        self.assertEqual(self.statuses(), [503, 200, 503, 200])
        self.assertEqual([r["hits"] for r in self.space.behaviour()["rules"]], [2])

    def test_retry_after_is_sent_raw(self) -> None:
        for value in ("Wed, 21 Oct 2015 07:28:00 GMT", "soon-ish", "-5"):
            self.space.set_behaviour({"rules": [{"status": 429, "retry_after": value}]})
            status, headers, _ = post(self.space.url, TELEMETRY)
            self.assertEqual((status, headers["Retry-After"]), (429, value))

    def test_other_error_statuses(self) -> None:
        for status in (500, 400, 408, 404, 599):
            self.space.set_behaviour({"rules": [{"status": status}]})
            self.assertEqual(post(self.space.url, TELEMETRY)[0], status)

    def test_2xx_with_application_level_code(self) -> None:
        self.space.set_behaviour({"rules": [{"times": 1, "code": 500, "msg": "db down"},
                                            {"times": 1, "status": 200, "code": 422}]})
        status, _, body = post(self.space.url, TELEMETRY)
        self.assertEqual((status, json.loads(body)),
                         (200, {"code": 500, "msg": "db down", "data": {}}))
        status, _, body = post(self.space.url, TELEMETRY)
        self.assertEqual((status, json.loads(body)["code"]), (200, 422))
        self.assertEqual(json.loads(post(self.space.url, TELEMETRY)[2]), OK)

    def test_raw_body_and_extra_headers(self) -> None:
        self.space.set_behaviour({"rules": [{"body": "<html>proxy</html>",
                                             "headers": {"X-Proxy": "squid"}}]})
        status, headers, body = post(self.space.url, TELEMETRY)
        self.assertEqual((status, headers["X-Proxy"], body), (200, "squid", b"<html>proxy</html>"))

    def test_stall_holds_one_connection_without_blocking_others(self) -> None:
        self.space.set_behaviour({"rules": [{"times": 1, "action": "stall"}]})
        start = time.monotonic()
        with self.assertRaises(TimeoutError):
            post(self.space.url, TELEMETRY, timeout=0.3)
        self.assertGreaterEqual(time.monotonic() - start, 0.29)
        self.assertEqual(post(self.space.url, TELEMETRY)[0], 200)
        self.assertEqual([r["action"] for r in self.space.requests()], ["stall", "respond"])
        self.assertEqual(self.statuses(), [None, 200])

    def test_stalled_connection_does_not_block_concurrent_requests(self) -> None:
        self.space.set_behaviour({"rules": [{"times": 1, "action": "stall"}]})
        sock = socket.create_connection(("127.0.0.1", self.space.port), timeout=5)
        try:
            sock.sendall(f"POST {TELEMETRY} HTTP/1.1\r\nHost: x\r\n"
                         "Content-Length: 2\r\n\r\n{}".encode())
            self.space.wait_for_count(1, timeout=5)
            self.assertEqual(post(self.space.url, TELEMETRY)[0], 200)   # while stalled
        finally:
            sock.close()

    def test_stop_ends_a_stall_promptly(self) -> None:
        self.space.set_behaviour({"rules": [{"action": "stall"}]})
        sock = socket.create_connection(("127.0.0.1", self.space.port), timeout=5)
        try:
            sock.sendall(f"POST {TELEMETRY} HTTP/1.1\r\nHost: x\r\n"
                         "Content-Length: 2\r\n\r\n{}".encode())
            self.space.wait_for_count(1, timeout=5)
            start = time.monotonic()
            self.space.stop()
            self.assertLess(time.monotonic() - start, 2)
            self.assertEqual(sock.recv(100), b"")       # closed with no answer
        finally:
            sock.close()

    def test_slow_answer(self) -> None:
        self.space.set_behaviour({"rules": [{"delay_ms": 200}]})
        start = time.monotonic()
        self.assertEqual(post(self.space.url, TELEMETRY)[0], 200)
        self.assertGreaterEqual(time.monotonic() - start, 0.2)

    def test_byte_by_byte_answer(self) -> None:
        self.space.set_behaviour({"rules": [{"byte_delay_ms": 1}]})
        start = time.monotonic()
        received, error = raw_exchange(self.space.port)
        elapsed = time.monotonic() - start
        self.assertIsNone(error)
        self.assertTrue(received.startswith(b"HTTP/1.1 200 OK\r\n"), received)
        self.assertEqual(json.loads(received.split(b"\r\n\r\n", 1)[1]), OK)
        self.assertGreaterEqual(elapsed, len(received) * 0.001 * 0.9)
        # a client with a short timeout per read still succeeds, one with a total budget not
        self.assertEqual(post(self.space.url, TELEMETRY, timeout=0.1)[0], 200)

    def test_reset_before_answering(self) -> None:
        self.space.set_behaviour({"rules": [{"times": 1, "action": "reset"}]})
        received, error = raw_exchange(self.space.port)
        self.assertEqual(received, b"")
        self.assertIsInstance(error, ConnectionResetError)
        self.assertEqual(post(self.space.url, TELEMETRY)[0], 200)
        self.assertEqual([r["action"] for r in self.space.requests()], ["reset", "respond"])

    def test_reset_mid_answer(self) -> None:
        self.space.set_behaviour({"rules": [{"action": "reset", "after_bytes": 20,
                                             "byte_delay_ms": 1}]})
        received, error = raw_exchange(self.space.port)
        self.assertEqual(received, b"HTTP/1.1 200 OK\r\nSer")
        self.assertIsInstance(error, ConnectionResetError)
        with self.assertRaises((ConnectionError, http.client.HTTPException)):
            post(self.space.url, TELEMETRY)

    def test_huge_body(self) -> None:
        self.space.set_behaviour({"rules": [{"body_size": 10_000_000}]})
        status, headers, body = post(self.space.url, TELEMETRY, timeout=10)
        self.assertEqual((status, len(body), headers["Content-Length"]),
                         (200, 10_000_000, "10000000"))
        document = json.loads(body)
        self.assertEqual((document["code"], document["msg"]), (0, "ok"))

    def test_redirects(self) -> None:
        for status in (301, 302, 307):
            target = f"http://127.0.0.1:9/moved{status}"
            self.space.set_behaviour({"rules": [{"status": status, "location": target}]})
            code, headers, _ = post(self.space.url, TELEMETRY)
            self.assertEqual((code, headers["Location"]), (status, target))

    def test_reject_only_the_event_containing_a_substring(self) -> None:
        self.space.set_behaviour({"rules": [{"body_contains": '"q-bad"', "status": 400,
                                             "code": 400, "msg": "invalid event"}]})
        bad = json.dumps({"event_type": "query", "query_id": "q-bad"})
        for body in (EVENT, bad, EVENT, bad):
            post(self.space.url, TELEMETRY, body)
        self.assertEqual(self.statuses(), [200, 400, 200, 400])
        self.assertEqual([r["rule"] for r in self.space.requests()], [None, 0, None, 0])

    def test_close_hangs_up_after_answering(self) -> None:
        self.space.set_behaviour({"rules": [{"close": True}]})
        conn = http.client.HTTPConnection("127.0.0.1", self.space.port, timeout=5)
        try:
            conn.request("POST", TELEMETRY, body=EVENT)
            response = conn.getresponse()
            self.assertEqual(response.getheader("Connection"), "close")
            response.read()
            conn.request("POST", TELEMETRY, body=EVENT)   # http.client reconnects
            conn.getresponse().read()
        finally:
            conn.close()
        self.assertEqual(len({r["connection"] for r in self.space.requests()}), 2)

    def test_passthrough_rules_count_requests(self) -> None:
        # "answer two normally, fail the third": an empty rule with a budget passes through.
        self.space.set_behaviour({"rules": [{"times": 2}, {"times": 1, "status": 500}]})
        for _ in range(4):
            post(self.space.url, TELEMETRY)
        self.assertEqual(self.statuses(), [200, 200, 500, 200])

    def test_merge_puts_new_rules_first_and_merges_surveys(self) -> None:
        self.space.set_behaviour({"rules": [{"status": 503}],
                                  "surveys": {"a": {"survey_id": "sa"},
                                              "b": {"survey_id": "sb"}}})
        self.space.add_rule(status=429, times=1)
        self.space.set_behaviour({"surveys": {"a": None, "c": {"survey_id": "sc"}}},
                                 merge=True)
        self.assertEqual([post(self.space.url, TELEMETRY)[0] for _ in range(2)], [429, 503])
        self.assertEqual(sorted(self.space.behaviour()["surveys"]), ["b", "c"])

    def test_bad_behaviour_is_refused(self) -> None:
        for bad in ({"rule": []}, {"rules": [{"stauts": 500}]},
                    {"rules": [{"action": "explode"}]}, {"rules": [{"times": -1}]},
                    {"rules": [{"status": "500"}]}, {"surveys": []}, []):
            with self.assertRaises(ValueError, msg=bad):
                self.space.set_behaviour(bad)

    def test_wait_for_wakes_on_a_request_and_times_out(self) -> None:
        timer = threading.Timer(0.1, post, (self.space.url, TELEMETRY))
        timer.start()
        try:
            log = self.space.wait_for(lambda log: any(r["status"] == 200 for r in log), 5)
            self.assertEqual(len(log), 1)
        finally:
            timer.join()
        start = time.monotonic()
        with self.assertRaises(TimeoutError):
            self.space.wait_for(lambda log: len(log) > 5, timeout=0.1)
        self.assertLess(time.monotonic() - start, 1)

    def test_many_concurrent_connections(self) -> None:
        self.space.set_behaviour({"rules": [{"delay_ms": 100}]})
        threads = [threading.Thread(target=post, args=(self.space.url, TELEMETRY))
                   for _ in range(20)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertLess(time.monotonic() - start, 0.9)     # served in parallel, no SYN drops
        self.assertEqual(self.statuses(), [200] * 20)


class ControlEndpoints(unittest.TestCase):
    """/__control, /__log and /__reset over HTTP, as another process would use them."""

    def setUp(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.log_path = os.path.join(self.tmp.name, "requests.jsonl")
        self.space = FakeSpace(log_path=self.log_path).start()

    def tearDown(self) -> None:
        self.space.stop()
        self.tmp.cleanup()

    def call(self, method: str, target: str, document=None) -> tuple[int, object]:
        conn = http.client.HTTPConnection("127.0.0.1", self.space.port, timeout=5)
        try:
            conn.request(method, target,
                         body=None if document is None else json.dumps(document))
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    def test_control_log_reset(self) -> None:
        status, _ = self.call("POST", "/__control",
                              {"rules": [{"path": TELEMETRY, "status": 500}]})
        self.assertEqual(status, 200)
        self.assertEqual(post(self.space.url, TELEMETRY)[0], 500)
        status, _ = self.call("POST", "/__control?merge=1", {"rules": [{"status": 502}]})
        self.assertEqual(post(self.space.url, TELEMETRY)[0], 502)
        status, behaviour = self.call("GET", "/__control")
        self.assertEqual([(r["status"], r["hits"]) for r in behaviour["rules"]],
                         [(502, 1), (500, 1)])
        status, log = self.call("GET", "/__log")
        self.assertEqual([r["status"] for r in log], [500, 502])   # control calls not logged
        self.assertEqual(self.call("POST", "/__reset")[0], 200)
        self.assertEqual(self.call("GET", "/__log"), (200, []))
        self.assertEqual(post(self.space.url, TELEMETRY)[0], 200)   # behaviour cleared too
        with open(self.log_path, encoding="utf-8") as f:
            self.assertEqual([json.loads(line)["status"] for line in f], [200])

    def test_bad_control_request_is_400(self) -> None:
        status, answer = self.call("POST", "/__control", {"rules": [{"nope": 1}]})
        self.assertEqual((status, answer["code"]), (400, 400))
        self.assertIn("nope", answer["msg"])
        conn = http.client.HTTPConnection("127.0.0.1", self.space.port, timeout=5)
        try:
            conn.request("POST", "/__control", body="{not json")
            self.assertEqual(conn.getresponse().status, 400)
        finally:
            conn.close()

    def test_log_long_poll(self) -> None:
        timer = threading.Timer(0.1, post, (self.space.url, TELEMETRY))
        timer.start()
        try:
            status, log = self.call("GET", "/__log?min=1&timeout=5")
        finally:
            timer.join()
        self.assertEqual((status, len(log)), (200, 1))
        start = time.monotonic()
        self.assertEqual(len(self.call("GET", "/__log?min=5&timeout=0.1")[1]), 1)
        self.assertLess(time.monotonic() - start, 1)


class Subprocess(unittest.TestCase):
    """The command line: port file, stdout line, --behaviour, clean exit on signals."""

    def setUp(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.log_path = os.path.join(self.tmp.name, "requests.jsonl")
        self.port_file = os.path.join(self.tmp.name, "port")

    def tearDown(self) -> None:
        self.tmp.cleanup()

    def test_spawn_control_and_sigterm(self) -> None:
        behaviour = {"rules": [{"times": 1, "status": 503, "retry_after": "1"}]}
        proc = FakeSpace.spawn(log_path=self.log_path, port_file=self.port_file,
                               behaviour=behaviour)
        with proc:
            with open(self.port_file, encoding="utf-8") as f:
                self.assertEqual(int(f.read()), proc.port)
            self.assertEqual(post(proc.url, TELEMETRY)[0], 503)
            threading.Timer(0.1, post, (proc.url, TELEMETRY)).start()
            log = proc.wait_for(lambda log: len(log) == 2, timeout=5)
            self.assertEqual([r["status"] for r in log], [503, 200])
            proc.add_rule(status=500)
            self.assertEqual(post(proc.url, TELEMETRY)[0], 500)
            self.assertEqual(len(proc.wait_for_count(3, path=TELEMETRY, timeout=5)), 3)
            with self.assertRaises(ValueError):
                proc.set_behaviour({"rules": [{"bogus": 1}]})
            proc.reset()
            self.assertEqual(proc.requests(), [])
            self.assertEqual(proc.stop(), 0)
        self.assertEqual(os.listdir(self.tmp.name).count("port"), 1)

    def test_command_line_sigint(self) -> None:
        with open(os.path.join(self.tmp.name, "b.json"), "w", encoding="utf-8") as f:
            json.dump({"rules": [{"status": 418}]}, f)
        argv = [sys.executable, os.path.join(os.path.dirname(__file__), "fake_space.py"),
                "--port", "0", "--log", self.log_path, "--port-file", self.port_file,
                "--behaviour", "@" + f.name]
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        try:
            line = child.stdout.readline()
            self.assertRegex(line, r"^listening on 127\.0\.0\.1:\d+\n$")
            port = int(line.rsplit(":", 1)[1])
            self.assertEqual(post(f"http://127.0.0.1:{port}", TELEMETRY)[0], 418)
            child.send_signal(signal.SIGINT)
            self.assertEqual(child.wait(5), 0)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
        with open(self.log_path, encoding="utf-8") as f:
            self.assertEqual([json.loads(line)["status"] for line in f], [418])

    def test_bad_behaviour_on_command_line_exits_2(self) -> None:
        argv = [sys.executable, os.path.join(os.path.dirname(__file__), "fake_space.py"),
                "--port", "0", "--behaviour", '{"rules": [{"stall": true}]}']
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        self.assertEqual(result.returncode, 2)
        self.assertIn("stall", result.stderr)


@unittest.skipUnless(shutil.which("openssl"), "needs the openssl command")
class Tls(unittest.TestCase):
    """HTTPS with a self-signed certificate: refused by default, accepted when trusted."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.TemporaryDirectory()
        cls.cert = os.path.join(cls.tmp.name, "cert.pem")
        cls.key = os.path.join(cls.tmp.name, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", cls.key, "-out", cls.cert],
                       check=True, capture_output=True, timeout=30)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.tmp.cleanup()

    def https_post(self, port: int, context: ssl.SSLContext) -> int:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
        try:
            conn.request("POST", TELEMETRY, body=EVENT)
            return conn.getresponse().status
        finally:
            conn.close()

    def test_self_signed_is_refused_and_trusted_cert_works(self) -> None:
        with FakeSpace(tls_cert=self.cert, tls_key=self.key) as space:
            self.assertTrue(space.url.startswith("https://127.0.0.1:"))
            with self.assertRaises(ssl.SSLCertVerificationError):
                self.https_post(space.port, ssl.create_default_context())
            self.assertEqual(space.requests(), [])       # never got as far as a request
            trusted = ssl.create_default_context(cafile=self.cert)
            self.assertEqual(self.https_post(space.port, trusted), 200)
            self.assertEqual(len(space.requests()), 1)

    def test_tls_subprocess(self) -> None:
        with FakeSpaceProcess(tls_cert=self.cert, tls_key=self.key) as proc:
            trusted = ssl.create_default_context(cafile=self.cert)
            self.assertEqual(self.https_post(proc.port, trusted), 200)
            self.assertEqual(len(proc.requests()), 1)
            self.assertEqual(proc.stop(), 0)


if __name__ == "__main__":
    unittest.main()
