"""Our AppWorld client and environment against the REAL AppWorld environment server.

The server is ``appworld/serve/environment.py`` of ``appworld==0.1.3.post1`` (its FastAPI app, request models,
response wrapping and error handling, unchanged), run by ``tests/appworld_real_server_peer.py`` in its own
virtual environment (the package pins pydantic<2 and FastAPI 0.110). AppWorld's task data cannot be downloaded
here, so the peer replaces the ``AppWorld`` class the server instantiates with a stand-in that plays our offline
world's tasks (sandboxed as always) and reports evaluations through AppWorld's own ``TestTracker``.

The venv is ``.venv-appworld/`` at the repository root (``.ci/run`` creates it) or the Python named by
``SKILL_SD_APPWORLD_PYTHON``; without it these tests skip.
"""

from __future__ import annotations

import glob
import json
import os
import re
import select
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

from _procs import alive, children

from skill_sd_trl.envs.appworld import AppWorldClient, AppWorldEnv, AppWorldServerError, OfflineAppWorldServer
from skill_sd_trl.envs.appworld.env import _API_ERROR, FAILED_PREFIX, observation_events
from skill_sd_trl.envs.appworld.offline.tasks import build_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER = os.path.join(ROOT, "tests", "appworld_real_server_peer.py")
APPWORLD_PYTHON = os.environ.get("SKILL_SD_APPWORLD_PYTHON") or os.path.join(ROOT, ".venv-appworld", "bin", "python")
INSTALL_HINT = ("create it with `python3 -m venv .venv-appworld && .venv-appworld/bin/pip install "
                "appworld==0.1.3.post1`, as .ci/run does, or point SKILL_SD_APPWORLD_PYTHON to such a Python")
SKIP_REASON = f"no AppWorld virtual environment at {APPWORLD_PYTHON}: {INSTALL_HINT}"
needs_appworld = pytest.mark.skipif(not os.path.exists(APPWORLD_PYTHON), reason=SKIP_REASON)

TASK = "payments_balance-train-1"  # "What is my current balance on the payments app?" (2 unit tests)
LOGIN = ("pw = {a['account_name']: a['password'] for a in apis.supervisor.show_account_passwords()}\n"
         "me = apis.supervisor.show_profile()\n"
         "t = apis.payments.login(username=me['email'], password=pw['payments'])['access_token']\n"
         "print(me['email'])")
WRONG_CALL = "apis.payments.show_balance(access_token='wrong')"
COMPLETE = "apis.supervisor.complete_task(answer=apis.payments.show_balance(access_token=t)['balance'])"


def _site_packages() -> str:
    found = glob.glob(os.path.join(os.path.dirname(os.path.dirname(APPWORLD_PYTHON)), "lib", "python3*",
                                   "site-packages", "appworld"))
    if not found:
        pytest.skip(f"appworld is not installed next to {APPWORLD_PYTHON}: {INSTALL_HINT}")
    return found[0]


def _read_real(relative: str) -> str:
    with open(os.path.join(_site_packages(), relative), encoding="utf-8") as handle:
        return handle.read()


class Peer:
    """A running peer process: the real server app on a free port."""

    def __init__(self) -> None:
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen([APPWORLD_PYTHON, PEER, "--port", "0", "--exit-with-stdin"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                        start_new_session=True, cwd=ROOT)
        try:
            ready, _, _ = select.select([self.process.stdout], [], [], 90)
            line = self.process.stdout.readline() if ready else b""
            try:
                self.info = json.loads(line)
            except json.JSONDecodeError:
                self.process.wait(timeout=10)
                if "No module named 'appworld'" in self.stderr():
                    pytest.skip(f"{APPWORLD_PYTHON} cannot import appworld: {INSTALL_HINT}")
                raise RuntimeError(f"the real AppWorld server did not start (stdout {line!r}):\n{self.stderr()}") \
                    from None
            self.url = f"http://127.0.0.1:{self.info['port']}"
            deadline = time.monotonic() + 30
            while True:  # uvicorn accepts once its loop runs
                try:
                    assert _get(self.url, "/")["message"].startswith("Welcome to AppWorld Server!")
                    break
                except (urllib.error.URLError, ConnectionError):
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise RuntimeError(f"the real AppWorld server does not answer:\n{self.stderr()}") from None
                    time.sleep(0.1)
        except BaseException:
            self.stop()
            raise

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")[-4000:]

    def stop(self, graceful_timeout_s: float = 10.0) -> bool:
        """Close its stdin (graceful shutdown), then kill what is left of its group; True if it exited alone."""
        self.process.stdin.close()
        try:
            self.process.wait(timeout=graceful_timeout_s)
            graceful = True
        except subprocess.TimeoutExpired:
            graceful = False
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            time.sleep(0.1)
        self.process.wait()
        self.process.stdout.close()
        self.log.close()
        return graceful


@pytest.fixture(scope="module")
def real_server():
    """The real FastAPI app, served by uvicorn in the appworld venv; yields ``(url, info)``."""
    peer = Peer()
    try:
        yield peer.url, peer.info
    finally:
        peer.stop()


def _get(url: str, path: str):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url + path, timeout=30) as response:
        return json.loads(response.read())


def _post_raw(url: str, path: str, body: dict) -> tuple[int, str, str]:
    """(status, content type, body text) of a POST, errors included."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with opener.open(request, timeout=60) as response:
            return response.status, response.headers["content-type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["content-type"], error.read().decode()


def _peer_calls(url: str) -> list[dict]:
    """What the real server asked of AppWorld (the stand-in records it), as a list of method calls."""
    return _get(url, "/_peer")["calls"]


def _specs(task_id: str) -> dict:
    task = build_task(task_id)
    return {"task_id": task_id, "instruction": task.instruction, "supervisor": task.supervisor,
            "datetime": task.world.now.isoformat()}


# ---------------------------------------------------------------------------------------------------------------
# a full episode through AppWorldClient
# ---------------------------------------------------------------------------------------------------------------

@needs_appworld
def test_client_plays_a_full_episode_on_the_real_server(real_server):
    url, info = real_server
    assert info["appworld"] == "0.1.3.post1"
    assert info["server_module"].endswith(os.path.join("site-packages", "appworld", "serve", "environment.py"))
    task = build_task(TASK)
    client = AppWorldClient(url)
    before = len(_peer_calls(url))

    specs = client.initialize(TASK)
    assert specs == _specs(TASK)  # the real server's task_to_dict: 4 supervisor fields, ISO datetime
    assert set(specs["supervisor"]) == {"first_name", "last_name", "email", "phone_number"}

    assert client.execute(LOGIN) == task.supervisor["email"] + "\n"  # printed output, variables persist
    wrong = client.execute(WRONG_CALL)
    assert wrong.startswith("Execution failed. Traceback:\n")
    assert "Response status code is 401:" in wrong and "Invalid access token for app 'payments'." in wrong
    assert observation_events(wrong) == ["api_error: 401 Invalid access token for app 'payments'."]
    assert client.execute("x = 1") == "Execution successful."
    assert client.task_completed() is False

    partial = client.evaluate()  # before complete_task: the answer test fails, the no-op test passes
    assert (partial.success, partial.num_tests, partial.pass_count, partial.completion) == (False, 2, 1, 0.5)
    assert partial.passes == ["no app data other than [nothing] is changed"]
    [failure] = partial.failures
    assert failure["requirement"].startswith("the answer given to complete_task is ")
    # AppWorld's TestTracker built the trace: its code-context block, then the AssertionError line.
    assert failure["trace"].startswith("```python\n") and "\n----------\nAssertionError: expected " in failure["trace"]
    assert [p["label"] for p in partial.raw["passes"]] == ["no_op_pass"]
    assert [f["label"] for f in partial.raw["failures"]] == ["no_op_fail"]
    assert partial.raw["difficulty"] == task.difficulty
    assert set(partial.raw) == {"success", "difficulty", "num_tests", "passes", "failures"}

    assert client.execute(COMPLETE) == "Execution successful."
    assert client.task_completed() is True
    result = client.evaluate()
    assert (result.success, result.num_tests, result.pass_count, result.completion) == (True, 2, 2, 1.0)
    assert result.failures == [] and result.raw["success"] is True
    assert sorted(result.passes) == sorted(partial.passes + [failure["requirement"]])

    assert client.close() is None and client.task_id is None
    calls = _peer_calls(url)[before:]
    assert [c["method"] for c in calls] == ["__init__", "execute", "execute", "execute", "task_completed",
                                            "evaluate", "execute", "task_completed", "evaluate", "close"]
    init = calls[0]
    assert init["task_id"] == TASK and "session_id" not in init["options"]  # the real server drops unknown fields
    assert init["options"]["timeout_seconds"] == 100 and init["options"]["experiment_name"] == "default"
    assert [c["suppress_errors"] for c in calls if c["method"] == "evaluate"] == [True, True]
    assert [c["code"] for c in calls if c["method"] == "execute"] == [LOGIN, WRONG_CALL, "x = 1", COMPLETE]
    assert _get(url, "/_peer")["open_worlds"] == []  # /close closed the world (its sandbox worker too)


@needs_appworld
def test_env_plays_an_episode_on_the_real_server(real_server):
    url, _ = real_server
    before = len(_peer_calls(url))
    env = AppWorldEnv(server_url=url, init_kwargs={"experiment_name": "skill-sd", "timeout_seconds": 7},
                      max_consecutive_errors=3)
    assert env.reset({"task_id": TASK}) is None
    assert env.task == _specs(TASK)
    first = env.step(f"Logging in.\n```python\n{LOGIN}\n```")
    assert first.valid and not first.done and first.observation == build_task(TASK).supervisor["email"] + "\n"
    bad = env.step(f"```python\n{WRONG_CALL}\n```")
    assert bad.valid and not bad.done and bad.observation.startswith(FAILED_PREFIX)
    assert bad.info == {"actions": [WRONG_CALL], "events": ["api_error: 401 Invalid access token for app 'payments'."]}
    crash = env.step("```python\nprint(undefined_name)\n```")
    assert crash.info["events"] == ["execution_error: NameError: name 'undefined_name' is not defined"]
    last = env.step(f"```python\n{COMPLETE}\n```")
    assert last.done and last.stop_reason == "completed" and last.info["events"] == ["task_completed"]
    score = env.score()
    assert score.success and score.completion == 1.0
    assert score.info["num_tests"] == 2 and score.info["turns"] == 4 and score.info["task_id"] == TASK
    env.close()
    calls = _peer_calls(url)[before:]
    assert calls[0]["options"]["experiment_name"] == "skill-sd" and calls[0]["options"]["timeout_seconds"] == 7
    assert calls[-1]["method"] == "close"
    # a second episode on the same server (the lease was released by close)
    env.reset({"task_id": "payments_balance-dev-0"})
    assert env.task["task_id"] == "payments_balance-dev-0" and not env.score().success
    env.close()


# ---------------------------------------------------------------------------------------------------------------
# the real server's errors, as our client reports them
# ---------------------------------------------------------------------------------------------------------------

@needs_appworld
def test_real_server_errors_reach_the_client_with_a_cause(real_server):
    url, _ = real_server
    holder = AppWorldClient(url)
    holder.initialize(TASK)
    try:
        # One world per server: a request for another task is refused (a bare 500: the server's HTTPException
        # gets its message where the status code belongs; its log says "is not a valid HTTPStatus").
        other = AppWorldClient(url)
        other.task_id = "payments_balance-dev-0"
        with pytest.raises(AppWorldServerError, match=r"HTTP 500: Internal Server Error \(the real AppWorld server "
                                                      r"answers this bare 500 when the request's task_id is not"):
            other.execute("print(1)")
        status, content_type, text = _post_raw(url, "/execute", {"task_id": "payments_balance-dev-0", "code": "1"})
        assert (status, content_type, text) == (500, "text/plain; charset=utf-8", "Internal Server Error")
        # Without suppress_errors, AppWorld stops its evaluation at the first failing test: a 500 too.
        status, _, text = _post_raw(url, "/evaluate", {"task_id": TASK})
        assert (status, text) == (500, "Internal Server Error")
        status, _, text = _post_raw(url, "/evaluate", {"task_id": TASK, "suppress_errors": True})
        assert status == 200 and json.loads(text)["output"]["num_tests"] == 2
        # report=true: the real server renders TestTracker.report() as text
        status, _, text = _post_raw(url, "/evaluate", {"task_id": TASK, "suppress_errors": True, "report": True})
        assert status == 200 and "Num Total  Tests : 2" in json.loads(text)["output"]
        # Request validation is FastAPI's: HTTP 422 with a list of field errors, which the client spells out.
        with pytest.raises(AppWorldServerError, match=r"HTTP 422: body\.timeout_seconds: value is not a valid "
                                                      r"integer"):
            AppWorldClient(url).initialize(TASK, timeout_seconds="soon")
        status, _, text = _post_raw(url, "/execute", {"task_id": TASK})
        assert status == 422 and json.loads(text)["detail"][0]["loc"] == ["body", "code"]
        # ...and AppWorld 0.1.3.post1's own quirk: `Literal["full" "minimal"]` accepts only "fullminimal".
        status, _, text = _post_raw(url, "/initialize", {"task_id": TASK, "ground_truth_mode": "minimal"})
        assert status == 422 and "fullminimal" in text
        # The offline server's listing endpoint does not exist on the real server.
        with pytest.raises(AppWorldServerError, match=r"HTTP 404: Not Found \(this server has no route GET "
                                                      r"/task_ids\)"):
            holder.task_ids("train")
        # GET /tasks/<id> (used by make_appworld_dataset(server_url=...)) is served by the real route.
        assert holder.show_task("payments_balance-dev-0") == _specs("payments_balance-dev-0")
        assert holder.execute("print('still here')") == "still here\n"  # the failed requests left the world alone
    finally:
        holder.close()


# ---------------------------------------------------------------------------------------------------------------
# the offline server speaks the same protocol
# ---------------------------------------------------------------------------------------------------------------

def _stats(report: str) -> list[str]:
    return [line for line in report.splitlines() if line.startswith("Num ")]


def _episode(url: str) -> dict:
    client = AppWorldClient(url)
    out = {"initialize": client.initialize(TASK)}
    out["execute"] = [client.execute(code) for code in (LOGIN, WRONG_CALL, "x = 1", "print(x + 1)")]
    out["completed_before"] = client.task_completed()
    out["evaluate_before"] = client.evaluate().raw
    body = {"task_id": TASK, "session_id": client.session_id}
    out["evaluate_default_status"] = _post_raw(url, "/evaluate", body)[0]  # suppress_errors defaults to false
    status, _, text = _post_raw(url, "/evaluate", {**body, "suppress_errors": True, "report": True})
    out["report_stats"] = (status, _stats(json.loads(text)["output"]))
    out["complete"] = client.execute(COMPLETE)
    out["completed_after"] = client.task_completed()
    out["evaluate_after"] = client.evaluate().raw
    client.close()
    return out


@needs_appworld
def test_offline_server_answers_like_the_real_one(real_server):
    url, _ = real_server
    real = _episode(url)
    with OfflineAppWorldServer(timeout_s=10.0) as offline_server:
        offline = _episode(offline_server.url)
    # The only difference: a failed test's trace (AppWorld's TestTracker prefixes its code-context block).
    for key in ("evaluate_before", "evaluate_after"):
        for failure_real, failure_offline in zip(real[key]["failures"], offline[key]["failures"]):
            assert failure_real["trace"] == f"```python\n\n```\n----------\nAssertionError: {failure_offline['trace']}"
            failure_real["trace"] = failure_offline["trace"]
    assert real == offline
    assert real["completed_before"] is False and real["completed_after"] is True
    assert real["evaluate_default_status"] == 500  # a failing test aborts an evaluation without suppress_errors
    assert real["report_stats"] == (200, ["Num Passed Tests : 1", "Num Failed Tests : 1", "Num Total  Tests : 2"])


# ---------------------------------------------------------------------------------------------------------------
# strings our environment parses, read from the installed package's source (the stand-in does not produce them)
# ---------------------------------------------------------------------------------------------------------------

@needs_appworld
def test_environment_parses_the_real_packages_output_formats():
    environment = _read_real("environment.py")
    requester = _read_real("requester.py")
    server = _read_real(os.path.join("serve", "environment.py"))
    # Every failed execution starts with FAILED_PREFIX, and these are the real outputs of the other cases.
    assert environment.count('"Execution failed. Traceback:\\n"') >= 3 and FAILED_PREFIX == "Execution failed."
    assert 'message = "Execution successful."' in environment
    assert 'message = "No code available to execute."' in environment
    # An API error inside the agent's code: the requester raises this, our parser reads status and message.
    fmt = 'raise Exception(f"Response status code is {response.status_code}:\\n{response.text}")'
    assert fmt in requester
    sample = ("Execution failed. Traceback:\n  File \"<python-input>\", line 1, in <module>\n"
              "Exception: Response status code is 401:\n" + json.dumps({"message": "Invalid access token."}))
    assert _API_ERROR.search(sample).group(1) == "401"
    assert observation_events(sample) == ["api_error: 401 Invalid access token."]
    # The routes and body fields the client sends, as the real server declares them.
    routes = {path: method for method, path in re.findall(r'@app\.(get|post)\("(/[^"]*)"\)\nasync def ', server)}
    for path, method in {"/initialize": "post", "/execute": "post", "/task_completed": "post", "/evaluate": "post",
                         "/close": "post", "/tasks/{task_id}": "get"}.items():
        assert routes.get(path) == method, path
    assert "async def execute(task_id: str = Body(...), code: str = Body(...))" in server
    assert "suppress_errors: bool = Body(False)" in server  # hence the client always sends suppress_errors=true
    assert "async def close(task_id: str = Body(..., embed=True))" in server
    assert "async def task_completed(task_id: str = Body(..., embed=True))" in server
    assert "class AppWorldArgs(AppWorldInitDefaults):\n    task_id: str" in server


@needs_appworld
def test_stopping_the_peer_stops_its_worlds_sandbox_worker():
    peer = Peer()
    try:
        client = AppWorldClient(peer.url)
        client.initialize(TASK)
        assert client.execute("print(6 * 7)") == "42\n"  # the world's sandbox worker runs now
        workers = children(peer.process.pid)
        assert len(workers) == 1 and all(alive(pid) for pid in workers)
    finally:
        graceful = peer.stop()
    assert graceful, "the peer did not exit when its stdin closed"
    assert not any(alive(pid) for pid in workers)  # the peer's shutdown closed the open world


def test_offline_server_evaluate_options_behave_as_on_the_real_server():
    """Without the appworld venv too: /evaluate's suppress_errors (default false) and report, as checked live above."""
    with OfflineAppWorldServer(timeout_s=10.0) as offline_server:
        url = offline_server.url
        client = AppWorldClient(url)
        client.initialize(TASK)
        body = {"task_id": TASK, "session_id": client.session_id}
        status, _, text = _post_raw(url, "/evaluate", body)
        assert status == 500 and "stopped at the failing test 'the answer given to complete_task is" in text
        assert "suppress_errors=true" in json.loads(text)["detail"]
        status, _, text = _post_raw(url, "/evaluate", {**body, "suppress_errors": True, "report": True})
        report = json.loads(text)["output"]
        assert status == 200 and _stats(report) == ["Num Passed Tests : 1", "Num Failed Tests : 1",
                                                    "Num Total  Tests : 2"]
        assert ">> Failed Requirement\nthe answer given to complete_task is " in report
        client.execute(LOGIN + "\n" + COMPLETE)
        status, _, text = _post_raw(url, "/evaluate", body)  # nothing fails: the default evaluation answers
        assert status == 200 and json.loads(text)["output"]["success"] is True
        assert client.evaluate().success  # the client's own request (suppress_errors=true)
        client.close()
