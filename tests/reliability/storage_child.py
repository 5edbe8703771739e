"""The host side of the storage-fault tests, in a child process of its own.

    python3 storage_child.py '{"name": "...", ...}'

A child, so that the test can see a crash (a negative exit status) instead of dying with it,
give it resource limits, or give it a private mount namespace (run under `unshare -m`) where
it mounts a tiny or read-only tmpfs nobody else sees.  It prints one JSON report as its last
stdout line and exits 0; the test asserts on the report.

Scenarios ("name"):
  probe      open a spool (options from the scenario), record 3 events, read pending_survey,
             close; then open a second, healthy spool and record there (the host goes on).
  full_fs    mount a tmpfs of "size" at "dir", fill part of it, record until the disk is
             full, run the uploader on the full disk, free the space, record again.
  fsize      the same with RLIMIT_FSIZE (SIGXFSZ ignored) instead of a small file system.
  readonly   mount a tmpfs at "dir", write a spool there, remount it read-only, then open the
             existing spool and a new one in an empty directory, and run the uploader.
"""

import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
import contextlib

import relutil  # noqa: F401  (sys.path, environment)
import telespool

OPTS = dict(instance_id=relutil.INSTANCE_ID, version=relutil.LANGBOT_VERSION)


def timed(fn, *args, **kw):
    """(result or None, error dict or None, seconds)."""
    t0 = time.monotonic()
    try:
        value = fn(*args, **kw)
        return value, None, time.monotonic() - t0
    except telespool.Error as e:
        return None, {"class": type(e).__name__, "code": e.code, "message": str(e)}, \
            time.monotonic() - t0


def record(sp, qid):
    sp.record_query(query_id=qid, adapter="TelegramAdapter", runner="local-agent",
                    model_name="gpt-4o", duration_ms=1, pipeline_plugins=["hello"],
                    error="Traceback (most recent call last):\n" + "  File x\n" * 40
                          + "ValueError: boom")


def stored_ids(path):
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
        return [r[0] for r in db.execute("SELECT query_id FROM events")]


def drops(path):
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
        return dict(db.execute("SELECT reason, count FROM drops").fetchall())


def uploader(s, *extra, inherit_signals=False):
    """Runs the uploader; inherit_signals=True passes on this process's ignored SIGXFSZ
    (subprocess otherwise restores SIGPIPE, SIGXFSZ to their defaults)."""
    t0 = time.monotonic()
    try:
        p = subprocess.run([relutil.UPLOAD, "--config", s["config"], "--db", s["db"], *extra],
                           capture_output=True, text=True, timeout=60,
                           env=relutil.clean_env(), restore_signals=not inherit_signals)
        return {"code": p.returncode, "stderr": p.stderr, "stdout": p.stdout,
                "seconds": time.monotonic() - t0}
    except subprocess.TimeoutExpired:
        return {"code": None, "stderr": "HANG: no exit within 60 s", "stdout": "",
                "seconds": time.monotonic() - t0}


def mount(*args):
    p = subprocess.run(["mount", *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"mount {' '.join(args)}: {p.stderr.strip()}")


def probe(s):
    rep = {"open": None, "records": [], "survey": None}
    kw = dict(OPTS, **s.get("options", {}))
    sp, err, secs = timed(telespool.Spool, s["path"], **kw)
    rep["open"] = {"error": err, "seconds": secs,
                   "open_message": sp.open_message if sp else None}
    if sp is not None:
        for i in range(3):
            _, err, secs = timed(record, sp, f"probe-{i}")
            rep["records"].append({"error": err, "seconds": secs})
        _, err, secs = timed(sp.pending_survey)
        rep["survey"] = {"error": err, "seconds": secs}
        sp.close()
    # The host goes on: a healthy spool works in the same process.
    with telespool.Spool(s["path2"], **OPTS) as sp2:
        record(sp2, "host-goes-on")
    rep["host_goes_on"] = stored_ids(s["path2"]) == ["host-goes-on"]
    return rep


def fill_until_full(sp, prefix, limit_s=30.0):
    acked, first_error, t0 = [], None, time.monotonic()
    i = 0
    while time.monotonic() - t0 < limit_s and i < 100000:
        qid = f"{prefix}-{i}"
        _, err, secs = timed(record, sp, qid)
        if err:
            first_error = dict(err, seconds=secs)
            break
        acked.append(qid)
        i += 1
    return acked, first_error


def full_common(s, sp, free_space):
    rep = {}
    acked, first = fill_until_full(sp, "fill")
    rep["acked"], rep["first_error"] = acked, first
    more = []
    for i in range(3):
        _, err, secs = timed(record, sp, f"while-full-{i}")
        more.append({"error": err, "seconds": secs})
    rep["more_errors"] = more
    rep["uploader"] = uploader(s, inherit_signals=True)
    # As cron or systemd would start it: SIGXFSZ at its default (terminate).
    rep["uploader_default_signals"] = uploader(s)
    free_space()
    _, err, secs = timed(record, sp, "after-space-is-back")
    rep["after"] = {"error": err, "seconds": secs}
    sp.close()
    rep["stored"] = stored_ids(s["db"])
    rep["drops"] = drops(s["db"])
    rep["integrity"] = relutil.integrity(s["db"])
    return rep


def full_fs(s):
    mount("-t", "tmpfs", "-o", f"size={s['size']}", "tmpfs", s["dir"])
    filler = os.path.join(s["dir"], "filler")
    with open(filler, "wb") as f:
        f.write(os.urandom(s["filler_kb"] * 1024))
    sp = telespool.Spool(s["db"], **OPTS)
    return full_common(s, sp, lambda: os.unlink(filler))


def fsize(s):
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)     # inherited by the uploader too
    sp = telespool.Spool(s["db"], **OPTS)
    for i in range(5):
        record(sp, f"before-{i}")
    size = max(os.path.getsize(s["db"]), os.path.getsize(s["db"] + "-wal"))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + s["extra_kb"] * 1024, hard))
    rep = full_common(s, sp, lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard)))
    rep["before"] = [f"before-{i}" for i in range(5)]
    return rep


def readonly(s):
    d = s["dir"]
    mount("-t", "tmpfs", "-o", "size=8m", "tmpfs", d)
    os.makedirs(os.path.join(d, "empty"))
    with telespool.Spool(s["db"], **OPTS) as sp:
        for i in range(10):
            record(sp, f"ro-{i}")
    with open(s["db"], "rb") as f:
        before = f.read()
    listing = sorted(os.listdir(d))
    mount("-o", "remount,ro", d)
    rep = {"listing_before": listing}
    _, err, secs = timed(telespool.Spool, s["db"], **OPTS)
    rep["open_existing"] = {"error": err, "seconds": secs}
    new = os.path.join(d, "empty", "telemetry.db")
    _, err, secs = timed(telespool.Spool, new, **OPTS)
    rep["open_new"] = {"error": err, "seconds": secs, "path": new}
    rep["uploader"] = uploader(s)
    rep["status"] = uploader(s, "--status")
    with open(s["db"], "rb") as f:
        rep["untouched"] = f.read() == before
    rep["listing_after"] = sorted(os.listdir(d))
    with telespool.Spool(s["path2"], **OPTS) as sp2:
        record(sp2, "host-goes-on")
    rep["host_goes_on"] = stored_ids(s["path2"]) == ["host-goes-on"]
    return rep


def main():
    s = json.loads(sys.argv[1])
    try:
        rep = {"probe": probe, "full_fs": full_fs, "fsize": fsize,
               "readonly": readonly}[s["name"]](s)
    except RuntimeError as e:           # the environment refused (mount): the test skips
        rep = {"skip": str(e)}
    print(json.dumps(rep), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
