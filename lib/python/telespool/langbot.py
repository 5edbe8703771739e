"""telespool.langbot: LangBot's own telemetry and survey interfaces, backed by the spool.

:class:`TelemetryManager` has the interface of LangBot 4.10.8's
``langbot.pkg.telemetry.telemetry.TelemetryManager`` and :class:`SurveyManager` that of
``langbot.pkg.survey.manager.SurveyManager``.  Both are constructed with LangBot's
application object ``ap`` and read ``ap.instance_config.data['space']`` as LangBot does, so
switching LangBot over is one import and the two constructors in
``pkg/core/stages/build_app.py`` (the README shows the diff).  Instead of POSTing from
LangBot's process, every event is recorded into the spool (``data/telemetry.db``); the
separate ``telespool-upload`` sends it later, with retries, and purges on opt-out.

Opt-out is decided as LangBot decides it, on the configuration LangBot already loaded (with
its environment overrides applied): an empty ``space`` section, a falsy ``space.url`` or a
truthy ``space.disable_telemetry`` (Python truthiness: the string ``"false"`` is truthy, so it
means disabled, as it does in LangBot) records nothing.  The spool is then opened with
``disabled=True``, so that not even a stray call stores anything.  As in LangBot, the section
is read again at every call: ``disable_telemetry`` set in it at runtime stops recording at
once (enabling it at runtime does not reopen a spool opened disabled: that takes a restart).

The event loop.  No method raises (failures are logged at debug level on ``ap.logger`` and
counted).  Recording runs in one worker thread per manager: the coroutines only copy the
payload and hand it over, so they hold the event loop for microseconds, never for a disk write
or a lock wait.  Each record in the worker waits at most ``busy_timeout_ms`` (default 2000 ms:
the wait is off the loop, and a longer one loses fewer events) for a lock held by the uploader.
A spool that could not be opened at start (locked while the uploader creates or migrates it) is
opened again by the next event.  ``start_send_task`` keeps at most ``max_queued`` (10,000)
events waiting for the worker and drops (and counts) the rest, as LangBot's own sender drops
beyond 8 in flight.  ``send`` waits for its event to be stored (in the worker, not on the
loop).  ``shutdown`` waits for the queue to drain for at most ``shutdown_timeout`` seconds
(default 5), then drops (and counts) what is still queued: only the record in progress, at most
one ``busy_timeout_ms``, and the writing of their count (see Drops), at most one more, can
then delay LangBot's exit.  The only synchronous call,
``SurveyManager.get_pending_survey``, reads one row (WAL readers do not wait for writers); it
shares its spool handle only with that manager's own survey records, whose lock waits are
bounded by its ``busy_timeout_ms`` (default 100 ms), so it holds the loop for at most about
that long, and for microseconds otherwise.

Drops.  Every event the adapter loses is counted in memory by reason (``drops``; the loop thread
only adds to a dict) and written by the worker into the spool's ``drops`` table with
``Spool.count_drops``, one call per reason, right after its next record that is stored and when
it closes the spool: ``queue_full`` (over ``max_queued``), ``shutdown`` (still queued at
``shutdown_timeout``: the worker counts them as it goes through the queue, without recording,
and writes the count just before closing the spool, which takes at most one more
``busy_timeout_ms`` after the record in progress; Python waits for the worker at exit, but a
process that ends otherwise (``os._exit``, a signal) loses that count), ``spool_busy`` (a
record that waited ``busy_timeout_ms`` in vain), ``spool_unavailable`` (the spool could not be
opened for it) and ``record_failed`` (any other failure, e.g. a payload LangBot's sender could
not have sent either).  The last three are also counted in ``failed``, the first two in
``dropped``.  A record refused for a full disk is counted by the library itself (``disk_full``,
``wal_pinned``).  Counts the worker cannot write (the spool locked, not open) are kept for its
next try; opted out, nothing is counted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import threading
from typing import Any, Optional

from . import (MAX_DROP_COUNT, SURVEY_DISMISS, SURVEY_PENDING, SURVEY_RESPOND, TELEMETRY,
               BusyError, DisabledError, FullError, InvalidArgument, Spool)

__all__ = ["TelemetryManager", "SurveyManager", "space_config", "telemetry_enabled"]

DEFAULT_PATH = os.path.join("data", "telemetry.db")
DEFAULT_BUSY_TIMEOUT_MS = 2000         # TelemetryManager: its records wait in the worker
SURVEY_BUSY_TIMEOUT_MS = 100           # SurveyManager: get_pending_survey runs on the loop
DEFAULT_MAX_QUEUED = 10000
DEFAULT_SHUTDOWN_TIMEOUT = 5.0

# LangBot's SurveyManager milestone of successful bot responses.
BOT_RESPONSE_MILESTONE = 100
BOT_RESPONSE_MILESTONE_EVENT = f"bot_response_success_{BOT_RESPONSE_MILESTONE}"

# The reasons under which the adapter counts its own losses in the spool's drops table.
DROP_QUEUE_FULL = "queue_full"                 # start_send_task: max_queued events waiting
DROP_SHUTDOWN = "shutdown"                     # still queued at shutdown_timeout
DROP_SPOOL_BUSY = "spool_busy"                 # the record waited busy_timeout_ms in vain
DROP_SPOOL_UNAVAILABLE = "spool_unavailable"   # the spool could not be opened for it
DROP_RECORD_FAILED = "record_failed"           # any other failure of the record call

_fallback_log = logging.getLogger("telespool.langbot")


def space_config(ap: Any) -> Any:
    """``ap.instance_config.data.get('space', {})``, as LangBot reads it; {} when that fails."""
    try:
        return ap.instance_config.data.get("space", {})
    except Exception:
        return {}


def telemetry_enabled(cfg: Any) -> bool:
    """LangBot 4.10.8's decision (TelemetryManager.send): nothing is sent for an empty
    section, a truthy ``disable_telemetry`` or a falsy ``url``.  Anything that cannot be read
    counts as disabled (fail closed)."""
    try:
        if not cfg:
            return False
        if cfg.get("disable_telemetry", False):
            return False
        return bool(cfg.get("url", ""))
    except Exception:
        return False


def _constants() -> Any:
    """LangBot's ``pkg.utils.constants`` (instance id, version, edition), or None outside
    LangBot."""
    try:
        from langbot.pkg.utils import constants  # type: ignore[import-not-found]
        return constants
    except Exception:
        return None


class _Recorder:
    """The spool and the one worker thread that writes to it, shared by the two managers'
    implementations."""

    def __init__(self, ap: Any, path: str, options: dict,
                 busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS):
        self.ap = ap
        self.busy_timeout_ms = busy_timeout_ms
        self.path = path
        self.options = options
        self.spool: Optional[Spool] = None
        self.enabled = False
        self.recorded = 0
        self.dropped = 0
        self.failed = 0
        self.drops: dict = {}      # reason -> events lost since start
        self._unsaved: dict = {}   # reason -> lost events not yet in the drops table
        self._queued = 0
        self._abandoned = False
        self._lock = threading.Lock()
        self._executor: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._opts: dict = {}

    def log(self, msg: str) -> None:
        try:
            self.ap.logger.debug(msg)
        except Exception:
            _fallback_log.debug(msg)

    async def open(self, enabled: bool) -> None:
        self.enabled = enabled
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="telespool")
        opts = dict(self.options)
        opts.setdefault("busy_timeout_ms", self.busy_timeout_ms)
        opts["disabled"] = not enabled
        self._opts = opts
        await asyncio.get_running_loop().run_in_executor(self._executor, self._open)

    def _open(self) -> None:
        """Opens the spool (in the worker); leaves it None, logged, when that fails."""
        try:
            self.spool = Spool(self.path, **self._opts)
        except Exception as e:
            self.spool = None
            self.log(f"telespool: cannot open {self.path}: {e}")

    def _count(self, reason: str, dropped: bool) -> None:
        """One event lost for reason: counted in memory (any thread, no I/O); the worker
        writes it to the drops table (_save_drops)."""
        with self._lock:
            if dropped:
                self.dropped += 1
            else:
                self.failed += 1
            self.drops[reason] = self.drops.get(reason, 0) + 1
            self._unsaved[reason] = self._unsaved.get(reason, 0) + 1

    def _save_drops(self) -> None:
        """Writes the losses counted in memory, one count_drops per reason (in the worker;
        never raises).  Kept for the next try when the spool is locked or not open."""
        if not self._unsaved or self.spool is None:
            return
        with self._lock:
            unsaved, self._unsaved = self._unsaved, {}
        keep: dict = {}
        for reason, n in unsaved.items():
            try:
                while n > 0:
                    step = min(n, MAX_DROP_COUNT)
                    self.spool.count_drops(reason, step)
                    n -= step
            except (FullError, DisabledError, InvalidArgument):
                pass  # the library keeps them (disk full), or they are not to be counted
            except Exception as e:
                keep[reason] = n
                self.log(f"telespool: {n} {reason} drops not counted yet: {e}")
        if keep:
            with self._lock:
                for reason, n in keep.items():
                    self._unsaved[reason] = self._unsaved.get(reason, 0) + n

    def _record(self, payload: dict, endpoint: str) -> bool:
        try:
            if not self.enabled:
                return False
            if self._abandoned:
                # Counted only: _finish writes them once the queue is through.
                self._count(DROP_SHUTDOWN, True)
                return False
            if self.spool is None:
                # Not opened at start (locked by the uploader creating or migrating
                # it, the directory not there yet): try again, once per event.
                self._open()
                if self.spool is None:
                    self._count(DROP_SPOOL_UNAVAILABLE, False)
                    return False
            self.spool.record(payload, endpoint=endpoint)
            with self._lock:
                self.recorded += 1
            # Right after a record that got the lock, so that a spool kept locked
            # costs each event one busy_timeout_ms, not two.
            self._save_drops()
            return True
        except DisabledError:
            return False
        except FullError as e:
            # The library counted it itself (disk_full, wal_pinned).
            with self._lock:
                self.failed += 1
            self.log(f"telespool: event not recorded: {e}")
            return False
        except Exception as e:
            self._count(DROP_SPOOL_BUSY if isinstance(e, BusyError) else DROP_RECORD_FAILED,
                        False)
            self.log(f"telespool: event not recorded: {e}")
            return False

    def _finish(self) -> None:
        """The worker's last task: the losses still in memory, then the spool is closed."""
        try:
            self._save_drops()
        finally:
            if self.spool is not None:
                self.spool.close()

    def _done(self, _fut: concurrent.futures.Future) -> None:
        # Run or cancelled before it ran (a send() whose task was cancelled).
        with self._lock:
            self._queued -= 1

    def submit(self, payload: Any, endpoint: str = TELEMETRY,
               limit: Optional[int] = None) -> Optional[concurrent.futures.Future]:
        """Hands a copy of payload to the worker; None when it is not taken."""
        ex = self._executor
        if ex is None or not self.enabled:
            return None
        body = dict(payload)
        with self._lock:
            full = limit is not None and self._queued >= limit
            if not full:
                self._queued += 1
        if full:
            self._count(DROP_QUEUE_FULL, True)
            return None
        try:
            fut = ex.submit(self._record, body, endpoint)
        except RuntimeError:  # shut down meanwhile
            with self._lock:
                self._queued -= 1
            return None
        fut.add_done_callback(self._done)
        return fut

    async def run(self, fn, *args) -> Any:
        """fn(*args) in the worker thread (after the events queued before it)."""
        ex = self._executor
        if ex is None:
            raise RuntimeError("telespool: not initialised or already shut down")
        return await asyncio.get_running_loop().run_in_executor(ex, fn, *args)

    async def close(self, timeout: float) -> None:
        ex, self._executor = self._executor, None
        if ex is None:
            return

        def drain_and_close():
            # _finish runs in the worker after everything queued before it.
            try:
                ex.submit(self._finish)
            except RuntimeError:  # shut down already: finish here, after the queue
                ex.shutdown(wait=True)
                self._finish()
                return
            ex.shutdown(wait=True)

        try:
            await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(
                None, drain_and_close), timeout)
        except asyncio.TimeoutError:
            # What is still queued is dropped, or the worker would keep LangBot's process
            # from exiting while it works through the queue (one busy timeout per event
            # when the spool is locked): at most the record in progress finishes.
            with self._lock:
                self._abandoned = True
                left = self._queued
            self.log(f"telespool: {left} events still queued after {timeout} s "
                     "at shutdown; dropped (counted in drops as 'shutdown' as the "
                     "worker finishes)")
        except Exception as e:
            self.log(f"telespool: shutdown: {e}")


class TelemetryManager:
    """LangBot's TelemetryManager, recording into the spool instead of POSTing.

    ``TelemetryManager(ap)`` is all LangBot needs.  Keyword arguments: ``path`` of the spool
    (default ``data/telemetry.db`` in LangBot's working directory), ``max_queued``,
    ``shutdown_timeout``, and any :class:`telespool.Spool` option (``busy_timeout_ms``
    defaults to 2000 here; ``disabled`` is decided from LangBot's configuration).
    Attributes ``recorded``, ``dropped`` and ``failed`` count events since start, and
    ``drops`` the lost ones by reason (the module's docstring lists them), as written to the
    spool's drops table.
    """

    def __init__(self, ap: Any, *, path: str = DEFAULT_PATH,
                 max_queued: int = DEFAULT_MAX_QUEUED,
                 shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT, **spool_options: Any):
        self.ap = ap
        self.telemetry_config: Any = {}
        self.send_tasks: list = []   # LangBot's attribute; nothing is in flight here
        self.max_queued = max_queued
        self.shutdown_timeout = shutdown_timeout
        self._rec = _Recorder(ap, path, spool_options)

    @property
    def recorded(self) -> int:
        return self._rec.recorded

    @property
    def dropped(self) -> int:
        return self._rec.dropped

    @property
    def failed(self) -> int:
        return self._rec.failed

    @property
    def drops(self) -> dict:
        """The events lost since start, by reason (a copy): what the spool's drops table
        gets from this manager."""
        with self._rec._lock:
            return dict(self._rec.drops)

    @property
    def enabled(self) -> bool:
        """True when LangBot's configuration allows telemetry (and so the spool records)."""
        return self._rec.enabled

    async def initialize(self) -> None:
        """Reads ``space`` from LangBot's configuration and opens the spool (disabled when
        LangBot would send nothing)."""
        try:
            self.telemetry_config = space_config(self.ap)
            await self._rec.open(telemetry_enabled(self.telemetry_config))
        except Exception as e:
            self._rec.log(f"telespool: initialize: {e}")

    async def start_send_task(self, payload: dict) -> None:
        """Queues payload for recording and returns at once (LangBot's fire-and-forget)."""
        try:
            if not telemetry_enabled(self.telemetry_config):
                return
            self._rec.submit(payload, TELEMETRY, self.max_queued)
        except Exception as e:
            self._rec.log(f"telespool: start_send_task: {e}")

    async def send(self, payload: dict) -> None:
        """Records payload and returns once it is stored (or was refused); the disk write
        happens in the worker thread, not on the event loop."""
        try:
            if not telemetry_enabled(self.telemetry_config):
                return
            fut = self._rec.submit(payload, TELEMETRY)
            if fut is not None:
                await asyncio.wrap_future(fut)
        except Exception as e:
            self._rec.log(f"telespool: send: {e}")

    async def shutdown(self) -> None:
        """Waits (at most shutdown_timeout seconds) for queued events, then closes; events
        still queued then are dropped and counted in ``dropped`` and, as the worker
        finishes, in the drops table as ``shutdown``."""
        try:
            await self._rec.close(self.shutdown_timeout)
        except Exception as e:
            self._rec.log(f"telespool: shutdown: {e}")


class SurveyManager:
    """LangBot's SurveyManager, with the Space requests recorded into the spool.

    The uploader turns a milestone into the ``/api/v1/survey/pending`` request and stores the
    survey Space offers; :meth:`get_pending_survey` returns it until it is answered or
    dismissed.  :meth:`submit_response` and :meth:`dismiss_survey` return True once the body
    is stored (it is sent later), False when LangBot would not send it (Space not configured,
    opted out) or it could not be stored.  :meth:`submit_feedback` carries user text, files
    and an e-mail address: that is not telemetry and never enters the spool, so it is handed
    to LangBot's own SurveyManager.  The bot-response count towards
    ``bot_response_success_100`` is kept in ``<path>-survey.json`` next to the spool; at
    :meth:`initialize` the milestones and the count LangBot's own SurveyManager persisted
    before the switch are taken over (a milestone it fired is not fired again).

    Keyword arguments: ``path`` (default ``data/telemetry.db``), ``instance_id`` and
    ``version`` (default: LangBot's ``constants.instance_id`` and
    ``constants.semantic_version``), and any :class:`telespool.Spool` option.
    """

    def __init__(self, ap: Any, *, path: str = DEFAULT_PATH, instance_id: Optional[str] = None,
                 version: Optional[str] = None,
                 shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT, **spool_options: Any):
        self.ap = ap
        self._rec = _Recorder(ap, path, spool_options, SURVEY_BUSY_TIMEOUT_MS)
        self._instance_id = instance_id
        self._version = version
        self._space_url = ""
        self._triggered_events: set = set()
        self._bot_response_count = 0
        self._hidden: set = set()
        self._state_path = path + "-survey.json"
        self._feedback: Any = None
        self.shutdown_timeout = shutdown_timeout

    # -- LangBot's identity, read when needed (constants are set during LangBot's boot)

    def _ident(self) -> tuple:
        c = _constants()
        instance_id = self._instance_id if self._instance_id is not None else \
            getattr(c, "instance_id", "")
        version = self._version if self._version is not None else \
            getattr(c, "semantic_version", "")
        return instance_id, version

    async def initialize(self) -> None:
        try:
            cfg = space_config(self.ap)
            try:
                self._space_url = str(cfg.get("url", "") or "").rstrip("/")
            except Exception:
                self._space_url = ""
            await self._rec.open(self._is_space_configured())
            state = await self._rec.run(self._load_state)
            self._triggered_events = set(state.get("triggered", []))
            self._bot_response_count = int(state.get("bot_response_count", 0))
        except Exception as e:
            self._rec.log(f"telespool: survey initialize: {e}")
        await self._adopt_langbot_state()

    async def _langbot_manager(self) -> Any:
        """LangBot's own SurveyManager (initialised once), or None outside LangBot."""
        if self._feedback is None:
            from langbot.pkg.survey.manager import \
                SurveyManager as LangBotSurveyManager  # type: ignore[import-not-found]
            fb = LangBotSurveyManager(self.ap)
            await fb.initialize()
            self._feedback = fb
        return self._feedback

    async def _adopt_langbot_state(self) -> None:
        """The milestones and the count LangBot's own SurveyManager persisted (in its
        metadata table) before the switch count too: a milestone it already fired is not
        fired again, and its count carries on."""
        try:
            fb = await self._langbot_manager()
            events = {e for e in getattr(fb, "_triggered_events", ()) if isinstance(e, str)}
            count = int(getattr(fb, "_bot_response_count", 0) or 0)
        except Exception:
            return  # not inside LangBot, or its state cannot be read
        try:
            if events <= self._triggered_events and count <= self._bot_response_count:
                return
            self._triggered_events |= events
            self._bot_response_count = max(self._bot_response_count, count)
            await self._rec.run(self._save_state)
        except Exception as e:
            self._rec.log(f"telespool: survey initialize: {e}")

    def _load_state(self) -> dict:
        try:
            with open(self._state_path, encoding="utf-8") as f:
                state = json.load(f)
            return state if isinstance(state, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save_state(self) -> None:
        tmp = self._state_path + ".tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"triggered": sorted(self._triggered_events),
                           "bot_response_count": self._bot_response_count}, f)
            os.replace(tmp, self._state_path)
        except OSError as e:
            self._rec.log(f"telespool: cannot save {self._state_path}: {e}")

    def _is_space_configured(self) -> bool:
        """As LangBot: not opted out (re-read every time) and a Space URL at start."""
        try:
            if space_config(self.ap).get("disable_telemetry", False):
                return False
        except Exception:
            return False
        return bool(self._space_url)

    async def _store(self, body: dict, endpoint: str) -> bool:
        fut = self._rec.submit(body, endpoint)
        return bool(fut is not None and await asyncio.wrap_future(fut))

    async def record_bot_response_success(self) -> None:
        """Counts a successful bot response; the 100th triggers its milestone."""
        try:
            if BOT_RESPONSE_MILESTONE_EVENT in self._triggered_events:
                return
            if not self._is_space_configured():
                return
            self._bot_response_count += 1
            await self._rec.run(self._save_state)
            if self._bot_response_count >= BOT_RESPONSE_MILESTONE:
                await self.trigger_event(BOT_RESPONSE_MILESTONE_EVENT)
        except Exception as e:
            self._rec.log(f"telespool: record_bot_response_success: {e}")

    async def trigger_event(self, event: str) -> None:
        """Records the milestone (at most once): the uploader asks Space for a survey."""
        try:
            if event in self._triggered_events:
                return
            if not self._is_space_configured():
                return
            self._triggered_events.add(event)
            await self._rec.run(self._save_state)
            instance_id, _ = self._ident()
            await self._store({"instance_id": instance_id, "event": event}, SURVEY_PENDING)
        except Exception as e:
            self._rec.log(f"telespool: trigger_event: {e}")

    def get_pending_survey(self) -> Optional[dict]:
        """The survey Space offered that is neither answered nor dismissed, or None."""
        try:
            spool = self._rec.spool
            if spool is None or not self._is_space_configured():
                return None
            survey = spool.pending_survey()
            if survey is not None and survey.get("survey_id") in self._hidden:
                return None
            return survey
        except Exception as e:
            self._rec.log(f"telespool: get_pending_survey: {e}")
            return None

    def clear_pending_survey(self) -> None:
        """Hides the current pending survey for the rest of this process."""
        try:
            survey = self._rec.spool.pending_survey() if self._rec.spool else None
            if survey is not None:
                self._hidden.add(survey.get("survey_id"))
        except Exception as e:
            self._rec.log(f"telespool: clear_pending_survey: {e}")

    async def submit_response(self, survey_id: str, answers: dict,
                              completed: bool = True) -> bool:
        try:
            if not self._is_space_configured():
                return False
            instance_id, version = self._ident()
            body = {"survey_id": survey_id, "instance_id": instance_id, "answers": answers,
                    "metadata": {"version": version, "instance_id": instance_id},
                    "completed": completed}
            return await self._store(body, SURVEY_RESPOND)
        except Exception as e:
            self._rec.log(f"telespool: submit_response: {e}")
            return False

    async def dismiss_survey(self, survey_id: str) -> bool:
        try:
            if not self._is_space_configured():
                return False
            instance_id, _ = self._ident()
            return await self._store({"survey_id": survey_id, "instance_id": instance_id},
                                     SURVEY_DISMISS)
        except Exception as e:
            self._rec.log(f"telespool: dismiss_survey: {e}")
            return False

    async def submit_feedback(self, content: str, attachments: list,
                              user_email: Optional[str] = None) -> bool:
        """User feedback is user content, not telemetry: LangBot's own SurveyManager sends
        it directly, as before; it never enters the spool.  False outside LangBot."""
        try:
            if not self._is_space_configured():
                return False
            fb = await self._langbot_manager()
            return bool(await fb.submit_feedback(content, attachments, user_email))
        except Exception as e:
            self._rec.log(f"telespool: submit_feedback: {e}")
            return False

    async def shutdown(self) -> None:
        try:
            await self._rec.close(self.shutdown_timeout)
        except Exception as e:
            self._rec.log(f"telespool: survey shutdown: {e}")

