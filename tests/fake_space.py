#!/usr/bin/env python3
"""A fake LangBot Space for telespool's end-to-end tests (Python 3.11, stdlib only).

It speaks the protocol of /work/shared/SPACE_PROTOCOL.md on 127.0.0.1 and can be told to
misbehave (errors, Retry-After, stalls, slow or byte-by-byte answers, connection resets, huge
bodies, redirects, per-event rejects), so the uploader's retry and classification policy can be
tested against a real socket.

Endpoints (all POST, JSON bodies):
    /api/v1/telemetry       -> 200 {"code": 0, "msg": "ok", "data": {}}
    /api/v1/survey/pending  -> 200 {"code": 0, "msg": "ok", "data": {"survey": {...}}} when a
                               survey is configured for the body's "event", else data {}
    /api/v1/survey/respond  -> 200 {"code": 0, "msg": "ok", "data": {}}
    /api/v1/survey/dismiss  -> 200 {"code": 0, "msg": "ok", "data": {}}
Any other path answers 404, another method on these paths 405 (both logged, both subject to the
rules below).

Command line
    python3 tests/fake_space.py --port 0 --log FILE [--port-file FILE]
                                [--behaviour JSON | --behaviour @FILE]
                                [--tls-cert CERT --tls-key KEY]
With --port 0 a free port is chosen.  Once listening, the port is written to --port-file
(atomically: a temporary file renamed into place, so a test can wait for the file instead of
sleeping) and "listening on 127.0.0.1:PORT" is printed to stdout.  SIGTERM or SIGINT stop the
server cleanly (exit status 0).  With --tls-cert/--tls-key it serves HTTPS instead.

Request log
    Every request to the protocol endpoints (and to unknown paths) is appended to the --log file
    as one JSON line, and kept in memory:
        {"t": 1732400000.123,            unix time the request was read
         "method": "POST",
         "path": "/api/v1/telemetry",    the request target exactly as sent (query included)
         "headers": {"content-type": "application/json", ...}   names lower-cased
         "body": "{...}",                raw body text (UTF-8, invalid bytes replaced)
         "status": 200,                  status answered; null when stalled or reset
         "idempotency_key": "...",       the Idempotency-Key header, or null
         "connection": 3,                serial number of the TCP connection (keep-alive checks)
         "action": "respond",            "respond", "stall" or "reset"
         "rule": 0}                      index of the rule that matched, or null

Control endpoints (never logged, never subject to rules)
    POST /__control           body = behaviour JSON; replaces the behaviour (hit counts restart)
    POST /__control?merge=1   merges: the given rules go in FRONT of the current ones (so they
                              take precedence), surveys are merged per event (null removes one)
    GET  /__control           the current behaviour, each rule with its "hits" so far
    GET  /__log               the request log as a JSON list
    GET  /__log?min=N&timeout=S   same, but first waits (server side, up to S seconds, default
                              10) until at least N requests have been logged
    POST /__reset             clears the log (memory and file) and the behaviour
    POST /__release           answers every held request (the "hold" action) now
A bad behaviour answers 400 {"code": 400, "msg": "<what is wrong>"}.

Behaviour JSON
    {"rules":   [RULE, ...],                      first matching rule with budget left wins
     "surveys": {"EVENT": SURVEY, ...}}           survey objects returned by survey/pending
A RULE has optional matchers, an optional budget, and what to do.  Every key is optional; a
request matching no rule (or only exhausted ones) gets the normal answer.
    matchers:  "path": "/api/v1/telemetry"   path (without query) must be equal
               "method": "POST"
               "body_contains": "poison"      raw body must contain this substring
    budget:    "times": N                     applies to the first N matching requests only
    action:    "action": "respond" (default) | "stall" | "reset" | "hold"
               respond: answer (after the modifiers below)
               hold:    read and log the request, then answer it (as respond) only once the
                        test calls release() (POST /__release); until reset(), a hold rule
                        answers at once after that.  A stop ends a held request unanswered.
               stall:   read the request, never answer; the connection is held open until the
                        client closes it or the server stops
               reset:   close with an RST (SO_LINGER 0) after "after_bytes" bytes of the answer
                        (status line and headers included; 0 = before answering, the default)
    answer:    "status": 503                  HTTP status (default: the path's normal status)
               "code": 500, "msg": "boom"     the JSON envelope's code/msg (default code: 0 below
                                              400, else the status; msg "ok" for code 0, else
                                              the code's HTTP reason phrase, or "error")
               "data": {...}                  the envelope's data (default: the endpoint's)
               "body": "raw text"             replaces the whole JSON body
               "body_size": 10000000          pad the JSON body to this many bytes (a "pad" key)
               "retry_after": "120"           raw Retry-After value (seconds, a date, garbage)
               "location": "http://..."       Location header, for 301/302/307/308
               "headers": {"X-A": "b"}        extra response headers
               "close": true                  answer with Connection: close and hang up
    timing:    "delay_ms": 200                wait before answering (or resetting)
               "byte_delay_ms": 10            send the answer one byte every N ms

Examples
    {"rules": [{"path": "/api/v1/telemetry", "times": 2, "status": 503, "retry_after": "3"}]}
        the first two telemetry POSTs get 503 + Retry-After: 3, later ones succeed
    {"rules": [{"status": 200, "code": 422, "msg": "bad event"}]}
        every request gets HTTP 200 with an application-level failure
    {"rules": [{"body_contains": "\"query_id\": \"q-bad\"", "status": 400}]}
        only the event whose body holds that text is rejected
    {"rules": [{"times": 3}, {"times": 1, "action": "reset"}]}
        requests 1-3 are answered normally, the 4th is reset, later ones answered again
    {"rules": [{"action": "stall", "times": 1}, {"delay_ms": 5}]}
    {"rules": [{"status": 307, "location": "http://127.0.0.1:9/api/v1/telemetry"}]}
    {"surveys": {"first_bot_response_success": {"survey_id": "s1", "title": "How is it?"}}}

Python API
    from fake_space import FakeSpace
    with FakeSpace(behaviour={...}, log_path=None) as space:     # in-process, on a thread
        space.url                      # "http://127.0.0.1:PORT" (https with TLS)
        space.set_behaviour({...}, merge=False)
        space.add_rule(status=503, times=1)      # merge: this rule takes precedence
        space.requests(path=None)      # copy of the log, optionally only one path
        space.wait_for(lambda reqs: len(reqs) >= 3, timeout=5)   # condition variable
        space.wait_for_count(3, path="/api/v1/telemetry", timeout=5)
        space.release()                # answer the requests a "hold" rule holds
        space.reset()
    with FakeSpace.spawn(log_path=..., behaviour={...}) as proc:  # a separate process
        ... the same methods, over the control endpoints; proc.proc is the Popen object
"""

from __future__ import annotations

import argparse
import copy
import http
import http.client
import http.server
import json
import os
import select
import selectors
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
from typing import Any, Callable

HOST = "127.0.0.1"

TELEMETRY = "/api/v1/telemetry"
PENDING = "/api/v1/survey/pending"
RESPOND = "/api/v1/survey/respond"
DISMISS = "/api/v1/survey/dismiss"
ENDPOINTS = (TELEMETRY, PENDING, RESPOND, DISMISS)

TLS_HANDSHAKE_TIMEOUT = 5.0
# How often serve_forever() checks for shutdown(); the default 0.5 s would make every stop()
# (one per test) that slow.
SHUTDOWN_POLL = 0.05

_MATCH_KEYS = {"path", "method", "body_contains", "times"}
_ANSWER_KEYS = {
    "action", "after_bytes", "status", "code", "msg", "data", "body", "body_size",
    "retry_after", "location", "headers", "close", "delay_ms", "byte_delay_ms",
}
_ACTIONS = ("respond", "stall", "reset", "hold")


# --------------------------------------------------------------------------- behaviour


def _check_int(rule: dict, key: str, low: int, high: int | None = None) -> None:
    value = rule.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (
            high is not None and value > high):
        raise ValueError(f"rule key {key!r} must be an integer in [{low}, {high or 'inf'}]")


def _check_str(rule: dict, key: str) -> None:
    if key in rule and not isinstance(rule[key], str):
        raise ValueError(f"rule key {key!r} must be a string")


def validate_rule(rule: Any) -> dict:
    """Return a copy of a rule after checking it; raise ValueError naming what is wrong.

    Strict on purpose: a misspelt key would otherwise silently turn a failure test into a
    success test.
    """
    if not isinstance(rule, dict):
        raise ValueError("a rule must be a JSON object")
    unknown = set(rule) - _MATCH_KEYS - _ANSWER_KEYS
    if unknown:
        raise ValueError(f"unknown rule key(s): {', '.join(sorted(unknown))}")
    if rule.get("action", "respond") not in _ACTIONS:
        raise ValueError(f"rule action must be one of {', '.join(_ACTIONS)}")
    for key in ("path", "method", "body_contains", "msg", "body", "retry_after", "location"):
        _check_str(rule, key)
    _check_int(rule, "times", 0)
    _check_int(rule, "status", 100, 599)
    _check_int(rule, "code", -(2**31), 2**31 - 1)
    _check_int(rule, "body_size", 0)
    _check_int(rule, "after_bytes", 0)
    _check_int(rule, "delay_ms", 0)
    _check_int(rule, "byte_delay_ms", 0)
    headers = rule.get("headers", {})
    if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise ValueError("rule key 'headers' must be an object of strings")
    if "close" in rule and not isinstance(rule["close"], bool):
        raise ValueError("rule key 'close' must be true or false")
    return copy.deepcopy(rule)


def validate_behaviour(behaviour: Any) -> dict:
    """Return a normalised copy {"rules": [...], "surveys": {...}}; raise ValueError."""
    if behaviour is None:
        behaviour = {}
    if not isinstance(behaviour, dict):
        raise ValueError("the behaviour must be a JSON object")
    unknown = set(behaviour) - {"rules", "surveys"}
    if unknown:
        raise ValueError(f"unknown behaviour key(s): {', '.join(sorted(unknown))}")
    rules = behaviour.get("rules", [])
    if not isinstance(rules, list):
        raise ValueError("'rules' must be a list")
    surveys = behaviour.get("surveys", {})
    if not isinstance(surveys, dict) or not all(
            s is None or isinstance(s, dict) for s in surveys.values()):
        raise ValueError("'surveys' must map event names to survey objects")
    return {"rules": [validate_rule(r) for r in rules], "surveys": copy.deepcopy(surveys)}


class Behaviour:
    """Rules and surveys with per-rule hit counts.  Not thread-safe: the server locks it."""

    def __init__(self, behaviour: Any = None) -> None:
        spec = validate_behaviour(behaviour)
        self.rules: list[dict] = spec["rules"]
        self.hits: list[int] = [0] * len(self.rules)
        self.surveys: dict[str, dict] = {k: v for k, v in spec["surveys"].items() if v}

    def merge(self, behaviour: Any) -> None:
        """Put the given rules in front (they win) and merge surveys; null removes a survey."""
        spec = validate_behaviour(behaviour)
        self.rules = spec["rules"] + self.rules
        self.hits = [0] * len(spec["rules"]) + self.hits
        for event, survey in spec["surveys"].items():
            if survey is None:
                self.surveys.pop(event, None)
            else:
                self.surveys[event] = survey

    def choose(self, method: str, path: str, body: str) -> tuple[int | None, dict]:
        """Find the first matching rule with budget left, count the hit, return (index, rule)."""
        for index, rule in enumerate(self.rules):
            if "path" in rule and rule["path"] != path:
                continue
            if "method" in rule and rule["method"].upper() != method:
                continue
            if "body_contains" in rule and rule["body_contains"] not in body:
                continue
            if "times" in rule and self.hits[index] >= rule["times"]:
                continue
            self.hits[index] += 1
            return index, rule
        return None, {}

    def describe(self) -> dict:
        rules = [dict(rule, hits=hits) for rule, hits in zip(self.rules, self.hits)]
        return {"rules": rules, "surveys": copy.deepcopy(self.surveys)}


# --------------------------------------------------------------------------- server


class FakeSpaceServer(http.server.ThreadingHTTPServer):
    """The HTTP server and all shared state: behaviour, request log, live connections."""

    daemon_threads = True          # a stalled handler must never keep the process alive
    allow_reuse_address = True
    request_queue_size = 128       # socketserver's default backlog of 5 drops SYNs under load

    def __init__(self, port: int = 0, behaviour: Any = None, log_path: str | None = None,
                 tls_context: ssl.SSLContext | None = None) -> None:
        self.behaviour = Behaviour(behaviour)
        self.tls_context = tls_context
        self.log: list[dict] = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)   # notified on every log append/reset
        self.stopping = threading.Event()
        self.released = False                            # "hold": answer now
        self.connections: set[socket.socket] = set()
        self.next_connection = 0
        super().__init__((HOST, port), Handler)          # binds and listens
        self.log_path = log_path
        self.log_file = open(log_path, "a", encoding="utf-8") if log_path else None

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        scheme = "https" if self.tls_context else "http"
        return f"{scheme}://{HOST}:{self.port}"

    # -- connections: tracked so that stop() can wake up stalled and idle keep-alive handlers

    def track(self, sock: socket.socket) -> int | None:
        """Register a live connection; return its serial number, or None when stopping."""
        with self.lock:
            if self.stopping.is_set():
                return None
            self.connections.add(sock)
            self.next_connection += 1
            return self.next_connection

    def untrack(self, sock: socket.socket) -> None:
        with self.lock:
            self.connections.discard(sock)

    def stop(self) -> None:
        """Stop accepting, wake every handler (stalls and delays end), release the socket."""
        self.shutdown()
        with self.lock:
            self.stopping.set()
            live = list(self.connections)
            self.changed.notify_all()      # ends /__log long-polls
        for sock in live:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()
        with self.lock:
            if self.log_file:
                self.log_file.close()
                self.log_file = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that give up, refuse our certificate or are cut off at stop are expected.
        if isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    # -- the request log

    def record(self, entry: dict) -> None:
        with self.lock:
            self.log.append(entry)
            if self.log_file:
                self.log_file.write(json.dumps(entry) + "\n")
                self.log_file.flush()
            self.changed.notify_all()

    def requests(self, path: str | None = None) -> list[dict]:
        with self.lock:
            return [dict(e) for e in self.log if path is None or _path_of(e["path"]) == path]

    def wait_for(self, predicate: Callable[[list[dict]], Any], timeout: float) -> list[dict]:
        """Block until predicate(log) is true; return the log; raise TimeoutError otherwise."""
        with self.changed:
            if self.changed.wait_for(lambda: predicate(list(self.log)), timeout):
                return [dict(e) for e in self.log]
            raise TimeoutError(f"fake Space: condition not met within {timeout} s; "
                               f"{len(self.log)} request(s) logged")

    def release(self) -> None:
        """Answer every request a "hold" rule holds (and later ones at once, until reset)."""
        with self.lock:
            self.released = True
            self.changed.notify_all()

    def hold(self) -> bool:
        """Wait until release() or stop(); return True when released."""
        with self.changed:
            self.changed.wait_for(lambda: self.released or self.stopping.is_set())
            return not self.stopping.is_set()

    def reset(self) -> None:
        """Forget the log (memory and file) and every rule and survey."""
        with self.lock:
            self.log.clear()
            self.released = False
            self.behaviour = Behaviour()
            if self.log_file:
                self.log_file.seek(0)
                self.log_file.truncate()
                self.log_file.flush()
            self.changed.notify_all()

    def set_behaviour(self, behaviour: Any, merge: bool = False) -> None:
        """Replace (or merge into) the behaviour; raise ValueError if it is malformed."""
        with self.lock:
            if merge:
                self.behaviour.merge(behaviour)
            else:
                self.behaviour = Behaviour(behaviour)

    def describe(self) -> dict:
        with self.lock:
            return self.behaviour.describe()


def _path_of(target: str) -> str:
    return urllib.parse.urlsplit(target).path


def _envelope(code: int, msg: str, data: Any) -> dict:
    return {"code": code, "msg": msg, "data": data}


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "error"


class Handler(http.server.BaseHTTPRequestHandler):
    """One connection; BaseHTTPRequestHandler loops over its keep-alive requests."""

    protocol_version = "HTTP/1.1"   # keep-alive; every answer carries Content-Length
    server_version = "fake-space/1"
    sys_version = ""
    server: FakeSpaceServer

    # -- connection lifetime

    def setup(self) -> None:
        self.usable = False          # False: handle() does nothing
        self.tls_failed = False      # True: no rfile/wfile were made
        self.serial = None
        if self.server.tls_context is not None:
            # The handshake runs here, on the connection's own thread, so a client that
            # refuses our certificate cannot hold up the accept loop.
            self.request.settimeout(TLS_HANDSHAKE_TIMEOUT)
            try:
                self.request = self.server.tls_context.wrap_socket(self.request,
                                                                   server_side=True)
            except (OSError, ValueError):
                self.tls_failed = True   # e.g. the client refused our certificate;
                return                   # wrap_socket already closed the connection
            self.request.settimeout(None)
        super().setup()
        self.serial = self.server.track(self.connection)
        self.usable = self.serial is not None

    def handle(self) -> None:
        if self.usable:
            super().handle()

    def finish(self) -> None:
        if self.tls_failed:
            return
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.close()   # the server only knows the unwrapped socket

    def log_message(self, format: str, *args: Any) -> None:
        pass   # the JSON log is the record; stderr stays quiet

    # -- requests

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass     # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        raw = self._read_body()
        path = _path_of(self.path)
        if path.startswith("/__"):
            self._control(path, raw)
            return
        body = raw.decode("utf-8", errors="replace")
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        with self.server.lock:
            index, rule = self.server.behaviour.choose(self.command, path, body)
            surveys = copy.deepcopy(self.server.behaviour.surveys)
        action = rule.get("action", "respond")
        status, payload, extra = self._answer(path, body, rule, surveys)
        self.server.record({
            "t": time.time(),
            "method": self.command,
            "path": self.path,
            "headers": headers,
            "body": body,
            "status": status if action in ("respond", "hold") else None,
            "idempotency_key": headers.get("idempotency-key"),
            "connection": self.serial,
            "action": action,
            "rule": index,
        })

        if action == "stall":
            self._stall()
            return
        if action == "hold" and not self.server.hold():
            self.close_connection = True
            return
        if rule.get("delay_ms") and self.server.stopping.wait(rule["delay_ms"] / 1000):
            self.close_connection = True
            return
        if rule.get("close"):
            self.close_connection = True
        if self.close_connection:
            extra.append(("Connection", "close"))
        response = self._serialise(status, payload, extra)
        if action == "reset":
            after = min(rule.get("after_bytes", 0), len(response) - 1)
            self._send(response[:after], rule.get("byte_delay_ms", 0))
            self._reset()
        else:
            self._send(response, rule.get("byte_delay_ms", 0))

    def _answer(self, path: str, body: str, rule: dict,
                surveys: dict) -> tuple[int, bytes, list[tuple[str, str]]]:
        """Work out status, body bytes and extra headers for this request under this rule."""
        if path not in ENDPOINTS:
            normal_status = 404
        elif self.command != "POST":
            normal_status = 405
        else:
            normal_status = 200
        status = rule.get("status", normal_status)
        extra: list[tuple[str, str]] = []
        if status == 405 and path in ENDPOINTS:
            extra.append(("Allow", "POST"))
        if "retry_after" in rule:
            extra.append(("Retry-After", rule["retry_after"]))
        if "location" in rule:
            extra.append(("Location", rule["location"]))
        extra.extend(rule.get("headers", {}).items())

        if "body" in rule:
            return status, rule["body"].encode("utf-8"), extra
        code = rule.get("code", 0 if status < 400 else status)
        msg = rule.get("msg", "ok" if code == 0 else _reason(code))
        if "data" in rule:
            data = rule["data"]
        elif code == 0 and path == PENDING:
            data = {}
            try:
                event = json.loads(body).get("event")
            except (ValueError, AttributeError):
                event = None
            if isinstance(event, str) and event in surveys:
                data = {"survey": surveys[event]}
        else:
            data = {}
        document = _envelope(code, msg, data)
        payload = json.dumps(document).encode("utf-8")
        if "body_size" in rule and rule["body_size"] > len(payload):
            document["pad"] = ""
            fill = rule["body_size"] - len(json.dumps(document).encode("utf-8"))
            document["pad"] = "x" * max(fill, 0)
            payload = json.dumps(document).encode("utf-8")
        return status, payload, extra

    def _serialise(self, status: int, payload: bytes,
                   extra: list[tuple[str, str]]) -> bytes:
        lines = [
            f"HTTP/1.1 {status} {_reason(status)}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            "Content-Type: application/json",
            f"Content-Length: {len(payload)}",
        ]
        lines += [f"{name}: {value}" for name, value in extra]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", errors="replace")
        return head if self.command == "HEAD" else head + payload

    def _send(self, data: bytes, byte_delay_ms: int) -> None:
        try:
            if not byte_delay_ms:
                self.wfile.write(data)
                return
            for i in range(len(data)):
                self.wfile.write(data[i:i + 1])
                if self.server.stopping.wait(byte_delay_ms / 1000):
                    break
        except OSError:
            pass        # the client gave up; that is what slow answers are for
        if self.server.stopping.is_set():
            self.close_connection = True

    def _stall(self) -> None:
        """Never answer; return once the client closes (or the server stops and shuts us)."""
        self.close_connection = True
        sock = self.connection
        try:
            sock.setblocking(False)
            while True:
                select.select([sock], [], [])
                try:
                    if not sock.recv(65536):
                        return          # EOF: the client gave up or stop() shut us down
                except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    continue
        except (OSError, ValueError):
            return

    def _reset(self) -> None:
        """Abort the connection: SO_LINGER with a zero timeout makes close() send an RST."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    # -- control endpoints

    def _control(self, path: str, raw: bytes) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        server = self.server
        try:
            if path == "/__control" and self.command == "GET":
                self._reply(200, server.describe())
            elif path == "/__control" and self.command == "POST":
                merge = query.get("merge", ["0"])[0].lower() in ("1", "true", "yes")
                behaviour = json.loads(raw.decode("utf-8") or "{}")
                server.set_behaviour(behaviour, merge=merge)
                self._reply(200, _envelope(0, "ok", server.describe()))
            elif path == "/__log" and self.command == "GET":
                if "min" in query:
                    count = int(query["min"][0])
                    timeout = float(query.get("timeout", ["10"])[0])
                    try:
                        server.wait_for(lambda log: len(log) >= count
                                        or server.stopping.is_set(), timeout)
                    except TimeoutError:
                        pass    # answer what there is; the caller checks
                self._reply(200, server.requests())
            elif path == "/__reset" and self.command == "POST":
                server.reset()
                self._reply(200, _envelope(0, "ok", {}))
            elif path == "/__release" and self.command == "POST":
                server.release()
                self._reply(200, _envelope(0, "ok", {}))
            else:
                self._reply(404, _envelope(404, "no such control endpoint", {}))
        except ValueError as exc:   # bad JSON, bad behaviour, bad query parameter
            self._reply(400, _envelope(400, str(exc), {}))

    def _reply(self, status: int, document: Any) -> None:
        self._send(self._serialise(status, json.dumps(document).encode("utf-8"), []), 0)


# --------------------------------------------------------------------------- Python API


def _tls_server_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if not cert and not key:
        return None
    if not (cert and key):
        raise ValueError("TLS needs both a certificate and a key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


class FakeSpace:
    """The fake Space running in this process on a background thread (port chosen freely).

    Use as a context manager, or call start() and stop().
    """

    def __init__(self, behaviour: Any = None, log_path: str | None = None,
                 tls_cert: str | None = None, tls_key: str | None = None) -> None:
        self._args = (behaviour, log_path, _tls_server_context(tls_cert, tls_key))
        self.server: FakeSpaceServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "FakeSpace":
        behaviour, log_path, context = self._args
        self.server = FakeSpaceServer(0, behaviour, log_path, context)
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        args=(SHUTDOWN_POLL,), name="fake-space", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self._thread.join()
            self.server = None

    def __enter__(self) -> "FakeSpace":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:40123 (what space.url would be set to)."""
        return self.server.url

    def requests(self, path: str | None = None) -> list[dict]:
        """A copy of the request log, oldest first; only `path` if given."""
        return self.server.requests(path)

    def set_behaviour(self, behaviour: Any = None, merge: bool = False) -> None:
        """Replace the behaviour, or merge it in (its rules first).  ValueError if malformed."""
        self.server.set_behaviour(behaviour, merge)

    def add_rule(self, **rule: Any) -> None:
        """Add one rule in front of the others, e.g. add_rule(status=503, times=1)."""
        self.set_behaviour({"rules": [rule]}, merge=True)

    def behaviour(self) -> dict:
        """The current rules (with their hit counts) and surveys."""
        return self.server.describe()

    def reset(self) -> None:
        """Clear the log (memory and file) and the behaviour."""
        self.server.reset()

    def release(self) -> None:
        """Answer the requests a "hold" rule holds (and later ones at once, until reset)."""
        self.server.release()

    def wait_for(self, predicate: Callable[[list[dict]], Any],
                 timeout: float = 10.0) -> list[dict]:
        """Wait until predicate(log) is true and return the log; TimeoutError otherwise.

        Woken by each logged request (a condition variable), not by polling.
        """
        return self.server.wait_for(predicate, timeout)

    def wait_for_count(self, count: int, path: str | None = None,
                       timeout: float = 10.0) -> list[dict]:
        """Wait for at least `count` logged requests (to `path` if given); return those."""
        self.wait_for(lambda log: sum(path is None or _path_of(e["path"]) == path
                                      for e in log) >= count, timeout)
        return self.requests(path)

    @staticmethod
    def spawn(**kwargs: Any) -> "FakeSpaceProcess":
        """Start the fake Space as a separate process; see FakeSpaceProcess."""
        return FakeSpaceProcess(**kwargs).start()


class FakeSpaceProcess:
    """The fake Space in a child process (for tests that need to kill or signal it).

    Offers the same methods as FakeSpace, carried over the control endpoints.  `proc` is the
    subprocess.Popen object; stop() sends SIGTERM and waits.
    """

    def __init__(self, behaviour: Any = None, log_path: str | None = None,
                 port_file: str | None = None, tls_cert: str | None = None,
                 tls_key: str | None = None, startup_timeout: float = 10.0) -> None:
        self.behaviour_arg = behaviour
        self.log_path = log_path
        self.port_file = port_file
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> "FakeSpaceProcess":
        argv = [sys.executable, os.path.abspath(__file__), "--port", "0"]
        if self.log_path:
            argv += ["--log", self.log_path]
        if self.port_file:
            argv += ["--port-file", self.port_file]
        if self.behaviour_arg is not None:
            argv += ["--behaviour", json.dumps(self.behaviour_arg)]
        if self.tls_cert:
            argv += ["--tls-cert", self.tls_cert, "--tls-key", self.tls_key]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        # The child prints one line once it is listening: wait for it (no sleeping).
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            ready = sel.select(self.startup_timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"fake Space did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Signal the child and wait for it; return its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        return self.proc.returncode

    def __enter__(self) -> "FakeSpaceProcess":
        return self if self.proc else self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls_cert else 'http'}://{HOST}:{self.port}"

    def _call(self, method: str, target: str, document: Any = None,
              timeout: float = 30.0) -> Any:
        if self.tls_cert:
            # We only need to reach our own child: trust its certificate, whatever its name.
            context = ssl.create_default_context(cafile=self.tls_cert)
            context.check_hostname = False
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                HOST, self.port, timeout=timeout, context=context)
        else:
            conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            body = None if document is None else json.dumps(document)
            conn.request(method, target, body=body,
                         headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            answer = json.loads(response.read() or b"null")
        finally:
            conn.close()
        if response.status == 400:
            raise ValueError(answer["msg"])
        if response.status != 200:
            raise RuntimeError(f"fake Space control {target}: HTTP {response.status}")
        return answer

    def requests(self, path: str | None = None) -> list[dict]:
        log = self._call("GET", "/__log")
        return [e for e in log if path is None or _path_of(e["path"]) == path]

    def set_behaviour(self, behaviour: Any = None, merge: bool = False) -> None:
        self._call("POST", "/__control?merge=1" if merge else "/__control", behaviour or {})

    def add_rule(self, **rule: Any) -> None:
        self.set_behaviour({"rules": [rule]}, merge=True)

    def behaviour(self) -> dict:
        return self._call("GET", "/__control")

    def reset(self) -> None:
        self._call("POST", "/__reset")

    def release(self) -> None:
        self._call("POST", "/__release")

    def wait_for(self, predicate: Callable[[list[dict]], Any],
                 timeout: float = 10.0) -> list[dict]:
        """Like FakeSpace.wait_for: each round is a server-side wait for one more request."""
        deadline = time.monotonic() + timeout
        log = self._call("GET", "/__log")
        while not predicate(log):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"fake Space: condition not met within {timeout} s; "
                                   f"{len(log)} request(s) logged")
            log = self._call("GET", f"/__log?min={len(log) + 1}&timeout={remaining:.3f}",
                             timeout=remaining + 10)
        return log

    def wait_for_count(self, count: int, path: str | None = None,
                       timeout: float = 10.0) -> list[dict]:
        log = self.wait_for(lambda log: sum(path is None or _path_of(e["path"]) == path
                                            for e in log) >= count, timeout)
        return [e for e in log if path is None or _path_of(e["path"]) == path]


# --------------------------------------------------------------------------- command line


def _write_atomically(path: str, text: str) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A fake LangBot Space for tests.")
    parser.add_argument("--port", type=int, default=0, help="port (0: pick a free one)")
    parser.add_argument("--log", help="append one JSON line per request to this file")
    parser.add_argument("--port-file", help="write the port here (atomically) once listening")
    parser.add_argument("--behaviour", help="behaviour JSON, or @FILE to read it from FILE")
    parser.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate")
    parser.add_argument("--tls-key", help="the PEM private key for --tls-cert")
    args = parser.parse_args(argv)

    try:
        behaviour = None
        if args.behaviour:
            text = args.behaviour
            if text.startswith("@"):
                with open(text[1:], encoding="utf-8") as f:
                    text = f.read()
            behaviour = json.loads(text)
        context = _tls_server_context(args.tls_cert, args.tls_key)
        server = FakeSpaceServer(args.port, behaviour, args.log, context)
    except (ValueError, OSError) as exc:
        print(f"fake_space: {exc}", file=sys.stderr)
        return 2

    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    thread = threading.Thread(target=server.serve_forever, args=(SHUTDOWN_POLL,),
                              name="fake-space", daemon=True)
    thread.start()
    if args.port_file:
        _write_atomically(args.port_file, f"{server.port}\n")
    print(f"listening on {HOST}:{server.port}", flush=True)
    done.wait()           # the signal handlers run on this (main) thread and set it
    server.stop()
    thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
