"""telespool: the Python binding of libtelespool, LangBot's offline-first telemetry spool.

Standard library only (ctypes).  Each record call builds the exact JSON body LangBot Space
expects, cleans and redacts it, and commits it to a local SQLite file (by convention
``data/telemetry.db``); the separate ``telespool-upload`` program sends it later.  Nothing here
touches the network.

    import telespool

    with telespool.Spool("data/telemetry.db", instance_id="instance_...",
                         version="v4.3.1") as sp:
        sp.record_query(query_id="...", adapter="TelegramAdapter", runner="local-agent",
                        model_name="gpt-4o", duration_ms=812, pipeline_plugins=["hello"],
                        error=None)
        sp.record_heartbeat(features={"bots": 2})
        sp.record_survey_trigger(event="first_bot_response_success")
        survey = sp.pending_survey()          # dict, or None
        sp.record_survey_response(survey_id="...", answers={"q1": "a"}, completed=True)
        sp.record_survey_dismiss(survey_id="...")

Finding the library (the first that applies):
  1. ``TELESPOOL_LIBRARY``: the path of the shared library; nothing else is tried when it is set.
  2. The wheel's own copy, ``_lib/libtelespool.so.0`` in this package's directory.
  3. ``TELESPOOL_BUILD_DIR``: a CMake build directory; ``<dir>/lib/libtelespool.so`` is loaded.
  4. The source tree: ``<root>/build/lib/libtelespool.so`` in this package's directory or any
     directory above it (the repository keeps this file at ``<root>/lib/python/telespool``).
  5. The system loader: ``ctypes.util.find_library("telespool")``, then ``libtelespool.so.0``.
If none loads, importing this module raises ImportError listing every attempt.

Errors.  Every failure the library reports raises a subclass of :class:`Error`, which carries
``code`` (the library's negative return code, also the module constants ``EBUSY`` ...) and
``message`` (the library's detail text: telespool_errmsg(), or telespool_open_errmsg() for
opening):

  ==================  ==========  =============================================================
  class               code        meaning
  ==================  ==========  =============================================================
  Error               ERROR (-1)  unexpected failure (also the base class of all below)
  InvalidArgument     EINVAL      bad argument or option; also a ValueError.  Also raised by
                                  any call on a closed Spool (like a closed Python file)
  BusyError           EBUSY       the file stayed locked by someone else past busy_timeout_ms
  FullError           EFULL       disk (or file size limit) full; the event was not stored
  SchemaError         ESCHEMA     the file was written by a newer telespool (left untouched)
  DisabledError       EDISABLED   telemetry is opted out (``disabled=True``); nothing stored
  CorruptError        ECORRUPT    not a telespool database, or a damaged one
  StorageError        EIO         cannot open, read or write the file (permissions, I/O error)
  OutOfMemoryError    ENOMEM      out of memory; also a MemoryError
  ==================  ==========  =============================================================

Telemetry must never take LangBot down: catch :class:`Error` around record calls.  Arguments
of the wrong Python type raise TypeError before the library is called (see below).

Arguments.
  * String fields accept ``str``, ``None`` (passed as NULL: stored as ``""``) and numbers
    (``int``, ``float``, ``bool``: converted with ``str()``); anything else is a TypeError.
    Strings are encoded as UTF-8 with ``errors="surrogatepass"``: a lone surrogate reaches the
    library as invalid UTF-8, which the library replaces with U+FFFD.  NUL characters are
    removed before the call (C strings end at a NUL; the library removes NULs from names
    anyway), so ``"a\\x00b"`` is stored as ``"ab"``.
  * ``pipeline_plugins``: a list/tuple (or other iterable, but not a string) of string fields;
    ``None`` items are skipped, ``None`` means no plugins.
  * ``duration_ms``: ``int`` or ``float`` (truncated to an int; NaN is 0); ``None`` is 0.
    Negative values are stored as 0 by the library.
  * ``features`` / ``answers``: a ``dict`` (or other JSON-serialisable value) is encoded with
    ``json.dumps(ensure_ascii=False, default=str)`` (values json cannot encode become their
    ``str()``; a circular reference or a key that is not a str/number/bool/None is a
    TypeError; a value nested deeper than ``json`` can encode keeps the 8 levels the library
    keeps anyway); a ``str`` is passed through as JSON text.  The library rejects anything that
    is not a JSON object (including NaN/Infinity) with InvalidArgument.  ``features=None``
    means ``{}``; ``answers`` must be given.

Threads and processes.  A Spool may be shared by threads: each call and the reading of its
error detail happen under one lock, and ctypes releases the GIL while the library works (other
Python threads run while SQLite waits).  A Spool must not be used in a child process after
``fork()`` (SQLite connections do not survive a fork): such a call raises InvalidArgument;
open a new Spool in the child.  Any number of Spools, in any number of processes, may use the
same file at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import math
import os
import threading

__all__ = [
    "Spool", "Error", "InvalidArgument", "BusyError", "FullError", "SchemaError",
    "DisabledError", "CorruptError", "StorageError", "OutOfMemoryError",
    "OK", "ERROR", "EINVAL", "EBUSY", "EFULL", "ESCHEMA", "EDISABLED", "ECORRUPT", "EIO",
    "ENOMEM", "CORRUPT_REFUSE", "CORRUPT_MOVE_ASIDE", "strerror", "library_version",
    "LIBRARY_PATH",
]

from ._version import __version__  # noqa: E402  (CMakeLists.txt's project(VERSION))

# ---- constants (telespool.h) -------------------------------------------------------------

OK = 0
ERROR = -1
EINVAL = -2
EBUSY = -3
EFULL = -4
ESCHEMA = -5
EDISABLED = -6
ECORRUPT = -7
EIO = -8
ENOMEM = -9

CORRUPT_REFUSE = 0
CORRUPT_MOVE_ASIDE = 1

DEFAULT_BUSY_TIMEOUT_MS = 250
DEFAULT_MAX_EVENTS = 200000
DEFAULT_MAX_BYTES = 128 * 1024 * 1024
DEFAULT_MAX_AGE_DAYS = 30
MAX_BUSY_TIMEOUT_MS = 60000

_OPTIONS_VERSION = 2
_QUERY_VERSION = 1
_ABI_MAJOR = 0   # the library's major version this binding speaks
_ABI_MINOR = 1   # ... and the oldest minor version

_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1

# ---- errors ------------------------------------------------------------------------------


class Error(Exception):
    """A failure reported by libtelespool.

    ``code`` is the library's return code (a negative int, see the module constants) and
    ``message`` the library's detail text ("" when it gave none).
    """

    def __init__(self, code: int, message: str = ""):
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        text = strerror(self.code)
        if self.message and self.message != text:
            return f"{self.message} [{text}]"
        return text


class InvalidArgument(Error, ValueError):
    """EINVAL: a bad argument or option, or a call on a closed Spool."""


class BusyError(Error):
    """EBUSY: the spool stayed locked by another connection past busy_timeout_ms."""


class FullError(Error):
    """EFULL: the disk or the file size limit is full; the event was not stored."""


class SchemaError(Error):
    """ESCHEMA: the file was written by a newer telespool; it was left untouched."""


class DisabledError(Error):
    """EDISABLED: telemetry is opted out; nothing was stored."""


class CorruptError(Error):
    """ECORRUPT: the file is not a telespool database, or a damaged one."""


class StorageError(Error):
    """EIO: the file cannot be opened, read or written (permissions, I/O error)."""


class OutOfMemoryError(Error, MemoryError):
    """ENOMEM: the library ran out of memory."""


_ERROR_CLASSES = {
    EINVAL: InvalidArgument, EBUSY: BusyError, EFULL: FullError, ESCHEMA: SchemaError,
    EDISABLED: DisabledError, ECORRUPT: CorruptError, EIO: StorageError,
    ENOMEM: OutOfMemoryError,
}


def _error(code: int, message: str) -> Error:
    return _ERROR_CLASSES.get(code, Error)(code, message)


# ---- loading the library -----------------------------------------------------------------

_SONAME = "libtelespool.so"


def _candidates():
    """Yields (how it was found, what to pass to CDLL), in the documented order."""
    env = os.environ.get("TELESPOOL_LIBRARY")
    if env:
        yield "TELESPOOL_LIBRARY", env
        return
    d = os.path.dirname(os.path.abspath(__file__))
    bundled = os.path.join(d, "_lib", _SONAME + ".0")
    if os.path.exists(bundled):
        yield "the wheel", bundled
    build = os.environ.get("TELESPOOL_BUILD_DIR")
    if build:
        yield "TELESPOOL_BUILD_DIR", os.path.join(build, "lib", _SONAME)
    while True:
        path = os.path.join(d, "build", "lib", _SONAME)
        if os.path.exists(path):
            yield "build tree", path
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    found = ctypes.util.find_library("telespool")
    if found:
        yield "find_library", found
    yield "system loader", _SONAME + ".0"


def _load():
    tried = []
    for how, name in _candidates():
        try:
            return ctypes.CDLL(name), name
        except OSError as e:
            tried.append(f"  {how}: {name}: {e}")
    raise ImportError(
        "telespool: cannot load libtelespool; tried:\n" + "\n".join(tried) +
        "\nSet TELESPOOL_LIBRARY to the path of libtelespool.so, or TELESPOOL_BUILD_DIR to "
        "its CMake build directory, or install the library.")


_lib, LIBRARY_PATH = _load()


class _Options(ctypes.Structure):
    _fields_ = [
        ("struct_version", ctypes.c_uint),
        ("instance_id", ctypes.c_char_p),
        ("version", ctypes.c_char_p),
        ("edition", ctypes.c_char_p),
        ("instance_create_ts", ctypes.c_int64),
        ("busy_timeout_ms", ctypes.c_int),
        ("max_events", ctypes.c_int64),
        ("max_bytes", ctypes.c_int64),
        ("max_age_days", ctypes.c_int),
        ("disabled", ctypes.c_int),
        ("strict_errors", ctypes.c_int),
        ("on_corrupt", ctypes.c_int),
        ("durability", ctypes.c_int),
    ]


class _Query(ctypes.Structure):
    _fields_ = [
        ("struct_version", ctypes.c_uint),
        ("query_id", ctypes.c_char_p),
        ("adapter", ctypes.c_char_p),
        ("runner", ctypes.c_char_p),
        ("runner_category", ctypes.c_char_p),
        ("model_name", ctypes.c_char_p),
        ("duration_ms", ctypes.c_int64),
        ("pipeline_plugins", ctypes.POINTER(ctypes.c_char_p)),
        ("n_pipeline_plugins", ctypes.c_size_t),
        ("error", ctypes.c_char_p),
    ]


_P = ctypes.c_void_p   # telespool * (opaque)
_S = ctypes.c_char_p


def _declare(name, restype, *argtypes):
    fn = getattr(_lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


_open = _declare("telespool_open", ctypes.c_int, ctypes.POINTER(_P), _S,
                 ctypes.POINTER(_Options))
_open_errmsg = _declare("telespool_open_errmsg", _S)
_close = _declare("telespool_close", None, _P)
_record_query = _declare("telespool_record_query", ctypes.c_int, _P, ctypes.POINTER(_Query))
_record_heartbeat = _declare("telespool_record_heartbeat", ctypes.c_int, _P, _S)
_record_survey_trigger = _declare("telespool_record_survey_trigger", ctypes.c_int, _P, _S)
_record_survey_response = _declare("telespool_record_survey_response", ctypes.c_int,
                                   _P, _S, _S, ctypes.c_int)
_record_survey_dismiss = _declare("telespool_record_survey_dismiss", ctypes.c_int, _P, _S)
# The JSON text is returned through char **: read it as an address, copy it, free it.
_pending_survey = _declare("telespool_pending_survey", ctypes.c_int, _P,
                           ctypes.POINTER(ctypes.c_void_p))
_free = _declare("telespool_free", None, ctypes.c_void_p)
_errmsg = _declare("telespool_errmsg", _S, _P)
_strerror = _declare("telespool_strerror", _S, ctypes.c_int)
_version = _declare("telespool_version", _S)


def _text(b) -> str:
    return b.decode("utf-8", "replace") if b else ""


def strerror(code: int) -> str:
    """The library's fixed English text for a return code."""
    return _text(_strerror(code))


def library_version() -> str:
    """The loaded library's version, e.g. "0.1.0"."""
    return _text(_version())


def _check_version():
    v = library_version()
    try:
        major, minor = (int(x) for x in v.split(".")[:2])
    except ValueError:
        major = minor = -1
    if major != _ABI_MAJOR or minor < _ABI_MINOR:
        raise ImportError(
            f"telespool: {LIBRARY_PATH} is version {v!r}; this binding needs "
            f"{_ABI_MAJOR}.{_ABI_MINOR} or a later {_ABI_MAJOR}.x")


_check_version()

# ---- argument conversion -----------------------------------------------------------------


def _enc(value, field="pipeline_plugins item"):
    """A string field as bytes for the library: None stays None (NULL)."""
    if type(value) is str:
        b = value.encode("utf-8", "surrogatepass")
        return b.replace(b"\0", b"") if b"\0" in b else b
    if value is None:
        return None
    if isinstance(value, str):
        return _enc(str.__str__(value), field)
    if isinstance(value, (int, float)):
        return str(value).encode("ascii")
    raise TypeError(f"telespool: {field} must be a str, a number or None, "
                    f"not {type(value).__name__}")


def _enc_json(value, field):
    """A JSON object argument: dicts are serialised, str is JSON text, None is NULL."""
    if value is None:
        return None
    if isinstance(value, str):
        return _enc(value, field)
    try:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except RecursionError:
            # Deeper than json can go: keep what the library keeps anyway.
            text = json.dumps(_cut_depth(value), ensure_ascii=False, default=str)
    except (TypeError, ValueError) as e:
        raise TypeError(f"telespool: {field} cannot be serialised as JSON: {e}") from None
    return _enc(text, field)


_JSON_KEEP_DEPTH = 8   # levels of features and answers the library keeps


def _cut_depth(value, depth=1):
    """value with the containers the library would drop (below 8 levels) left out."""
    deep = depth >= _JSON_KEEP_DEPTH
    if isinstance(value, dict):
        return {k: _cut_depth(v, depth + 1) for k, v in value.items()
                if not (deep and isinstance(v, (dict, list, tuple)))}
    if isinstance(value, (list, tuple)):
        return [_cut_depth(v, depth + 1) for v in value
                if not (deep and isinstance(v, (dict, list, tuple)))]
    return value


def _int(value, field, lo, hi, *, clamp):
    """An integer option or field: int/float/bool (float truncated), None is 0."""
    if value is None:
        return 0
    if isinstance(value, float):
        if math.isnan(value):
            return 0
        if math.isinf(value):
            return hi if value > 0 else lo
        value = int(value)
    elif not isinstance(value, int):
        raise TypeError(f"telespool: {field} must be an int, a float or None, "
                        f"not {type(value).__name__}")
    if lo <= value <= hi:
        return int(value)
    if clamp:
        return hi if value > hi else lo
    raise InvalidArgument(EINVAL, f"{field} {value} is out of range")


def _plugins(value):
    """pipeline_plugins as (array or None, count)."""
    t = type(value)
    if t is not list and t is not tuple:
        if value is None:
            return None, 0
        if isinstance(value, (str, bytes, bytearray)):
            raise TypeError("telespool: pipeline_plugins must be a list of str, not "
                            + t.__name__)
        try:
            value = tuple(value)
        except TypeError:
            raise TypeError("telespool: pipeline_plugins must be a list of str or None, "
                            f"not {t.__name__}") from None
    n = len(value)
    if n == 0:
        return None, 0
    if n <= 16:
        # A LangBot instance has a few pipelines, so the same lists come back on every
        # query: their ctypes arrays (which keep their bytes alive) are kept, a few
        # hundred at most.
        key = tuple(value)
        try:
            return _plugin_arrays[key], n
        except KeyError:
            pass
        except TypeError:  # an unhashable item: the error comes from _enc below
            key = None
        arr = (ctypes.c_char_p * n)(*map(_enc, value))
        if key is not None and all(type(v) is str for v in key):
            if len(_plugin_arrays) >= 256:
                _plugin_arrays.clear()
            _plugin_arrays[key] = arr
        return arr, n
    return (ctypes.c_char_p * n)(*map(_enc, value)), n


_plugin_arrays = {}


_ON_CORRUPT = {"refuse": CORRUPT_REFUSE, "move_aside": CORRUPT_MOVE_ASIDE}
_DURABILITY = {"normal": 0, "full": 1}

# ---- the spool ---------------------------------------------------------------------------


class Spool:
    """An open spool file.  Use as a context manager, or call close().

    Options (keyword arguments, named as in telespool_options; numbers left 0 or None take
    the library's defaults):

    instance_id, version, edition
        Per-instance constants copied into the event bodies (query bodies carry edition only
        when it is given; the heartbeat always does, "" when not given).
    instance_create_ts
        Unix seconds, for the heartbeat; 0 if unknown.
    busy_timeout_ms
        Longest a call waits for a lock held by someone else (default 250, at most 60000).
    max_events, max_bytes, max_age_days
        Spool bounds; the oldest rows are evicted (and counted in drops) to stay within them.
    disabled
        True: telemetry is opted out; record calls raise DisabledError and store nothing,
        pending_survey() returns None.
    strict_errors
        True: keep only frame lines and exception type names of error tracebacks.
    on_corrupt
        "refuse" (default; CorruptError, file untouched) or "move_aside" (rename the damaged
        file to PATH.corrupt-<time> and start a new spool; ``open_message`` then says so;
        only when no other Spool, in any process, has it open: otherwise CorruptError as
        with "refuse"), or the int constants CORRUPT_REFUSE / CORRUPT_MOVE_ASIDE.
    durability
        "normal" (default: an acknowledged event survives a crash of LangBot) or "full"
        (also an OS crash or a power cut: every record call waits for the disk).

    Raises an :class:`Error` subclass when the library cannot open the spool.
    """

    def __init__(self, path, *, instance_id=None, version=None, edition=None,
                 instance_create_ts=0, busy_timeout_ms=0, max_events=0, max_bytes=0,
                 max_age_days=0, disabled=False, strict_errors=False, on_corrupt="refuse",
                 durability="normal"):
        self._h = None
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.path = os.fspath(path)
        bpath = os.fsencode(self.path)
        if b"\0" in bpath:
            raise InvalidArgument(EINVAL, "path contains a NUL character")
        if isinstance(on_corrupt, str):
            if on_corrupt not in _ON_CORRUPT:
                raise InvalidArgument(EINVAL, f"on_corrupt {on_corrupt!r} is unknown "
                                              "(use 'refuse' or 'move_aside')")
            on_corrupt = _ON_CORRUPT[on_corrupt]
        if durability not in _DURABILITY:
            raise InvalidArgument(EINVAL, f"durability {durability!r} is unknown "
                                          "(use 'normal' or 'full')")
        opts = _Options(
            _OPTIONS_VERSION,
            _enc(instance_id, "instance_id"),
            _enc(version, "version"),
            _enc(edition, "edition"),
            _int(instance_create_ts, "instance_create_ts", _I64_MIN, _I64_MAX, clamp=True),
            _int(busy_timeout_ms, "busy_timeout_ms", _INT_MIN, _INT_MAX, clamp=False),
            _int(max_events, "max_events", _I64_MIN, _I64_MAX, clamp=False),
            _int(max_bytes, "max_bytes", _I64_MIN, _I64_MAX, clamp=False),
            _int(max_age_days, "max_age_days", _INT_MIN, _INT_MAX, clamp=False),
            1 if disabled else 0,
            1 if strict_errors else 0,
            _int(on_corrupt, "on_corrupt", _INT_MIN, _INT_MAX, clamp=False),
            _DURABILITY[durability],
        )
        self.disabled = bool(disabled)
        h = _P()
        # telespool_open_errmsg() is thread-local: read in this thread, right after.
        rc = _open(ctypes.byref(h), bpath, ctypes.byref(opts))
        message = _text(_open_errmsg())
        if rc != OK:
            raise _error(rc, message)
        self._h = h
        # "" normally; says where a damaged file went with on_corrupt="move_aside".
        self.open_message = message
        # Kept on the instance so that close() works during interpreter shutdown.
        self._close_fn = _close

    # -- lifecycle --

    def close(self, _getpid=os.getpid) -> None:
        """Closes the spool.  Idempotent; later calls on it raise InvalidArgument.

        In a child process after fork() it only forgets the handle: the parent's SQLite
        connection is not touched."""
        lock = getattr(self, "_lock", None)
        if lock is None:
            return
        with lock:
            h, self._h = self._h, None
            if h is not None and _getpid() == self._pid:
                self._close_fn(h)

    @property
    def closed(self) -> bool:
        return self._h is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self):
        state = "closed" if self._h is None else "open"
        return f"<telespool.Spool {self.path!r} {state}>"

    # -- calls --

    def _dead(self) -> Error:
        if self._h is None:
            return InvalidArgument(EINVAL, "the spool is closed")
        return InvalidArgument(EINVAL, "the spool was opened in another process (before "
                                       "fork()); open a new Spool in this process")

    def _call(self, fn, *args):
        """fn(handle, *args) under the lock; raises on failure with the library's detail."""
        with self._lock:
            h = self._h
            if h is None or self._pid != os.getpid():
                raise self._dead()
            rc = fn(h, *args)
            if rc:
                raise _error(rc, _text(_errmsg(h)))

    def record_query(self, query_id=None, adapter=None, runner=None, model_name=None,
                     duration_ms=None, pipeline_plugins=None, error=None,
                     runner_category=None) -> None:
        """Records one processed chat query (event_type "query").

        ``error`` is the traceback of a failed query (None or "" when it succeeded); it is
        redacted by the library.  ``runner_category`` is added to the body when not None.
        """
        # The hot path of the binding: plain str fields are encoded inline.
        enc = _enc
        if type(duration_ms) is int and 0 <= duration_ms <= _I64_MAX:
            dur = duration_ms
        else:
            dur = _int(duration_ms, "duration_ms", _I64_MIN, _I64_MAX, clamp=True)
        plugins, n = _plugins(pipeline_plugins)
        if (type(query_id) is str and type(adapter) is str and type(runner) is str
                and type(model_name) is str):
            a = query_id.encode("utf-8", "surrogatepass")
            b = adapter.encode("utf-8", "surrogatepass")
            c = runner.encode("utf-8", "surrogatepass")
            d = model_name.encode("utf-8", "surrogatepass")
            if b"\0" in a + b + c + d:  # NULs are removed, as _enc does
                a, b, c, d = enc(query_id), enc(adapter), enc(runner), enc(model_name)
        else:
            a, b, c, d = (enc(query_id, "query_id"), enc(adapter, "adapter"),
                          enc(runner, "runner"), enc(model_name, "model_name"))
        q = _Query(_QUERY_VERSION, a, b, c,
                   None if runner_category is None else enc(runner_category, "runner_category"),
                   d, dur, plugins, n, None if error is None else enc(error, "error"))
        with self._lock:
            h = self._h
            if h is None or self._pid != os.getpid():
                raise self._dead()
            rc = _record_query(h, q)
            if rc:
                raise _error(rc, _text(_errmsg(h)))

    def record_heartbeat(self, features=None) -> None:
        """Records the daily "instance_heartbeat" event; features is a dict of
        configuration counts (None means {})."""
        self._call(_record_heartbeat, _enc_json(features, "features"))

    def record_survey_trigger(self, event) -> None:
        """Records a survey milestone, e.g. "first_bot_response_success".  A milestone is
        checked at most once per spool: recording it again does nothing."""
        self._call(_record_survey_trigger, _enc(event, "event"))

    def record_survey_response(self, survey_id, answers, completed=True) -> None:
        """Records the answers (a dict) to a survey and marks it answered."""
        self._call(_record_survey_response, _enc(survey_id, "survey_id"),
                   _enc_json(answers, "answers"), 1 if completed else 0)

    def record_survey_dismiss(self, survey_id) -> None:
        """Records the dismissal of a survey and marks it dismissed."""
        self._call(_record_survey_dismiss, _enc(survey_id, "survey_id"))

    def pending_survey(self):
        """The survey LangBot Space offered that is neither answered nor dismissed, as a
        dict (the JSON object Space sent), or None.  Always None when disabled."""
        out = ctypes.c_void_p()
        with self._lock:
            h = self._h
            if h is None or self._pid != os.getpid():
                raise self._dead()
            rc = _pending_survey(h, ctypes.byref(out))
            if rc:
                raise _error(rc, _text(_errmsg(h)))
        if not out.value:
            return None
        try:
            raw = ctypes.string_at(out.value)
        finally:
            _free(out)
        try:
            survey = json.loads(raw.decode("utf-8", "replace"))
        except ValueError as e:
            raise Error(ERROR, f"the stored survey is not valid JSON: {e}") from None
        except RecursionError:
            raise Error(ERROR, "the stored survey nests too deeply to decode") from None
        if not isinstance(survey, dict):
            raise Error(ERROR, "the stored survey is not a JSON object")
        return survey
