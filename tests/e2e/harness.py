"""Helpers for telespool's end-to-end tests (stdlib only).

Each test gets a fresh LangBot working directory (``LangBot``): ``data/config.yaml`` pointing
at an in-process fake LangBot Space (``tests/fake_space.py``), events recorded through the
Python binding into ``data/telemetry.db``, and the real ``telespool-upload`` binary run from
that directory as a subprocess.  The spool is inspected with the stdlib ``sqlite3`` module.

Environment (set by ctest, see tests/CMakeLists.txt):
    TELESPOOL_UPLOAD   path of the telespool-upload binary
    TELESPOOL_LIBRARY  path of libtelespool.so (read by the binding)

No sleeps for synchronisation: tests wait on the fake's request log (FakeSpace.wait_for),
on process exit, or on files; every timeout is only an upper bound.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS_DIR = os.path.dirname(HERE)
ROOT = os.path.dirname(TESTS_DIR)
for _p in (TESTS_DIR, os.path.join(ROOT, "lib", "python")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

UPLOAD = os.environ.get("TELESPOOL_UPLOAD", "")
if not UPLOAD or not os.access(UPLOAD, os.X_OK):
    raise RuntimeError("set TELESPOOL_UPLOAD to the telespool-upload binary "
                       f"(got {UPLOAD!r}); ctest does this")
if not os.environ.get("TELESPOOL_LIBRARY"):
    raise RuntimeError("set TELESPOOL_LIBRARY to libtelespool.so; ctest does this")

import telespool  # noqa: E402  (needs the path set up above)
from fake_space import FakeSpace  # noqa: E402

INSTANCE_ID = "instance_00000000-0000-4000-8000-0000000000e2"
LANGBOT_VERSION = "v4.3.1"
RUN_TIMEOUT = 30.0          # upper bound for one uploader run
TELEMETRY = "/api/v1/telemetry"
PENDING = "/api/v1/survey/pending"
RESPOND = "/api/v1/survey/respond"
DISMISS = "/api/v1/survey/dismiss"

EXIT_OK, EXIT_ERROR, EXIT_TEMPFAIL, EXIT_CONFIG = 0, 1, 75, 78

_SUMMARY = re.compile(r"telespool-upload: (\w+): sent (\d+), retried (\d+), dead (\d+), "
                      r"purged (\d+) in [0-9.]+ s(?: - (.*))?$", re.M)


def upload_version() -> str:
    """The uploader's version, from --version ("telespool-upload X (libtelespool Y)")."""
    out = subprocess.run([UPLOAD, "--version"], capture_output=True, text=True,
                         timeout=RUN_TIMEOUT, env=clean_env()).stdout
    return out.split()[1]


def clean_env(**extra: str) -> dict:
    """The test process's environment without anything that would steer the uploader
    (LangBot overrides, ingest token, proxies, systemd's INVOCATION_ID, another libcurl),
    plus extra."""
    drop = ("SPACE__", "SYSTEM__")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(drop)
           and k not in ("LANGBOT_TELEMETRY_INGEST_TOKEN", "INVOCATION_ID", "TELESPOOL_LIBCURL")
           and not k.lower().endswith("_proxy")}
    env.update(extra)
    return env


def iso_ms(text: str) -> int:
    """'YYYY-MM-DDTHH:MM:SS.sssZ' -> unix ms."""
    dt = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return int(dt.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)


def ms_iso(ms: int) -> str:
    dt = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def now_ms() -> int:
    return int(time.time() * 1000)


class Result:
    """A finished uploader run."""

    def __init__(self, argv, code, out, err, elapsed):
        self.argv, self.code, self.out, self.err, self.elapsed = argv, code, out, err, elapsed
        m = None
        for m in _SUMMARY.finditer(err):
            pass
        self.summary = m.group(0) if m else None
        self.outcome = m.group(1) if m else None
        self.counts = ({"sent": int(m.group(2)), "retried": int(m.group(3)),
                        "dead": int(m.group(4)), "purged": int(m.group(5))} if m else None)

    def __repr__(self):
        return (f"<run {' '.join(self.argv[1:])}: exit {self.code}\n--- stdout\n{self.out}"
                f"--- stderr\n{self.err}>")


class Running:
    """An uploader started in the background; output goes to files (no pipe deadlocks)."""

    def __init__(self, argv, cwd, env):
        self.argv = argv
        self._out = tempfile.TemporaryFile()
        self._err = tempfile.TemporaryFile()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=self._out,
                                     stderr=self._err, stdin=subprocess.DEVNULL)
        self.ended = None

    def wait(self, timeout: float = RUN_TIMEOUT) -> Result:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"telespool-upload did not finish within {timeout} s")
        if self.ended is None:
            self.ended = time.monotonic()
        self._out.seek(0)
        self._err.seek(0)
        out = self._out.read().decode("utf-8", "replace")
        err = self._err.read().decode("utf-8", "replace")
        self._out.close()
        self._err.close()
        return Result(self.argv, self.proc.returncode, out, err, self.ended - self.started)

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)


class Workdir:
    """What the e2e and reliability harnesses share: a LangBot working directory with
    root, config_path and db_path (set by the subclass), the uploader run in it, and the
    spool read back with the stdlib sqlite3 (every connection closed at once)."""

    result_class = Result
    running_class = Running
    run_timeout = RUN_TIMEOUT

    def replace_config(self, text: str) -> None:
        """Writes config_path atomically (rename), so that an uploader re-reading it
        mid-run never sees half a file."""
        tmp = self.config_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, self.config_path)

    def spool(self, path: str | None = None, **kw) -> telespool.Spool:
        kw.setdefault("instance_id", INSTANCE_ID)
        kw.setdefault("version", LANGBOT_VERSION)
        return telespool.Spool(path or self.db_path, **kw)

    # -- the uploader

    def argv(self, *args) -> list:
        raise NotImplementedError

    def run(self, *args, env: dict | None = None, timeout: float | None = None,
            argv: list | None = None) -> Result:
        env = clean_env() if env is None else env
        argv = argv or self.argv(*args)
        timeout = self.run_timeout if timeout is None else timeout
        t0 = time.monotonic()
        try:
            p = subprocess.run(argv, cwd=self.root, env=env, capture_output=True,
                               timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"{argv} did not finish within {timeout} s (a hang); "
                                 f"stderr: {(e.stderr or b'').decode(errors='replace')}") from None
        return self.result_class(argv, p.returncode, p.stdout.decode("utf-8", "replace"),
                                 p.stderr.decode("utf-8", "replace"), time.monotonic() - t0)

    def start(self, *args, env: dict | None = None) -> Running:
        env = clean_env() if env is None else env
        return self.running_class(self.argv(*args), self.root, env)

    # -- looking at the spool

    def query(self, sql: str, params=(), path: str | None = None) -> list:
        with contextlib.closing(sqlite3.connect(path or self.db_path, timeout=10)) as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute(sql, params).fetchall()]

    def execute(self, sql: str, params=()) -> None:
        with contextlib.closing(sqlite3.connect(self.db_path, timeout=10)) as db:
            with db:
                db.execute(sql, params)

    def events(self) -> list:
        return self.query("SELECT * FROM events ORDER BY id")

    def runs(self) -> list:
        return self.query("SELECT * FROM upload_runs ORDER BY id")

    def drops(self) -> dict:
        return {r["reason"]: r["count"] for r in self.query("SELECT reason, count FROM drops")}

    def state(self) -> dict:
        return {r["key"]: r["value"] for r in self.query("SELECT key, value FROM uploader_state")}


class LangBot(Workdir):
    """A LangBot working directory: data/config.yaml, data/telemetry.db, labels."""

    def __init__(self, test: unittest.TestCase):
        self.test = test
        self.root = tempfile.mkdtemp(prefix="telespool-e2e-")
        test.addCleanup(shutil.rmtree, self.root, True)
        self.data = os.path.join(self.root, "data")
        os.makedirs(os.path.join(self.data, "labels"))
        with open(os.path.join(self.data, "labels", "instance_id.json"), "w") as f:
            json.dump({"instance_id": INSTANCE_ID, "instance_create_ts": 1732400000}, f)
        self.config_path = os.path.join(self.data, "config.yaml")
        self.db_path = os.path.join(self.data, "telemetry.db")

    # -- config

    def write_config(self, url: str | None = "", disable=None, raw: str | None = None) -> None:
        """Writes data/config.yaml (replace_config).  url None leaves space.url out;
        disable None leaves disable_telemetry out; raw replaces the whole text."""
        if raw is None:
            lines = ["# LangBot configuration (e2e test)", "admins: []",
                     "api:", "  port: 5300", "space:"]
            if url is not None:
                lines.append(f"  url: '{url}'")
            if disable is not None:
                lines.append(f"  disable_telemetry: {disable}")
            lines += ["  # nothing else", "system:", "  instance_id: ''",
                      "plugin:", "  enable: true", ""]
            raw = "\n".join(lines)
        self.replace_config(raw)

    # -- the spool through the binding

    def record_queries(self, n: int, prefix: str = "q", **fields) -> None:
        with self.spool() as sp:
            for i in range(n):
                sp.record_query(query_id=f"{prefix}-{i}", adapter="TelegramAdapter",
                                runner="local-agent", model_name=fields.get("model_name", "gpt-4o"),
                                duration_ms=100 + i, pipeline_plugins=["hello"], error=None)

    # -- the uploader: run in the working directory, where it finds data/

    def argv(self, *args) -> list:
        return [UPLOAD, *args]

    # -- the files

    def files(self) -> dict:
        """Every file under data/ (except labels) with its bytes."""
        out = {}
        for name in sorted(os.listdir(self.data)):
            path = os.path.join(self.data, name)
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    out[name] = f.read()
        return out

    def spool_bytes(self) -> bytes:
        """Raw bytes of data/telemetry.db and data/telemetry.db-wal (read without SQLite)."""
        blob = b""
        for suffix in ("", "-wal"):
            path = self.db_path + suffix
            if os.path.exists(path):
                with open(path, "rb") as f:
                    blob += f.read()
        return blob


def refused_port() -> tuple[socket.socket, int]:
    """A port on 127.0.0.1 that refuses connections: bound (so nobody else takes it during
    the test) but not listening.  Close the socket when done."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


class E2E(unittest.TestCase):
    """Base class: a LangBot dir and fake Spaces that are cleaned up after each test."""

    maxDiff = None

    def space(self, behaviour=None) -> FakeSpace:
        fs = FakeSpace(behaviour=behaviour).start()
        self.addCleanup(fs.stop)
        return fs

    def langbot(self, space: FakeSpace | None = None, **cfg) -> LangBot:
        lb = LangBot(self)
        lb.write_config(url=space.url if space is not None else cfg.pop("url", ""), **cfg)
        return lb

    def assertExit(self, result: Result, code: int) -> None:
        self.assertEqual(result.code, code, repr(result))

    def assertOutcome(self, lb: LangBot, outcome: str, result: Result | None = None) -> dict:
        """The last upload_runs row is complete and has this outcome (and so has the
        summary line on stderr when result is given); returns the row."""
        run = lb.runs()[-1]
        self.assertIsNotNone(run["ended_at"], run)
        self.assertEqual(run["outcome"], outcome, f"{run}\n{result!r}")
        if result is not None:
            self.assertEqual(result.outcome, outcome, repr(result))
        return run
