#!/usr/bin/python3
"""telespool's benchmark driver: runs every measurement and prints ONE table of figures
(each a ratio measured side by side in this run) and the scaling table.

Run it through tests/bench/run.sh, which builds a Release tree and passes:
    bench.py --build-dir B --bench-bin B/bench_record --work DIR [--quick]

Needs Debian's /usr/bin/python3 with python3-httpx, and nginx (nginx-light): a throwaway
nginx is configured in DIR on a free loopback port, started and stopped here; the system's
nginx is never touched.  See tests/bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import wan  # noqa: E402
import workload  # noqa: E402

PY = "/usr/bin/python3"  # Debian's: python3-httpx lives there
TSU_CEILING = 128  # the uploader's most requests in flight (uploader/src/concurrency.h)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


class Machine:
    """How busy the machine was while we ran: all CPUs vs our own process tree."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.stat0 = self._stat()
        self.own0 = self._own()
        self.load0 = os.getloadavg()

    @staticmethod
    def _stat():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]
        return sum(v[:8]) - idle, sum(v[:8])

    @staticmethod
    def _own():
        s = os.times()
        return s.user + s.system + s.children_user + s.children_system

    def report(self):
        busy1, tot1 = self._stat()
        ncpu = os.cpu_count() or 1
        wall = time.monotonic() - self.t0
        busy_cores = (busy1 - self.stat0[0]) / max(1, tot1 - self.stat0[1]) * ncpu
        own_cores = (self._own() - self.own0) / wall
        return {"cpus": ncpu, "wall_s": wall, "busy_cores": busy_cores,
                "own_cores": own_cores, "other_cores": max(0.0, busy_cores - own_cores),
                "load_start": self.load0, "load_end": os.getloadavg()}


class Nginx:
    """A throwaway nginx on 127.0.0.1:<free port>, everything in its own directory."""

    def __init__(self, work):
        self.dir = os.path.join(work, "nginx")
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        self.port, self.tls_port = free_port(), free_port()
        self.certs = wan.make_certs(self.dir)
        self.conf = os.path.join(self.dir, "nginx.conf")
        d = self.dir
        c = self.certs
        with open(self.conf, "w") as f:
            f.write(f"""# Throwaway nginx for telespool's benchmark (tests/bench).
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    # Bodies stay in memory (a stored body is at most 64 KiB): no temp files.
    client_body_buffer_size 128k;
    client_max_body_size 1m;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    server {{
        listen 127.0.0.1:{self.port};
        location /api/v1/ {{
            default_type application/json;
            # nginx reads and discards the POST body before answering.
            return 200 '{{"code":0,"msg":"ok","data":{{}}}}';
        }}
    }}
    # The same over TLS with h2 offered (ALPN), as Space is reached: for the WAN rows.
    server {{
        listen 127.0.0.1:{self.tls_port} ssl http2;
        ssl_certificate {c["cert"]};
        ssl_certificate_key {c["key"]};
        location /api/v1/ {{
            default_type application/json;
            return 200 '{{"code":0,"msg":"ok","data":{{}}}}';
        }}
    }}
}}
""")
        self.proc = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self):
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = subprocess.Popen(
            [nginx, "-p", self.dir, "-c", self.conf, "-e", f"{self.dir}/logs/error.log"],
            stdout=subprocess.DEVNULL, stderr=open(f"{self.dir}/logs/stderr", "w"))
        deadline = time.monotonic() + 5
        while True:
            try:
                req = urllib.request.Request(self.url + "/api/v1/telemetry", data=b'{"x":1}',
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=1) as r:
                    body = r.read()
                    if r.status == 200 and b'"code":0' in body:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = open(f"{self.dir}/logs/stderr").read()
                raise SystemExit(f"nginx did not start: {err}")
            time.sleep(0.05)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def errors(self):
        try:
            with open(f"{self.dir}/logs/error.log") as f:
                return [ln for ln in f if "[error]" in ln or "[crit]" in ln or "[alert]" in ln]
        except OSError:
            return []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_of(stderr):
    """The peak number of requests in flight from the uploader's summary line."""
    import re
    m = re.search(r"in flight \(\w+, peak (\d+)", stderr or "")
    return int(m.group(1)) if m else 0


def rm_db(path):
    for suffix in ("", "-wal", "-shm", ".upload-lock", ".tpl"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass


def db_bytes(path):
    return sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))


class Bench:
    def __init__(self, args):
        self.a = args
        self.quick = args.quick
        self.work = args.work
        self.build = args.build_dir
        self.upload_bin = os.path.join(self.build, "uploader", "telespool-upload")
        self.lib = os.path.join(self.build, "lib", "libtelespool.so")
        self.workload = os.path.join(self.work, "workload.json")
        self.env = dict(os.environ)
        for k in ("SPACE__URL", "SPACE__DISABLE_TELEMETRY", "SYSTEM__INSTANCE_ID",
                  "LANGBOT_TELEMETRY_INGEST_TOKEN", "http_proxy", "https_proxy", "HTTP_PROXY",
                  "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
            self.env.pop(k, None)
        self.env["TELESPOOL_LIBRARY"] = self.lib
        self.env["PYTHONPATH"] = os.path.join(ROOT, "lib", "python")
        self.env["INVOCATION_ID"] = "bench"  # no progress line from the uploader
        self.masters = {}
        self.nginx = Nginx(self.work)
        self.res = {}
        os.environ["TELESPOOL_LIBRARY"] = self.lib
        sys.path.insert(0, os.path.join(ROOT, "lib", "python"))
        import telespool  # noqa: F401  (checks the library loads, for fill())

    # -- runners --

    def c(self, mode, db, **kw):
        cmd = [self.a.bench_bin, mode, "--workload", self.workload, "--db", db]
        for k, v in kw.items():
            cmd += ["--" + k.replace("_", "-"), str(v)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=self.env)
        return json.loads(out.stdout.strip().splitlines()[-1])

    def py(self, mode, **kw):
        cmd = [PY, os.path.join(HERE, "bench_py.py"), mode]
        for k, v in kw.items():
            cmd += ["--" + k.replace("_", "-"), str(v)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=self.env)
        return json.loads(out.stdout.strip().splitlines()[-1])

    def data_dir(self, name, disabled=False, url=None):
        d = os.path.join(self.work, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.yaml"), "w") as f:
            f.write(f"space:\n  url: '{url or self.nginx.url}'\n"
                    f"  disable_telemetry: {'true' if disabled else 'false'}\n"
                    f"system:\n  instance_id: '{workload.INSTANCE_ID}'\n")
        return d

    def upload(self, db, disabled=False, extra=(), popen=False, rss=False, url=None,
               max_seconds=3600):
        """Runs telespool-upload on db; returns wall time, CPU (wait4), exit code, and with
        rss=True its peak RSS as measured by /usr/bin/time (a child of this big Python
        process would inherit its high-water mark through exec, Linux keeps it)."""
        d = self.data_dir("updata-off" if disabled else "updata", disabled, url)
        cmd = [self.upload_bin, "--data-dir", d, "--db", db, "--max-seconds", str(max_seconds),
               *extra]
        rss_file = os.path.join(self.work, "rss.txt")
        if rss:
            cmd = ["/usr/bin/time", "-f", "%M", "-o", rss_file] + cmd
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        if popen:
            return p, t0
        r = self.reap(p, t0)
        if rss:
            with open(rss_file) as f:
                r["rss_kb"] = int(f.read().split()[-1])
        return r

    @staticmethod
    def reap(p, t0):
        # wait4 for the child's rusage (CPU); stderr is small (one line).
        err = ""
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.stderr:
            err = p.stderr.read()
        return {"wall_s": wall, "rc": p.returncode, "rss_kb": 0,
                "cpu_s": ru.ru_utime + ru.ru_stime, "stderr": err.strip()}

    @staticmethod
    def q(db, sql, *params):
        con = sqlite3.connect(db, timeout=30, isolation_level=None)  # autocommit
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()

    def last_run(self, db):
        return self.q(db, "SELECT sent, retried, dead, purged, outcome FROM upload_runs"
                          " ORDER BY id DESC LIMIT 1")[0]

    # -- spools of a given size, filled with SQL from real recorded events --

    def fill(self, path, n, state="pending"):
        """A spool of n realistic events: the workload recorded through the library, then
        copied with SQL (fresh random event_ids, fresh query_ids in the bodies)."""
        import telespool
        rm_db(path)
        k = len(workload.EVENTS)
        with telespool.Spool(path, instance_id=workload.INSTANCE_ID, version=workload.VERSION,
                             max_events=n + 10, max_bytes=1 << 40) as sp:
            for e in workload.EVENTS[:min(k, n)]:
                sp.record_query(**e)
        con = sqlite3.connect(path, isolation_level=None, timeout=30)
        con.execute("PRAGMA synchronous=OFF")
        con.execute("PRAGMA cache_size=-262144")
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        later = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 86400))
        uuid = ("lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' ||"
                " substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4),"
                " 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))")
        st = {"pending": ("'pending'", "0", ":now", "NULL"),
              "sent": ("'sent'", "1", ":now", ":now"),
              "backoff": ("'pending'", "1", ":later", "NULL")}[state]
        sql = (f"WITH RECURSIVE c(x) AS (SELECT :x0 UNION ALL SELECT x + 1 FROM c WHERE x < :x1)"
               f" INSERT INTO spool (state, attempts, next_attempt_at, created_at, sent_at,"
               f" size, event_id, event_type, body)"
               f" SELECT {st[0]}, {st[1]}, {st[2]}, :now, {st[3]}, size, {uuid}, event_type,"
               f" json_set(body, '$.query_id', qid)"
               f" FROM (SELECT t.*, printf('%08x-%07d', ((x * {k} + t.id) * 2654435761)"
               f" % 4294967296, x * {k} + t.id) AS qid FROM c, spool t WHERE t.id <= {k})")
        con.execute(f"UPDATE spool SET state = {st[0]}, attempts = {st[1]},"
                    f" next_attempt_at = {st[2]}, sent_at = {st[3]}",
                    {"now": now, "later": later})
        x, chunk = 1, max(1, 50000 // k)
        left = (n - min(k, n)) // k
        while left > 0:
            m = min(chunk, left)
            con.execute("BEGIN")
            con.execute(sql, {"x0": x, "x1": x + m - 1, "now": now, "later": later})
            con.execute("COMMIT")
            x += m
            left -= m
        rest = n - con.execute("SELECT count(*) FROM spool").fetchone()[0]
        if rest > 0:  # n not a multiple of the workload's length
            con.execute(sql.replace("WHERE t.id <= ", f"WHERE t.id <= {rest} AND t.id <= "),
                        {"x0": x, "x1": x, "now": now, "later": later})
        # Where an uploader that had sent these would have left pending_from.
        con.execute("UPDATE uploader_state SET value = coalesce((SELECT min(id) FROM spool"
                    " WHERE state = 'pending'), (SELECT max(id) + 1 FROM spool))"
                    " WHERE key = 'pending_from'")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        got = self.q(path, "SELECT count(*), count(DISTINCT event_id) FROM spool")[0]
        assert got == (n, n), (got, n)

    def spool(self, n, state="pending"):
        """A fresh copy of the master spool of n events in state."""
        key = (n, state)
        if key not in self.masters:
            path = os.path.join(self.work, f"master-{state}-{n}.db")
            t0 = time.monotonic()
            self.fill(path, n, state)
            log(f"filled a {n:,}-event {state} spool in {time.monotonic() - t0:.1f} s"
                f" ({os.path.getsize(path) / 1e6:.0f} MB)")
            self.masters[key] = path
        dst = os.path.join(self.work, f"spool-{state}-{n}.db")
        rm_db(dst)
        shutil.copyfile(self.masters[key], dst)
        # Flushed now, or the first checkpoint's fsync in the measurement would write the
        # whole copy out.
        with open(dst, "rb+") as f:
            os.fsync(f.fileno())
        return dst

    def drop_master(self, n, state):
        path = self.masters.pop((n, state), None)
        if path:
            rm_db(path)

    # -- the measurements --

    def record_rounds(self):
        """Figures 1-3: raw SQLite vs telespool (C) vs the binding vs pure Python."""
        # Many short rounds: a burst of noise from the shared machine lands in one round
        # and one mode, and the median of the per-round ratios sets it aside.
        rounds, n = (5, 5000) if self.quick else (15, 10000)
        migrations = os.path.join(ROOT, "migrations")
        modes = ["raw", "row", "schema", "telespool", "binding", "pure"]
        got = {m: [] for m in modes}
        for r in range(rounds):
            order = modes[r % len(modes):] + modes[:r % len(modes)]
            for m in order:
                db = os.path.join(self.work, f"rec-{m}.db")
                rm_db(db)
                if m in ("binding", "pure"):
                    got[m].append(self.py(m, db=db, n=n))
                else:
                    got[m].append(self.c(m, db, n=n, migrations=migrations))
                rm_db(db)
            log(f"record round {r + 1}/{rounds}: " + ", ".join(
                f"{m} {got[m][-1]['rate']:,.0f}/s" for m in modes))
        self.res["record"] = {m: {"rate": median([x["rate"] for x in v]),
                                  "cpu_us": median([x["cpu_us"] for x in v]),
                                  "p99_us": median([x.get("p99_us", 0) for x in v]),
                                  "rates": [x["rate"] for x in v]} for m, v in got.items()}
        # Ratios per round (side by side), then their median.
        ratio = lambda a, b: median([x["rate"] / y["rate"] for x, y in zip(got[a], got[b])])
        self.res["ratio_c_raw"] = ratio("telespool", "raw")
        self.res["ratio_py_c"] = ratio("binding", "telespool")
        self.res["ratio_py_pure"] = ratio("binding", "pure")

    def httpx_and_drain(self):
        """Figures 4 and 6: LangBot's in-process httpx sender vs the binding's CPU, and the
        uploader's drain rate vs the httpx sender, against the same nginx."""
        rounds = 2 if self.quick else 3
        nh = 3000 if self.quick else 6000
        nd = 50000 if self.quick else 100000
        hx, dr = [], []
        for r in range(rounds):
            h = self.py("httpx", url=self.nginx.url + "/api/v1/telemetry", n=nh)
            if h["statuses"] != {"200": nh}:
                raise SystemExit(f"httpx sender did not get 200s: {h['statuses']}")
            hx.append(h)
            db = self.spool(nd)
            u = self.upload(db, rss=True)
            sent = self.q(db, "SELECT count(*) FROM spool WHERE state = 'sent'")[0][0]
            run = self.last_run(db)
            if u["rc"] != 0 or sent != nd or run[0] != nd or run[4] != "ok":
                raise SystemExit(f"drain did not deliver everything: {u} sent={sent} run={run}")
            u["rate"] = nd / u["wall_s"]
            dr.append(u)
            rm_db(db)
            log(f"httpx/drain round {r + 1}/{rounds}: httpx {h['rate']:,.0f}/s at"
                f" {h['cpu_us']:.0f} us CPU/event; uploader {u['rate']:,.0f}/s,"
                f" {u['cpu_s'] / nd * 1e6:.1f} us CPU/event, RSS {u['rss_kb'] / 1024:.1f} MB")
        self.res["httpx"] = {"rate": median([h["rate"] for h in hx]),
                             "cpu_us": median([h["cpu_us"] for h in hx]), "n": nh,
                             "httpx": hx[0]["httpx"]}
        self.res["drain"] = {"rate": median([d["rate"] for d in dr]),
                             "cpu_us": median([d["cpu_s"] / nd * 1e6 for d in dr]),
                             "rss_kb": max(d["rss_kb"] for d in dr), "n": nd}
        self.res["ratio_drain_httpx"] = median([d["rate"] / h["rate"] for d, h in zip(dr, hx)])
        self.res["ratio_cpu_httpx_binding"] = (self.res["httpx"]["cpu_us"] /
                                               self.res["record"]["binding"]["cpu_us"])

    def contend(self):
        """Figure 5: 8 threads record at a steady rate while the uploader starts (its
        housekeeping included) and drains a backlog just under the library's default bounds
        (140,000 events of this workload are ~124 MB of the 128 MiB max_bytes)."""
        backlog, secs = 140000, 8
        runs = []
        variants = ([("paced", 250.0, True)] * (1 if self.quick else 2) +
                    [("paced, no uploader", 250.0, False), ("flat-out", 0, True)])
        for name, rate, uploader in variants:
            db = self.spool(backlog)
            cmd = [self.a.bench_bin, "contend", "--workload", self.workload, "--db", db,
                   "--threads", "8", "--rate", str(rate), "--seconds", str(secs)]
            p = subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            p.stderr.readline()  # "contend started"
            if uploader:
                time.sleep(1.0)  # the uploader starts one second into the window
                up, t0 = self.upload(db, popen=True)
            out, _ = p.communicate()
            res = json.loads(out.strip().splitlines()[-1])
            res.update(variant=name, uploader_sent=0, uploader_outcome="-")
            if uploader:
                # Still running?  Asked without reaping it (reap() wants its rusage).
                if os.waitid(os.P_PID, up.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                    up.send_signal(signal.SIGTERM)  # stops after its batch, records the run
                u = self.reap(up, t0)
                run = self.last_run(db)
                res.update(uploader_sent=run[0], uploader_outcome=run[4],
                           uploader_rc=u["rc"], uploader_wall_s=u["wall_s"])
                if run[0] <= 0:
                    raise SystemExit(f"the uploader did not drain during the window: {run} {u}")
            runs.append(res)
            rm_db(db)
            log(f"contend {name}: {res['calls']:,} calls, p50 {res['p50_us']:.0f} us,"
                f" p99 {res['p99_us']:.0f} us, max {res['max_us'] / 1000:.1f} ms at"
                f" {res['max_at_s']:.2f} s, busy {res['busy']}, other errors"
                f" {res['other_errors']}; uploader sent {res['uploader_sent']:,}"
                f" ({res['uploader_outcome']})")
        paced = [r for r in runs if r["variant"] == "paced"]
        self.res["contend"] = max(paced, key=lambda r: r["p99_us"])
        self.res["contend_all"] = runs
        self.res["contend_flat"] = [r for r in runs if r["variant"] == "flat-out"][0]

    def loop_record(self):
        """The event-loop figure: record_query() from an asyncio event loop (LangBot's chat handler) at
        500 calls/s while the uploader starts and drains the same backlog as contend(): how
        long one call blocks the loop (p99, p99.9, max), with the library's default
        busy_timeout_ms and with a smaller one."""
        backlog, secs = 140000, 6 if self.quick else 8
        runs = []
        variants = [("default busy_timeout", 0)] * (1 if self.quick else 2) + \
            [("busy_timeout 100 ms", 100)]
        for name, busy in variants:
            db = self.spool(backlog)
            cmd = [PY, os.path.join(HERE, "bench_py.py"), "loop", "--db", db, "--seconds",
                   str(secs), "--rate", "500"]
            if busy:
                cmd += ["--busy-timeout-ms", str(busy)]
            p = subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            p.stderr.readline()  # "loop started"
            time.sleep(1.0)  # the uploader starts one second into the window
            up, t0 = self.upload(db, popen=True)
            out, _ = p.communicate()
            res = json.loads(out.strip().splitlines()[-1])
            if os.waitid(os.P_PID, up.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                up.send_signal(signal.SIGTERM)
            u = self.reap(up, t0)
            run = self.last_run(db)
            res.update(variant=name, uploader_sent=run[0], uploader_outcome=run[4],
                       uploader_rc=u["rc"])
            if run[0] <= 0:
                raise SystemExit(f"the uploader did not drain during the window: {run} {u}")
            runs.append(res)
            rm_db(db)
            log(f"loop {name}: {res['n']:,} calls, p50 {res['p50_us']:.0f} us,"
                f" p99 {res['p99_us']:.0f} us, p99.9 {res['p999_us']:.0f} us,"
                f" max {res['max_us'] / 1000:.1f} ms at {res['max_at_s']:.2f} s, loop stall"
                f" {res['max_stall_ms']:.1f} ms, busy {res['busy']}; uploader sent"
                f" {res['uploader_sent']:,} ({res['uploader_outcome']})")
        default = [r for r in runs if r["variant"] == "default busy_timeout"]
        self.res["loop"] = max(default, key=lambda r: r["p999_us"])
        self.res["loop_all"] = runs

    def idle_ms(self, db, runs):
        ws = []
        for _ in range(runs):
            u = self.upload(db)
            run = self.last_run(db)
            if u["rc"] != 0 or run[4] != "nothing_due":
                raise SystemExit(f"idle run was not idle: {u} {run}")
            ws.append(u["wall_s"] * 1000)
        return median(ws)

    def scaling(self):
        """The scaling table, and figures 7-9 (RSS, idle run, purge) from its rows."""
        sizes = [10000, 100000] if self.quick else [10000, 100000, 1000000]
        rows = []
        # The record cost on an empty spool, to compare with a full one (same options:
        # bounds high enough that nothing is evicted).
        big = dict(max_events=10**8, max_bytes=1 << 40)
        n_rec = 5000
        empty_db = os.path.join(self.work, "rec-empty.db")
        idle_runs = 5 if self.quick else 7
        # An idle run on a fresh, empty spool: the run's fixed cost.
        rm_db(empty_db)
        self.c("telespool", empty_db, n=1)
        self.q(empty_db, "UPDATE spool SET state = 'sent', sent_at = created_at")
        self.res["idle_empty_ms"] = self.idle_ms(empty_db, idle_runs)
        rm_db(empty_db)
        for n in sizes:
            row = {"n": n}
            # Drain: every event POSTed and recorded as sent.
            db = self.spool(n)
            u = self.upload(db, rss=True)
            run = self.last_run(db)
            if u["rc"] != 0 or run[0] != n:
                raise SystemExit(f"drain of {n} failed: {u} {run}")
            row.update(drain_s=u["wall_s"], drain_rate=n / u["wall_s"],
                       drain_us=u["wall_s"] / n * 1e6, drain_rss_kb=u["rss_kb"],
                       drain_cpu_us=u["cpu_s"] / n * 1e6)
            # Idle run on the drained spool: n sent audit copies, nothing due.
            row["idle_sent_ms"] = self.idle_ms(db, idle_runs)
            rm_db(db)
            # Idle run while everything waits for its backoff (Space was down).
            db = self.spool(n, "backoff")
            row["idle_backoff_ms"] = self.idle_ms(db, idle_runs)
            rm_db(db)
            self.drop_master(n, "backoff")
            # Record rate on a spool already holding n events vs an empty one, side by side.
            db = self.spool(n)
            full_r, empty_r = [], []
            for _ in range(3 if self.quick else 5):
                rm_db(empty_db)
                empty_r.append(self.c("telespool", empty_db, n=n_rec, **big))
                full_r.append(self.c("telespool", db, n=n_rec, **big))
            rm_db(empty_db)
            row["record_full_rate"] = median([x["rate"] for x in full_r])
            row["record_empty_rate"] = median([x["rate"] for x in empty_r])
            row["record_ratio"] = median([f["rate"] / e["rate"]
                                          for f, e in zip(full_r, empty_r)])
            row["record_full_p99_us"] = median([x["p99_us"] for x in full_r])
            rm_db(db)
            # Opt-out purge: wall time and the space given back.
            db = self.spool(n)
            before = db_bytes(db)
            u = self.upload(db, disabled=True, rss=True)
            after = db_bytes(db)
            left = self.q(db, "SELECT count(*) FROM spool")[0][0]
            run = self.last_run(db)
            if u["rc"] != 0 or left != 0 or run[4] != "purged":
                raise SystemExit(f"purge of {n} failed: {u} left={left} run={run}")
            row.update(purge_s=u["wall_s"], purge_us=u["wall_s"] / n * 1e6,
                       bytes_before=before, bytes_after=after, purge_rss_kb=u["rss_kb"])
            rm_db(db)
            # A spool 10x over its bound (opened with max_events = n / 10, as after lowering
            # the bound, or a spool grown past the defaults): the first record call.
            db = self.spool(n)
            r = self.c("telespool", db, n=1, max_events=n // 10, max_bytes=1 << 40)
            row["over_bound_ms"] = r["max_us"] / 1000
            rm_db(db)
            self.drop_master(n, "pending")
            rows.append(row)
            log(f"scaling {n:,}: drain {row['drain_rate']:,.0f}/s, idle(sent)"
                f" {row['idle_sent_ms']:.1f} ms, idle(backoff) {row['idle_backoff_ms']:.1f} ms,"
                f" record full/empty {row['record_ratio']:.2f}, purge {row['purge_s']:.2f} s,"
                f" RSS {row['drain_rss_kb'] / 1024:.1f} MB")
        self.res["scaling"] = rows

    def durability_rounds(self):
        """The cost of durability=full (a sync per commit) against normal, side by side."""
        rounds, n = (3, 300) if self.quick else (7, 500)
        got = {"normal": [], "full": []}
        for r in range(rounds):
            for level in (("normal", "full") if r % 2 == 0 else ("full", "normal")):
                db = os.path.join(self.work, f"dur-{level}.db")
                rm_db(db)
                got[level].append(self.c("telespool", db, n=n, durability=level))
                rm_db(db)
            log(f"durability round {r + 1}/{rounds}: normal {got['normal'][-1]['rate']:,.0f}/s,"
                f" full {got['full'][-1]['rate']:,.0f}/s")
        self.res["durability"] = {
            k: {"rate": median([x["rate"] for x in v]),
                "p99_us": median([x.get("p99_us", 0) for x in v])} for k, v in got.items()}
        self.res["ratio_full_normal"] = median(
            [f["rate"] / nn["rate"] for f, nn in zip(got["full"], got["normal"])])

    # -- WAN: round trips and a rate-limited Space --

    def wan(self):
        """Drain rates through a delaying proxy (100 ms and 300 ms round trips, TLS and
        h2 from nginx behind it) for telespool's defaults and LangBot's pattern, side by
        side; then a Space that accepts R requests/s and answers 429 + Retry-After beyond."""
        ca = self.nginx.certs["ca"]
        rounds = 1 if self.quick else 2
        rows = []
        for rtt in (100, 300):
            px = wan.Helper("proxy", "--port", str(port := free_port()), "--upstream-port",
                            str(self.nginx.tls_port), "--delay-ms", str(rtt))
            url = f"https://127.0.0.1:{port}"
            # Enough events for several seconds at each side's physical limit.
            nt = int(TSU_CEILING / (rtt / 1000) * 6)
            nh = int(8 / (rtt / 1000) * 6)
            tr, hr, peaks = [], [], []
            try:
                for r in range(rounds):
                    db = self.spool(nt)
                    u = self.upload(db, url=url, extra=("--cacert", ca))
                    run = self.last_run(db)
                    if u["rc"] != 0 or run[0] != nt or run[4] != "ok":
                        raise SystemExit(f"WAN drain at {rtt} ms failed: {u} {run}")
                    peaks.append(peak_of(u["stderr"]))
                    tr.append(nt / u["wall_s"])
                    rm_db(db)
                    h = self.py("httpx", url=url + "/api/v1/telemetry", n=nh, cacert=ca)
                    if h["statuses"] != {"200": nh}:
                        raise SystemExit(f"httpx at {rtt} ms: {h['statuses']}")
                    hr.append(h["rate"])
                    log(f"WAN {rtt} ms round {r + 1}/{rounds}: telespool {tr[-1]:,.0f}/s"
                        f" (peak {peaks[-1]} in flight), LangBot's pattern {hr[-1]:,.0f}/s")
            finally:
                px.stop()
            self.drop_master(nt, "pending")
            rows.append({"rtt_ms": rtt, "n": nt, "n_httpx": nh, "telespool": median(tr),
                         "httpx": median(hr), "peak": max(peaks),
                         "ratio": median([t / h for t, h in zip(tr, hr)]),
                         "limit_telespool": TSU_CEILING / (rtt / 1000),
                         "limit_httpx": 8 / (rtt / 1000)})
        self.res["wan"] = rows

        # A Space limited to R requests/s, 100 ms away.
        rate, secs = 200, (30 if self.quick else 45)
        logf = os.path.join(self.work, "limited.log")
        sp = wan.Helper("limited", "--port", str(port := free_port()), "--rate", str(rate),
                        "--delay-ms", "100", "--log", logf)
        try:
            db = self.spool(rate * secs * 2)
            u = self.upload(db, url=f"http://127.0.0.1:{port}", max_seconds=secs)
        finally:
            sp.stop()
        with open(logf) as f:
            answers = [(float(t), st) for t, st in (ln.split() for ln in f if ln.strip())]
        rm_db(db)
        t0 = answers[0][0]
        # After the first 10 s, up to the last whole second before the run's deadline.
        w0, w1 = t0 + 10, t0 + secs - 2
        win = [st for t, st in answers if w0 <= t < w1]
        ok, n429 = win.count("200"), win.count("429")
        self.res["limited"] = {"rate": rate, "secs": secs, "window_s": w1 - w0,
                               "delivered": ok / (w1 - w0), "ratio": ok / (w1 - w0) / rate,
                               "share_429": n429 / max(1, len(win)), "n429": n429,
                               "n": len(win), "summary": u["stderr"].splitlines()[-1],
                               "total_429": sum(1 for _, st in answers if st == "429")}
        lim = self.res["limited"]
        log(f"rate-limited Space ({rate}/s, 100 ms): delivered {lim['delivered']:,.0f}/s"
            f" after 10 s ({lim['ratio']:.2f} of R), 429s {lim['share_429'] * 100:.1f} %"
            f" ({n429} of {len(win)}); {lim['summary']}")

    def wan_figures(self, fig):
        for w in self.res["wan"]:
            fig(f"drain rate at {w['rtt_ms']} ms RTT (TLS, h2), defaults / LangBot's pattern",
                f"{w['ratio']:.1f}x", ">= 10x", w["ratio"] >= 10,
                f"{w['telespool']:,.0f}/s (peak {w['peak']} in flight; physical limit"
                f" 128/RTT = {w['limit_telespool']:,.0f}/s) vs {w['httpx']:,.0f}/s (8 in"
                f" flight; physical limit {w['limit_httpx']:,.0f}/s)")
        lim = self.res["limited"]
        fig(f"Space limited to {lim['rate']}/s (100 ms): delivered / R after the first 10 s",
            f"{lim['ratio']:.2f}", ">= 0.8", lim["ratio"] >= 0.8,
            f"{lim['delivered']:,.0f}/s over {lim['window_s']:.0f} s")
        fig(f"Space limited to {lim['rate']}/s: share of 429 answers after the first 10 s",
            f"{lim['share_429'] * 100:.1f} %", "<= 5 %", lim["share_429"] <= 0.05,
            f"{lim['n429']} of {lim['n']}; {lim['total_429']} in the whole run")

    # -- the tables --

    def tables(self):
        r = self.res
        rec, sc = r["record"], r["scaling"]
        biggest = sc[-1]
        mid = [x for x in sc if x["n"] == 100000][0]
        ct = r["contend"]
        figs = []

        def fig(name, measured, target, ok, detail=""):
            figs.append((name, measured, target, "PASS" if ok else "FAIL", detail))

        fig("telespool_record_query rate / raw SQLite insert (same body, WAL, NORMAL)",
            f"{r['ratio_c_raw']:.2f}", ">= 0.75", r["ratio_c_raw"] >= 0.75,
            f"{rec['telespool']['rate']:,.0f}/s vs {rec['raw']['rate']:,.0f}/s")
        fig("Python binding record_query rate / C rate",
            f"{r['ratio_py_c']:.2f}", ">= 0.5", r["ratio_py_c"] >= 0.5,
            f"{rec['binding']['rate']:,.0f}/s vs {rec['telespool']['rate']:,.0f}/s")
        fig("Python binding rate / pure-Python sqlite3 spool (binding redacts and caps)",
            f"{r['ratio_py_pure']:.2f}", ">= 1.0", r["ratio_py_pure"] >= 1.0,
            f"{rec['binding']['rate']:,.0f}/s vs {rec['pure']['rate']:,.0f}/s")
        fig("host CPU per event: httpx POST (LangBot today) / Python binding",
            f"{r['ratio_cpu_httpx_binding']:.1f}x less", ">= 20x less",
            r["ratio_cpu_httpx_binding"] >= 20,
            f"{r['httpx']['cpu_us']:.0f} us vs {rec['binding']['cpu_us']:.1f} us")
        fig("record p99 latency, 8 threads x 250/s while the uploader drains",
            f"{ct['p99_us'] / 1000:.2f} ms, {ct['busy']} busy",
            "<= 5 ms, 0 busy", ct["p99_us"] <= 5000 and ct["busy"] == 0
            and ct["other_errors"] == 0,
            f"max {ct['max_us'] / 1000:.1f} ms, {ct['over_50ms']} calls > 50 ms")
        lp = r["loop"]
        fig("record p99 / p99.9 from an asyncio loop, 500/s while the uploader drains",
            f"{lp['p99_us'] / 1000:.2f} / {lp['p999_us'] / 1000:.2f} ms, {lp['busy']} busy",
            "<= 5 / 50 ms, 0 busy", lp["p99_us"] <= 5000 and lp["p999_us"] <= 50000
            and lp["busy"] == 0 and lp["other_errors"] == 0,
            f"max {lp['max_us'] / 1000:.1f} ms (bound: busy_timeout_ms"
            f" {lp['busy_timeout_ms']} + one commit), longest loop stall"
            f" {lp['max_stall_ms']:.1f} ms")
        fig("drain rate (1 POST/event, nginx) / LangBot's httpx pattern (same nginx)",
            f"{r['ratio_drain_httpx']:.1f}x", ">= 20x", r["ratio_drain_httpx"] >= 20,
            f"{r['drain']['rate']:,.0f}/s vs {r['httpx']['rate']:,.0f}/s")
        self.wan_figures(fig)
        fig(f"uploader peak RSS draining a {biggest['n']:,}-event spool",
            f"{biggest['drain_rss_kb'] / 1024:.1f} MB", "<= 16 MB",
            biggest["drain_rss_kb"] <= 16 * 1024,
            "" if biggest["n"] >= 1000000 else "quick run: not the 1,000,000 of the target")
        fig("idle uploader run (nothing due, no network), 100,000 sent events kept",
            f"{mid['idle_sent_ms']:.1f} ms", "<= 10 ms", mid["idle_sent_ms"] <= 10,
            f"empty spool {r['idle_empty_ms']:.1f} ms")
        fig(f"opt-out purge of {biggest['n']:,} events, space reclaimed",
            f"{biggest['purge_s']:.2f} s", "<= 10 s",
            biggest["purge_s"] <= 10 and biggest["bytes_after"] < biggest["bytes_before"] / 20,
            f"{biggest['bytes_before'] / 1e6:.0f} MB -> {biggest['bytes_after'] / 1e6:.2f} MB"
            + ("" if biggest["n"] >= 1000000 else "; quick run: not 1,000,000"))
        d = r["durability"]
        fig("record rate, durability=full (a sync per commit) / normal",
            f"{r['ratio_full_normal']:.3f}", "reported", True,
            f"{d['full']['rate']:,.0f}/s vs {d['normal']['rate']:,.0f}/s;"
            f" p99 {d['full']['p99_us'] / 1000:.2f} ms vs {d['normal']['p99_us'] / 1000:.2f} ms")

        out = []
        w = max(len(f[0]) for f in figs)
        out.append(f"| {'figure':<{w}} | measured | target | result | detail |")
        out.append(f"|{'-' * (w + 2)}|---|---|---|---|")
        for f in figs:
            out.append(f"| {f[0]:<{w}} | {f[1]} | {f[2]} | {f[3]} | {f[4]} |")

        ctx = []
        ctx.append("| context (same run) | rate /s | CPU us/event | p99 us |")
        ctx.append("|---|---|---|---|")
        names = {"raw": "raw SQLite: (id, body), WAL, NORMAL, BEGIN IMMEDIATE/COMMIT per row",
                 "row": "raw SQLite: the row telespool stores (columns of `spool`), no indexes",
                 "schema": "raw SQLite: that row into the spool's real schema (migrations)",
                 "telespool": "telespool_record_query (C)",
                 "binding": "Python binding record_query",
                 "pure": "pure-Python sqlite3 spool (json.dumps, no redaction)"}
        for m, label in names.items():
            if m not in rec:
                continue
            x = rec[m]
            ctx.append(f"| {label} | {x['rate']:,.0f} | {x['cpu_us']:.1f} | "
                       f"{x['p99_us']:.0f} |" if m not in ("binding", "pure") else
                       f"| {label} | {x['rate']:,.0f} | {x['cpu_us']:.1f} | - |")
        h = r["httpx"]
        ctx.append(f"| LangBot's sender: asyncio + httpx {h['httpx']} AsyncClient, 8 in flight,"
                   f" nginx | {h['rate']:,.0f} | {h['cpu_us']:.0f} | - |")
        d = r["drain"]
        ctx.append(f"| telespool-upload drain of {d['n']:,} events, nginx (wall rate;"
                   f" uploader CPU) | {d['rate']:,.0f} | {d['cpu_us']:.1f} | - |")
        for c in r["contend_all"]:
            upl = (f" + uploader (sent {c['uploader_sent']:,})" if c["uploader_sent"]
                   else "")
            ctx.append(f"| contention, 8 threads {c['variant']} ({c['achieved_rate']:,.0f}/s"
                       f" achieved){upl}; max"
                       f" {c['max_us'] / 1000:.1f} ms at {c['max_at_s']:.2f} s, busy {c['busy']}"
                       f" | {c['achieved_rate']:,.0f} | {c['cpu_us']:.1f} | {c['p99_us']:.0f} |")

        for c in r["loop_all"]:
            ctx.append(f"| asyncio loop, record_query 500/s, {c['variant']}"
                       f" ({c['busy_timeout_ms']} ms) + uploader (sent {c['uploader_sent']:,});"
                       f" p99.9 {c['p999_us']:.0f} us, max {c['max_us'] / 1000:.1f} ms at"
                       f" {c['max_at_s']:.2f} s, {c['over_10ms']} calls > 10 ms, busy"
                       f" {c['busy']} | {c['rate']:,.0f} | {c['cpu_us']:.1f} | {c['p99_us']:.0f} |")

        sc_out = []
        sc_out.append("| events in spool | drain /s | drain us/event | drain RSS MB |"
                      " idle run, all sent | idle run, all backing off |"
                      " record rate full/empty | record p99 us (full) | purge s |"
                      " purge us/event | file MB before -> after |")
        sc_out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for x in sc:
            sc_out.append(
                f"| {x['n']:,} | {x['drain_rate']:,.0f} | {x['drain_us']:.1f} |"
                f" {x['drain_rss_kb'] / 1024:.1f} | {x['idle_sent_ms']:.1f} ms |"
                f" {x['idle_backoff_ms']:.1f} ms | {x['record_ratio']:.2f} |"
                f" {x['record_full_p99_us']:.0f} | {x['purge_s']:.2f} | {x['purge_us']:.1f} |"
                f" {x['bytes_before'] / 1e6:.0f} -> {x['bytes_after'] / 1e6:.2f} |")
        growth, checks = [], []
        for a, b in zip(sc, sc[1:]):
            k = b["n"] / a["n"]
            growth.append(f"x{k:.0f} events: drain time x{b['drain_s'] / a['drain_s']:.1f},"
                          f" purge time x{b['purge_s'] / a['purge_s']:.1f}, idle run (sent)"
                          f" x{b['idle_sent_ms'] / a['idle_sent_ms']:.1f}, idle run (backoff)"
                          f" x{b['idle_backoff_ms'] / a['idle_backoff_ms']:.1f}, first record"
                          f" over bound x{b['over_bound_ms'] / a['over_bound_ms']:.1f}")
            # Linear, never worse: per-event cost may not grow by more than noise (1.5x).
            for what in ("drain", "purge"):
                per_a, per_b = a[what + "_us"], b[what + "_us"]
                checks.append((f"{what} cost per event, {a['n']:,} -> {b['n']:,} events",
                               f"x{per_b / per_a:.2f}", "<= x1.5 (linear)", per_b <= 1.5 * per_a))
        for x in sc:
            checks.append((f"record rate on a spool of {x['n']:,} events / on an empty one",
                           f"{x['record_ratio']:.2f}", ">= 0.8 (flat)", x["record_ratio"] >= 0.8))
        growth.append("first record call on a spool 10x over its max_events: " + ", ".join(
            f"{x['over_bound_ms']:,.0f} ms at {x['n']:,}" for x in sc))
        chk = ["| scaling check | measured | target | result |", "|---|---|---|---|"]
        chk += [f"| {c[0]} | {c[1]} | {c[2]} | {'PASS' if c[3] else 'FAIL'} |" for c in checks]
        return out, ctx, sc_out, growth, chk

    def run_wan_only(self):
        """--wan-only: the WAN and rate-limit rows alone."""
        m = Machine()
        subprocess.run([PY, os.path.join(HERE, "workload.py"), self.workload], check=True)
        self.nginx.start()
        try:
            self.wan()
        finally:
            self.nginx.stop()
        mach = m.report()
        figs = []
        self.wan_figures(lambda *f: figs.append(f))
        print(f"\ntelespool benchmark (WAN rows only), {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
        print(f"machine: {mach['cpus']} CPUs; {mach['busy_cores']:.2f} cores busy on average,"
              f" {mach['other_cores']:.2f} by other processes; nginx {self.nginx_version()}")
        for f in figs:
            print(f"| {f[0]} | {f[1]} | {f[2]} | {'PASS' if f[3] else 'FAIL'} | {f[4]} |")
        return sum(1 for f in figs if not f[3])

    def run(self):
        if self.a.wan_only:
            return self.run_wan_only()
        m = Machine()
        subprocess.run([PY, os.path.join(HERE, "workload.py"), self.workload], check=True)
        self.nginx.start()
        log(f"nginx on {self.nginx.url} (pid {self.nginx.proc.pid}); work dir {self.work}")
        try:
            self.record_rounds()
            self.durability_rounds()
            self.httpx_and_drain()
            self.wan()
            self.contend()
            self.loop_record()
            self.scaling()
        finally:
            self.nginx.stop()
        errs = self.nginx.errors()
        mach = m.report()
        figs, ctx, sc, growth, chk = self.tables()
        print()
        print(f"telespool benchmark ({'quick' if self.quick else 'full'} run), "
              f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
        print(f"machine: {mach['cpus']} CPUs; during the run {mach['busy_cores']:.2f} cores"
              f" busy on average, {mach['own_cores']:.2f} by this benchmark and"
              f" {mach['other_cores']:.2f} by other processes; load average"
              f" {mach['load_start'][0]:.2f} -> {mach['load_end'][0]:.2f}; run took"
              f" {mach['wall_s']:.0f} s")
        print(f"sqlite {sqlite3.sqlite_version}, nginx {self.nginx_version()},"
              f" httpx {self.res['httpx']['httpx']}, library {self.lib}")
        if errs:
            print(f"nginx error log: {len(errs)} errors, first: {errs[0].strip()}")
        print()
        print("\n".join(figs))
        print()
        print("\n".join(ctx))
        print()
        print("Scaling (each row a fresh spool of that many realistic events):")
        print("\n".join(sc))
        for g in growth:
            print("  " + g)
        print()
        print("\n".join(chk))
        fails = sum(1 for line in figs[2:] if "| FAIL |" in line)
        cfails = sum(1 for line in chk[2:] if "| FAIL |" in line)
        print()
        print(f"figures: {len(figs) - 2 - fails} passed, {fails} failed;"
              f" scaling checks: {len(chk) - 2 - cfails} passed, {cfails} failed")
        fails += cfails
        with open(os.path.join(self.work, "results.json"), "w") as f:
            json.dump({"machine": mach, **self.res}, f, indent=1, default=str)
        return fails

    @staticmethod
    def nginx_version():
        p = subprocess.run([shutil.which("nginx") or "/usr/sbin/nginx", "-v"],
                           capture_output=True, text=True)
        return p.stderr.strip().split("/")[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--bench-bin", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--wan-only", action="store_true")
    args = ap.parse_args()
    b = Bench(args)

    def on_signal(sig, frame):
        b.nginx.stop()
        raise SystemExit(130)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    fails = b.run()
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
