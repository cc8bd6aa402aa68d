"""The offline app world served over the same HTTP protocol as the real AppWorld environment server.

Endpoints (POST bodies and responses are JSON; every response is ``{"output": ...}``, errors are HTTP 4xx/5xx
with ``{"detail": str}``), as in ``appworld serve environment``:

* ``POST /initialize`` ``{"task_id", ...}`` -> ``{"task_id", "instruction", "supervisor", "datetime"}``
* ``POST /execute`` ``{"task_id", "code"}`` -> the printed output (or ``Execution failed. Traceback: ...``)
* ``POST /task_completed`` ``{"task_id"}`` -> bool
* ``POST /evaluate`` ``{"task_id", "suppress_errors"?, "report"?}`` ->
  ``{"success", "difficulty", "num_tests", "passes": [...], "failures": [...]}`` (``report=true``: a text report);
  as on the real server, ``suppress_errors`` defaults to false, and then a failing test fails the request (500)
* ``POST /close`` / ``POST /close_all`` ``{"task_id"}`` -> null
* ``GET /tasks/<task_id>`` -> the task's public specs; ``GET /api_docs`` -> every API's documentation

Extensions (harmless to the real server, which ignores unknown body fields): every POST may carry a
``session_id`` so several episodes of the *same* task can run at once (the real server holds one world);
``GET /task_ids?split=train&seed=0`` lists the offline task ids (the real server has no such endpoint).

Run it with ``python -m skill_sd_trl.envs.appworld.offline.server --port 0``: it prints one JSON line
``{"port": N, "pid": P}`` and serves until SIGTERM/SIGINT or, with ``--exit-with-stdin``, until its stdin closes
(its parent died). Every episode owns a temporary SQLite file and a sandbox worker process, both removed on
``/close`` and at shutdown. :class:`OfflineAppWorldServer` starts and stops it from Python.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from .apps import REGISTRY, ApiContext, ApiError, call_api
from .checks import load_answer, results_to_report
from .sandbox import SandboxLimits, SandboxSession, reply_error, reply_ok
from .tasks import DEFAULT_TASKS_PER_TEMPLATE, PREAMBLE, OfflineTask, build_task, evaluate_task, task_ids
from .world import create_database, iso, snapshot

MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_API_ARGS_CHARS = 200_000  # one API call's JSON arguments (e.g. a file's content)
MAX_WORLD_BYTES = 64 * 1024 * 1024  # an episode's database may not grow past this (disk-filling loops)


class HttpError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _positional_to_keywords(app: str, api: str, args: list, kwargs: dict) -> dict:
    """Map positional API arguments onto parameter names (access_token first for apps with logins)."""
    if not args:
        return kwargs
    spec = REGISTRY.get(app, {}).get(api)
    if spec is None:
        return kwargs  # call_api reports the unknown app/API
    names = (["access_token"] if spec.needs_auth else []) + [p.name for p in spec.params]
    if len(args) > len(names):
        raise ApiError(422, f"{app}.{api} takes at most {len(names)} arguments ({', '.join(names)}), "
                            f"got {len(args)}.")
    merged = dict(zip(names, args))
    clash = sorted(set(merged) & set(kwargs))
    if clash:
        raise ApiError(422, f"{app}.{api} got multiple values for {clash}.")
    return {**merged, **kwargs}


class Episode:
    """One task being played: its database (world side) and its sandboxed Python session (agent side)."""

    def __init__(self, task: OfflineTask, limits: SandboxLimits, workdir: str | None = None) -> None:
        self.task = task
        self.lock = threading.Lock()
        self.last_used = time.monotonic()
        self.directory = tempfile.mkdtemp(prefix="appworld-offline-", dir=workdir)
        try:
            self.conn = create_database(os.path.join(self.directory, "world.sqlite"), task.world)
            self.initial_state = snapshot(self.conn)
            self.ctx = ApiContext(self.conn, task.world.now, token_salt=task.task_id)
            self.session = SandboxSession(self._handle_call, limits, cwd=self.directory, now=iso(task.world.now))
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise

    def _handle_call(self, app: str, api: str, args: list, kwargs: dict) -> dict:
        if len(json.dumps([args, kwargs])) > MAX_API_ARGS_CHARS:
            return reply_error(413, f"the arguments of {app}.{api} exceed {MAX_API_ARGS_CHARS} characters")
        pages, page_size = (self.conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "page_size"))
        if pages * page_size > MAX_WORLD_BYTES:
            return reply_error(507, f"the world's storage quota ({MAX_WORLD_BYTES // 2**20} MiB) is exhausted")
        try:
            result = call_api(self.ctx, app, api, _positional_to_keywords(app, api, args, kwargs))
            json.dumps(result)  # fail here, not in the worker, if an API ever returned a non-JSON value
            return reply_ok(result)
        except ApiError as error:
            return reply_error(error.status, error.message)
        except Exception as error:  # noqa: BLE001 - an API bug must not kill the episode
            return reply_error(500, f"internal error in {app}.{api}: {type(error).__name__}: {error}")

    def execute(self, code: str) -> str:
        return self.session.execute(code).output

    def task_completed(self) -> bool:
        return bool(self.conn.execute("SELECT completed FROM task_state WHERE id = 1").fetchone()[0])

    def evaluate(self) -> dict[str, Any]:
        state = snapshot(self.conn)
        task_state = state["task_state"][0]
        answer, completed = load_answer(task_state), bool(task_state["completed"])
        results = evaluate_task(self.task, self.initial_state, state, answer, completed).results
        no_op = evaluate_task(self.task, self.initial_state, self.initial_state, None, False).results
        return results_to_report(results, {r.requirement for r in no_op if r.passed}, self.task.difficulty)

    def close(self) -> None:
        self.session.close()
        self.conn.close()
        shutil.rmtree(self.directory, ignore_errors=True)


class EpisodeManager:
    """Episodes keyed by ``session_id`` (or ``task_id`` when the client sends none, like the real client)."""

    def __init__(self, limits: SandboxLimits, max_episodes: int = 256, workdir: str | None = None) -> None:
        self.limits = limits
        self.workdir = workdir
        self.max_episodes = max_episodes
        self.episodes: OrderedDict[str, Episode] = OrderedDict()
        self.lock = threading.Lock()

    @staticmethod
    def key(body: dict[str, Any]) -> str:
        task_id = body.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            raise HttpError(422, "field 'task_id' (a non-empty string) is required")
        session = body.get("session_id")
        return f"{task_id}#{session}" if session else task_id

    def initialize(self, body: dict[str, Any]) -> Episode:
        key = self.key(body)
        try:
            task = build_task(body["task_id"])
        except ValueError as error:
            raise HttpError(404, str(error)) from None
        episode = Episode(task, self.limits, self.workdir)
        if body.get("helpers"):  # the compact prompt's predefined names (offline only; the real server drops it)
            episode.execute(PREAMBLE)
        evicted: list[Episode] = []
        with self.lock:
            old = self.episodes.pop(key, None)
            if old is not None:
                evicted.append(old)
            self.episodes[key] = episode
            while len(self.episodes) > self.max_episodes:  # clients that never closed: drop the stalest
                evicted.append(self.episodes.popitem(last=False)[1])
        for stale in evicted:
            with stale.lock:
                stale.close()
        return episode

    def get(self, body: dict[str, Any]) -> Episode:
        key = self.key(body)
        with self.lock:
            episode = self.episodes.get(key)
            if episode is None:
                raise HttpError(400, f"task {body['task_id']!r} (session {body.get('session_id')!r}) is not "
                                     "initialized; call /initialize first")
            self.episodes.move_to_end(key)
        episode.last_used = time.monotonic()
        return episode

    def close(self, body: dict[str, Any]) -> None:
        key = self.key(body)
        with self.lock:
            episode = self.episodes.pop(key, None)
        if episode is not None:
            with episode.lock:
                episode.close()

    def close_all(self) -> None:
        with self.lock:
            episodes = list(self.episodes.values())
            self.episodes.clear()
        for episode in episodes:
            with episode.lock:
                episode.close()


def report_text(report: dict[str, Any]) -> str:
    """``/evaluate`` with ``report=true``: a plain-text report laid out like the real ``TestTracker.report()``."""

    def rule(title: str) -> str:
        return f" {title} ".center(80, "\u2500")

    lines = [rule("Overall Stats"), f"Num Passed Tests : {len(report['passes'])}",
             f"Num Failed Tests : {len(report['failures'])}", f"Num Total  Tests : {report['num_tests']}",
             rule("Passes")]
    for test in report["passes"]:
        lines += [">> Passed Requirement", test["requirement"]]
    lines.append(rule("Fails"))
    for test in report["failures"]:
        lines += [">> Failed Requirement", test["requirement"], test["trace"]]
    return "\n".join(lines)


def task_specs(task: OfflineTask) -> dict[str, Any]:
    return {"task_id": task.task_id, "instruction": task.instruction, "supervisor": task.supervisor,
            "datetime": iso(task.world.now)}


class AppWorldRequestHandler(BaseHTTPRequestHandler):
    server_version = "OfflineAppWorld/1.0"
    manager: EpisodeManager  # set on the subclass built by make_server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by default
        pass

    # -- plumbing -----------------------------------------------------------------------------------------------
    def _reply(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise HttpError(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise HttpError(400, f"request body is not valid JSON: {error}") from None
        if not isinstance(body, dict):
            raise HttpError(422, "request body must be a JSON object")
        return body

    def _dispatch(self, handler: Any) -> None:
        try:
            self._reply(200, {"output": handler()})
        except HttpError as error:
            self._reply(error.status, {"detail": error.detail})
        except Exception as error:  # noqa: BLE001 - report, keep serving
            self._reply(500, {"detail": f"{type(error).__name__}: {error}"})

    # -- routes -------------------------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/":
            self._dispatch(lambda: {"message": "Offline AppWorld server (skill-sd-trl)."})
        elif url.path.startswith("/tasks/"):
            self._dispatch(lambda: self._show_task(url.path[len("/tasks/"):]))
        elif url.path == "/task_ids":
            self._dispatch(lambda: self._task_ids(query))
        elif url.path == "/api_docs":
            self._dispatch(lambda: {app: {name: spec.doc() for name, spec in apis.items()}
                                    for app, apis in REGISTRY.items()})
        else:
            self._reply(404, {"detail": f"no route GET {url.path}"})

    def do_POST(self) -> None:  # noqa: N802
        path = urlparse(self.path).path
        routes = {"/initialize": self._initialize, "/execute": self._execute, "/task_completed": self._completed,
                  "/evaluate": self._evaluate, "/close": self._close, "/close_all": self._close_all}
        if path not in routes:
            self._reply(404, {"detail": f"no route POST {path}"})
            return
        self._dispatch(lambda: routes[path](self._body()))

    @staticmethod
    def _show_task(task_id: str) -> dict[str, Any]:
        try:
            return task_specs(build_task(task_id))
        except ValueError as error:
            raise HttpError(404, str(error)) from None

    @staticmethod
    def _task_ids(query: dict[str, str]) -> list[str]:
        try:
            return task_ids(query.get("split", "train"), int(query.get("seed", 0)),
                            int(query.get("tasks_per_template", DEFAULT_TASKS_PER_TEMPLATE)))
        except ValueError as error:
            raise HttpError(422, str(error)) from None

    def _initialize(self, body: dict[str, Any]) -> dict[str, Any]:
        return task_specs(self.manager.initialize(body).task)

    def _execute(self, body: dict[str, Any]) -> str:
        code = body.get("code")
        if not isinstance(code, str):
            raise HttpError(422, "field 'code' (a string of Python code) is required")
        episode = self.manager.get(body)
        with episode.lock:
            return episode.execute(code)

    def _completed(self, body: dict[str, Any]) -> bool:
        episode = self.manager.get(body)
        with episode.lock:
            return episode.task_completed()

    def _evaluate(self, body: dict[str, Any]) -> dict[str, Any] | str:
        episode = self.manager.get(body)
        with episode.lock:
            report = episode.evaluate()
        if not body.get("suppress_errors", False) and report["failures"]:
            # As the real server (whose default is suppress_errors=false): the evaluation stops at the first
            # failing test and the request fails (the real one answers a bare HTTP 500).
            raise HttpError(500, f"evaluation stopped at the failing test {report['failures'][0]['requirement']!r}; "
                                 "send suppress_errors=true to run every test")
        return report_text(report) if body.get("report", False) else report

    def _close(self, body: dict[str, Any]) -> None:
        self.manager.close(body)

    def _close_all(self, body: dict[str, Any]) -> None:
        self.manager.close_all()


def make_server(host: str, port: int, limits: SandboxLimits, max_episodes: int = 256,
                workdir: str | None = None) -> ThreadingHTTPServer:
    manager = EpisodeManager(limits, max_episodes, workdir)
    handler = type("BoundHandler", (AppWorldRequestHandler,), {"manager": manager})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.manager = manager  # type: ignore[attr-defined]
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the offline app world over the AppWorld HTTP protocol.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed on stdout)")
    parser.add_argument("--timeout", type=float, default=SandboxLimits.timeout_s, help="seconds per execution")
    parser.add_argument("--memory-mb", type=int, default=SandboxLimits.memory_mb, help="worker address space")
    parser.add_argument("--max-output-chars", type=int, default=SandboxLimits.max_output_chars)
    parser.add_argument("--max-episodes", type=int, default=256)
    parser.add_argument("--exit-with-stdin", action="store_true", help="shut down when stdin closes")
    parser.add_argument("--workdir", default=None, help="folder for the episodes' databases (default: system temp)")
    args = parser.parse_args(argv)
    limits = SandboxLimits(timeout_s=args.timeout, memory_mb=args.memory_mb, max_output_chars=args.max_output_chars)
    server = make_server(args.host, args.port, limits, args.max_episodes, args.workdir)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    if args.exit_with_stdin:
        def watch() -> None:
            while sys.stdin.buffer.read(1024):
                pass
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, daemon=True).start()
    print(json.dumps({"port": server.server_address[1], "pid": os.getpid()}), flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.manager.close_all()  # type: ignore[attr-defined]
        server.server_close()


# ----------------------------------------------------------------------------------------------------------------
# starting and stopping the server from Python
# ----------------------------------------------------------------------------------------------------------------

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))))


class OfflineAppWorldServer:
    """Runs the offline server in a subprocess (its own process group) for the lifetime of a ``with`` block.

    ``stop()`` (also registered with ``atexit``) closes the server's stdin so it shuts down cleanly, then kills
    the whole process group, sandbox workers included, if it has not exited within ``stop_timeout_s``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, timeout_s: float = SandboxLimits.timeout_s,
                 memory_mb: int = SandboxLimits.memory_mb, max_episodes: int = 256, startup_timeout_s: float = 30.0,
                 stop_timeout_s: float = 5.0) -> None:
        self.host, self.port = host, port
        self.args = ["--timeout", str(timeout_s), "--memory-mb", str(memory_mb), "--max-episodes", str(max_episodes)]
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.process: subprocess.Popen | None = None
        self.workdir: str | None = None  # holds every episode's database; removed by stop() whatever happened
        self._log: Any = None

    @property
    def url(self) -> str:
        if self.process is None:
            raise RuntimeError("the offline AppWorld server is not running; call start() or use it as a context "
                               "manager")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self) -> str:
        if self.process is not None:
            return self.url
        env = dict(os.environ)
        env["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._log = tempfile.TemporaryFile()
        self.workdir = tempfile.mkdtemp(prefix="appworld-offline-server-")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "skill_sd_trl.envs.appworld.offline.server", "--host", self.host, "--port",
             str(self.port), "--exit-with-stdin", "--workdir", self.workdir, *self.args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=env, start_new_session=True)
        atexit.register(self.stop)
        ready, _, _ = select.select([self.process.stdout], [], [], self.startup_timeout_s)
        line = self.process.stdout.readline() if ready else b""
        try:
            self.port = int(json.loads(line)["port"])
        except (ValueError, KeyError, TypeError):
            log = self._read_log()
            self.stop()
            raise RuntimeError(f"the offline AppWorld server did not start (stdout {line!r}); stderr:\n{log}") from None
        return self.url

    def _read_log(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-4000:]

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        atexit.unregister(self.stop)
        try:
            process.stdin.close()  # graceful: the server closes its episodes and exits
        except OSError:
            pass
        try:
            process.wait(timeout=self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            pass
        for sig in (signal.SIGTERM, signal.SIGKILL):  # whatever is left in the group (workers included)
            try:
                os.killpg(process.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            time.sleep(0.05 if sig == signal.SIGTERM else 0)
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()
        if self.workdir is not None:  # a killed server could not remove its episodes' files itself
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "OfflineAppWorldServer":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


_default_server: OfflineAppWorldServer | None = None
_default_lock = threading.Lock()


def default_offline_server_url() -> str:
    """URL of a process-wide offline server, started on first use and stopped at interpreter exit."""
    global _default_server
    with _default_lock:
        if _default_server is None or _default_server.process is None or _default_server.process.poll() is not None:
            _default_server = OfflineAppWorldServer()
            _default_server.start()
        return _default_server.url


def stop_default_offline_server() -> None:
    """Stop the process-wide server of :func:`default_offline_server_url` (a later call starts a new one)."""
    global _default_server
    with _default_lock:
        server, _default_server = _default_server, None
    if server is not None:
        server.stop()


if __name__ == "__main__":
    main()
