"""HTTP client for the AppWorld environment-server protocol (the real ``appworld serve environment`` and our
offline server speak the same one). Standard library only: the real ``appworld`` package pins pydantic<2 and
an old FastAPI, so it lives in its own environment/process and we talk to it over HTTP.

The routes and payloads are checked against the real server app of ``appworld==0.1.3.post1``
(``appworld/serve/environment.py``) by tests/test_appworld_real_server.py; docs/appworld.md lists its quirks.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlparse

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
# appworld 0.1.3.post1's server raises `HTTPException("<message>")` (a message where the status code belongs), which
# itself fails, so its own errors reach us as a bare text/plain "Internal Server Error" without the message.
_BARE_500_HINT = (
    " (the real AppWorld server answers this bare 500 when the request's task_id is not the task it holds, i.e. "
    "another client initialized a different task on it or none was initialized, when the task id is unknown, "
    "or when /evaluate is called with suppress_errors=false and a test fails; its own log has the traceback)")


class AppWorldServerError(RuntimeError):
    """The server could not be reached or answered with an error (the message says which and how to fix it)."""


@dataclass
class EvaluationResult:
    """The unit-test outcome of an episode: Acc. = ``success``, Comp. = ``completion``."""

    success: bool
    num_tests: int
    passes: list[str]
    failures: list[dict[str, str]]  # {"requirement", "trace"}
    difficulty: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def pass_count(self) -> int:
        return len(self.passes)

    @property
    def completion(self) -> float:
        """Fraction of unit tests passed (0.0 for a task without tests)."""
        return self.pass_count / self.num_tests if self.num_tests else 0.0

    @classmethod
    def from_output(cls, output: dict[str, Any]) -> "EvaluationResult":
        """Parse ``/evaluate``'s output (``TestTracker.to_dict(stats_only=False)`` on the real server)."""
        if not isinstance(output, dict) or "passes" not in output or "failures" not in output:
            raise AppWorldServerError(f"unexpected /evaluate output (no 'passes'/'failures'): {str(output)[:300]}")
        passes = [p["requirement"] for p in output["passes"]]
        failures = [{"requirement": f["requirement"], "trace": f.get("trace", "")} for f in output["failures"]]
        num_tests = int(output.get("num_tests") or len(passes) + len(failures))
        success = bool(output.get("success", not failures)) and len(passes) == num_tests
        return cls(success, num_tests, passes, failures, output.get("difficulty"), output)


class AppWorldClient:
    """One episode's connection to an AppWorld environment server.

    ``session_id`` is sent with every request: our offline server uses it to run several episodes of the same
    task at once; the real server ignores it (it holds a single world, so give each concurrent episode its own
    real server).
    """

    def __init__(self, server_url: str, timeout_s: float = 180.0, session_id: str | None = None) -> None:
        if not isinstance(server_url, str) or not server_url.startswith(("http://", "https://")):
            raise ValueError(f"server_url must be an http(s) URL like 'http://127.0.0.1:8000', got {server_url!r}")
        self.server_url = server_url.rstrip("/")
        self.timeout_s = timeout_s
        self.session_id = session_id or uuid.uuid4().hex
        self.task_id: str | None = None
        handlers = [urllib.request.ProxyHandler({})] if urlparse(self.server_url).hostname in _LOCAL_HOSTS else []
        self._opener = urllib.request.build_opener(*handlers)

    # -- transport ----------------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = self.server_url + path
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                payload = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as error:
            raw = error.read().decode("utf-8", "replace")
            try:
                detail = json.loads(raw).get("detail", raw)
            except (json.JSONDecodeError, AttributeError):
                detail = raw
            if isinstance(detail, list):  # FastAPI's validation errors (HTTP 422): [{"loc", "msg", "type"}, ...]
                detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" if isinstance(d, dict)
                                   else str(d) for d in detail)
            message = f"AppWorld server {method} {url} failed with HTTP {error.code}: {detail}"
            if error.code == 500 and str(detail).strip() == "Internal Server Error":
                message += _BARE_500_HINT
            elif error.code == 404 and detail == "Not Found":
                message += f" (this server has no route {method} {path.split('?')[0]})"
            raise AppWorldServerError(message) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise AppWorldServerError(
                f"cannot reach the AppWorld server at {self.server_url} ({reason}). Start one with "
                "`appworld serve environment --port 8000` (real AppWorld, see docs/appworld.md) or "
                "`python -m skill_sd_trl.envs.appworld.offline.server --port 8000` (offline world).") from None
        except json.JSONDecodeError as error:
            raise AppWorldServerError(f"AppWorld server {method} {url} returned invalid JSON: {error}") from None
        if not isinstance(payload, dict) or "output" not in payload:
            raise AppWorldServerError(f"AppWorld server {method} {url} returned no 'output': {str(payload)[:300]}")
        return payload["output"]

    def _post(self, endpoint: str, **body: Any) -> Any:
        if self.task_id is None:
            raise AppWorldServerError(f"/{endpoint} called before initialize(task_id)")
        return self._request("POST", f"/{endpoint}", {"task_id": self.task_id, "session_id": self.session_id, **body})

    # -- protocol -----------------------------------------------------------------------------------------------
    def initialize(self, task_id: str, **init_kwargs: Any) -> dict[str, Any]:
        """Start an episode; returns ``{"task_id", "instruction", "supervisor", "datetime"}``.

        ``init_kwargs`` go to the real server's ``AppWorld(...)`` (e.g. ``experiment_name``, ``timeout_seconds``).
        """
        if not isinstance(task_id, str) or not task_id:
            raise ValueError(f"task_id must be a non-empty string, got {task_id!r}")
        output = self._request("POST", "/initialize", {"task_id": task_id, "session_id": self.session_id,
                                                       **init_kwargs})
        self.task_id = task_id
        return output

    def execute(self, code: str) -> str:
        """Run code in the episode's persistent Python session; returns its printed output or a traceback."""
        output = self._post("execute", code=code)
        return output if isinstance(output, str) else json.dumps(output)

    def task_completed(self) -> bool:
        return bool(self._post("task_completed"))

    def evaluate(self) -> EvaluationResult:
        # suppress_errors=True: the real server otherwise stops at the first failing test with an HTTP 500.
        return EvaluationResult.from_output(self._post("evaluate", suppress_errors=True, report=False))

    def close(self) -> None:
        if self.task_id is not None:
            try:
                self._post("close")
            finally:
                self.task_id = None

    def show_task(self, task_id: str) -> dict[str, Any]:
        """Public specs of a task (instruction, supervisor, datetime) without starting an episode."""
        return self._request("GET", "/tasks/" + quote(task_id, safe=""))

    def task_ids(self, split: str, seed: int = 0) -> list[str]:
        """Task ids of a split (offline server only: the real server has no listing endpoint)."""
        return self._request("GET", "/task_ids?" + urlencode({"split": split, "seed": seed}))
