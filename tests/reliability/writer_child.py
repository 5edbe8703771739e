"""A LangBot-like host process for the reliability tests: records query events through the
Python binding in a loop and, after each record call returned success, writes
"OK <query_id>" to stdout (unbuffered, one write per line).  A failed call writes
"ERR <class> <message>" and the loop goes on.  The parent may SIGKILL it at any moment.

    python3 writer_child.py DB PREFIX COUNT PACE_MS BUSY_TIMEOUT_MS SECONDS

COUNT 0 means no limit; PACE_MS > 0 waits up to that many ms (random) between records, to
spread a load over time; SECONDS > 0 stops after that long.  Exits 0 when done.
"""

import os
import random
import sys
import time

import relutil  # noqa: F401  (sets up sys.path and checks the environment)
import telespool


def main() -> int:
    db, prefix, count, pace_ms, busy_ms, seconds = sys.argv[1:7]
    count, pace_ms, busy_ms, seconds = int(count), int(pace_ms), int(busy_ms), float(seconds)
    rnd = random.Random()
    end = time.monotonic() + seconds if seconds > 0 else None
    with telespool.Spool(db, instance_id=relutil.INSTANCE_ID, version=relutil.LANGBOT_VERSION,
                         busy_timeout_ms=busy_ms) as sp:
        i = 0
        while count == 0 or i < count:
            if end is not None and time.monotonic() >= end:
                break
            qid = f"{prefix}-{i}"
            try:
                sp.record_query(query_id=qid, adapter="TelegramAdapter", runner="local-agent",
                                model_name="gpt-4o", duration_ms=i,
                                pipeline_plugins=["hello", "weather"],
                                error=None if i % 7 else "Traceback: boom\nValueError: x")
            except telespool.Error as e:
                os.write(1, f"ERR {type(e).__name__} {e}\n".encode())
            else:
                os.write(1, f"OK {qid}\n".encode())
            i += 1
            if pace_ms > 0:
                time.sleep(rnd.uniform(0, pace_ms) / 1000.0)   # load shaping, not syncing
    return 0


if __name__ == "__main__":
    sys.exit(main())
