"""Running untrusted agent code: AST policy (layer 1) and the worker-process session (layer 3).

Layer 2 (restricted builtins, module-free namespaces, captured output) lives in ``worker.py``, which runs in
its own process. :class:`SandboxSession` owns that process: it validates code with :func:`check_code`,
sends it to the worker, answers the worker's API calls through a handler (the world side, which alone holds
the database), enforces a wall-clock timeout and a per-execution API-call budget, and restarts the worker
after a timeout or crash with an observation that says the variables were reset.
"""

from __future__ import annotations

import ast
import json
import os
import select
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

WORKER_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
FAILED_PREFIX = "Execution failed. Traceback:\n"

# Names that would reach the host (files, code objects, module loading, frames). They are absent from the
# worker's builtins anyway; refusing them up front gives the agent a clear message.
FORBIDDEN_NAMES = frozenset({
    "open", "eval", "exec", "compile", "globals", "locals", "vars", "getattr", "setattr", "delattr", "breakpoint",
    "input", "help", "dir", "type", "object", "super", "memoryview", "classmethod", "staticmethod", "property",
    "exit", "quit", "copyright", "credits", "license", "reload", "__import__", "__builtins__", "__loader__",
    "__spec__", "__build_class__",
})
# Attributes that expose frames, code or globals without a leading underscore, and str.format (whose
# replacement fields can read attributes, e.g. "{0.__class__}", which the AST cannot see).
FORBIDDEN_ATTRIBUTES = frozenset({
    "gi_frame", "gi_code", "gi_yieldfrom", "gi_running", "cr_frame", "cr_code", "cr_await", "ag_frame", "ag_code",
    "ag_await", "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "f_trace", "tb_frame", "tb_next",
    "co_code", "func_globals", "func_code", "mro", "format", "format_map",
})
MAX_CODE_CHARS = 50_000


class CodeRefused(Exception):
    """The code breaks the sandbox policy; the message tells the agent what to change."""


def _dunder(name: str | None) -> bool:
    return bool(name) and name.startswith("__")


def check_code(code: str) -> ast.Module:
    """Parse ``code`` and refuse anything that could escape the sandbox.

    Raises ``SyntaxError`` for invalid Python and :class:`CodeRefused` for policy violations: imports, class
    definitions, ``match`` statements, async code, names in :data:`FORBIDDEN_NAMES`, any attribute starting
    with ``_``, attributes in :data:`FORBIDDEN_ATTRIBUTES`, and dunder identifiers anywhere.
    """
    if len(code) > MAX_CODE_CHARS:
        raise CodeRefused(f"code is {len(code)} characters long; the limit is {MAX_CODE_CHARS}")
    tree = ast.parse(code, filename="<python-input>", mode="exec")
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            raise CodeRefused("imports are not allowed; json, re, math, datetime, Counter and defaultdict are "
                              "already available, and apps are reached through `apis`")
        if isinstance(node, ast.ClassDef):
            raise CodeRefused("class definitions are not allowed; use functions, dicts and lists")
        if isinstance(node, ast.Match):
            raise CodeRefused("match statements are not allowed; use if/elif")
        if isinstance(node, (ast.AsyncFunctionDef, ast.AsyncFor, ast.AsyncWith, ast.Await)):
            raise CodeRefused("async code is not allowed")
        if isinstance(node, ast.Name) and (node.id in FORBIDDEN_NAMES or _dunder(node.id)):
            raise CodeRefused(f"the name `{node.id}` is not available in this sandbox")
        if isinstance(node, ast.Attribute):
            if node.attr.startswith("_"):
                raise CodeRefused(f"access to the private attribute `.{node.attr}` is not allowed")
            if node.attr in FORBIDDEN_ATTRIBUTES:
                hint = " (use f-strings instead of str.format)" if node.attr.startswith("format") else ""
                raise CodeRefused(f"access to the attribute `.{node.attr}` is not allowed{hint}")
        name = getattr(node, "name", None) if isinstance(
            node, (ast.FunctionDef, ast.Lambda, ast.ExceptHandler)) else None
        if isinstance(node, ast.arg):
            name = node.arg
        if isinstance(node, ast.keyword):
            name = node.arg
        if isinstance(name, str) and _dunder(name):
            raise CodeRefused(f"the identifier `{name}` is not allowed")
    return tree


def syntax_error_message(error: SyntaxError) -> str:
    return (FAILED_PREFIX + "Syntax error in line:\n" + (error.text or "").rstrip() + "\nMessage: " + str(error.msg))


@dataclass
class SandboxLimits:
    """Per-session resource limits of the worker process."""

    timeout_s: float = 10.0  # wall clock per execution
    memory_mb: int = 512  # RLIMIT_AS of the worker
    cpu_seconds: int = 120  # RLIMIT_CPU over the worker's lifetime (a backstop; timeout_s acts first)
    max_output_chars: int = 20_000  # printed output kept per execution
    max_api_calls: int = 1_000  # API calls per execution
    start_timeout_s: float = 10.0


@dataclass
class ExecutionResult:
    output: str
    status: str  # "ok" | "error" | "refused" | "syntax_error" | "timeout" | "crashed" | "api_budget"
    api_calls: int = 0

    @property
    def failed(self) -> bool:
        return self.status != "ok"


CallHandler = Callable[[str, str, list, dict], dict]


class _WorkerDied(Exception):
    pass


class _Deadline(Exception):
    pass


class SandboxSession:
    """A persistent Python session in a sandboxed worker process; variables survive between executions.

    ``handler(app, api, args, kwargs)`` runs on the world side and returns the reply message
    (``{"ok": True, "result": ...}`` or ``{"ok": False, "status": int, "message": str}``).
    """

    def __init__(self, handler: CallHandler, limits: SandboxLimits | None = None, cwd: str | None = None,
                 now: str | None = None) -> None:
        self.handler = handler
        self.now = now  # frozen "current time" (ISO) seen by datetime.now()/date.today() in agent code
        self.limits = limits or SandboxLimits()
        self.cwd = cwd
        self.process: subprocess.Popen | None = None
        self._counter = 0
        self._start()

    # -- process management ------------------------------------------------------------------------------------
    def _start(self) -> None:
        limits = {k: v for k, v in asdict(self.limits).items() if k in ("memory_mb", "cpu_seconds",
                                                                          "max_output_chars")}
        limits["now"] = self.now
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", WORKER_PATH, json.dumps(limits)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True,
            cwd=self.cwd or "/", env={"LC_ALL": "C.UTF-8"}, bufsize=0,
        )
        message = self._receive(time.monotonic() + self.limits.start_timeout_s)
        if message.get("op") != "ready":
            raise RuntimeError(f"sandbox worker failed to start: {message}")

    def _kill(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        for stream in (process.stdin, process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        if process.poll() is None:
            process.kill()
        process.wait()

    def restart(self) -> None:
        self._kill()
        self._start()

    def close(self) -> None:
        self._kill()

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    # -- framing ------------------------------------------------------------------------------------------------
    def _send(self, message: dict) -> None:
        data = json.dumps(message).encode("utf-8")
        try:
            self.process.stdin.write(struct.pack(">I", len(data)) + data)
        except (BrokenPipeError, OSError) as error:
            raise _WorkerDied() from error

    def _read_exact(self, size: int, deadline: float) -> bytes:
        fd = self.process.stdout.fileno()
        chunks: list[bytes] = []
        while size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Deadline()
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                raise _Deadline()
            chunk = os.read(fd, min(size, 1 << 16))
            if not chunk:
                raise _WorkerDied()
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def _receive(self, deadline: float) -> dict:
        (size,) = struct.unpack(">I", self._read_exact(4, deadline))
        if size > MAX_MESSAGE_BYTES:
            raise _WorkerDied()
        return json.loads(self._read_exact(size, deadline).decode("utf-8"))

    # -- execution ----------------------------------------------------------------------------------------------
    def execute(self, code: str) -> ExecutionResult:
        """Run ``code`` in the session and return its printed output (or a trimmed traceback)."""
        code = code.strip()
        if not code:
            return ExecutionResult("No code available to execute.", "error")
        try:
            check_code(code)
        except SyntaxError as error:
            return ExecutionResult(syntax_error_message(error), "syntax_error")
        except CodeRefused as error:
            return ExecutionResult(FAILED_PREFIX + f"SandboxViolation: {error}", "refused")
        if self.process is None or self.process.poll() is not None:
            self.restart()
        self._counter += 1
        calls = 0
        deadline = time.monotonic() + self.limits.timeout_s
        try:
            self._send({"op": "exec", "code": code, "filename": f"<python-input-{self._counter}>"})
            while True:
                message = self._receive(deadline)
                if message.get("op") == "done":
                    status = "error" if message.get("failed") else "ok"
                    output = message.get("output", "")
                    if not output.strip():
                        output = "Execution successful."
                    return ExecutionResult(output, status, calls)
                if message.get("op") != "call":
                    raise _WorkerDied()
                calls += 1
                if calls > self.limits.max_api_calls:
                    self.restart()
                    return ExecutionResult(
                        FAILED_PREFIX + f"Exception: more than {self.limits.max_api_calls} API calls in one "
                        "execution; the Python session was restarted and your variables were reset.",
                        "api_budget", calls)
                self._send(self.handler(message.get("app", ""), message.get("api", ""),
                                        message.get("args") or [], message.get("kwargs") or {}))
        except _Deadline:
            self.restart()
            return ExecutionResult(
                FAILED_PREFIX + f"Exception: Execution timed out after {self.limits.timeout_s:g} seconds; "
                "the Python session was restarted and your variables were reset.", "timeout", calls)
        except (_WorkerDied, json.JSONDecodeError, struct.error):
            self.restart()
            return ExecutionResult(
                FAILED_PREFIX + "Exception: The Python process crashed (memory or CPU limit exceeded?); "
                "the session was restarted and your variables were reset.", "crashed", calls)


def reply_ok(result: Any) -> dict:
    return {"ok": True, "result": result}


def reply_error(status: int, message: str) -> dict:
    return {"ok": False, "status": status, "message": message}
