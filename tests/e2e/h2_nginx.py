"""End-to-end over TLS against a real nginx (Debian's nginx-light): with h2 offered, the
uploader's requests share one HTTP/2 connection as streams; without it, HTTP/1.1
connections are kept alive and reused.  Asserted from nginx's access log ($connection,
$connection_requests, $server_protocol).

Registered as the ctest e2e_h2 (labels e2e;h2).  Needs nginx (with http_v2 and ssl) and
openssl; the test CA and the server's certificate are made with openssl at test time.
nginx runs as the current user from a temporary prefix on free 127.0.0.1 ports, and is
stopped by the test."""

from __future__ import annotations

import collections
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from harness import E2E, EXIT_OK

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK)
                                  else None)
N = 400  # events: enough for the limit to grow past a handful of requests in flight


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(*argv, cwd=None):
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(d: str) -> str:
    """A test CA and a certificate for 127.0.0.1 signed by it; returns the CA's path."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    sh("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
       "-subj", "/CN=telespool test CA", "-addext", "basicConstraints=critical,CA:TRUE",
       "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    sh("openssl", "req", *ec, "-keyout", "server.key", "-out", "server.csr",
       "-subj", "/CN=127.0.0.1", cwd=d)
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n")
    sh("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
       "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    return os.path.join(d, "ca.pem")


class Nginx:
    """nginx with two TLS servers answering like Space: one offers h2, one only HTTP/1.1."""

    def __init__(self, d: str):
        self.dir = d
        self.h2_port, self.h1_port = free_port(), free_port()
        os.makedirs(os.path.join(d, "logs"))
        self.conf = os.path.join(d, "nginx.conf")
        server = """
    server {{
        listen 127.0.0.1:{port} ssl{h2};
        ssl_certificate {d}/server.pem;
        ssl_certificate_key {d}/server.key;
        access_log {d}/logs/{name}.log space;
        location /api/v1/ {{
            default_type application/json;
            return 200 '{{"code":0,"msg":"ok","data":{{}}}}';
        }}
    }}"""
        with open(self.conf, "w") as f:
            f.write(f"""worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    client_body_buffer_size 128k;
    keepalive_requests 100000;
    log_format space '$connection $connection_requests $server_protocol $status $request_uri';
""" + server.format(port=self.h2_port, h2=" http2", d=d, name="h2")
                    + server.format(port=self.h1_port, h2="", d=d, name="h1") + "\n}\n")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [NGINX, "-p", self.dir, "-c", self.conf, "-e", f"{self.dir}/logs/error.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        for port in (self.h2_port, self.h1_port):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("nginx did not start: "
                                           + self.proc.stderr.read().decode(errors="replace"))
                    time.sleep(0.02)  # polling for the port, not synchronisation

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()

    def log(self, name: str) -> list[tuple]:
        """(connection, connection_requests, protocol, status, uri) per request."""
        with open(os.path.join(self.dir, "logs", name + ".log")) as f:
            return [tuple(line.split()) for line in f if line.strip()]


@unittest.skipUnless(NGINX and shutil.which("openssl"), "needs nginx and openssl")
class TLS(E2E):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="telespool-h2-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.ca = make_certs(self.dir)
        self.nginx = Nginx(self.dir)
        self.nginx.start()
        self.addCleanup(self.nginx.stop)

    def drain(self, port: int):
        lb = self.langbot(url=f"https://127.0.0.1:{port}")
        lb.record_queries(N)
        r = lb.run("--cacert", self.ca)
        self.assertExit(r, EXIT_OK)
        self.assertOutcome(lb, "ok", r)
        self.assertTrue(all(ev["state"] == "sent" for ev in lb.events()))
        peak = int(r.summary.split("peak ")[1].split(")")[0].split(",")[0])
        return peak

    def test_h2_streams_share_one_connection(self):
        peak = self.drain(self.nginx.h2_port)
        self.nginx.stop()  # flushes the log
        log = self.nginx.log("h2")
        self.assertEqual(len(log), N)
        self.assertEqual({e[2] for e in log}, {"HTTP/2.0"}, log[:3])
        self.assertEqual({e[3] for e in log}, {"200"})
        conns = collections.Counter(e[0] for e in log)
        # One connection carries them all (a second only if the first were refused
        # more streams); requests were in flight together: the limit grew past 4.
        self.assertLessEqual(len(conns), 2, conns)
        self.assertEqual(max(int(e[1]) for e in log), max(conns.values()))
        self.assertGreaterEqual(max(conns.values()), N // 2)
        self.assertGreater(peak, 4)
        print(f"\nh2: {N} requests over {len(conns)} connection(s), peak {peak} in flight")

    def test_http1_fallback_keeps_connections_alive(self):
        peak = self.drain(self.nginx.h1_port)
        self.nginx.stop()
        log = self.nginx.log("h1")
        self.assertEqual(len(log), N)
        self.assertEqual({e[2] for e in log}, {"HTTP/1.1"}, log[:3])
        conns = collections.Counter(e[0] for e in log)
        # At most one connection per request in flight, each reused (keep-alive):
        # far fewer TLS handshakes than requests; over HTTP/1.1 the adaptive limit
        # stops at 32 connections.
        self.assertLessEqual(peak, 32)
        self.assertLessEqual(len(conns), peak, conns)
        self.assertLess(len(conns), N // 2, conns)
        self.assertGreater(max(int(e[1]) for e in log), 1)
        print(f"\nHTTP/1.1: {N} requests over {len(conns)} connection(s), peak {peak} in"
              " flight")


if __name__ == "__main__":
    unittest.main()
