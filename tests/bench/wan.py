#!/usr/bin/python3
"""Round trips and rate limits for telespool's benchmark (bench.py's WAN rows).

Two stand-ins for a LangBot Space far away, each its own process (asyncio, stdlib only):

  wan.py proxy --port P --upstream-port U --delay-ms D
      A TCP proxy in front of the benchmark's nginx that holds every chunk of bytes for
      D/2 ms in each direction, keeping their order: every exchange, including the TLS
      handshake, pays a round trip of D ms.  (The TCP handshake with the proxy itself is
      not delayed; nginx does the HTTP and TLS, h2 included.)

  wan.py limited --port P --rate R --delay-ms D --log FILE
      An HTTP/1.1 Space that answers every POST after D ms and accepts R requests per
      second (a token bucket holding one second's worth); beyond that it answers 429 with
      Retry-After: the seconds until a token is free, at least 1.  Each answer is logged as
      "<unix time> <status>" to FILE.

Both print "ready" on stdout once listening on 127.0.0.1 and stop on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import subprocess
import sys
import time


# ---- the delaying proxy ----

async def _pipe(reader, writer, delay):
    loop = asyncio.get_running_loop()
    q: asyncio.Queue = asyncio.Queue()

    async def sender():
        try:
            while True:
                due, data = await q.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - already gone
                pass

    task = asyncio.create_task(sender())
    try:
        while True:
            data = await reader.read(65536)
            q.put_nowait((loop.time() + delay, data))
            if not data:
                break
    except (ConnectionError, OSError):
        q.put_nowait((loop.time(), b""))
    await task


async def proxy_main(args):
    delay = args.delay_ms / 2000.0

    async def handle(cr, cw):
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", args.upstream_port)
        except OSError:
            cw.close()
            return
        await asyncio.gather(_pipe(cr, uw, delay), _pipe(ur, cw, delay))

    server = await asyncio.start_server(handle, "127.0.0.1", args.port, backlog=1024)
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


# ---- the rate-limited Space ----

async def limited_main(args):
    rate = float(args.rate)
    tokens, last = rate, time.monotonic()
    log = open(args.log, "w")
    body_ok = b'{"code":0,"msg":"ok","data":{}}'
    body_429 = b'{"code":429,"msg":"rate limited","data":null}'

    def take():
        nonlocal tokens, last
        now = time.monotonic()
        tokens = min(rate, tokens + (now - last) * rate)
        last = now
        if tokens >= 1:
            tokens -= 1
            return 0
        return max(1, math.ceil((1 - tokens) / rate))

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                wait = take()  # decided on arrival, as a front-end limiter does
                if args.delay_ms:
                    await asyncio.sleep(args.delay_ms / 1000.0)
                if wait == 0:
                    status, body, extra = b"200 OK", body_ok, b""
                else:
                    status, body = b"429 Too Many Requests", body_429
                    extra = b"Retry-After: %d\r\n" % wait
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                             + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body)
                log.write(f"{time.time():.4f} {status[:3].decode()}\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", args.port, backlog=1024)
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()
    log.close()


# ---- used by bench.py ----

def make_certs(d: str) -> dict:
    """A test CA and an EC certificate for 127.0.0.1 signed by it, made with openssl."""
    def sh(*argv):
        subprocess.run(argv, cwd=d, check=True, capture_output=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    sh("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
       "-subj", "/CN=telespool bench CA", "-addext", "basicConstraints=critical,CA:TRUE",
       "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    sh("openssl", "req", *ec, "-keyout", "server.key", "-out", "server.csr",
       "-subj", "/CN=127.0.0.1")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n")
    sh("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
       "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return {"ca": os.path.join(d, "ca.pem"), "cert": os.path.join(d, "server.pem"),
            "key": os.path.join(d, "server.key")}


class Helper:
    """One wan.py process (proxy or limited), started and stopped by bench.py."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), *args],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.stop()
            raise SystemExit(f"wan.py {args[0]} did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("proxy")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream-port", type=int, required=True)
    p.add_argument("--delay-ms", type=float, required=True)
    q = sub.add_parser("limited")
    q.add_argument("--port", type=int, required=True)
    q.add_argument("--rate", type=float, required=True)
    q.add_argument("--delay-ms", type=float, default=0)
    q.add_argument("--log", required=True)
    args = ap.parse_args()
    asyncio.run(proxy_main(args) if args.mode == "proxy" else limited_main(args))


if __name__ == "__main__":
    main()
