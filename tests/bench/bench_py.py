"""The host-side benchmarks, in Python (run with Debian's /usr/bin/python3: httpx is
python3-httpx).  One mode per run; each prints one JSON line on stdout.

    binding  --db PATH --n N        telespool.Spool.record_query() for each workload event
                                    (the library redacts and caps; one commit per event)
    pure     --db PATH --n N        PureSpool below: what a LangBot developer could write in
                                    30 lines with the stdlib sqlite3 module (json.dumps body,
                                    one INSERT per BEGIN IMMEDIATE/COMMIT, WAL,
                                    synchronous=NORMAL), no redaction, no caps
    httpx    --url URL --n N        LangBot's in-process sender: asyncio + httpx.AsyncClient,
                                    one POST per event, at most 8 in flight (--inflight)
    loop     --db PATH --seconds S --rate R [--busy-timeout-ms B]
                                    record_query() called from an asyncio event loop R times a
                                    second for S seconds, as LangBot's chat handler calls it;
                                    each call's time is how long it blocked the loop (also
                                    measured by a 5 ms ticker); writes "loop started" on stderr
                                    when the window opens

Each reports the wall rate and the CPU the process spent per event (time.process_time(),
user + system, all threads), measured around the loop only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sqlite3
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workload  # noqa: E402


def result(mode, n, wall, cpu, **extra):
    out = {"mode": mode, "n": n, "wall_s": wall, "rate": n / wall, "cpu_us": cpu / n * 1e6}
    out.update(extra)
    print(json.dumps(out), flush=True)


def bench_binding(args):
    import telespool
    events = workload.EVENTS
    with telespool.Spool(args.db, instance_id=workload.INSTANCE_ID, version=workload.VERSION,
                         max_events=args.max_events, max_bytes=args.max_bytes) as sp:
        rec = sp.record_query
        k = len(events)
        c0, t0 = time.process_time(), time.perf_counter()
        for i in range(args.n):
            e = events[i % k]
            rec(query_id=e["query_id"], adapter=e["adapter"], runner=e["runner"],
                model_name=e["model_name"], duration_ms=e["duration_ms"],
                pipeline_plugins=e["pipeline_plugins"], error=e["error"])
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    result("binding", args.n, wall, cpu, library=telespool.LIBRARY_PATH)


# ---- the pure-Python spool: what a LangBot developer could write in 30 lines ----

class PureSpool:
    def __init__(self, path):
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=250")
        self.db.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY,"
                        " event_id TEXT NOT NULL, body TEXT NOT NULL, created_at TEXT NOT NULL,"
                        " state TEXT NOT NULL DEFAULT 'pending',"
                        " attempts INTEGER NOT NULL DEFAULT 0)")

    def record_query(self, **fields):
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
        body = json.dumps({"event_type": "query", **fields, "version": workload.VERSION,
                           "instance_id": workload.INSTANCE_ID, "timestamp": now})
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute("INSERT INTO events (event_id, body, created_at) VALUES (?, ?, ?)",
                            (str(uuid.uuid4()), body, now))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def close(self):
        self.db.close()


def bench_pure(args):
    events = workload.EVENTS
    sp = PureSpool(args.db)
    k = len(events)
    c0, t0 = time.process_time(), time.perf_counter()
    for i in range(args.n):
        e = events[i % k]
        sp.record_query(query_id=e["query_id"], adapter=e["adapter"], runner=e["runner"],
                        model_name=e["model_name"], duration_ms=e["duration_ms"],
                        pipeline_plugins=e["pipeline_plugins"], error=e["error"] or "")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    sp.close()
    result("pure", args.n, wall, cpu, sqlite=sqlite3.sqlite_version)


# ---- LangBot's in-process sender ----

def bench_httpx(args):
    import asyncio
    import httpx

    events = workload.EVENTS
    k = len(events)
    statuses = {}

    async def main():
        sem = asyncio.Semaphore(args.inflight)
        limits = httpx.Limits(max_connections=args.inflight,
                              max_keepalive_connections=args.inflight)
        verify = args.cacert or True
        async with httpx.AsyncClient(timeout=10, limits=limits, verify=verify) as client:
            async def send(payload):
                try:
                    r = await client.post(args.url, json=payload)
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                except httpx.HTTPError as e:
                    statuses[type(e).__name__] = statuses.get(type(e).__name__, 0) + 1
                finally:
                    sem.release()

            # Warm the connection pool (not measured).
            await client.post(args.url, json=workload.langbot_payload(events[0], "x"))
            tasks = set()
            c0, t0 = time.process_time(), time.perf_counter()
            for i in range(args.n):
                await sem.acquire()  # at most `inflight` POSTs in flight
                now = datetime.datetime.now(datetime.timezone.utc).isoformat()
                t = asyncio.create_task(send(workload.langbot_payload(events[i % k], now)))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            await asyncio.gather(*tasks)
            return time.perf_counter() - t0, time.process_time() - c0

    wall, cpu = asyncio.run(main())
    result("httpx", args.n, wall, cpu, statuses={str(k): v for k, v in statuses.items()},
           httpx=httpx_version())


# ---- record calls from an asyncio loop (what blocks LangBot's event loop) ----

def bench_loop(args):
    import asyncio
    import telespool

    events = workload.EVENTS
    k = len(events)

    def pct(xs, q):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0

    async def main():
        calls, errors, stalls = [], {}, []
        kw = {"busy_timeout_ms": args.busy_timeout_ms} if args.busy_timeout_ms else {}
        with telespool.Spool(args.db, instance_id=workload.INSTANCE_ID,
                             version=workload.VERSION, **kw) as sp:
            stop = asyncio.Event()

            async def ticker():
                last = time.perf_counter()
                while not stop.is_set():
                    await asyncio.sleep(0.005)
                    now = time.perf_counter()
                    stalls.append(now - last - 0.005)
                    last = now

            t = asyncio.ensure_future(ticker())
            sys.stderr.write("loop started\n")
            sys.stderr.flush()
            period = 1.0 / args.rate
            t0 = time.perf_counter()
            c0 = time.process_time()
            i = 0
            while time.perf_counter() - t0 < args.seconds:
                e = events[i % k]
                a = time.perf_counter()
                try:
                    sp.record_query(query_id=e["query_id"], adapter=e["adapter"],
                                    runner=e["runner"], model_name=e["model_name"],
                                    duration_ms=e["duration_ms"],
                                    pipeline_plugins=e["pipeline_plugins"], error=e["error"])
                except telespool.Error as ex:
                    errors[type(ex).__name__] = errors.get(type(ex).__name__, 0) + 1
                b = time.perf_counter()
                calls.append((b - a, b - t0))
                i += 1
                # Paced like a chat handler: the next call one period after this one started.
                await asyncio.sleep(max(0.0, period - (b - a)))
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            stop.set()
            await t
        return calls, errors, stalls, wall, cpu

    calls, errors, stalls, wall, cpu = asyncio.run(main())
    d = [c[0] * 1e6 for c in calls]
    worst = max(calls, key=lambda c: c[0]) if calls else (0, 0)
    result("loop", len(calls), wall, cpu, p50_us=pct(d, 0.5), p99_us=pct(d, 0.99),
           p999_us=pct(d, 0.999), max_us=max(d, default=0), max_at_s=worst[1],
           over_10ms=sum(1 for x in d if x > 10000), busy=errors.get("BusyError", 0),
           other_errors=sum(v for k2, v in errors.items() if k2 != "BusyError"),
           max_stall_ms=max(stalls, default=0) * 1000,
           busy_timeout_ms=args.busy_timeout_ms or telespool.DEFAULT_BUSY_TIMEOUT_MS)


def httpx_version():
    import httpx
    return httpx.__version__


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["binding", "pure", "httpx", "loop"])
    ap.add_argument("--db")
    ap.add_argument("--url")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--inflight", type=int, default=8)
    ap.add_argument("--cacert", default="")
    ap.add_argument("--max-events", type=int, default=0)
    ap.add_argument("--max-bytes", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--busy-timeout-ms", type=int, default=0)
    args = ap.parse_args()
    {"binding": bench_binding, "pure": bench_pure, "httpx": bench_httpx,
     "loop": bench_loop}[args.mode](args)


if __name__ == "__main__":
    main()
