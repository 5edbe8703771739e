"""Shared helpers for telespool's reliability tests (stdlib only).

The tests prove, under faults, crashes, load and hostile input, that nothing is lost or leaked.
Each test file is one ctest (tests/CMakeLists.txt); they need:

    TELESPOOL_UPLOAD   path of the telespool-upload binary
    TELESPOOL_LIBRARY  path of libtelespool.so (read by the Python binding)

Child processes (writer_child.py, storage_child.py) run the library where a test must be able
to SIGKILL it, watch it crash, or give it its own mount namespace.  No sleeps are used for
synchronisation: tests wait on pipes, process exits and the fake Space's request log; every
timeout is an upper bound only.

Every test ends by printing one line for the README's Reliability table, on stderr:

    FAULT: tried N times, lost M
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS_DIR = os.path.dirname(HERE)
ROOT = os.path.dirname(TESTS_DIR)
# tests/e2e, for its harness (ctest's PYTHONPATH names it too); appended, so that
# this directory's test_*.py come first.
if os.path.join(TESTS_DIR, "e2e") not in sys.path:
    sys.path.append(os.path.join(TESTS_DIR, "e2e"))

# harness puts tests/ and lib/python on sys.path and checks TELESPOOL_UPLOAD and
# TELESPOOL_LIBRARY; what is the same for both kinds of test comes from there.
import harness  # noqa: E402
from harness import (EXIT_CONFIG, EXIT_ERROR, EXIT_OK, EXIT_TEMPFAIL,  # noqa: E402,F401
                     LANGBOT_VERSION, TELEMETRY, UPLOAD, iso_ms, now_ms, refused_port)
import telespool  # noqa: E402
from fake_space import FakeSpace  # noqa: E402,F401

WRITER = os.path.join(HERE, "writer_child.py")
STORAGE_CHILD = os.path.join(HERE, "storage_child.py")

INSTANCE_ID = "instance_00000000-0000-4000-8000-00000000ee11"
RUN_TIMEOUT = 60.0

# The uploader's documented bounds (uploader/src/drain.h, http.c).
BUSY_UPLOADER_MS = 5000
REQUEST_TIMEOUT_S = 10
RETRY_AFTER_MAX_MS = 24 * 3600 * 1000
BACKOFF_BASE_MS = 30 * 1000


def seed() -> int:
    """The random seed of this test run: RELIABILITY_SEED, else a fresh one (printed)."""
    s = os.environ.get("RELIABILITY_SEED")
    value = int(s) if s else random.SystemRandom().randrange(1 << 30)
    print(f"reliability seed {value} (set RELIABILITY_SEED={value} to replay)",
          file=sys.stderr, flush=True)
    return value


def summary(fault: str, tried: int, lost: int) -> None:
    """The one line the README's Reliability table is made from."""
    print(f"{fault}: tried {tried} times, lost {lost}", file=sys.stderr, flush=True)


def clean_env(**extra: str) -> dict:
    """harness.clean_env (without anything that steers the uploader), and without
    LD_PRELOAD and FAKETIME either (faketime_env passes them on purpose), plus extra."""
    env = harness.clean_env()
    for k in ("LD_PRELOAD", "FAKETIME"):
        env.pop(k, None)
    env.update(extra)
    return env


def integrity(db_path: str) -> str:
    """PRAGMA integrity_check of a spool ('ok' when healthy), through the stdlib sqlite3."""
    with contextlib.closing(sqlite3.connect(db_path, timeout=10)) as db:
        rows = db.execute("PRAGMA integrity_check").fetchall()
    return "\n".join(str(r[0]) for r in rows)


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class Result(harness.Result):
    """A finished uploader run (harness.Result), shown with how long it took."""

    def __repr__(self):
        return (f"<run {' '.join(map(str, self.argv[1:]))}: exit {self.code} after "
                f"{self.elapsed:.2f} s\n--- stdout\n{self.out}--- stderr\n{self.err}>")


class Running(harness.Running):
    """An uploader started in the background (harness.Running): this file's RUN_TIMEOUT
    and Result."""

    def wait(self, timeout: float = RUN_TIMEOUT) -> Result:
        r = super().wait(timeout)
        return Result(r.argv, r.code, r.out, r.err, r.elapsed)


class Workdir(harness.Workdir):
    """A LangBot working directory: data/config.yaml and data/telemetry.db, the uploader
    pointed at them by --config and --db."""

    result_class = Result
    running_class = Running
    run_timeout = RUN_TIMEOUT

    def __init__(self, test: unittest.TestCase, url: str | None = "", parent: str | None = None):
        self.root = tempfile.mkdtemp(prefix="telespool-rel-", dir=parent)
        test.addCleanup(shutil.rmtree, self.root, True)
        self.data = os.path.join(self.root, "data")
        os.makedirs(self.data)
        self.config_path = os.path.join(self.data, "config.yaml")
        self.db_path = os.path.join(self.data, "telemetry.db")
        if url is not None:
            self.write_config(url)

    def write_config(self, url: str, disable: bool | None = None) -> None:
        lines = ["space:", f"  url: '{url}'"]
        if disable is not None:
            lines.append(f"  disable_telemetry: {str(disable).lower()}")
        lines += ["system:", "  instance_id: ''", ""]
        self.replace_config("\n".join(lines))

    # -- the spool through the binding

    def record(self, n: int, prefix: str = "q", path: str | None = None, **fields) -> list:
        """Records n query events; returns their query_ids."""
        ids = []
        with self.spool(path) as sp:
            for i in range(n):
                qid = f"{prefix}-{i}"
                sp.record_query(query_id=qid, adapter="TelegramAdapter", runner="local-agent",
                                model_name="gpt-4o", duration_ms=100 + i,
                                pipeline_plugins=["hello"], **fields)
                ids.append(qid)
        return ids

    # -- the uploader

    def argv(self, *args) -> list:
        return [UPLOAD, "--config", self.config_path, "--db", self.db_path, *args]


def query_ids_in(events: list) -> set:
    return {ev["query_id"] for ev in events}


def keys_in_log(log: list) -> list:
    return [e["idempotency_key"] for e in log]


def faketime_library() -> str | None:
    """Debian's libfaketime (LD_PRELOAD), or None."""
    for pattern in ("/usr/lib/*/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1",
                    "/usr/local/lib/faketime/libfaketime.so.1"):
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def faketime_env(offset: str, **extra) -> dict:
    """An environment that runs a program with its wall clock moved by offset ('-1y', '+1y',
    '-2h'); the monotonic clock is left alone (the uploader's deadlines use it)."""
    lib = faketime_library()
    if lib is None:
        raise unittest.SkipTest("libfaketime is not installed")
    return clean_env(LD_PRELOAD=lib, FAKETIME=offset, FAKETIME_DONT_FAKE_MONOTONIC="1",
                     FAKETIME_NO_CACHE="1", **extra)


class WriterProcess:
    """writer_child.py: records query events in a loop through the binding and writes
    'OK <query_id>' to its stdout after each record call returned success."""

    def __init__(self, db_path: str, prefix: str, count: int = 0, pace_ms: int = 0,
                 env: dict | None = None, busy_timeout_ms: int = 0, seconds: float = 0):
        argv = [sys.executable, WRITER, db_path, prefix, str(count), str(pace_ms),
                str(busy_timeout_ms), str(seconds)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=env or clean_env(),
                                     bufsize=0)
        self.acked: list[str] = []
        self.errors: list[str] = []
        self._buf = b""

    def _take(self, data: bytes) -> None:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            text = line.decode("utf-8", "replace")
            if text.startswith("OK "):
                self.acked.append(text[3:])
            elif text:
                self.errors.append(text)

    def read_until(self, n_acked: int, timeout: float = 30.0) -> None:
        """Reads the pipe until n_acked records were acknowledged (or the child ended)."""
        import selectors
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while len(self.acked) < n_acked:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"writer acknowledged only {len(self.acked)} of "
                                         f"{n_acked} records within {timeout} s")
                if not sel.select(left):
                    continue
                data = os.read(self.proc.stdout.fileno(), 65536)
                if not data:
                    return
                self._take(data)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)

    def finish(self, timeout: float = 60.0) -> int:
        """Reads everything left on the pipe and waits for the exit; returns the status."""
        while True:
            data = os.read(self.proc.stdout.fileno(), 65536)
            if not data:
                break
            self._take(data)
        code = self.proc.wait(timeout)
        err = self.proc.stderr.read().decode("utf-8", "replace")
        if err.strip():
            self.errors.append(err.strip())
        self.proc.stdout.close()
        self.proc.stderr.close()
        return code


def storage_child(scenario: dict, unshare: bool = False, timeout: float = 120.0,
                  env: dict | None = None) -> dict:
    """Runs storage_child.py with the scenario (JSON) and returns its JSON report.

    unshare=True runs it in a private mount namespace (unshare -m), where it may mount a
    small or read-only tmpfs that nobody else sees."""
    argv = [sys.executable, STORAGE_CHILD, json.dumps(scenario)]
    if unshare:
        argv = ["unshare", "-m", "--propagation", "private", *argv]
    p = subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL,
                       env=env or clean_env())
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    last = out.strip().splitlines()[-1] if out.strip() else ""
    try:
        report = json.loads(last)
    except ValueError:
        report = None
    if p.returncode != 0 or not isinstance(report, dict):
        raise AssertionError(f"storage child for {scenario.get('name')} ended with status "
                             f"{p.returncode} (a negative status is a crash by that signal)\n"
                             f"--- stdout\n{out}\n--- stderr\n{err}")
    report["_stderr"] = err
    return report


_NS_OK: tuple[bool, str] | None = None


def mount_namespace_usable() -> tuple[bool, str]:
    """Whether `unshare -m` and mounting a tmpfs inside it are permitted here."""
    global _NS_OK
    if _NS_OK is None:
        if shutil.which("unshare") is None or shutil.which("mount") is None:
            _NS_OK = (False, "unshare(1) or mount(8) is not installed")
        else:
            d = tempfile.mkdtemp(prefix="telespool-ns-probe-")
            try:
                p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                    f"mount -t tmpfs -o size=1m tmpfs {d} && "
                                    f"mount -o remount,ro {d}"],
                                   capture_output=True, text=True, timeout=30)
                _NS_OK = (p.returncode == 0,
                          f"unshare -m + mount -t tmpfs not permitted: {p.stderr.strip()}")
            finally:
                os.rmdir(d)
    return _NS_OK
