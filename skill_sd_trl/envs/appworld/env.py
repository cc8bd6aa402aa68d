"""AppWorld as a :class:`~skill_sd_trl.envs.base.TextEnv`: the model writes Python code, the server runs it.

One :class:`AppWorldEnv` instance plays one episode at a time against an AppWorld environment server (the
real one or our offline one; same protocol, same client). ``reset`` initializes the task on the server and
returns ``None`` (the instruction is already in the dataset prompt), ``step`` extracts the code from the
model's turn, executes it remotely and returns the (trimmed) output, ``score`` runs the task's unit tests:
Acc. = every test passed, Comp. = fraction of tests passed. ``close`` frees the server-side episode.
Step rewards are 0: the episode's reward comes from :meth:`AppWorldEnv.score`.
"""

from __future__ import annotations

import ast
import json
import re
import threading
from collections.abc import Mapping
from typing import Any

from ..base import EpisodeScore, StepResult, TextEnv
from .client import AppWorldClient, AppWorldServerError, EvaluationResult

FAILED_PREFIX = "Execution failed."
_OPEN = re.compile(r"^\s*```[ \t]*([\w+-]*)[ \t]*$")
_CLOSE = re.compile(r"^\s*```[ \t]*$")
_PYTHON_LANGS = {"python", "py", "python3"}
_THINK = re.compile(r"<think>.*?</think>", re.S)
_API_ERROR = re.compile(r"Response status code is (\d+):\s*(.*)", re.S)

FORMAT_HELP = ("No Python code found in your message. Reply with exactly one code block:\n"
               "```python\n# code calling apis.<app>.<api>(...)\nprint(result)\n```")


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced block, scanning line by line (an unclosed block runs to the end)."""
    blocks: list[tuple[str, str]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        opening = _OPEN.match(lines[i])
        if not opening:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not _CLOSE.match(lines[j]):
            j += 1
        blocks.append((opening.group(1).lower(), "\n".join(lines[i + 1:j])))
        i = j + 1
    return blocks


def extract_code(text: str) -> str | None:
    """The Python code of a model turn: its ```python blocks (joined), else its unlabeled fenced blocks, else
    the raw text if it parses as Python. ``None`` when the turn holds no code (``<think>`` blocks are ignored,
    and so are blocks labeled with another language, e.g. ```json)."""
    text = _THINK.sub("", text)
    blocks = _fenced_blocks(text)
    chosen = [body for lang, body in blocks if lang in _PYTHON_LANGS] or [body for lang, body in blocks if not lang]
    if chosen:
        return "\n\n".join(b.strip("\n") for b in chosen).strip() or None
    raw = text.strip()
    if not raw or "```" in raw:
        return None
    try:
        ast.parse(raw)
    except SyntaxError:
        return None
    return raw


def trim_observation(text: str, max_chars: int) -> str:
    """Keep the head and tail of long outputs (tracebacks end with the error, listings start with data)."""
    if len(text) <= max_chars:
        return text
    head = max_chars * 2 // 3
    tail = max_chars - head
    return f"{text[:head]}\n...[{len(text) - max_chars} characters trimmed]...\n{text[-tail:]}"


def observation_events(output: str) -> list[str]:
    """Short tags for the skill summarizer: ``api_error: <status> <message>``, ``refused: ...``, ``timeout``,
    ``syntax_error``, ``execution_error: <last line>``."""
    if not output.startswith(FAILED_PREFIX):
        return []
    api = _API_ERROR.search(output)
    if api:
        message = api.group(2).strip()
        try:
            message = json.loads(message.splitlines()[0]).get("message", message)
        except (json.JSONDecodeError, AttributeError, IndexError):
            pass
        return [f"api_error: {api.group(1)} {str(message)[:200]}"]
    if "SandboxViolation:" in output:
        return ["refused: " + output.split("SandboxViolation:", 1)[1].strip()[:200]]
    if "timed out" in output:
        return ["timeout"]
    if "Syntax error" in output or "SyntaxError" in output:
        return ["syntax_error"]
    last = output.strip().splitlines()[-1]
    return [f"execution_error: {last[:200]}"]


class _ServerLeases:
    """Which real-AppWorld servers are in use by an episode of this process (a real server holds one world)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy: set[str] = set()

    def acquire(self, urls: list[str]) -> str:
        with self._lock:
            for url in urls:
                if url not in self._busy:
                    self._busy.add(url)
                    return url
        raise AppWorldServerError(
            f"all {len(urls)} AppWorld server(s) {urls} are busy with other episodes. The real AppWorld server holds "
            "one task world at a time: start one `appworld serve environment --port N` per concurrent episode "
            "(e.g. num_generations x per-device batch) and pass them all as server_url='http://h:8000,http://h:8001'.")

    def release(self, url: str) -> None:
        with self._lock:
            self._busy.discard(url)


_LEASES = _ServerLeases()


def _server_urls(value: str | list[str] | tuple[str, ...]) -> list[str]:
    urls = [u.strip() for u in value.split(",")] if isinstance(value, str) else [str(u).strip() for u in value]
    urls = [u for u in urls if u]
    if not urls:
        raise ValueError(f"server_url must name at least one server URL, got {value!r}")
    return urls


class AppWorldEnv(TextEnv):
    """A multi-turn AppWorld episode driven through an environment server.

    Real AppWorld servers hold one world each, so every episode leases a server of its own for its lifetime
    (``reset`` to ``close``): give as many URLs as episodes run at once (``server_url`` may be a list or a
    comma-separated string); a clear error says so when they are all busy. The offline server runs any number of
    episodes (they are told apart by a session id), so :class:`OfflineAppWorldEnv` leases nothing.

    Args:
        server_url: the server(s) to use when a dataset row has no ``server_url`` column.
        max_consecutive_errors: end the episode (``stop_reason="error_budget"``) after this many failed turns
            in a row (no code, refused code, exceptions); ``None`` disables the budget.
        max_observation_chars: observations longer than this are trimmed (head and tail kept).
        request_timeout_s: HTTP timeout of one request (the server enforces its own execution timeout).
        init_kwargs: extra fields for ``/initialize`` (real server: ``experiment_name``, ``timeout_seconds``, ...).
        return_instruction: make ``reset`` return the task instruction (for prompts that do not contain it).
    """

    name = "appworld"
    stop_reasons = ("completed", "error_budget")
    exclusive_servers = True  # one episode per server at a time (the real AppWorld server's single world)

    def __init__(self, server_url: str | list[str] | None = None, *, max_consecutive_errors: int | None = 10,
                 max_observation_chars: int = 4000, request_timeout_s: float = 180.0,
                 init_kwargs: Mapping[str, Any] | None = None, return_instruction: bool = False) -> None:
        if max_consecutive_errors is not None and max_consecutive_errors < 1:
            raise ValueError(f"max_consecutive_errors must be >= 1 or None, got {max_consecutive_errors}")
        if max_observation_chars < 100:
            raise ValueError(f"max_observation_chars must be >= 100, got {max_observation_chars}")
        self.server_url = server_url
        self.max_consecutive_errors = max_consecutive_errors
        self.max_observation_chars = max_observation_chars
        self.request_timeout_s = request_timeout_s
        self.init_kwargs = dict(init_kwargs or {})
        self.return_instruction = return_instruction
        self.client: AppWorldClient | None = None
        self._leased: str | None = None
        self.task: dict[str, Any] = {}
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.done = False
        self.completed = False
        self.turns = 0
        self.consecutive_errors = 0
        self._score: EpisodeScore | None = None

    def default_server_url(self) -> str:
        raise ValueError("no AppWorld server: pass server_url=... to AppWorldEnv or add a 'server_url' column to the "
                         "dataset (see docs/appworld.md for starting `appworld serve environment`)")

    # -- TextEnv ------------------------------------------------------------------------------------------------
    def reset(self, example: Mapping[str, Any]) -> str | None:
        task_id = example.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            raise ValueError(f"dataset row must have a non-empty string 'task_id' column, got {task_id!r}")
        self.close()
        urls = _server_urls(example.get("server_url") or self.server_url or self.default_server_url())
        url = urls[0]
        if self.exclusive_servers:
            url = self._leased = _LEASES.acquire(urls)
        try:
            self.client = AppWorldClient(url, timeout_s=self.request_timeout_s)
            self.task = self.client.initialize(task_id, **self.init_kwargs)
        except BaseException:
            self.close()
            raise
        self._reset_counters()
        return self.task.get("instruction") if self.return_instruction else None

    def step(self, action: str) -> StepResult:
        if self.client is None:
            raise RuntimeError("step() called before reset(example)")
        if self.done:
            raise RuntimeError("the episode is over; call reset(example) to start a new one")
        self.turns += 1
        code = extract_code(action)
        if code is None:
            return self._finish_turn(FORMAT_HELP, valid=False, failed=True, actions=[], events=["invalid_action"])
        output = self.client.execute(code)
        events = observation_events(output)
        self.completed = self.client.task_completed()
        if self.completed:
            events.append("task_completed")
        failed = output.startswith(FAILED_PREFIX)
        refused = any(e.startswith("refused") for e in events)
        return self._finish_turn(trim_observation(output, self.max_observation_chars), valid=not refused,
                                 failed=failed, actions=[code], events=events)

    def _finish_turn(self, observation: str, valid: bool, failed: bool, actions: list[str],
                     events: list[str]) -> StepResult:
        self.consecutive_errors = self.consecutive_errors + 1 if failed else 0
        stop_reason = None
        if self.completed:
            stop_reason = "completed"
        elif self.max_consecutive_errors is not None and self.consecutive_errors >= self.max_consecutive_errors:
            stop_reason = "error_budget"
            events = [*events, "error_budget"]
        self.done = stop_reason is not None
        return StepResult(observation=observation, reward=0.0, done=self.done, valid=valid, stop_reason=stop_reason,
                          info={"actions": actions, "events": events})

    def evaluate(self) -> EvaluationResult:
        """Run the task's unit tests on the current state (the raw per-test result)."""
        if self.client is None:
            raise RuntimeError("evaluate() called before reset(example)")
        return self.client.evaluate()

    def score(self) -> EpisodeScore:
        if self._score is None:
            result = self.evaluate()
            self._score = EpisodeScore(
                success=result.success, completion=result.completion,
                info={"num_tests": result.num_tests, "passes": result.passes, "failures": result.failures,
                      "task_completed": self.completed, "turns": self.turns, "task_id": self.task.get("task_id")})
        return self._score

    def close(self) -> None:
        client, self.client = self.client, None
        leased, self._leased = self._leased, None
        try:
            if client is not None:
                client.close()
        except AppWorldServerError:
            pass  # the server is gone: nothing left to free
        finally:
            if leased is not None:
                _LEASES.release(leased)


class OfflineAppWorldEnv(AppWorldEnv):
    """:class:`AppWorldEnv` on the offline app world; without a ``server_url`` it starts (once per process) a
    local offline server that is stopped at interpreter exit."""

    name = "appworld_offline"
    exclusive_servers = False  # the offline server keeps concurrent episodes apart by session id

    def default_server_url(self) -> str:
        from .offline.server import default_offline_server_url

        return default_offline_server_url()
