"""Security suite of the offline AppWorld sandbox: agent code is untrusted input.

Each attack runs in a real episode (world database on the server side, agent code in the sandboxed worker
process) and must be refused or fail harmlessly, leave the host untouched (canary files), spawn no process, and
leave the session usable for the next action.
"""

from __future__ import annotations

import os
import time

import pytest

from _procs import children

from skill_sd_trl.envs.appworld.offline.sandbox import SandboxLimits, check_code, CodeRefused
from skill_sd_trl.envs.appworld.offline.server import Episode
from skill_sd_trl.envs.appworld.offline.tasks import build_task

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="the sandbox needs Linux (/proc, rlimits)")

MEMORY_MB = 256
TIMEOUT_S = 1.5
CANARY_TEXT = "canary: the agent must never read or change this"


@pytest.fixture(scope="module")
def canary(tmp_path_factory):
    folder = tmp_path_factory.mktemp("host")
    path = folder / "secret.txt"
    path.write_text(CANARY_TEXT)
    return {"read": str(path), "create": str(folder / "created_by_agent.txt")}


@pytest.fixture(scope="module")
def episode():
    ep = Episode(build_task("payments_balance-train-0"),
                 SandboxLimits(timeout_s=TIMEOUT_S, memory_mb=MEMORY_MB, max_output_chars=5_000))
    yield ep
    ep.close()


def _assert_host_untouched(canary, output: str) -> None:
    with open(canary["read"]) as handle:
        assert handle.read() == CANARY_TEXT
    assert not os.path.exists(canary["create"])
    assert CANARY_TEXT not in output and "root:x:0:0" not in output


REFUSED = {
    "import os": "import os\nos.system('touch {create}')",
    "from import": "from subprocess import run\nrun(['touch', '{create}'])",
    "open": "print(open('{read}').read())",
    "open /etc/passwd": "print(open('/etc/passwd').read())",
    "__import__": "__import__('os').system('touch {create}')",
    "__builtins__": "__builtins__['open']('{read}').read()",
    "subclasses walk": "print(().__class__.__base__.__subclasses__())",
    "class attribute": "x = (1).__class__",
    "format attribute trick": "print('{{0.__class__.__mro__}}'.format(1))",
    "format_map": "print('{{a.__class__}}'.format_map({{'a': 1}}))",
    "generator frame": "g = (i for i in [1])\nprint(g.gi_frame.f_globals)",
    "traceback frame": "try:\n    1/0\nexcept Exception as e:\n    print(e.__traceback__.tb_frame.f_globals)",
    "function globals": "def f():\n    pass\nprint(f.__globals__)",
    "eval": "eval(\"open('{read}').read()\")",
    "exec": "exec('import os')",
    "compile": "compile('1', 'x', 'eval')",
    "getattr dunder": "getattr(1, '__class__')",
    "globals": "print(globals())",
    "vars": "print(vars())",
    "breakpoint": "breakpoint()",
    "type": "T = type('T', (), {{}})",
    "class definition": "class A:\n    pass",
    "match class pattern": "match 1:\n    case int(real=r):\n        print(r)",
    "private proxy attribute": "print(apis._rpc)",
    "private api attribute": "print(apis.payments.login._rpc)",
    "dunder function name": "def __init__():\n    pass",
    "async": "async def f():\n    pass",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_escapes_are_refused_before_running(episode, canary, name):
    code = REFUSED[name].format(**canary)
    result = episode.session.execute(code)
    assert result.status == "refused", (name, result.output)
    assert result.output.startswith("Execution failed. Traceback:\nSandboxViolation: ")
    _assert_host_untouched(canary, result.output)


RUNTIME_BLOCKED = {
    # Names that pass the AST policy but are absent from the worker's namespaces.
    "json module internals": ("print(json.codecs)", "AttributeError: 'json' has no attribute 'codecs'"),
    "datetime module sys": ("print(datetime.sys)", "AttributeError: 'datetime' has no attribute 'sys'"),
    "re module internals": ("print(re.enum)", "AttributeError: 're' has no attribute 'enum'"),
    "math module": ("print(math.sys)", "AttributeError: 'math' has no attribute 'sys'"),
    "os name": ("os.listdir('/')", "NameError: name 'os' is not defined"),
    "subprocess name": ("subprocess.run(['id'])", "NameError: name 'subprocess' is not defined"),
    "socket name": ("socket.create_connection(('127.0.0.1', 80))", "NameError: name 'socket' is not defined"),
    "sqlite name": ("sqlite3.connect(':memory:')", "NameError: name 'sqlite3' is not defined"),
    "print to a file": ("print('x', file=1)", "TypeError: print(file=...) is not available"),
}


@pytest.mark.parametrize("name", sorted(RUNTIME_BLOCKED))
def test_unavailable_capabilities_fail_at_runtime(episode, canary, name):
    code, message = RUNTIME_BLOCKED[name]
    result = episode.session.execute(code)
    assert result.status == "error", result.output
    assert message in result.output
    assert "worker.py" not in result.output  # tracebacks show only the agent's frames
    _assert_host_untouched(canary, result.output)


def test_api_errors_become_exceptions_with_status(episode):
    result = episode.session.execute("apis.payments.show_balance(access_token='forged')")
    assert result.status == "error"
    assert result.output.endswith('Exception: Response status code is 401:\n'
                                  '{"message": "Invalid access token for app \'payments\'."}')
    caught = episode.session.execute("try:\n    apis.nope.x()\nexcept Exception as e:\n    print('caught', e)")
    assert caught.status == "ok" and caught.output.startswith("caught Response status code is 404")


def test_infinite_loop_times_out_and_resets_the_session(episode):
    assert episode.session.execute("kept = 7").status == "ok"
    old_pid = episode.session.pid
    start = time.monotonic()
    result = episode.session.execute("while True:\n    pass")
    elapsed = time.monotonic() - start
    assert result.status == "timeout" and TIMEOUT_S <= elapsed < TIMEOUT_S + 3
    assert f"timed out after {TIMEOUT_S:g} seconds" in result.output and "variables were reset" in result.output
    assert episode.session.pid != old_pid and _is_zombie_or_gone(old_pid)  # the old worker was killed
    after = episode.session.execute("print(kept)")
    assert "NameError" in after.output  # the restart reset the variables
    assert episode.session.execute("print(1 + 1)").output == "2\n"


def _is_zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize("code", ["x = 'a' * (2 * 1024 ** 3)", "x = [0] * (10 ** 9)",
                                  "x = []\nwhile True:\n    x.append(' ' * 10 ** 6)"])
def test_memory_bombs_are_stopped(episode, code):
    result = episode.session.execute(code)
    assert result.status in ("error", "crashed", "timeout"), result.output
    assert "MemoryError" in result.output or result.status != "error"
    assert episode.session.execute("x = None\nprint('alive')").output == "alive\n"  # frees what the loop held


def test_output_bombs_are_cut(episode):
    result = episode.session.execute("for i in range(2 * 10 ** 4):\n    print('spam' * 100)")  # 8 MB printed
    assert result.status == "ok"
    assert len(result.output) < 5_000 + 200
    assert result.output.endswith("more characters were printed]")


def test_worker_runs_under_resource_limits_and_cannot_spawn(episode, canary):
    pid = episode.session.pid
    with open(f"/proc/{pid}/limits") as handle:
        limits = {line[:26].strip(): line[26:].split() for line in handle.read().splitlines()[1:]}
    assert limits["Max address space"][0] == str(MEMORY_MB * 1024 * 1024)
    assert limits["Max file size"][0] == "0"
    assert limits["Max processes"][0] == "0"
    assert limits["Max cpu time"][0] != "unlimited"
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        assert b"-I" in handle.read().split(b"\0")  # isolated mode: no PYTHONPATH, no user site
    # fd 0/1/2 of the worker are /dev/null: the protocol pipes are private duplicates.
    assert os.readlink(f"/proc/{pid}/fd/1") == "/dev/null"
    for attempt in ("os.fork()", "import os\nos.fork()", "apis.supervisor.complete_task.__call__.__globals__"):
        episode.session.execute(attempt)
    assert children(pid, include_zombies=True) == set() and episode.session.pid == pid
    _assert_host_untouched(canary, "")


def test_world_database_is_only_reachable_through_apis(episode):
    # The worker holds no database connection: its only handles are /dev/null, the pipes and Python's own.
    pid = episode.session.pid
    targets = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    assert not any(t.endswith(".sqlite") for t in targets), targets
    # The world itself still works through the API layer.
    ok = episode.session.execute("print(len(apis.supervisor.show_account_passwords()))")
    assert ok.output == "5\n"


def test_policy_allows_ordinary_agent_code():
    code = ("pw = {a['account_name']: a['password'] for a in apis.supervisor.show_account_passwords()}\n"
            "def total(xs):\n    return round(sum(x['amount'] for x in xs), 2)\n"
            "print(f\"{total([{'amount': 1.5}]):.2f}\", json.dumps({'a': 1}), re.findall('a', 'aa'))\n"
            "c = Counter('hello')\nfor k, v in sorted(c.items()):\n    pass\n"
            "when = datetime.datetime.now() - datetime.timedelta(days=7)\n")
    check_code(code)
    with pytest.raises(CodeRefused, match="imports are not allowed"):
        check_code("import json")
    with pytest.raises(SyntaxError):
        check_code("def f(:")


def test_frozen_clock_and_helpers_work_inside_the_sandbox(episode):
    now = episode.task.world.now
    result = episode.session.execute(
        "print(datetime.datetime.now().isoformat(), datetime.date.today().isoformat())\n"
        "print(datetime.datetime.strptime('2024-01-02', '%Y-%m-%d').date())")
    assert result.output == f"{now.isoformat()} {now.date().isoformat()}\n2024-01-02\n"


def test_oversized_api_arguments_are_rejected_world_side(episode):
    result = episode.session.execute("apis.file_system.login(username='x' * 300000, password='y')")
    assert result.status == "error" and "Response status code is 413" in result.output
    assert episode.session.execute("print('still here')").output == "still here\n"
