"""The REAL AppWorld environment server (``appworld.serve.environment`` from the ``appworld`` package) with its
``AppWorld`` class replaced by a stand-in backed by OUR offline app world.

Run it with the Python of a virtual environment where ``appworld==0.1.3.post1`` is installed (it pins pydantic<2
and FastAPI 0.110, so never the training venv)::

    .venv-appworld/bin/python tests/appworld_real_server_peer.py --port 0

It prints one JSON line ``{"port": N, "pid": P, "appworld": "0.1.3.post1", ...}`` once the socket listens, then
serves the real FastAPI ``app`` (its routes, request models, response wrapping and error handling are
untouched) with uvicorn until SIGTERM/SIGINT or until its stdin closes (its parent died).

What is replaced, and why: the real ``AppWorld`` loads a task from AppWorld's downloaded data (not available
here) and runs the agent's code in an IPython shell. :class:`OfflineBackedAppWorld` keeps the interface the
server uses (``AppWorld(task_id=..., <every AppWorldInitDefaults option>)``, ``.task_id``, ``.task.id`` /
``.instruction`` / ``.supervisor`` / ``.datetime``, ``.execute(code) -> str``, ``.evaluate(suppress_errors)
-> TestTracker``, ``.task_completed()``, ``.close()``, ``AppWorld.close_all()``) and plays the task in our
offline world: its SQLite database and its sandboxed worker process (the agent's code never runs in this
process). ``evaluate`` fills AppWorld's own ``TestTracker`` through its ``with test(requirement):`` protocol, so
``/evaluate``'s payload is serialized by the real ``TestTracker.to_dict`` and ``suppress_errors=False`` aborts at
the first failing test exactly as the real evaluation does. ``Task`` (used by ``GET /tasks/{task_id}``) is
replaced the same way.

Only the ``offline`` folder of skill-sd-trl is loaded (standard library only; no torch, no pydantic), as a
package of its own, so nothing else of skill-sd-trl needs to import under AppWorld's dependencies.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import socket
import sys
import threading
from typing import Any, ClassVar

import appworld
import appworld.serve.environment as real_server
from appworld.environment import AppWorldInitDefaults
from appworld.evaluator import TestTracker
from munch import Munch

OFFLINE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "skill_sd_trl", "envs", "appworld", "offline")
OFFLINE_PACKAGE = "skill_sd_trl_offline_world"


def load_offline_world() -> Any:
    """skill_sd_trl/envs/appworld/offline as a top-level package (its modules import each other relatively)."""
    if OFFLINE_PACKAGE in sys.modules:
        return sys.modules[OFFLINE_PACKAGE]
    spec = importlib.util.spec_from_file_location(OFFLINE_PACKAGE, os.path.join(OFFLINE_DIR, "__init__.py"),
                                                  submodule_search_locations=[OFFLINE_DIR])
    module = importlib.util.module_from_spec(spec)
    sys.modules[OFFLINE_PACKAGE] = module
    spec.loader.exec_module(module)
    return module


load_offline_world()
from skill_sd_trl_offline_world.sandbox import SandboxLimits  # noqa: E402 (the package exists from here on)
from skill_sd_trl_offline_world.server import Episode  # noqa: E402
from skill_sd_trl_offline_world.tasks import build_task  # noqa: E402

CLOSED_WORLD_MESSAGE = ("Execution failed. Traceback:\nsqlalchemy.exc.ProgrammingError: (sqlite3.ProgrammingError) "
                        "Cannot operate on a closed database.")


class OfflineTaskStandIn:
    """What the server reads of ``appworld.task.Task``: ``id``, ``instruction``, ``supervisor`` (a Munch, as the
    real ``MainUserMunch``), ``datetime`` (a ``datetime``, serialized by FastAPI)."""

    def __init__(self, task_id: str) -> None:
        self.offline = build_task(task_id)
        self.id = self.offline.task_id
        self.instruction = self.offline.instruction
        self.supervisor = Munch(self.offline.supervisor)
        self.datetime = self.offline.world.now
        self.allowed_apps = None

    @classmethod
    def load(cls, task_id: str, **_: Any) -> OfflineTaskStandIn:
        return cls(task_id)


class OfflineBackedAppWorld:
    """``appworld.AppWorld`` as ``appworld/serve/environment.py`` uses it, playing an offline-world task."""

    init_defaults: ClassVar[AppWorldInitDefaults] = AppWorldInitDefaults()
    open_worlds: ClassVar[list[OfflineBackedAppWorld]] = []
    calls: ClassVar[list[dict[str, Any]]] = []  # what the real server asked of AppWorld (shown by GET /_peer)

    def __init__(self, task_id: str, **options: Any) -> None:
        unknown = sorted(set(options) - set(AppWorldInitDefaults.__fields__))
        if unknown:  # the real AppWorld.__init__ has exactly these keyword parameters
            raise TypeError(f"AppWorld.__init__() got unexpected keyword arguments {unknown}")
        type(self).calls.append({"method": "__init__", "task_id": task_id, "options": options})
        type(self).close_all()  # the real AppWorld.initialize() starts with AppWorld.close_all()
        self.task_id = task_id
        self.options = options
        self.task = OfflineTaskStandIn.load(task_id=task_id)
        timeout = options.get("timeout_seconds") or self.init_defaults.timeout_seconds
        self.episode: Episode | None = Episode(self.task.offline, SandboxLimits(timeout_s=float(timeout)))
        self.num_interactions = 0
        type(self).open_worlds.append(self)

    def execute(self, code: str) -> str:
        type(self).calls.append({"method": "execute", "task_id": self.task_id, "code": code})
        if self.episode is None:
            return CLOSED_WORLD_MESSAGE
        max_interactions = self.options.get("max_interactions", self.init_defaults.max_interactions)
        if self.num_interactions >= max_interactions:  # the real message for this case
            code = f'raise Exception(f"Maximum number of executions ({max_interactions}) reached.")'
        self.num_interactions += 1
        return self.episode.execute(code)

    def task_completed(self) -> bool:
        type(self).calls.append({"method": "task_completed", "task_id": self.task_id})
        return self.episode is not None and self.episode.task_completed()

    def evaluate(self, suppress_errors: bool = True) -> TestTracker:
        type(self).calls.append({"method": "evaluate", "task_id": self.task_id, "suppress_errors": suppress_errors})
        if self.episode is None:
            raise RuntimeError("the task world is closed")
        report = self.episode.evaluate()
        tests = report["passes"] + report["failures"]
        tracker = TestTracker(test_data=[{"requirement": t["requirement"], "label": t["label"]} for t in tests],
                              difficulty=report["difficulty"], suppress_errors=suppress_errors)
        traces = {f["requirement"]: f["trace"] for f in report["failures"]}
        for test in tests:  # how AppWorld's evaluation modules run each test
            with tracker(test["requirement"]):
                if test["requirement"] in traces:
                    raise AssertionError(traces[test["requirement"]])
        return tracker

    def close(self) -> None:
        type(self).calls.append({"method": "close", "task_id": self.task_id})
        episode, self.episode = self.episode, None
        if episode is not None:
            episode.close()
        if self in type(self).open_worlds:
            type(self).open_worlds.remove(self)

    @classmethod
    def close_all(cls, remote_environment_url: str | None = None, remote_apis_url: str | None = None) -> None:
        for world in list(cls.open_worlds):
            world.close()


def install_stand_ins() -> None:
    real_server.AppWorld = OfflineBackedAppWorld
    real_server.Task = OfflineTaskStandIn

    @real_server.app.get("/_peer")
    async def peer_state() -> dict[str, Any]:  # test-only introspection; not part of AppWorld's protocol
        return {"calls": OfflineBackedAppWorld.calls,
                "open_worlds": [w.task_id for w in OfflineBackedAppWorld.open_worlds]}


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    parser.add_argument("--exit-with-stdin", action="store_true", help="shut down when stdin closes")
    args = parser.parse_args(argv)
    install_stand_ins()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(64)
    config = uvicorn.Config(real_server.app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)

    if args.exit_with_stdin:
        def watch() -> None:
            while sys.stdin.buffer.read(1024):
                pass
            os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's handler: graceful shutdown

        threading.Thread(target=watch, daemon=True).start()
    print(json.dumps({"port": sock.getsockname()[1], "pid": os.getpid(), "appworld": appworld.__version__,
                      "server_module": real_server.__file__}), flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        OfflineBackedAppWorld.close_all()  # what the real `run()` does on Ctrl-C: no sandbox worker outlives us


if __name__ == "__main__":
    main()
