"""End-to-end: the proxy the uploader uses (issue 11, item 4) - proxy.http / proxy.https from
LangBot's config first, then HTTPS_PROXY / HTTP_PROXY / ALL_PROXY in either case, NO_PROXY -
through a small forwarding proxy on loopback."""

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import unittest

from harness import E2E, EXIT_OK, EXIT_TEMPFAIL, TELEMETRY, clean_env, refused_port


class LoopbackProxy:
    """A forwarding HTTP proxy on 127.0.0.1 (absolute-form requests and CONNECT), one
    request per client connection.  Logs each request line it forwards."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.lines = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    @staticmethod
    def _read_head(conn):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None, b""
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        return head, rest

    def _handle(self, conn):
        with conn:
            head, rest = self._read_head(conn)
            if head is None:
                return
            lines = head.split(b"\r\n")
            method, target, version = lines[0].split(b" ", 2)
            with self.lock:
                self.lines.append(lines[0].decode("latin-1"))
            if method == b"CONNECT":
                host, port = target.decode().rsplit(":", 1)
                up = socket.create_connection((host, int(port)))
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    up.sendall(rest)
                self._pipe(conn, up)
                return
            length = 0
            headers = []
            for line in lines[1:]:
                name = line.split(b":", 1)[0].strip().lower()
                if name == b"content-length":
                    length = int(line.split(b":", 1)[1])
                if name in (b"connection", b"proxy-connection", b"keep-alive"):
                    continue
                headers.append(line)
            while len(rest) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                rest += chunk
            url = target.decode()
            assert url.startswith("http://"), url
            hostport, _, path = url[len("http://"):].partition("/")
            host, _, port = hostport.partition(":")
            up = socket.create_connection((host, int(port or 80)))
            with up:
                up.sendall(b" ".join([method, ("/" + path).encode(), version]) + b"\r\n"
                           + b"\r\n".join(headers + [b"Connection: close"]) + b"\r\n\r\n"
                           + rest)
                answer = b""
                while True:
                    chunk = up.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
            conn.sendall(answer)

    @staticmethod
    def _pipe(a, b):
        def copy(src, dst):
            try:
                while True:
                    chunk = src.recv(65536)
                    if not chunk:
                        break
                    dst.sendall(chunk)
            except OSError:
                pass
            finally:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        t = threading.Thread(target=copy, args=(b, a), daemon=True)
        t.start()
        copy(a, b)
        t.join(30)
        b.close()

    def forwarded(self):
        with self.lock:
            return list(self.lines)

    def stop(self):
        # shutdown() wakes the accept() in _serve; a bare close() would leave it
        # blocked on the descriptor number, which the next socket opened (another
        # test's server) can take over, so this proxy would answer its requests.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.thread.join(timeout=10)
        self.sock.close()


class Proxy(E2E):

    def proxy(self) -> LoopbackProxy:
        p = LoopbackProxy()
        self.addCleanup(p.stop)
        return p

    def config_with_proxy(self, lb, space, http="", https=""):
        lb.write_config(raw=f"space:\n  url: '{space.url}'\n  disable_telemetry: false\n"
                            f"proxy:\n  http: '{http}'\n  https: '{https}'\n"
                            "system:\n  instance_id: ''\n")

    def deliver(self, lb, space, proxy, env, through_proxy=True):
        lb.record_queries(2)
        r = lb.run(env=env)
        self.assertExit(r, EXIT_OK)
        self.assertEqual([q["path"] for q in space.requests()], [TELEMETRY] * 2)
        want = [f"POST {space.url}{TELEMETRY} HTTP/1.1"] * 2 if through_proxy else []
        self.assertEqual(proxy.forwarded(), want)

    def test_config_proxy_http(self):
        space, proxy = self.space(), self.proxy()
        lb = self.langbot(space)
        self.config_with_proxy(lb, space, http=proxy.url)
        self.deliver(lb, space, proxy, clean_env())

    def test_config_proxy_wins_over_the_environment(self):
        space, proxy = self.space(), self.proxy()
        sock, port = refused_port()
        self.addCleanup(sock.close)
        lb = self.langbot(space)
        self.config_with_proxy(lb, space, http=proxy.url)
        self.deliver(lb, space, proxy, clean_env(HTTP_PROXY=f"http://127.0.0.1:{port}",
                                                 http_proxy=f"http://127.0.0.1:{port}"))

    def test_upper_case_http_proxy_from_the_environment(self):
        """libcurl alone ignores HTTP_PROXY (upper case); LangBot's httpx does not."""
        space, proxy = self.space(), self.proxy()
        lb = self.langbot(space)
        self.config_with_proxy(lb, space)
        self.deliver(lb, space, proxy, clean_env(HTTP_PROXY=proxy.url))

    def test_lower_case_and_all_proxy(self):
        for name in ("http_proxy", "ALL_PROXY", "all_proxy"):
            with self.subTest(name=name):
                space, proxy = self.space(), self.proxy()
                lb = self.langbot(space)
                self.deliver(lb, space, proxy, clean_env(**{name: proxy.url}))

    def test_langbot_env_override_of_the_config_proxy(self):
        space, proxy = self.space(), self.proxy()
        lb = self.langbot(space)
        self.config_with_proxy(lb, space)
        self.deliver(lb, space, proxy, clean_env(PROXY__HTTP=proxy.url))

    def test_no_proxy_goes_direct(self):
        for name in ("NO_PROXY", "no_proxy"):
            with self.subTest(name=name):
                space, proxy = self.space(), self.proxy()
                lb = self.langbot(space)
                self.config_with_proxy(lb, space, http=proxy.url)
                self.deliver(lb, space, proxy, clean_env(**{name: "localhost,127.0.0.1"}),
                             through_proxy=False)

    def test_https_proxy_is_not_used_for_an_http_url(self):
        space, proxy = self.space(), self.proxy()
        lb = self.langbot(space)
        self.config_with_proxy(lb, space, https=proxy.url)
        self.deliver(lb, space, proxy, clean_env(HTTPS_PROXY=proxy.url), through_proxy=False)

    def test_https_through_connect(self):
        """An https:// space.url: proxy.https (then HTTPS_PROXY) tunnels with CONNECT; the
        certificate is still verified end to end."""
        if shutil.which("openssl") is None:
            self.skipTest("openssl is not installed")
        d = tempfile.mkdtemp(prefix="telespool-e2e-tls-")
        self.addCleanup(shutil.rmtree, d, True)
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-days", "1", "-subj", "/CN=127.0.0.1",
                            "-addext", "subjectAltName=IP:127.0.0.1",
                            "-keyout", key, "-out", cert], capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        from fake_space import FakeSpace
        for where in ("config", "HTTPS_PROXY", "https_proxy"):
            with self.subTest(where=where):
                space = FakeSpace(tls_cert=cert, tls_key=key).start()
                self.addCleanup(space.stop)
                proxy = self.proxy()
                lb = self.langbot(space)
                env = clean_env()
                if where == "config":
                    self.config_with_proxy(lb, space, https=proxy.url)
                else:
                    env[where] = proxy.url
                lb.record_queries(2)
                r = lb.run("--cacert", cert, env=env)
                self.assertExit(r, EXIT_OK)
                self.assertEqual(len(space.requests()), 2)
                hostport = space.url[len("https://"):]
                self.assertTrue(proxy.forwarded())
                self.assertEqual(set(proxy.forwarded()), {f"CONNECT {hostport} HTTP/1.1"})

    def test_a_dead_proxy_keeps_the_events(self):
        space = self.space()
        sock, port = refused_port()
        self.addCleanup(sock.close)
        lb = self.langbot(space)
        self.config_with_proxy(lb, space, http=f"http://127.0.0.1:{port}")
        lb.record_queries(2)
        r = lb.run()
        self.assertExit(r, EXIT_TEMPFAIL)
        self.assertEqual(space.requests(), [])
        self.assertEqual([ev["state"] for ev in lb.events()], ["pending"] * 2)


if __name__ == "__main__":
    unittest.main()
