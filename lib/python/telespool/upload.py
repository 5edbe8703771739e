"""Running telespool-upload from LangBot's own event loop (no cron, no service manager).

For ``uvx langbot`` / pip installs where nothing else would run the uploader: LangBot's task
manager runs one upload every 15 minutes in a child process (the ``telespool-upload`` program
inside the wheel), without ever blocking its event loop or raising into it.

    from telespool import upload

    # One run, awaited (a bounded time; never raises, except CancelledError):
    result = await upload.upload_once(data_dir="data")
    logger.info("telemetry upload: %s", result)        # result.outcome, .sent, .exit_code ...

    # Every 15 minutes (jittered), as a task LangBot's task manager owns:
    ap.task_mgr.create_task(upload.run_periodically(900), name="telemetry-upload",
                            scopes=[core_entities.LifecycleControlScope.APPLICATION])
    # or, with no task manager:  task = upload.start_periodic(900)  ...  task.cancel()

How a run is bounded: the child gets ``--max-seconds`` (it stops sending by itself then); past
``timeout`` it is sent SIGTERM (it stops within a second at its next safe point: the requests
in flight are abandoned, their events released for the next run, the run's outcome recorded),
and SIGKILL 5 s later.  Cancelling the awaiting task does
the same before CancelledError goes on.  The run's outcome is read from the spool's record of
its runs (``telespool-upload --status --json``, a second child bounded the same way by 30 s),
the same words as ``upload_runs.outcome``.  So a call returns within ``timeout`` + 40 s even
when the program hangs and ignores SIGTERM (a working program: ``timeout`` + 1 s).

The program is found (the first that applies): ``program=``; ``TELESPOOL_UPLOAD`` (a path);
the wheel's ``telespool/_bin/telespool-upload``; a source tree's ``build/uploader/``; then
``telespool-upload`` on PATH when it is the program itself, not a script that calls this module.
This module's ``main()`` is the wheel's ``telespool-upload`` console script: it execs the
program with the same arguments.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import json
import logging
import os
import random
import re
import signal
import sys
import time
from typing import Awaitable, Callable, Mapping, Optional, Sequence, Union

__all__ = ["UploadResult", "upload_once", "run_periodically", "start_periodic", "find_program",
           "main", "EXIT_OK", "EXIT_ERROR", "EXIT_TEMPFAIL", "EXIT_CONFIG"]

log = logging.getLogger("telespool.upload")

EXIT_OK = 0          # done (also nothing due, purged, another uploader running, no spool)
EXIT_ERROR = 1       # anything else (the spool is unusable, libcurl cannot be loaded ...)
EXIT_TEMPFAIL = 75   # events are left for a later run after retryable failures
EXIT_CONFIG = 78     # the configuration or the command line is invalid; nothing sent or deleted

_HERE = os.path.dirname(os.path.abspath(__file__))
_NAME = "telespool-upload"
_KILL_AFTER = 5.0            # seconds between SIGTERM and SIGKILL
_STATUS_TIMEOUT = 30.0       # bound of the --status --json child
# How much earlier than this process's launch time a run's started_at may read and still be
# the run it launched: the program records whole milliseconds, truncated.  Anything looser
# takes the previous run for this one when this one recorded none (a bad argument, no spool).
_CLOCK_SLACK = 0.002


def _is_program(path: str) -> bool:
    """An executable ELF file (not a Python console script, which would call us again)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF" and os.access(path, os.X_OK)
    except OSError:
        return False


def find_program() -> Optional[str]:
    """The telespool-upload program this module runs, or None when none is found."""
    env = os.environ.get("TELESPOOL_UPLOAD")
    if env:
        return env
    candidates = [os.path.join(_HERE, "_bin", _NAME)]
    d = _HERE
    while True:
        candidates.append(os.path.join(d, "build", "uploader", _NAME))
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    candidates += [os.path.join(p, _NAME) for p in os.environ.get("PATH", "").split(os.pathsep)
                   if p]
    for c in candidates:
        if _is_program(c):
            return c
    return None


def main() -> None:
    """The ``telespool-upload`` console script: execs the program with the same arguments."""
    prog = find_program()
    if prog is None:
        sys.stderr.write("telespool-upload: the telespool-upload program is not in this "
                         "installation (set TELESPOOL_UPLOAD to its path)\n")
        sys.exit(EXIT_ERROR)
    try:
        os.execv(prog, [prog, *sys.argv[1:]])
    except OSError as e:
        sys.stderr.write(f"telespool-upload: cannot run {prog}: {e.strerror}\n")
        sys.exit(EXIT_ERROR)


@dataclasses.dataclass(frozen=True)
class UploadResult:
    """What one upload run did.

    ``outcome`` is the run's outcome as the spool records it (``ok``, ``nothing_due``,
    ``server_down``, ``throttled``, ``purged``, ``no_url``, ``time_limit``, ``stopped``,
    ``interrupted``, ``error`` ...), or one of: ``config_error`` (exit 78), ``no_run`` (exit 0 without a run
    recorded: no spool yet, or another uploader was running), ``timeout`` (stopped by
    ``timeout``), ``not_started`` (no program, or it could not be executed), ``failed`` (any
    other failure, in ``detail``).
    """

    outcome: str
    exit_code: Optional[int]     # the program's exit status; None if not started or killed
    sent: int = 0
    retried: int = 0
    dead: int = 0
    purged: int = 0
    pending: Optional[int] = None   # events left in the spool after the run, when known
    seconds: float = 0.0            # wall time of the run
    detail: str = ""                # the run's detail text, or what went wrong
    status: Optional[dict] = None   # the spool's --status --json after the run, when read

    @property
    def ok(self) -> bool:
        """True when the run finished with exit 0 (also: nothing due, purged)."""
        return self.exit_code == EXIT_OK

    def __str__(self) -> str:
        text = (f"{self.outcome}: sent {self.sent}, retried {self.retried}, dead {self.dead}, "
                f"purged {self.purged} in {self.seconds:.1f} s (exit {self.exit_code})")
        return f"{text} - {self.detail}" if self.detail else text


def _iso_ms(text: str) -> Optional[float]:
    try:
        dt = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    except (TypeError, ValueError):
        return None
    return dt.replace(tzinfo=datetime.timezone.utc).timestamp()


def _signal_group(proc: asyncio.subprocess.Process, sig: int) -> None:
    """Signals the child and whatever it started: it leads a session (and group) of its own."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL after _KILL_AFTER seconds, to the child's process group; reaps
    the child.  The group, because a descendant left behind holding the output pipes would
    keep the run from ever ending."""
    if proc.returncode is None:
        _signal_group(proc, signal.SIGTERM)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), _KILL_AFTER)
    _signal_group(proc, signal.SIGKILL)
    await proc.wait()


async def _run(argv: Sequence[str], env: Optional[Mapping[str, str]], cwd: Optional[str],
               timeout: float) -> tuple[Optional[int], str, str, bool]:
    """Runs argv; returns (exit code or None, stdout, stderr, timed out).  Output goes to
    pipes read by the loop; on timeout or cancellation the child is stopped and reaped."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=dict(env) if env is not None else None, cwd=cwd,
        start_new_session=True)     # a Ctrl-C at LangBot's terminal is LangBot's to handle
    comm = asyncio.ensure_future(proc.communicate())
    try:
        done, _ = await asyncio.wait({comm}, timeout=timeout)
        timed_out = not done
        if timed_out:
            await _stop(proc)
            # Only a descendant that left the child's session could still hold the pipes.
            done, _ = await asyncio.wait({comm}, timeout=_KILL_AFTER)
        if done:
            out, err = await comm
        else:
            comm.cancel()
            out, err = b"", b""
    except BaseException:       # cancelled: stop the child, then let the cancellation go on
        await asyncio.shield(_stop(proc))
        comm.cancel()
        raise
    code = proc.returncode
    return (None if code is None or code < 0 else code,
            out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), timed_out)


def _messages(text: str, limit: int = 1000) -> str:
    """The program's stderr lines as one line, without the program's name ("a; b")."""
    lines = [re.sub(r"^telespool-upload: ", "", ln.strip()) for ln in text.splitlines()
             if ln.strip()]
    joined = "; ".join(lines)
    return joined if len(joined) <= limit else joined[:limit - 3] + "..."


async def upload_once(*, data_dir: str = "data", config: Optional[str] = None,
                      db: Optional[str] = None, max_seconds: int = 120,
                      timeout: Optional[float] = None,
                      extra_args: Sequence[str] = (),
                      env: Optional[Mapping[str, str]] = None,
                      cwd: Optional[str] = None,
                      program: Optional[str] = None) -> UploadResult:
    """Runs ``telespool-upload`` once in a child process and returns what the run did.

    ``data_dir``, ``config`` and ``db`` are the program's ``--data-dir``, ``--config`` and
    ``--db`` (relative to ``cwd``, default: this process's working directory, LangBot's).
    ``max_seconds`` is its ``--max-seconds``; ``timeout`` (default ``max_seconds + 30``) bounds
    the whole child: past it the run is stopped (SIGTERM, then SIGKILL) and the outcome is
    ``timeout``.  ``env`` is added to this process's environment for the child
    (``LANGBOT_TELEMETRY_INGEST_TOKEN``, ``SPACE__URL`` ... are inherited anyway).

    Never raises (every failure is an UploadResult with ``outcome`` ``not_started`` or
    ``failed``), except CancelledError when the awaiting task is cancelled, after the child
    was stopped.  Never blocks the event loop: the child is an asyncio subprocess.
    """
    started = time.time()
    t0 = time.monotonic()
    try:
        prog = program or find_program()
        if prog is None:
            return UploadResult("not_started", None, detail="telespool-upload not found "
                                "(set TELESPOOL_UPLOAD to its path)")
        if not isinstance(max_seconds, int) or not 1 <= max_seconds <= 86400:
            raise ValueError(f"max_seconds must be an int from 1 to 86400, not {max_seconds!r}")
        bound = float(timeout) if timeout is not None else max_seconds + 30.0
        common = ["--data-dir", data_dir]
        if config is not None:
            common += ["--config", config]
        if db is not None:
            common += ["--db", db]
        full_env = None
        if env:
            full_env = dict(os.environ)
            full_env.update(env)
        try:
            # --stop-timeout 0: past `timeout` the run is overdue; its SIGTERM abandons the
            # requests in flight at once, well before the SIGKILL _KILL_AFTER later.
            code, _, err, timed_out = await _run(
                [prog, *common, "--max-seconds", str(max_seconds), "--stop-timeout", "0",
                 *extra_args],
                full_env, cwd, bound)
        except OSError as e:
            return UploadResult("not_started", None, detail=f"cannot run {prog}: {e}")
        seconds = time.monotonic() - t0

        status = None
        try:
            scode, sout, _, _ = await _run([prog, *common, "--status", "--json"], full_env, cwd,
                                           _STATUS_TIMEOUT)
            if scode == 0:
                status = json.loads(sout)
        except (OSError, ValueError):
            status = None

        # The run this call started: the newest recorded run that began after the launch.
        run = None
        for r in (status or {}).get("runs") or []:
            t = _iso_ms(r.get("started_at"))
            if t is not None and t >= started - _CLOCK_SLACK:
                run = r
                break
        pending = status.get("pending") if isinstance(status, dict) else None
        counts = {k: int(run.get(k) or 0) for k in ("sent", "retried", "dead", "purged")} \
            if run else {}
        if timed_out:
            outcome, detail = "timeout", f"stopped after {bound:g} s"
            if run:
                detail += f"; the run recorded {run.get('outcome')!r}"
        elif run is not None:
            outcome, detail = str(run.get("outcome") or "ok"), str(run.get("detail") or "")
        elif code == EXIT_CONFIG:
            outcome, detail = "config_error", _messages(err)
        elif code == EXIT_OK:
            outcome, detail = "no_run", _messages(err)
        else:
            outcome, detail = "failed", _messages(err) or f"exit {code}"
        return UploadResult(outcome, code, pending=pending, seconds=seconds, detail=detail,
                            status=status, **counts)
    except asyncio.CancelledError:
        raise
    except Exception as e:      # never into LangBot
        return UploadResult("failed", None, seconds=time.monotonic() - t0,
                            detail=f"{type(e).__name__}: {e}")


async def run_periodically(interval: float = 900.0, *, first_delay: Optional[float] = None,
                           jitter: float = 0.1,
                           on_result: Optional[Callable[[UploadResult],
                                                        Union[None, Awaitable[None]]]] = None,
                           **kwargs) -> None:
    """Runs :func:`upload_once` every ``interval`` seconds (each wait jittered by up to
    ``jitter`` of it either way) until cancelled; never returns otherwise, and raises only
    ValueError for an interval that is not positive (before anything runs).

    ``first_delay`` (default: a random part of one interval, so that instances started together
    do not upload together) is the wait before the first run.  ``on_result`` (a function or a
    coroutine function) gets each UploadResult; what it raises is logged, not propagated.
    Each result is also logged on the ``telespool.upload`` logger (INFO; WARNING for a failed
    run).  ``kwargs`` go to :func:`upload_once`.
    """
    if interval <= 0:
        raise ValueError("interval must be positive")
    wait = random.uniform(0, interval) if first_delay is None else max(0.0, first_delay)
    while True:
        await asyncio.sleep(wait)
        result = await upload_once(**kwargs)
        if result.outcome in ("failed", "not_started", "timeout", "config_error", "error"):
            log.warning("telemetry upload: %s", result)
        else:
            log.info("telemetry upload: %s", result)
        if on_result is not None:
            try:
                ret = on_result(result)
                if asyncio.iscoroutine(ret):
                    await ret
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("telemetry upload: on_result failed")
        spread = interval * min(max(jitter, 0.0), 1.0)
        wait = interval + random.uniform(-spread, spread)


def start_periodic(interval: float = 900.0, **kwargs) -> "asyncio.Task[None]":
    """Starts :func:`run_periodically` as a task of the running loop; cancel it to stop
    (a run in progress is stopped cleanly)."""
    return asyncio.get_running_loop().create_task(run_periodically(interval, **kwargs),
                                                  name="telespool-upload")
