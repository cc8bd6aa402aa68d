"""The sandbox worker: runs the agent's Python code in a separate, resource-limited process.

This file is executed as a standalone script (``python -I -S worker.py LIMITS_JSON``) and imports only the
standard library, so the process starts fast and sees no site-packages. It never touches the world's
database: ``apis.<app>.<api>(...)`` sends an RPC message to the parent (the world side) over its stdin/stdout
pipes and waits for the answer.

Layers of defence inside this process (the parent adds AST validation before any code gets here and a
wall-clock timeout that kills this process):

* resource limits set before any agent code runs: address space, CPU seconds, no file writes, no new
  processes, no core dumps;
* file descriptors 1 and 2 point to /dev/null; the protocol uses private duplicates;
* agent code runs with a whitelist of builtins (no ``open``, ``__import__``, ``getattr``, ``eval``, ...) and
  module-like namespaces that expose only functions and classes (never module objects, whose attributes
  lead to ``sys`` and ``os``);
* printed output is captured with a size limit.

Protocol: each message is a 4-byte big-endian length followed by UTF-8 JSON. Parent -> worker:
``{"op": "exec", "code": str, "filename": str}`` and ``{"op": "result", "ok": bool, ...}`` (answer to a call).
Worker -> parent: ``{"op": "ready"}``, ``{"op": "call", "app", "api", "args", "kwargs"}`` and
``{"op": "done", "output": str, "failed": bool}``.
"""

import collections
import datetime
import json
import linecache
import math
import os
import re
import resource
import struct
import sys
import traceback

import _strptime  # noqa: F401  (datetime.strptime imports it lazily; import it before file limits apply)

MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class _Channel:
    """Length-prefixed JSON messages over two file descriptors."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._read_fd = read_fd
        self._write_fd = write_fd

    def send(self, message: dict) -> None:
        data = json.dumps(message).encode("utf-8")
        data = struct.pack(">I", len(data)) + data
        while data:
            written = os.write(self._write_fd, data)
            data = data[written:]

    def _read_exact(self, size: int) -> bytes:
        chunks = []
        while size:
            chunk = os.read(self._read_fd, min(size, 1 << 16))
            if not chunk:
                raise EOFError("parent closed the channel")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def receive(self) -> dict:
        (size,) = struct.unpack(">I", self._read_exact(4))
        if size > MAX_MESSAGE_BYTES:
            raise EOFError("message too large")
        return json.loads(self._read_exact(size).decode("utf-8"))


class _Output:
    """Captured ``print`` output with a hard size limit (output bombs are cut, never buffered)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list = []
        self.size = 0
        self.dropped = 0

    def write(self, text: str) -> None:
        room = self.limit - self.size
        if room <= 0:
            self.dropped += len(text)
            return
        self.parts.append(text[:room])
        self.size += min(len(text), room)
        self.dropped += max(0, len(text) - room)

    def text(self) -> str:
        out = "".join(self.parts)
        if self.dropped:
            out += f"\n[output truncated: {self.dropped} more characters were printed]"
        return out


class _Namespace:
    """A read-only bag of functions/classes standing in for a module (e.g. ``json.loads``)."""

    def __init__(self, name: str, **members) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_members", members)

    def __getattr__(self, key: str):
        members = object.__getattribute__(self, "_members")
        if key.startswith("_") or key not in members:
            raise AttributeError(f"'{object.__getattribute__(self, '_name')}' has no attribute '{key}'")
        return members[key]

    def __setattr__(self, key: str, value) -> None:
        raise AttributeError("read-only namespace")

    def __repr__(self) -> str:
        return f"<namespace {object.__getattribute__(self, '_name')}>"


def _api_exception(status: int, message: str) -> Exception:
    # Same shape as the real AppWorld's API failures, so one parser reads both.
    return Exception(f"Response status code is {status}:\n" + json.dumps({"message": message}))


class _Api:
    __slots__ = ("_app", "_api", "_rpc")

    def __init__(self, app: str, api: str, rpc) -> None:
        self._app, self._api, self._rpc = app, api, rpc

    def __call__(self, *args, **kwargs):
        return self._rpc(self._app, self._api, list(args), kwargs)

    def __repr__(self) -> str:
        return f"<api apis.{self._app}.{self._api}>"


class _App:
    __slots__ = ("_app", "_rpc")

    def __init__(self, app: str, rpc) -> None:
        self._app, self._rpc = app, rpc

    def __getattr__(self, api: str):
        if api.startswith("_"):
            raise AttributeError(api)
        return _Api(self._app, api, self._rpc)

    def __repr__(self) -> str:
        return f"<app apis.{self._app}>"


class _Apis:
    __slots__ = ("_rpc",)

    def __init__(self, rpc) -> None:
        self._rpc = rpc

    def __getattr__(self, app: str):
        if app.startswith("_"):
            raise AttributeError(app)
        return _App(app, self._rpc)

    def __repr__(self) -> str:
        return "<apis: call apis.api_docs.show_app_descriptions() to list the apps>"


SAFE_BUILTIN_NAMES = (
    "abs", "all", "any", "bool", "chr", "dict", "divmod", "enumerate", "filter", "float", "frozenset", "hash",
    "hasattr", "int", "isinstance", "iter", "len", "list", "map", "max", "min", "next", "ord", "pow", "range",
    "repr", "reversed", "round", "set", "slice", "sorted", "str", "sum", "tuple", "zip", "callable", "bytes",
    "Exception", "ArithmeticError", "AssertionError", "AttributeError", "IndexError", "KeyError", "LookupError",
    "NameError", "NotImplementedError", "RuntimeError", "StopIteration", "TypeError", "ValueError",
    "ZeroDivisionError", "True", "False", "None",
)


# Modules that C functions of whitelisted types import on demand (datetime.strptime imports _strptime).
_INTERNAL_IMPORTS = ("_strptime", "time")


def _internal_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level == 0 and name in _INTERNAL_IMPORTS and name in sys.modules:
        return sys.modules[name]
    raise ImportError("imports are not allowed in this sandbox")


def _frozen_clock(now):
    """``date``/``datetime`` whose ``today()``/``now()`` return the episode's frozen time (like the real AppWorld)."""
    if not now:
        return datetime.date, datetime.datetime
    moment = datetime.datetime.fromisoformat(now)

    class FrozenDateTime(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.datetime.fromisoformat(now) if tz is None else moment.replace(tzinfo=tz)

        @classmethod
        def today(cls):
            return datetime.datetime.fromisoformat(now)

    class FrozenDate(datetime.date):
        @classmethod
        def today(cls):
            return moment.date()

    for cls, name in ((FrozenDateTime, "datetime"), (FrozenDate, "date")):
        cls.__name__ = cls.__qualname__ = name
        cls.__module__ = "datetime"
    return FrozenDate, FrozenDateTime


def _safe_builtins(output: _Output, limits: dict) -> dict:
    import builtins

    def safe_print(*args, sep=" ", end="\n", file=None, flush=False):
        if file is not None:
            raise TypeError("print(file=...) is not available in this sandbox")
        sep = " " if sep is None else sep
        end = "\n" if end is None else end
        output.write(sep.join(str(a) for a in args) + end)

    table = {name: getattr(builtins, name) for name in SAFE_BUILTIN_NAMES}
    table["print"] = safe_print
    table["__import__"] = _internal_import  # only reachable by C code (datetime.strptime); the AST bans the name
    table["json"] = _Namespace("json", loads=json.loads, dumps=json.dumps)
    table["math"] = _Namespace("math", **{k: getattr(math, k) for k in dir(math) if not k.startswith("_")})
    frozen_date, frozen_datetime = _frozen_clock(limits.get("now"))
    table["datetime"] = _Namespace("datetime", date=frozen_date, datetime=frozen_datetime,
                                   timedelta=datetime.timedelta, time=datetime.time, timezone=datetime.timezone)
    table["re"] = _Namespace("re", search=re.search, match=re.match, fullmatch=re.fullmatch, findall=re.findall,
                             finditer=re.finditer, sub=re.sub, split=re.split, escape=re.escape, compile=re.compile,
                             IGNORECASE=re.IGNORECASE, MULTILINE=re.MULTILINE, DOTALL=re.DOTALL)
    table["Counter"] = collections.Counter
    table["defaultdict"] = collections.defaultdict
    return table


def _format_failure(exc: BaseException) -> str:
    """A traceback showing only the agent's own frames (never this worker's internals)."""
    summary = traceback.TracebackException(type(exc), exc, exc.__traceback__, capture_locals=False)
    frames = [f for f in summary.stack if f.filename.startswith("<python-input")]
    if len(frames) > 12:  # deep recursion: the last frames say enough
        frames = frames[:2] + frames[-10:]
    summary.stack = traceback.StackSummary.from_list(frames)
    summary.__cause__ = summary.__context__ = None  # hide chained internals (e.g. from the RPC layer)
    text = "".join(summary.format())
    if not frames:
        text = text.replace("Traceback (most recent call last):\n", "")
    return "Execution failed. Traceback:\n" + text.rstrip()


def _set_limits(limits: dict) -> None:
    memory = int(limits["memory_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    cpu = int(limits["cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # no file can grow: nothing can be written
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))  # no fork (not enforced for root; no API reaches fork)


def main() -> None:
    limits = json.loads(sys.argv[1])
    channel = _Channel(os.dup(0), os.dup(1))
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # agent code can never reach the protocol pipes or a terminal
        os.dup2(null, fd)
    os.close(null)
    _set_limits(limits)

    output = _Output(int(limits["max_output_chars"]))

    def rpc(app: str, api: str, args: list, kwargs: dict):
        try:
            channel.send({"op": "call", "app": app, "api": api, "args": args, "kwargs": kwargs})
        except (TypeError, ValueError):
            raise TypeError("API arguments must be JSON values (str, int, float, bool, None, list, dict)") from None
        reply = channel.receive()
        if not reply.get("ok"):
            raise _api_exception(int(reply.get("status", 500)), str(reply.get("message", "")))
        return reply.get("result")

    namespace = {"__builtins__": _safe_builtins(output, limits), "__name__": "__agent__", "apis": _Apis(rpc)}
    channel.send({"op": "ready"})
    while True:
        try:
            message = channel.receive()
        except EOFError:
            return
        if message.get("op") != "exec":
            continue
        output.parts, output.size, output.dropped = [], 0, 0
        filename = message["filename"]
        code_text = message["code"]
        linecache.cache[filename] = (len(code_text), None, code_text.splitlines(True), filename)
        failed = False
        try:
            exec(compile(code_text, filename, "exec", dont_inherit=True), namespace)  # noqa: S102 - the sandbox
        except BaseException as exc:  # noqa: BLE001 - every agent failure becomes an observation
            failed = True
            failure = _format_failure(exc)
            del exc
        text = output.text()
        if failed:
            text = (text + "\n" if text else "") + failure
        channel.send({"op": "done", "output": text, "failed": failed})


if __name__ == "__main__":
    main()
