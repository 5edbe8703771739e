"""telespool: the Python binding of libtelespool, LangBot's offline-first telemetry spool.

Standard library only (ctypes).  Each record call builds the exact JSON body LangBot Space
expects, cleans and redacts it, and commits it to a local SQLite file (by convention
``data/telemetry.db``); the separate ``telespool-upload`` program sends it later.  Nothing here
touches the network.

    import telespool

    with telespool.Spool("data/telemetry.db", instance_id="instance_...",
                         version="v4.10.8", edition="community") as sp:
        sp.record(payload)                    # LangBot's payload dict, as it is
        sp.record_query(query_id="...", adapter="TelegramAdapter", runner="local-agent",
                        model_name="gpt-4o", duration_ms=812, pipeline_plugins=["hello"],
                        features={"tool_call_rounds": 1}, error=None,
                        instance_id="instance_...", workspace_uuid="...")
        sp.record_workspace_heartbeat(workspace_uuid="...", features={"bot_count": 2})
        sp.record_survey_trigger("first_bot_response_success")
        survey = sp.pending_survey()          # dict, or None
        sp.record_survey_response("...", {"q1": "a"}, completed=True)
        sp.record_survey_dismiss("...")

``record(payload)`` stores the exact bytes LangBot 4.10.8 would have POSTed for that payload
(its sender's normalisation, then ``json.dumps(ensure_ascii=False, separators=(",", ":"),
allow_nan=False)``), cleaned and redacted; the typed calls store the same bytes for the same
event.  For LangBot itself, :mod:`telespool.langbot` wraps all of this in LangBot's own
TelemetryManager and SurveyManager interfaces.

Finding the library (the first that applies):
  1. ``TELESPOOL_LIBRARY``: the path of the shared library; nothing else is tried when it is set.
  2. The wheel's own copy, ``_lib/libtelespool.so.0`` in this package's directory.
  3. ``TELESPOOL_BUILD_DIR``: a CMake build directory; ``<dir>/lib/libtelespool.so`` is loaded.
  4. The source tree: ``<root>/build/lib/libtelespool.so`` in this package's directory or any
     directory above it (the repository keeps this file at ``<root>/lib/python/telespool``).
  5. The system loader: ``ctypes.util.find_library("telespool")``, then ``libtelespool.so.0``.
If none loads, importing this module raises ImportError listing every attempt.

Errors.  Every failure the binding meets raises a subclass of :class:`Error`, which carries
``code`` (the library's negative return code as an :class:`RC` member; the module constants
``EBUSY`` ... are the same members) and
``message`` (the library's detail text: telespool_errmsg(), or telespool_open_errmsg() for
opening):

  ==================  ==========  =============================================================
  class               code        meaning
  ==================  ==========  =============================================================
  Error               ERROR (-1)  unexpected failure (also the base class of all below)
  InvalidArgument     EINVAL      bad argument or option; also a ValueError.  Also raised by
                                  any call on a closed Spool (like a closed Python file)
  ArgumentTypeError   EINVAL      an argument of the wrong Python type; an InvalidArgument
                                  that is also a TypeError
  BusyError           EBUSY       the file stayed locked by someone else past busy_timeout_ms
  FullError           EFULL       disk (or file size limit) full; the event was not stored
  SchemaError         ESCHEMA     the file was written by a newer telespool (left untouched)
  DisabledError       EDISABLED   telemetry is opted out (``disabled=True``); nothing stored
  CorruptError        ECORRUPT    not a telespool database, or a damaged one
  StorageError        EIO         cannot open, read or write the file (permissions, I/O error)
  OutOfMemoryError    ENOMEM      out of memory; also a MemoryError
  ==================  ==========  =============================================================

Telemetry must never take LangBot down: catch :class:`Error` around record calls.  Arguments
of the wrong Python type raise ArgumentTypeError (a TypeError too) before the library is
called (see below).

Arguments.
  * String fields accept ``str``, ``None`` (passed as NULL: stored as ``""``) and numbers
    (``int``, ``float``, ``bool``: converted with ``str()``); anything else is a TypeError.
    Strings are encoded as UTF-8 with ``errors="surrogatepass"``: a lone surrogate reaches the
    library as invalid UTF-8, which the library replaces with U+FFFD.  NUL characters are
    removed before the call (C strings end at a NUL; the library removes NULs from names
    anyway), so ``"a\\x00b"`` is stored as ``"ab"``.
  * The record calls take keyword arguments only, except the one obvious argument of
    ``record``, ``record_heartbeat`` and the survey calls; ``count_drops(reason, n)`` takes
    its two as the C call does.
  * ``pipeline_plugins``: a list/tuple (or other iterable, but not a string) of string fields;
    ``None`` items are skipped.  ``None`` is sent as null (LangBot: the pipeline enables every
    plugin), ``[]`` as ``[]``.
  * ``duration_ms``: ``int`` or ``float`` (truncated to an int; NaN is 0); ``None`` is 0.
    Negative values are stored as 0 by the library.
  * ``features`` / ``answers``: a ``dict`` (or other JSON-serialisable value) is encoded with
    ``json.dumps(ensure_ascii=False, default=str)`` (values json cannot encode become their
    ``str()``; a circular reference or a key that is not a str/number/bool/None is a
    TypeError; a value nested deeper than ``json`` can encode keeps the 8 levels the library
    keeps anyway); a ``str`` is passed through as JSON text.  The library rejects anything that
    is not a JSON object (including NaN/Infinity) with InvalidArgument.  ``features=None``
    means ``{}``; ``answers`` must be given.  (``record(payload)`` encodes the whole payload
    as LangBot does instead: no ``default=str``.)

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
import enum
import json
import math
import os
import threading
from typing import Any, Iterable, Mapping, Optional, Union

__all__ = [
    "Spool", "Error", "InvalidArgument", "ArgumentTypeError", "BusyError", "FullError", "SchemaError",
    "DisabledError", "CorruptError", "StorageError", "OutOfMemoryError",
    "OK", "ERROR", "EINVAL", "EBUSY", "EFULL", "ESCHEMA", "EDISABLED", "ECORRUPT", "EIO",
    "ENOMEM", "sender_normalise", "CORRUPT_REFUSE", "CORRUPT_MOVE_ASIDE", "strerror", "library_version",
    "LIBRARY_PATH", "RC", "TELEMETRY", "SURVEY_PENDING", "SURVEY_RESPOND", "SURVEY_DISMISS",
    "DROP_REASON_MAX", "MAX_DROP_COUNT",
]

from ._version import __version__  # noqa: E402  (CMakeLists.txt's project(VERSION))

# ---- constants (telespool.h) -------------------------------------------------------------


class RC(enum.IntEnum):
    """The library's return codes (telespool_rc).  The module constants ``OK``, ``EINVAL``
    ... are the same members, kept as aliases."""

    OK = 0
    ERROR = -1       #: unexpected failure
    EINVAL = -2      #: bad argument
    EBUSY = -3       #: locked by someone else past busy_timeout_ms
    EFULL = -4       #: disk full; nothing stored, drop counted
    ESCHEMA = -5     #: file written by a newer telespool
    EDISABLED = -6   #: telemetry is opted out; nothing stored
    ECORRUPT = -7    #: not a database, or a damaged one
    EIO = -8         #: cannot open, read or write
    ENOMEM = -9      #: out of memory


OK = RC.OK
ERROR = RC.ERROR
EINVAL = RC.EINVAL
EBUSY = RC.EBUSY
EFULL = RC.EFULL
ESCHEMA = RC.ESCHEMA
EDISABLED = RC.EDISABLED
ECORRUPT = RC.ECORRUPT
EIO = RC.EIO
ENOMEM = RC.ENOMEM

CORRUPT_REFUSE = 0
CORRUPT_MOVE_ASIDE = 1

DEFAULT_BUSY_TIMEOUT_MS = 250
DEFAULT_MAX_EVENTS = 200000
DEFAULT_MAX_BYTES = 128 * 1024 * 1024
DEFAULT_MAX_AGE_DAYS = 30
MAX_BUSY_TIMEOUT_MS = 60000
DROP_REASON_MAX = 40            # Spool.count_drops(): the longest reason, in bytes
MAX_DROP_COUNT = 1000000000     # ... and the largest n of one call

_OPTIONS_VERSION = 2
_QUERY_VERSION = 2
_HEARTBEAT_VERSION = 1

#: Where record(endpoint=...) can send a body: the paths LangBot POSTs to.
TELEMETRY = "/api/v1/telemetry"
SURVEY_PENDING = "/api/v1/survey/pending"
SURVEY_RESPOND = "/api/v1/survey/respond"
SURVEY_DISMISS = "/api/v1/survey/dismiss"
_ENDPOINTS = (TELEMETRY, SURVEY_PENDING, SURVEY_RESPOND, SURVEY_DISMISS)
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

    code: int
    message: str

    def __init__(self, code: int, message: str = ""):
        super().__init__(code, message)
        try:
            code = RC(code)
        except ValueError:
            pass
        self.code = code
        self.message = message

    def __str__(self) -> str:
        text = strerror(self.code)
        if self.message and self.message != text:
            return f"{self.message} [{text}]"
        return text


class InvalidArgument(Error, ValueError):
    """EINVAL: a bad argument or option, or a call on a closed Spool."""


class ArgumentTypeError(InvalidArgument, TypeError):
    """An argument of the wrong Python type (EINVAL); also a TypeError.  Raised by the
    binding before the library is called."""

    def __init__(self, message: str):
        super().__init__(EINVAL, message)


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
        ("features_json", ctypes.c_char_p),
        ("instance_id", ctypes.c_char_p),
        ("workspace_uuid", ctypes.c_char_p),
        ("runtime_instance_id", ctypes.c_char_p),
    ]


class _Heartbeat(ctypes.Structure):
    _fields_ = [
        ("struct_version", ctypes.c_uint),
        ("workspace_uuid", ctypes.c_char_p),
        ("workspace_create_ts", ctypes.c_int64),
        ("features_json", ctypes.c_char_p),
        ("instance_id", ctypes.c_char_p),
    ]


_P = ctypes.c_void_p   # telespool * (opaque)
_S = ctypes.c_char_p


def _declare(name, restype, *argtypes):
    try:
        fn = getattr(_lib, name)
    except AttributeError:
        raise ImportError(f"telespool: {LIBRARY_PATH} has no {name}(): it is older than this "
                          "binding; install the library of the same release") from None
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


_open = _declare("telespool_open", ctypes.c_int, ctypes.POINTER(_P), _S,
                 ctypes.POINTER(_Options))
_open_errmsg = _declare("telespool_open_errmsg", _S)
_close = _declare("telespool_close", None, _P)
_record_query = _declare("telespool_record_query", ctypes.c_int, _P, ctypes.POINTER(_Query))
_record_workspace_heartbeat = _declare("telespool_record_workspace_heartbeat", ctypes.c_int,
                                       _P, ctypes.POINTER(_Heartbeat))
_record_json_to = _declare("telespool_record_json_to", ctypes.c_int, _P, _S, _S)
_record_heartbeat = _declare("telespool_record_heartbeat", ctypes.c_int, _P, _S)
_record_survey_trigger = _declare("telespool_record_survey_trigger", ctypes.c_int, _P, _S)
_record_survey_response = _declare("telespool_record_survey_response", ctypes.c_int,
                                   _P, _S, _S, ctypes.c_int)
_record_survey_dismiss = _declare("telespool_record_survey_dismiss", ctypes.c_int, _P, _S)
# The JSON text is returned through char **: read it as an address, copy it, free it.
_pending_survey = _declare("telespool_pending_survey", ctypes.c_int, _P,
                           ctypes.POINTER(ctypes.c_void_p))
_count_drops = _declare("telespool_count_drops", ctypes.c_int, _P, _S, ctypes.c_int64)
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
    raise ArgumentTypeError(f"telespool: {field} must be a str, a number or None, "
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
        raise ArgumentTypeError(f"telespool: {field} cannot be serialised as JSON: {e}") from None
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
        raise ArgumentTypeError(f"telespool: {field} must be an int, a float or None, "
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
            raise ArgumentTypeError("telespool: pipeline_plugins must be a list of str, not "
                            + t.__name__)
        try:
            value = tuple(value)
        except TypeError:
            raise ArgumentTypeError("telespool: pipeline_plugins must be a list of str or None, "
                            f"not {t.__name__}") from None
    n = len(value)
    if n == 0:
        return _NO_PLUGINS, 0   # [] (a NULL array would be null: "every plugin")
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
_NO_PLUGINS = (ctypes.c_char_p * 1)()


# Keys LangBot's sender turns into strings (pkg/telemetry/telemetry.py, TelemetryManager.send).
_SENDER_STRINGS = ("adapter", "runner", "runner_category", "model_name", "version", "edition",
                   "error", "timestamp", "event_type")


def sender_normalise(payload: Mapping[str, Any]) -> dict:
    """A copy of payload normalised exactly as LangBot 4.10.8's TelemetryManager.send() does
    before it POSTs: the body it sends is ``json.dumps`` of this.  Raises InvalidArgument where
    LangBot's sender would fail (a ``str()`` that raises)."""
    s = dict(payload)
    try:
        if "query_id" in s:
            s["query_id"] = "" if s["query_id"] is None else str(s["query_id"])
        for key in _SENDER_STRINGS:
            if key in s:
                v = s[key]
                s[key] = "" if v is None else str(v)
    except Exception as e:
        raise InvalidArgument(EINVAL, f"a payload field cannot be turned into a string "
                                      f"(LangBot's sender would fail too): {e!r}") from None
    if not s.get("event_type"):
        s["event_type"] = "query"
    if "features" in s and not isinstance(s["features"], dict):
        s["features"] = {}
    if "duration_ms" in s:
        try:
            s["duration_ms"] = int(s["duration_ms"]) if s["duration_ms"] is not None else 0
        except Exception:
            s["duration_ms"] = 0
    return s


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
        try:
            self.path = os.fspath(path)
            bpath = os.fsencode(self.path)
        except (TypeError, UnicodeError) as e:
            raise ArgumentTypeError(f"telespool: path: {e}") from None
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

    def record_query(self, *, query_id: Any = None, adapter: Any = None, runner: Any = None,
                     model_name: Any = None, duration_ms: Union[int, float, None] = None,
                     pipeline_plugins: Optional[Iterable[Any]] = None, error: Any = None,
                     runner_category: Any = None, features: Any = None,
                     instance_id: Any = None, workspace_uuid: Any = None,
                     runtime_instance_id: Any = None) -> None:
        """Records one processed chat query (event_type "query") with LangBot 4.10.8's body:
        the same bytes as :meth:`record` stores for the payload LangBot's chat handler builds.

        ``error`` is the traceback of a failed query (None or "" when it succeeded); it is
        redacted by the library.  ``pipeline_plugins`` None is sent as null (LangBot: the
        pipeline enables every plugin), ``[]`` as ``[]``.  ``features`` is the query's
        feature-usage dict (None: ``{}``).  ``instance_id`` and ``workspace_uuid`` come from
        the query's execution context (None: the Spool's instance_id, and ""),
        ``runtime_instance_id`` is the process's own instance id (None: the Spool's).

        Raises :class:`ArgumentTypeError` for an argument of the wrong type,
        :class:`InvalidArgument` for features that are not a JSON object, and the
        :class:`Error` subclass of any failure of the library (DisabledError when opted out,
        BusyError, FullError, ...).  Nothing is stored when it raises.
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
                   d, dur, plugins, n, None if error is None else enc(error, "error"),
                   None if features is None else _enc_json(features, "features"),
                   None if instance_id is None else enc(instance_id, "instance_id"),
                   None if workspace_uuid is None else enc(workspace_uuid, "workspace_uuid"),
                   None if runtime_instance_id is None
                   else enc(runtime_instance_id, "runtime_instance_id"))
        with self._lock:
            h = self._h
            if h is None or self._pid != os.getpid():
                raise self._dead()
            rc = _record_query(h, q)
            if rc:
                raise _error(rc, _text(_errmsg(h)))

    def record(self, payload: Mapping[str, Any], *, endpoint: str = TELEMETRY) -> None:
        """Records LangBot's payload as it is: the dict LangBot hands
        ``TelemetryManager.send()`` (a query event, a heartbeat, or any event LangBot adds
        later), stored as the exact body LangBot would have POSTed.

        The payload is normalised as LangBot's sender does (``query_id`` and each of
        ``adapter, runner, runner_category, model_name, version, edition, error, timestamp,
        event_type`` that is present becomes ``""`` if None else ``str()``; an empty
        ``event_type`` becomes ``"query"``; ``features`` that is not a dict becomes ``{}``;
        ``duration_ms`` becomes ``int()``, 0 when that fails), encoded with
        ``json.dumps(ensure_ascii=False, separators=(",", ":"), allow_nan=False)``, then
        cleaned, redacted and capped by the library.  Keys telespool does not know are kept.

        ``endpoint`` is the path LangBot would POST to: :data:`TELEMETRY` (default), or for
        the bodies of LangBot's SurveyManager :data:`SURVEY_PENDING` (``{"instance_id",
        "event"}``; a milestone is checked at most once per spool), :data:`SURVEY_RESPOND`
        (marks the survey answered) or :data:`SURVEY_DISMISS` (marks it dismissed).  Survey
        bodies are not normalised (LangBot does not normalise them either).

        Raises :class:`ArgumentTypeError` when payload is not a mapping or holds a value
        ``json.dumps`` cannot encode; :class:`InvalidArgument` where LangBot's sender would
        fail too (``str()`` raising, NaN or Infinity, a circular reference, an int of more than
        4300 digits), for an unknown endpoint, a survey body without its id, or a body over
        the size caps; and the :class:`Error` subclass of any failure of the library.
        Nothing is stored when it raises.
        """
        if endpoint not in _ENDPOINTS:
            raise InvalidArgument(EINVAL, f"endpoint {endpoint!r} is not one of "
                                          + ", ".join(_ENDPOINTS))
        try:
            body = dict(payload)
        except (TypeError, ValueError):
            raise ArgumentTypeError("telespool: payload must be a dict (a mapping), not "
                                    + type(payload).__name__) from None
        if endpoint == TELEMETRY:
            body = sender_normalise(body)
        try:
            text = json.dumps(body, ensure_ascii=False, separators=(",", ":"),
                              allow_nan=False)
        except TypeError as e:
            raise ArgumentTypeError(f"telespool: the payload cannot be encoded as JSON: {e}") \
                from None
        except (ValueError, RecursionError) as e:
            raise InvalidArgument(EINVAL, "the payload cannot be encoded as JSON (LangBot's "
                                          f"sender would fail too): {e}") from None
        self._call(_record_json_to, endpoint.encode("ascii"),
                   text.encode("utf-8", "surrogatepass"))

    def record_workspace_heartbeat(self, *, workspace_uuid: Any, workspace_create_ts: int = 0,
                                   features: Any = None, instance_id: Any = None) -> None:
        """Records LangBot 4.10.8's "instance_heartbeat" for one workspace (LangBot sends
        one per active workspace): the same bytes as :meth:`record` stores for the payload
        LangBot's heartbeat builds.  ``features`` is the dict of configuration counts (None:
        ``{}``); ``instance_id`` None is the Spool's.  Raises as :meth:`record_query`."""
        hb = _Heartbeat(_HEARTBEAT_VERSION, _enc(workspace_uuid, "workspace_uuid"),
                        _int(workspace_create_ts, "workspace_create_ts", _I64_MIN, _I64_MAX,
                             clamp=True),
                        _enc_json(features, "features"),
                        None if instance_id is None else _enc(instance_id, "instance_id"))
        self._call(_record_workspace_heartbeat, ctypes.byref(hb))

    def record_heartbeat(self, features: Any = None) -> None:
        """Records the heartbeat of LangBot 4.10.6 and earlier (no workspace; see
        :meth:`record_workspace_heartbeat` for 4.10.8).  features is a dict of configuration
        counts (None means {}).  Raises as :meth:`record_query`."""
        self._call(_record_heartbeat, _enc_json(features, "features"))

    def record_survey_trigger(self, event: str) -> None:
        """Records a survey milestone, e.g. "first_bot_response_success".  A milestone is
        checked at most once per spool: recording it again does nothing.  Raises
        InvalidArgument for an empty event, and as :meth:`record_query`."""
        self._call(_record_survey_trigger, _enc(event, "event"))

    def record_survey_response(self, survey_id: Any, answers: Any, *,
                               completed: bool = True) -> None:
        """Records the answers (a dict) to a survey and marks it answered.  Raises
        InvalidArgument for an empty survey_id or answers that are not a JSON object, and
        as :meth:`record_query`."""
        self._call(_record_survey_response, _enc(survey_id, "survey_id"),
                   _enc_json(answers, "answers"), 1 if completed else 0)

    def record_survey_dismiss(self, survey_id: Any) -> None:
        """Records the dismissal of a survey and marks it dismissed.  Raises
        InvalidArgument for an empty survey_id, and as :meth:`record_query`."""
        self._call(_record_survey_dismiss, _enc(survey_id, "survey_id"))

    def count_drops(self, reason: str, n: int = 1) -> None:
        """Counts ``n`` events the caller dropped itself (its queue was full, it shut down
        before recording them) in the spool's ``drops`` table under ``reason``, where the
        library's own drops are (README "Inspecting the spool with sqlite3").

        ``reason`` is a ``str`` of 1 to 40 characters ``a-z``, ``0-9`` and ``_`` (e.g.
        ``"queue_full"``), none of the reasons the library and the uploader count themselves
        (``disk_full``, ``wal_pinned``, ``expired``, ...); ``n`` an ``int`` from 1 to
        :data:`MAX_DROP_COUNT`.  Raises :class:`ArgumentTypeError` for a reason that is not
        a ``str`` or an ``n`` that is not an ``int`` (``bool`` included),
        :class:`InvalidArgument` for one the library refuses, DisabledError when opted out
        (nothing counted), BusyError (nothing counted: count them again later), and
        FullError when the disk or the WAL is full: the library then keeps the count in
        memory and writes it with the next record or count that succeeds (or at close), so the
        caller must not count them again.  OutOfMemoryError: as FullError, but the handle
        already keeps 16 other reasons in memory, so nothing was counted."""
        if not isinstance(reason, str):
            raise ArgumentTypeError("telespool: reason must be a str, not "
                                    + type(reason).__name__)
        if not isinstance(n, int) or isinstance(n, bool):
            raise ArgumentTypeError("telespool: n must be an int, not " + type(n).__name__)
        if not 1 <= n <= MAX_DROP_COUNT:
            raise InvalidArgument(EINVAL, f"the drop count {n} is not in 1..{MAX_DROP_COUNT}")
        # surrogatepass: a lone surrogate reaches the library as bytes it refuses.  A NUL
        # would end the C string early and count under another reason.
        b = str.__str__(reason).encode("utf-8", "surrogatepass")
        if b"\0" in b:
            raise InvalidArgument(EINVAL, "the drop reason may hold only the characters "
                                          "a-z, 0-9 and '_'")
        self._call(_count_drops, b, int(n))

    def pending_survey(self) -> Optional[dict]:
        """The survey LangBot Space offered that is neither answered nor dismissed, as a
        dict (the JSON object Space sent), or None.  Always None when disabled.  Raises the
        :class:`Error` subclass of any failure of the library, and Error when the stored
        survey is not a JSON object."""
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
