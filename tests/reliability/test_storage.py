"""Reliability: storage faults.

Each fault must end in its documented code (library) or exit status (uploader) with a clear
message, within a time bound; nothing hangs or crashes, no committed event is lost, and the
host process keeps running (the binding raises, the process records afterwards).  The
uploader on each of them exits 1 with a message naming the file.

The host side runs in storage_child.py (a child process: a crash shows as a signal status;
a private mount namespace for the small and the read-only file systems).
"""

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

from relutil import (EXIT_ERROR, EXIT_OK, EXIT_TEMPFAIL, TELEMETRY, BUSY_UPLOADER_MS,
                     FakeSpace, WriterProcess, Workdir, integrity, mount_namespace_usable,
                     read_bytes, storage_child, summary, telespool)

# Upper bounds: a failing call returns at once (no retry loop), a busy one after its bound.
FAIL_FAST_S = 2.0
SLACK_S = 1.5


def holder(db_path: str, statement: str = "BEGIN EXCLUSIVE") -> subprocess.Popen:
    """Another process holding a lock on the spool until its stdin is closed."""
    code = ("import sqlite3, sys\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)\n"
            f"db.execute({statement!r})\n"
            "db.execute('SELECT count(*) FROM events').fetchall()\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n"
            "db.execute('ROLLBACK')\n")
    p = subprocess.Popen([sys.executable, "-c", code, db_path], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()           # waits for the lock to be held (no sleeping)
    if line.strip() != "locked":
        p.kill()
        raise AssertionError(f"the lock holder did not start: {line!r}")
    return p


def release(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.stdin.close()
        p.wait(30)
    p.stdout.close()


class Base(unittest.TestCase):
    maxDiff = None

    def workdir(self, url="http://127.0.0.1:9") -> Workdir:
        return Workdir(self, url=url)

    def assertUploaderFailsNaming(self, res, path, code=EXIT_ERROR, within=15.0):
        """Exit `code`, not a crash or a hang, and a message on stderr that names the file."""
        self.assertIsNotNone(res["code"] if isinstance(res, dict) else res.code, res)
        got = res["code"] if isinstance(res, dict) else res.code
        err = res["stderr"] if isinstance(res, dict) else res.err
        secs = res["seconds"] if isinstance(res, dict) else res.elapsed
        self.assertEqual(got, code, f"uploader exit {got}, expected {code}: {err}")
        self.assertLess(secs, within, f"the uploader took {secs:.1f} s: {err}")
        self.assertIn(path, err, f"the uploader's message does not name {path}: {err!r}")

    def assertError(self, err, cls, *words, path=None):
        self.assertIsNotNone(err, f"expected {cls}, the call succeeded")
        self.assertEqual(err["class"], cls, err)
        for w in words:
            self.assertIn(w.lower(), err["message"].lower(), err)
        if path:
            self.assertIn(path, err["message"], err)

    def probe(self, path, **options) -> dict:
        other = tempfile.mkdtemp(prefix="telespool-rel-host-")
        self.addCleanup(shutil.rmtree, other, True)
        rep = storage_child({"name": "probe", "path": path, "options": options,
                             "path2": os.path.join(other, "ok.db")})
        self.assertTrue(rep["host_goes_on"], "the host could not record after the fault")
        self.assertLess(rep["open"]["seconds"], FAIL_FAST_S, rep)
        for r in rep["records"]:
            self.assertLess(r["seconds"], FAIL_FAST_S, rep)
        return rep


class FullDisk(Base):
    """Each scenario runs once (a child process); the host's and the uploader's side are
    checked by separate tests."""

    _reports = {}

    def report(self, kind):
        if kind not in FullDisk._reports:
            root = tempfile.mkdtemp(prefix="telespool-rel-full-")
            self.addClassCleanupOnce(root)
            config = os.path.join(root, "config.yaml")
            with open(config, "w") as f:
                f.write("space:\n  url: 'http://127.0.0.1:9'\n")
            if kind == "tmpfs":
                ok, why = mount_namespace_usable()
                if not ok:
                    FullDisk._reports[kind] = {"skip": why}
                else:
                    mnt = os.path.join(root, "mnt")
                    os.makedirs(mnt)
                    db = os.path.join(mnt, "telemetry.db")
                    rep = storage_child({"name": "full_fs", "dir": mnt, "size": "2m",
                                         "filler_kb": 1024, "db": db, "config": config},
                                        unshare=True)
                    rep["db"] = db
                    FullDisk._reports[kind] = rep
            else:
                db = os.path.join(root, "telemetry.db")
                rep = storage_child({"name": "fsize", "db": db, "extra_kb": 256,
                                     "config": config})
                rep["db"] = db
                FullDisk._reports[kind] = rep
        rep = FullDisk._reports[kind]
        if "skip" in rep:
            self.skipTest(rep["skip"])
        return rep

    @classmethod
    def addClassCleanupOnce(cls, root):
        cls.addClassCleanup(shutil.rmtree, root, True)

    def check_host(self, rep, fault):
        self.assertGreater(len(rep["acked"]), 0, "nothing fit before the disk was full")
        self.assertError(rep["first_error"], "FullError", "full")
        self.assertLess(rep["first_error"]["seconds"], FAIL_FAST_S)
        for e in rep["more_errors"]:
            self.assertError(e["error"], "FullError", "full")
            self.assertLess(e["seconds"], FAIL_FAST_S)
        self.assertIsNone(rep["after"]["error"], "recording failed once space was back")
        stored = set(rep["stored"])
        lost = [q for q in rep.get("before", []) + rep["acked"] if q not in stored]
        summary(fault, 1 + len(rep["more_errors"]), len(lost))
        self.assertEqual(lost, [], "committed events lost on a full disk")
        self.assertIn("after-space-is-back", stored)
        self.assertFalse(any(q.startswith("while-full") for q in stored))
        self.assertEqual(rep["integrity"], "ok")
        self.assertEqual(rep["drops"].get("disk_full"), 1 + len(rep["more_errors"]),
                         f"every event refused for a full disk is counted: {rep['drops']}")

    def test_full_file_system_tmpfs_host(self):
        self.check_host(self.report("tmpfs"), "disk full (2 MiB tmpfs)")

    def test_full_file_system_tmpfs_uploader(self):
        rep = self.report("tmpfs")
        self.assertUploaderFailsNaming(rep["uploader"], rep["db"])

    def test_file_size_limit_host(self):
        self.check_host(self.report("fsize"), "file size limit (RLIMIT_FSIZE)")

    def test_file_size_limit_uploader(self):
        """SIGXFSZ ignored (as the issue sets it up): exit 1 naming the file."""
        rep = self.report("fsize")
        self.assertUploaderFailsNaming(rep["uploader"], rep["db"])

    def test_file_size_limit_uploader_not_killed_by_sigxfsz(self):
        """Under a file size limit (ulimit -f, systemd LimitFSIZE=) the uploader, started with
        SIGXFSZ at its default, must fail with a message, not die of the signal."""
        rep = self.report("fsize")
        res = rep["uploader_default_signals"]
        self.assertGreaterEqual(res["code"], 0,
                                f"the uploader was killed by signal {-res['code']}: {res}")
        self.assertUploaderFailsNaming(res, rep["db"])


class ReadOnly(Base):

    def test_read_only_file_system(self):
        ok, why = mount_namespace_usable()
        if not ok:
            self.skipTest(why)
        wd = self.workdir()
        mnt = os.path.join(wd.root, "mnt")
        os.makedirs(mnt)
        db = os.path.join(mnt, "telemetry.db")
        rep = storage_child({"name": "readonly", "dir": mnt, "db": db,
                             "config": wd.config_path,
                             "path2": os.path.join(wd.root, "other.db")}, unshare=True)
        if "skip" in rep:
            self.skipTest(rep["skip"])
        summary("read-only file system", 3, 0)
        self.assertTrue(rep["host_goes_on"])
        self.assertError(rep["open_existing"]["error"], "StorageError", "read-only", path=db)
        self.assertError(rep["open_new"]["error"], "StorageError", "read-only",
                         path=rep["open_new"]["path"])
        self.assertLess(rep["open_existing"]["seconds"], FAIL_FAST_S)
        self.assertLess(rep["open_new"]["seconds"], FAIL_FAST_S)
        self.assertTrue(rep["untouched"])
        self.assertEqual(rep["listing_before"], rep["listing_after"])
        self.assertUploaderFailsNaming(rep["uploader"], db)

    def immutable(self, path):
        p = subprocess.run(["chattr", "+i", path], capture_output=True, text=True)
        if p.returncode != 0:
            self.skipTest(f"chattr +i is not supported here: {p.stderr.strip()}")
        self.addCleanup(subprocess.run, ["chattr", "-i", path], capture_output=True)

    def test_immutable_spool_file(self):
        if shutil.which("chattr") is None:
            self.skipTest("chattr is not installed")
        wd = self.workdir()
        ids = wd.record(5)
        before = read_bytes(wd.db_path)
        self.immutable(wd.db_path)
        rep = self.probe(wd.db_path)
        self.assertError(rep["open"]["error"], "StorageError", path=wd.db_path)
        self.assertEqual(read_bytes(wd.db_path), before)
        res = wd.run()
        self.assertUploaderFailsNaming(res, wd.db_path)
        subprocess.run(["chattr", "-i", wd.db_path], check=True)
        stored = {r["query_id"] for r in wd.query("SELECT query_id FROM events")}
        lost = [q for q in ids if q not in stored]
        summary("immutable spool file (chattr +i)", 2, len(lost))
        self.assertEqual(lost, [])

    def test_immutable_directory(self):
        """The spool is writable but nothing can be created next to it (-wal, -shm, lock)."""
        if shutil.which("chattr") is None:
            self.skipTest("chattr is not installed")
        wd = self.workdir()
        ids = wd.record(5)
        before = read_bytes(wd.db_path)
        self.immutable(wd.data)
        rep = self.probe(wd.db_path)
        err = rep["open"]["error"] or next((r["error"] for r in rep["records"] if r["error"]),
                                           None)
        self.assertError(err, "StorageError", path=wd.db_path)
        self.assertEqual(read_bytes(wd.db_path), before)
        res = wd.run()
        self.assertUploaderFailsNaming(res, wd.db_path)
        subprocess.run(["chattr", "-i", wd.data], check=True)
        stored = {r["query_id"] for r in wd.query("SELECT query_id FROM events")}
        lost = [q for q in ids if q not in stored]
        summary("immutable spool directory (chattr +i)", 2, len(lost))
        self.assertEqual(lost, [])


def damage(path: str, start: int, length: int) -> None:
    """Overwrites bytes of a file with garbage (a fixed pattern, so a run can be replayed)."""
    pattern = bytes((i * 151 + 7) & 0xFF for i in range(4096))
    with open(path, "r+b") as f:
        f.seek(start)
        left = length
        while left > 0:
            chunk = pattern[:min(left, len(pattern))]
            f.write(chunk)
            left -= len(chunk)


class Corrupt(Base):

    def spool_with_pages(self, wd, n=300):
        """A closed spool (WAL checkpointed into the file) of many pages."""
        ids = wd.record(n, error="Traceback (most recent call last):\n" + "  File y\n" * 30)
        self.assertFalse(os.path.exists(wd.db_path + "-wal"), "the WAL was not checkpointed")
        return ids

    # -- every page but the first is garbage: found at open

    def test_garbage_pages_refused_and_untouched(self):
        wd = self.workdir()
        self.spool_with_pages(wd)
        size = os.path.getsize(wd.db_path)
        damage(wd.db_path, 4096, size - 4096)
        before = read_bytes(wd.db_path)
        rep = self.probe(wd.db_path)
        err = rep["open"]["error"] or next((r["error"] for r in rep["records"] if r["error"]),
                                           None)
        self.assertError(err, "CorruptError", path=wd.db_path)
        self.assertEqual(read_bytes(wd.db_path), before, "a refused file must be left as is")
        res = wd.run()
        self.assertUploaderFailsNaming(res, wd.db_path)
        self.assertEqual(read_bytes(wd.db_path), before)
        summary("corrupt spool (garbage pages), refused", 2, 0)

    def test_garbage_pages_moved_aside(self):
        wd = self.workdir()
        self.spool_with_pages(wd)
        size = os.path.getsize(wd.db_path)
        damage(wd.db_path, 4096, size - 4096)
        before = read_bytes(wd.db_path)
        rep = self.probe(wd.db_path, on_corrupt="move_aside")
        self.check_moved_aside(wd, rep, before)
        summary("corrupt spool (garbage pages), move_aside", 1, 0)

    def check_moved_aside(self, wd, rep, before):
        self.assertIsNone(rep["open"]["error"], rep)
        self.assertTrue(all(r["error"] is None for r in rep["records"]), rep)
        aside = [n for n in os.listdir(wd.data) if n.startswith("telemetry.db.corrupt-")
                 and not n.endswith(("-wal", "-shm"))]
        self.assertEqual(len(aside), 1, os.listdir(wd.data))
        self.assertEqual(read_bytes(os.path.join(wd.data, aside[0])), before,
                         "the damaged file is kept, unchanged, for a human")
        self.assertIn(aside[0], rep["open"]["open_message"])
        self.assertEqual(integrity(wd.db_path), "ok")
        self.assertEqual(wd.drops().get("corrupt_spool"), 1)
        self.assertEqual(sorted(e["query_id"] for e in wd.events()),
                         ["probe-0", "probe-1", "probe-2"])
        with FakeSpace() as space:          # the new spool drains
            wd.write_config(space.url)
            res = wd.run()
            self.assertEqual(res.code, EXIT_OK, repr(res))
            self.assertEqual(len(space.requests(TELEMETRY)), 3)

    # -- garbage in the middle only: pages the open does not read

    def middle(self, wd):
        ids = self.spool_with_pages(wd)
        size = os.path.getsize(wd.db_path)
        damage(wd.db_path, (size // 2) & ~4095, 3 * 4096)
        return ids

    def test_garbage_in_the_middle_never_crashes(self):
        wd = self.workdir()
        self.middle(wd)
        rep = self.probe(wd.db_path)
        errors = [rep["open"]["error"]] + [r["error"] for r in rep["records"]]
        for err in errors:
            if err is not None:
                self.assertEqual(err["class"], "CorruptError", rep)
        summary("corrupt spool (garbage mid-file), host", 4, 0)

    def test_garbage_in_the_middle_uploader_names_the_file(self):
        wd = self.workdir()
        self.middle(wd)
        with FakeSpace() as space:
            wd.write_config(space.url)
            res = wd.run()
            # It may deliver the rows before the damage, but it must say what is wrong with
            # which file, and not claim success.
            self.assertUploaderFailsNaming(res, wd.db_path)
            self.assertRegex(res.err.lower(), "malformed|damaged|corrupt")

    def test_garbage_in_the_middle_events_recorded_after_the_damage(self):
        """The host keeps recording into a spool whose data pages are damaged (in the
        default refuse mode nothing reads those pages on the record path).  Such events
        cannot be claimed past the damage; what must hold is that nobody is left in the
        dark: every uploader run fails (exit 1) naming the file and the remedy, nothing is
        reported as delivered that was not, and the remedy (on_corrupt=move_aside at the
        next LangBot start) moves the file aside, intact for sqlite3's .recover, and
        starts a working spool."""
        wd = self.workdir()
        self.middle(wd)
        acked = []
        with wd.spool() as sp:
            for i in range(10):
                try:
                    sp.record_query(query_id=f"after-damage-{i}")
                    acked.append(f"after-damage-{i}")
                except telespool.CorruptError:
                    pass
        with FakeSpace() as space:
            wd.write_config(space.url)
            for _ in range(2):
                res = wd.run("--ignore-backoff")
                self.assertUploaderFailsNaming(res, wd.db_path)
                self.assertIn("move the file aside", res.err)
            delivered = {json.loads(e["body"])["query_id"] for e in space.requests()}
        before = read_bytes(wd.db_path)
        rep = self.probe(wd.db_path, on_corrupt="move_aside")
        self.check_moved_aside(wd, rep, before)
        held = [q for q in acked if q not in delivered]
        summary("corrupt spool (garbage mid-file), default refuse mode: events recorded "
                "after the damage held in the moved-aside file for .recover, operator told",
                len(acked), 0)
        self.assertTrue(held or acked == [], "expected the damage to hold events back")

    def test_garbage_in_the_middle_status_explains(self):
        """--status on such a spool fails (exit 1) and must say why, and about which file."""
        wd = self.workdir()
        self.middle(wd)
        res = wd.run("--status")
        self.assertEqual(res.code, EXIT_ERROR, repr(res))
        self.assertRegex(res.err.lower(), "malformed|damaged|corrupt",
                         f"--status gives no reason: {res.err!r}")
        self.assertIn(wd.db_path, res.err)

    def test_garbage_in_the_middle_move_aside(self):
        """README: on_corrupt=move_aside renames a damaged spool and starts a new one.  A
        spool whose data pages are damaged is damaged too, even if its schema page is fine."""
        wd = self.workdir()
        self.middle(wd)
        before = read_bytes(wd.db_path)
        rep = self.probe(wd.db_path, on_corrupt="move_aside")
        self.check_moved_aside(wd, rep, before)

    # -- not a database at all

    def not_a_database(self, wd):
        with open(wd.db_path, "wb") as f:
            f.write(b"this is not an SQLite database, it is a text file\n" * 400)
        return read_bytes(wd.db_path)

    def test_not_a_database_refused_and_untouched(self):
        wd = self.workdir()
        before = self.not_a_database(wd)
        rep = self.probe(wd.db_path)
        self.assertError(rep["open"]["error"], "CorruptError", path=wd.db_path)
        self.assertEqual(read_bytes(wd.db_path), before)
        self.assertEqual(sorted(os.listdir(wd.data)), ["config.yaml", "telemetry.db"])
        res = wd.run()
        self.assertUploaderFailsNaming(res, wd.db_path)
        self.assertEqual(read_bytes(wd.db_path), before)
        summary("not a database", 2, 0)

    def test_not_a_database_moved_aside(self):
        wd = self.workdir()
        before = self.not_a_database(wd)
        rep = self.probe(wd.db_path, on_corrupt="move_aside")
        self.check_moved_aside(wd, rep, before)
        summary("not a database, move_aside", 1, 0)

    # -- written by a newer telespool

    def test_newer_schema_refused_and_untouched(self):
        wd = self.workdir()
        ids = wd.record(5)
        with contextlib.closing(sqlite3.connect(wd.db_path)) as db:
            db.execute("PRAGMA user_version = 999")
            db.commit()
        before = read_bytes(wd.db_path)
        for options in ({}, {"on_corrupt": "move_aside"}):
            rep = self.probe(wd.db_path, **options)
            self.assertError(rep["open"]["error"], "SchemaError", "999", path=wd.db_path)
            self.assertEqual(read_bytes(wd.db_path), before, options)
        self.assertFalse([n for n in os.listdir(wd.data) if ".corrupt-" in n],
                         "a newer schema is not damage: never moved aside")
        res = wd.run()
        self.assertUploaderFailsNaming(res, wd.db_path)
        self.assertEqual(read_bytes(wd.db_path), before)
        stored = {r["query_id"] for r in wd.query("SELECT query_id FROM events")}
        lost = [q for q in ids if q not in stored]
        summary("newer schema (user_version 999)", 3, len(lost))
        self.assertEqual(lost, [])


class CrashedWriterWal(Base):

    def test_wal_left_behind_is_recovered(self):
        wd = self.workdir()
        w = WriterProcess(wd.db_path, "w")
        w.read_until(400)
        w.kill()
        self.assertEqual(w.finish(), -signal.SIGKILL)
        self.assertEqual(w.errors, [])
        wal = wd.db_path + "-wal"
        self.assertTrue(os.path.exists(wal) and os.path.getsize(wal) > 0,
                        "expected the killed writer to leave a WAL")
        # As after a reboot: the file and its WAL, without the shared-memory index.
        moved = os.path.join(wd.root, "rebooted")
        os.makedirs(moved)
        shutil.copy(wd.db_path, os.path.join(moved, "telemetry.db"))
        shutil.copy(wal, os.path.join(moved, "telemetry.db-wal"))
        lost_total = 0
        for path in (wd.db_path, os.path.join(moved, "telemetry.db")):
            rep = self.probe(path)
            self.assertIsNone(rep["open"]["error"], rep)
            self.assertTrue(all(r["error"] is None for r in rep["records"]), rep)
            self.assertEqual(integrity(path), "ok")
            stored = {r["query_id"] for r in wd.query("SELECT query_id FROM events", path=path)}
            lost = [q for q in w.acked if q not in stored]
            lost_total += len(lost)
            self.assertEqual(lost, [], path)
        with FakeSpace() as space:
            wd.write_config(space.url)
            res = wd.run()
            self.assertEqual(res.code, EXIT_OK, repr(res))
            keys = {e["idempotency_key"] for e in space.requests()}
        self.assertEqual(keys, {ev["event_id"] for ev in wd.events()})
        summary("WAL left by a killed writer (in place and without -shm)", 2, lost_total)


class Busy(Base):

    def test_exclusive_lock_host_gets_busy_error_then_goes_on(self):
        wd = self.workdir()
        ids = wd.record(3)
        h = holder(wd.db_path)
        try:
            # One handle at a time: two handles on one file in one process are another
            # test's subject (test_crash.HandlesInOneProcess).
            for busy_ms in (600, 0):
                sp = wd.spool(busy_timeout_ms=busy_ms)
                self.addCleanup(sp.close)
                bound = (busy_ms or 250) / 1000
                t0 = time.monotonic()
                with self.assertRaises(telespool.BusyError) as cm:
                    sp.record_query(query_id=f"blocked-{busy_ms}")
                secs = time.monotonic() - t0
                self.assertGreaterEqual(secs, bound * 0.9)
                self.assertLess(secs, bound + SLACK_S)
                self.assertIn(f"{busy_ms or 250} ms", str(cm.exception))
                if busy_ms:
                    sp.close()
        finally:
            release(h)
        sp.record_query(query_id="after")           # the same handle goes on
        sp.close()
        stored = {e["query_id"] for e in wd.events()}
        lost = [q for q in ids + ["after"] if q not in stored]
        summary("spool locked (BEGIN EXCLUSIVE) by another process: host", 3, len(lost))
        self.assertEqual(lost, [])
        self.assertFalse(any(q.startswith("blocked") for q in stored))

    def test_exclusive_lock_uploader_at_start(self):
        """Busy is temporary: like a busy claim (drain.c), exit 75, not 1, naming the file."""
        with FakeSpace() as space:
            wd = self.workdir(space.url)
            wd.record(6)
            h = holder(wd.db_path)
            try:
                res = wd.run()
            finally:
                release(h)
            self.assertLess(res.elapsed, BUSY_UPLOADER_MS / 1000 + SLACK_S + 1, repr(res))
            self.assertEqual(len(space.requests()), 0)
            again = wd.run()
            self.assertEqual(again.code, EXIT_OK, repr(again))
            keys = {e["idempotency_key"] for e in space.requests()}
        lost = {ev["event_id"] for ev in wd.events()} - keys
        summary("spool locked (BEGIN EXCLUSIVE) by another process: uploader", 1, len(lost))
        self.assertEqual(lost, set())
        self.assertRegex(res.err, "locked|busy")
        self.assertUploaderFailsNaming(res, wd.db_path, code=EXIT_TEMPFAIL, within=10)

    def test_exclusive_lock_while_uploader_records_outcomes(self):
        with FakeSpace({"rules": [{"path": TELEMETRY, "delay_ms": 300}]}) as space:
            wd = self.workdir(space.url)
            wd.record(6)
            run = wd.start()
            space.wait_for_count(1, timeout=20)     # the first batch is in flight
            h = holder(wd.db_path)
            try:
                res = run.wait(timeout=30)
            finally:
                release(h)
            self.assertIn(res.code, (EXIT_ERROR, EXIT_TEMPFAIL), repr(res))
            self.assertLess(res.elapsed, 10 + BUSY_UPLOADER_MS / 1000 + SLACK_S + 1, repr(res))
            self.assertRegex(res.err, "locked|busy")
            space.set_behaviour({})
            again = wd.run()
            self.assertEqual(again.code, EXIT_OK, repr(again))
            keys = [e["idempotency_key"] for e in space.requests()]
        events = wd.events()
        lost = {ev["event_id"] for ev in events} - set(keys)
        summary("spool locked while the uploader records outcomes", 1, len(lost))
        self.assertEqual(lost, set())
        self.assertTrue(all(ev["state"] == "sent" and ev["lease_until"] is None
                            for ev in events), events)


if __name__ == "__main__":
    unittest.main()
