"""The offline app world through the AppWorld HTTP protocol: reference solutions, partial solutions, determinism,
datasets, the AppWorldEnv contract, concurrent episodes, and server process cleanup."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from _procs import alive, children

from skill_sd_trl.envs.appworld import (
    AppWorldClient,
    AppWorldEnv,
    AppWorldServerError,
    OfflineAppWorldEnv,
    OfflineAppWorldServer,
    extract_code,
    load_appworld_task_ids,
    make_appworld_dataset,
    make_offline_appworld_dataset,
    observation_events,
)
from skill_sd_trl.envs.appworld.offline.tasks import TEMPLATES, build_task, parse_task_id, task_ids
from skill_sd_trl.envs.appworld.offline.world import create_database, snapshot


@pytest.fixture(scope="module")
def server():
    with OfflineAppWorldServer(timeout_s=5.0) as srv:
        yield srv


def _run(url: str, task_id: str, code: str) -> tuple[str, object, bool]:
    client = AppWorldClient(url)
    client.initialize(task_id)
    try:
        output = client.execute(code)
        return output, client.evaluate(), client.task_completed()
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------------------------
# reference solutions and unit tests
# ---------------------------------------------------------------------------------------------------------------

def test_every_reference_solution_passes_all_its_tests(server):
    ids = task_ids("train") + task_ids("dev")
    assert len(task_ids("train")) >= 60 and len(task_ids("dev")) >= 60
    assert len(TEMPLATES) >= 20

    def run(task_id: str):
        return task_id, _run(server.url, task_id, build_task(task_id).solution)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, ids))
    failures = {tid: (out[-500:], ev.failures) for tid, (out, ev, done) in results
                if not (ev.success and ev.completion == 1.0 and done)}
    assert not failures, failures
    # Every task has several tests (effects, collateral damage, answer), so Comp. can be partial.
    assert min(ev.num_tests for _, (_, ev, _) in results) >= 2


def test_wrong_answer_fails_only_the_answer_test(server):
    task = build_task("contact_phone_number-train-0")
    code = task.solution.replace('match["phone_number"]', '"5550000000"')
    _, result, done = _run(server.url, task.task_id, code)
    assert done and not result.success
    assert result.completion == pytest.approx(0.5)
    first = task.instruction.rstrip("?").split()[-1]
    phone = next(c["phone_number"] for c in task.world.tables["contacts"] if c["first_name"] == first)
    assert [f["requirement"] for f in result.failures] == [f"the answer given to complete_task is {phone!r}"]
    assert result.passes == ["no app data other than [nothing] is changed"]
    assert "expected" in result.failures[0]["trace"] and "5550000000" in result.failures[0]["trace"]


def test_partial_payback_fails_the_right_tests(server):
    task = build_task("pay_back_recent-dev-1")
    # Pay back only the first person (and with the wrong description): a partial solution.
    code = task.solution.replace("for email, amount in owed.items():", "for email, amount in list(owed.items())[:1]:")
    code = code.replace('description="Paying you back"', 'description="thanks"')
    _, result, _ = _run(server.url, task.task_id, code)
    failed = {f["requirement"] for f in result.failures}
    assert failed == {
        "everyone who sent money in the last 7 days is paid back",
        "each person is paid back exactly the total they sent",
        "every new payment has the description 'Paying you back'",
        next(r for r in failed if r.startswith("the payments balance changes by")),
    }
    assert "no money is sent to anyone else" in result.passes
    assert 0.0 < result.completion < 1.0


def test_collateral_damage_is_caught(server):
    task = build_task("append_to_shopping_list-train-2")
    extra = ('\nfor n in fetch_all(apis.notes.search_notes, access_token=notes_token, tag="work"):\n'
             '    apis.notes.delete_note(access_token=notes_token, note_id=n["note_id"])\n')
    code = task.solution.replace("apis.supervisor.complete_task()", extra.strip() + "\napis.supervisor.complete_task()")
    # The world must actually have a work note for the damage to exist.
    assert any("work" in json.loads(n["tags"]) for n in task.world.tables["notes"])
    _, result, _ = _run(server.url, task.task_id, code)
    assert [f["requirement"] for f in result.failures] == ["no other note changes"]
    assert result.completion == pytest.approx((result.num_tests - 1) / result.num_tests)


def test_doing_nothing_passes_only_no_op_tests(server):
    task = build_task("send_money_to_relation-train-0")
    _, result, done = _run(server.url, task.task_id, "apis.supervisor.complete_task()")
    assert done and not result.success
    assert result.passes == ["no app data other than [transactions, wallet] is changed"]
    labels = {f["requirement"]: f.get("label") for f in result.raw["failures"]}
    assert set(labels.values()) == {"no_op_fail"}
    assert result.raw["passes"][0]["label"] == "no_op_pass"


# ---------------------------------------------------------------------------------------------------------------
# determinism and datasets
# ---------------------------------------------------------------------------------------------------------------

def test_tasks_and_databases_are_deterministic(tmp_path):
    a, b = build_task("notes_tag_to_file-train-1"), build_task("notes_tag_to_file-train-1")
    assert (a.instruction, a.solution, a.world.tables) == (b.instruction, b.solution, b.world.tables)
    state_a = snapshot(create_database(str(tmp_path / "a.sqlite"), a.world))
    state_b = snapshot(create_database(str(tmp_path / "b.sqlite"), b.world))
    assert state_a == state_b and len(state_a["notes"]) >= 8
    other_seed = build_task("notes_tag_to_file-train-1-s3")
    dev = build_task("notes_tag_to_file-dev-1")
    assert other_seed.world.tables != a.world.tables and dev.world.tables != a.world.tables
    assert parse_task_id("notes_tag_to_file-train-1-s3") == ("notes_tag_to_file", "train", 1, 3)
    with pytest.raises(ValueError, match="expected '<template>-<split>-<index>'"):
        parse_task_id("no_such_template-train-0")


def test_offline_dataset_columns_and_stability():
    train = make_offline_appworld_dataset("train")
    dev = make_offline_appworld_dataset("dev", tasks_per_template=1, max_turns=12)
    assert train.column_names == ["prompt", "task_id", "ground_truth", "env", "max_turns", "difficulty"]
    assert len(train) == 3 * len(TEMPLATES) and len(dev) == len(TEMPLATES)
    assert train["task_id"] == make_offline_appworld_dataset("train")["task_id"]
    assert not set(train["task_id"]) & set(dev["task_id"])
    row = train[0]
    system, user = row["prompt"]
    assert system["role"] == "system" and "apis.supervisor.complete_task" in system["content"]
    assert "```python" in system["content"] and "api_docs" in system["content"]
    task = build_task(row["task_id"])
    assert user == {"role": "user", "content": f"Task: {task.instruction}"}
    assert task.world.user.email in system["content"] and task.world.now.isoformat() in system["content"]
    assert row["ground_truth"] == task.solution and row["env"] == "appworld_offline" and row["max_turns"] == 40
    assert set(dev["max_turns"]) == {12}
    with pytest.raises(ValueError, match="split must be one of"):
        make_offline_appworld_dataset("test")


def test_real_appworld_dataset_from_an_appworld_root(tmp_path, monkeypatch):
    root = tmp_path / "appworld"
    (root / "data" / "datasets").mkdir(parents=True)
    (root / "data" / "datasets" / "dev.txt").write_text("50e1ac9_1\n50e1ac9_2:tagged\n\n")
    for task_id in ("50e1ac9_1", "50e1ac9_2"):
        folder = root / "data" / "tasks" / task_id
        (folder / "ground_truth").mkdir(parents=True)
        supervisor = {"first_name": "Ana", "last_name": "Ruiz", "email": "ana@x.test", "phone_number": "123"}
        (folder / "specs.json").write_text(json.dumps({"instruction": f"do {task_id}", "supervisor": supervisor,
                                                       "datetime": "2023-05-18T12:00:00", "db_version": "1"}))
    (root / "data" / "tasks" / "50e1ac9_1" / "ground_truth" / "solution.py").write_text("print('gt')\n")
    monkeypatch.setenv("APPWORLD_ROOT", str(root))
    assert load_appworld_task_ids("dev") == ["50e1ac9_1", "50e1ac9_2"]
    ds = make_appworld_dataset("dev")
    assert ds["task_id"] == ["50e1ac9_1", "50e1ac9_2"] and ds["env"] == ["appworld", "appworld"]
    assert ds["ground_truth"] == ["print('gt')\n", ""]
    assert ds[1]["prompt"][1]["content"] == "Task: do 50e1ac9_2" and "Ana Ruiz" in ds[1]["prompt"][0]["content"]
    with pytest.raises(FileNotFoundError, match="appworld download data"):
        load_appworld_task_ids("train")


def test_task_ids_and_specs_from_the_server(server):
    client = AppWorldClient(server.url)
    assert load_appworld_task_ids("dev", root=None, server_url=server.url) == task_ids("dev")
    specs = client.show_task("payments_balance-dev-2")
    task = build_task("payments_balance-dev-2")
    assert specs == {"task_id": task.task_id, "instruction": task.instruction, "supervisor": task.supervisor,
                     "datetime": task.world.now.isoformat()}
    with pytest.raises(AppWorldServerError, match="HTTP 404"):
        client.show_task("nope-train-0")


# ---------------------------------------------------------------------------------------------------------------
# AppWorldEnv
# ---------------------------------------------------------------------------------------------------------------

def test_env_plays_an_episode_with_persistent_variables(server):
    task = build_task("payments_balance-train-1")
    env = OfflineAppWorldEnv(server_url=server.url)
    assert env.reset({"task_id": task.task_id}) is None
    session = AppWorldClient(server.url, session_id=env.client.session_id)
    session.task_id = task.task_id
    first = env.step("I'll log in first.\n```python\npw = {a['account_name']: a['password'] for a in "
                     "apis.supervisor.show_account_passwords()}\nprint(sorted(pw))\n```")
    assert first.valid and not first.done
    assert first.observation.strip() == str(sorted(["email", "file_system", "notes", "payments", "phone"]))
    assert first.info["actions"] == [extract_code(first.info["actions"][0])] and first.info["events"] == []
    bad = env.step("```python\napis.payments.show_balance(access_token='wrong')\n```")
    assert bad.observation.startswith("Execution failed.") and bad.valid and not bad.done
    assert bad.info["events"] == ["api_error: 401 Invalid access token for app 'payments'."]
    no_code = env.step("I am not sure what to do.")
    assert not no_code.valid and no_code.info == {"actions": [], "events": ["invalid_action"]}
    last = env.step("```python\nt = apis.payments.login(username=apis.supervisor.show_profile()['email'], "
                    "password=pw['payments'])['access_token']\n"
                    "apis.supervisor.complete_task(answer=apis.payments.show_balance(access_token=t)['balance'])\n```")
    assert last.done and last.stop_reason == "completed" and "task_completed" in last.info["events"]
    score = env.score()
    assert score.success and score.completion == 1.0 and score.info["turns"] == 4
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step("```python\nprint(1)\n```")
    env.close()
    with pytest.raises(AppWorldServerError, match="not initialized"):  # close() freed the server-side episode
        session.evaluate()


def test_env_error_budget_and_unfinished_episode_score(server):
    env = OfflineAppWorldEnv(server_url=server.url, max_consecutive_errors=2)
    env.reset({"task_id": "send_money_to_relation-dev-2"})
    assert not env.step("```python\n1/0\n```").done
    ok = env.step("```python\nprint('fine')\n```")
    assert ok.observation == "fine\n" and not ok.done  # a success resets the budget
    env.step("```python\nimport os\n```")
    end = env.step("```python\nundefined_name\n```")
    assert end.done and end.stop_reason == "error_budget" and "error_budget" in end.info["events"]
    assert end.info["events"][0] == "execution_error: NameError: name 'undefined_name' is not defined"
    score = env.score()
    assert not score.success and 0.0 < score.completion < 1.0 and not score.info["task_completed"]
    env.close()


def test_env_reports_bad_rows_and_missing_servers():
    with pytest.raises(ValueError, match="'task_id' column"):
        AppWorldEnv(server_url="http://127.0.0.1:9").reset({})
    with pytest.raises(ValueError, match="pass server_url"):
        AppWorldEnv().reset({"task_id": "x"})
    with pytest.raises(AppWorldServerError, match="cannot reach the AppWorld server at http://127.0.0.1:9"):
        AppWorldEnv(server_url="http://127.0.0.1:9", request_timeout_s=2).reset({"task_id": "x"})
    with pytest.raises(ValueError, match="server_url must be an http"):
        AppWorldClient("localhost:8000")


def test_observation_parsing_helpers():
    assert extract_code("```py\nx = 1\n```\ntext\n```python\ny = 2\n```") == "x = 1\n\ny = 2"
    assert extract_code("```python\nprint(1)\n") == "print(1)"  # generation cut before the closing fence
    assert extract_code("```json\n{\"a\": 1}\n```") is None
    assert observation_events("Execution failed. Traceback:\nSandboxViolation: imports are not allowed") == [
        "refused: imports are not allowed"]
    assert observation_events("Execution failed. Traceback:\nException: Execution timed out after 2 seconds") == [
        "timeout"]
    assert observation_events("all good") == []


def test_concurrent_episodes_of_one_task_are_isolated(server):
    task = build_task("send_money_to_relation-train-1")
    a, b = AppWorldClient(server.url), AppWorldClient(server.url)
    a.initialize(task.task_id)
    b.initialize(task.task_id)
    a.execute(task.solution)
    assert a.evaluate().success and a.task_completed()
    assert not b.task_completed() and not b.evaluate().success
    b.execute("x = 41")
    assert a.execute("print(x)").startswith("Execution failed.") and b.execute("print(x + 1)") == "42\n"
    a.close()
    b.close()


# ---------------------------------------------------------------------------------------------------------------
# server processes
# ---------------------------------------------------------------------------------------------------------------

def _wait_dead(pids: set[int], timeout: float = 5.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    return {p for p in pids if alive(p)}


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs Linux /proc")
def test_server_stop_leaves_no_processes_and_no_files():
    srv = OfflineAppWorldServer()
    with srv:
        server_pid = srv.pid
        clients = [AppWorldClient(srv.url) for _ in range(2)]
        for client in clients:
            client.initialize("payments_balance-train-0")
        workers = children(server_pid)
        assert len(workers) == 2
        workdir = srv.workdir
        databases = [os.path.join(workdir, d, "world.sqlite") for d in os.listdir(workdir)]
        assert len(databases) == 2 and all(os.path.exists(db) for db in databases)
        clients[0].close()
        assert len(os.listdir(workdir)) == 1 and len(children(server_pid)) == 1  # /close frees the episode
    assert srv.process is None
    assert _wait_dead({server_pid} | workers) == set()
    assert not os.path.exists(workdir)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs Linux /proc")
def test_killed_server_group_is_cleaned_up_by_stop():
    srv = OfflineAppWorldServer(stop_timeout_s=1.0)
    srv.start()
    client = AppWorldClient(srv.url)
    client.initialize("payments_balance-train-0")
    server_pid = srv.pid
    workers = children(server_pid)
    assert len(workers) == 1
    workdir = srv.workdir
    os.kill(server_pid, signal.SIGSTOP)  # a hung server: the graceful path cannot work
    srv.stop()
    assert _wait_dead({server_pid} | workers) == set()
    assert not os.path.exists(workdir)


def test_real_appworld_env_leases_one_server_per_episode(server):
    # AppWorldEnv treats servers as real AppWorld servers (one world each): a second concurrent episode on the
    # same URL is refused with advice, a second URL serves it, and close() returns the lease.
    host_alias = server.url.replace("127.0.0.1", "localhost")
    first, second = AppWorldEnv(server_url=server.url), AppWorldEnv(server_url=server.url)
    first.reset({"task_id": "payments_balance-train-0"})
    with pytest.raises(AppWorldServerError, match="one `appworld serve environment --port N` per concurrent"):
        second.reset({"task_id": "payments_balance-train-1"})
    third = AppWorldEnv(server_url=f"{server.url},{host_alias}")
    third.reset({"task_id": "payments_balance-train-1"})
    assert third.client.server_url == host_alias
    first.close()
    second.reset({"task_id": "payments_balance-train-1"})
    assert second.client.server_url == server.url
    second.close()
    third.close()


def test_same_actions_give_the_same_evaluation(server):
    task = build_task("approve_requests_from_relation-dev-0")
    outputs = [_run(server.url, task.task_id, task.solution + "print(apis.phone.login(username=me['phone_number'], "
                                                              "password=passwords['phone']))") for _ in range(2)]
    assert outputs[0][0] == outputs[1][0] and "access_token" in outputs[0][0]
    assert outputs[0][1].raw == outputs[1][1].raw and outputs[0][1].success


def test_offline_env_starts_and_stops_its_own_default_server():
    from skill_sd_trl.envs.appworld import stop_default_offline_server
    from skill_sd_trl.envs.appworld.offline import server as server_module

    env = OfflineAppWorldEnv()
    env.reset({"task_id": "count_jpg_files-dev-0"})
    pid = server_module._default_server.pid
    step = env.step("```python\nprint(apis.supervisor.show_profile()['first_name'])\n```")
    assert step.observation.strip() == build_task("count_jpg_files-dev-0").world.user.first_name
    env.close()
    stop_default_offline_server()
    assert _wait_dead({pid}) == set()


def test_api_behaviour_seen_by_the_agent(server):
    client = AppWorldClient(server.url)
    client.initialize("count_relationship_contacts-train-0")
    setup = ("pw = {a['account_name']: a['password'] for a in apis.supervisor.show_account_passwords()}\n"
             "me = apis.supervisor.show_profile()\n"
             "t = apis.phone.login(me['phone_number'], pw['phone'])['access_token']\n"  # positional arguments
             "p = apis.payments.login(username=me['email'], password=pw['payments'])['access_token']\n"
             "print(len(apis.phone.search_contacts(access_token=t)),\n"
             "      len(apis.phone.search_contacts(t, '', None, 0, 20)))")
    assert client.execute(setup).split() == ["5", str(len(build_task("count_relationship_contacts-train-0")
                                                          .world.tables["contacts"]))]
    cases = {
        "apis.phone.search_contacts(access_token=t, page_limit=50)": "page_limit must be between 1 and 20.",
        "apis.payments.show_balance(access_token=p, foo=1)": "Unexpected parameter(s) ['foo']",
        "apis.payments.send_money(access_token=p, receiver_email=me['email'], amount=5)":
            "cannot send money to yourself",
        "apis.payments.send_money(access_token=p, receiver_email='nobody@x.test', amount=5)": "No payments user",
        "apis.payments.send_money(access_token=t, receiver_email=me['email'], amount=5)": "Invalid access token",
        "apis.notes.login(username=me['email'], password='guess')": "Invalid credentials",
        "apis.phone.show_contact(access_token=t)": "Missing required parameter 'contact_id'",
        "apis.phone.show_contact(access_token=t, contact_id='3')": "must be of type integer",
    }
    for code, message in cases.items():
        output = client.execute(code)
        assert output.startswith("Execution failed.") and message in output, (code, output)
    rich = client.execute("other = [u for u in apis.payments.search_users(access_token=p, query='.') "
                          "if u['email'] != me['email']][0]\n"
                          "apis.payments.send_money(access_token=p, receiver_email=other['email'], amount=10**7)")
    assert "Insufficient balance" in rich
    doc = json.loads(client.execute("print(json.dumps(apis.api_docs.show_api_doc(app_name='payments', "
                                    "api_name='send_money')))"))
    assert [p["name"] for p in doc["parameters"]] == ["access_token", "receiver_email", "amount", "description"]
    apps = client.execute("print([a['name'] for a in apis.api_docs.show_app_descriptions()])")
    assert apps.strip() == str(["api_docs", "supervisor", "file_system", "phone", "payments", "notes", "email"])
    client.close()


# ---------------------------------------------------------------------------------------------------------------
# the CPU setting: compact prompt, held-out templates, warm-start demonstrations
# ---------------------------------------------------------------------------------------------------------------
def _world_key(task_id: str) -> tuple:
    """What makes a world: its user, clock and every table's rows."""
    import json

    world = build_task(task_id).world
    return (world.user.email, world.now.isoformat(), json.dumps(world.tables, sort_keys=True, default=str))


def test_warm_start_demonstrations_never_use_a_world_of_an_rl_task():
    from skill_sd_trl.envs.appworld.environment import DEMONSTRATION_SEED_BASE
    from skill_sd_trl.envs.appworld.offline.tasks import task_ids
    from skill_sd_trl.envs.registry import load_environment

    spec = load_environment("appworld_offline", {"prompt_style": "compact", "held_out_templates": 8})
    rows = spec.demonstrations(32, 0, range(10))
    assert len({r["task_id"] for r in rows}) == 32
    assert all(r["task_id"].endswith(f"-s{DEMONSTRATION_SEED_BASE}") for r in rows)
    trained = set(spec.dataset("train")["task_id"])
    assert {r["task_id"].split("-")[0] for r in rows} == {t.split("-")[0] for t in trained}  # only trained templates
    rl_worlds = {_world_key(t) for seed in range(10) for split in ("train", "dev") for t in task_ids(split, seed, 1)}
    assert not {_world_key(r["task_id"]) for r in rows} & rl_worlds
    assert rows[0]["answer"] == f"```python\n{rows[0]['ground_truth'].strip()}\n```"
    assert spec.demonstrations(32, 0, range(10)) == rows and spec.demonstrations(32, 1, range(10)) != rows
    with pytest.raises(ValueError, match="exclude_task_sets: task sets from 10000 up are demonstration worlds"):
        spec.demonstrations(2, 0, [10_000])


def test_every_registered_app_world_base_learns_only_from_worlds_no_rl_task_uses():
    from skill_sd_trl.envs.appworld.offline.tasks import task_ids
    from skill_sd_trl.models.warmstart import WARM_STARTS

    bases = [ws for ws in WARM_STARTS.values() if ws.env == "appworld_offline"]
    assert {ws.alias for ws in bases} >= {"smollm2-135m-appworld-base", "smollm2-135m-appworld-base-256"}
    # every world of every template (the unseen split is the held-out templates on dev worlds), 3 a template as
    # the CPU experiment's dev split holds
    rl_worlds = {_world_key(t) for seed in range(10) for split in ("train", "dev") for t in task_ids(split, seed, 3)}
    for ws in bases:
        assert set(ws.exclude_task_sets) >= set(range(10))
        rows = ws.environment().demonstrations(ws.num_demonstrations, ws.seed, ws.exclude_task_sets)
        assert len({r["task_id"] for r in rows}) == ws.num_demonstrations  # as many distinct tasks as it says
        assert not {_world_key(r["task_id"]) for r in rows} & rl_worlds, ws.alias


def test_held_out_templates_split_the_templates_the_same_way_for_every_seed():
    from skill_sd_trl.envs.appworld.environment import template_split
    from skill_sd_trl.envs.appworld.offline.tasks import TEMPLATES
    from skill_sd_trl.envs.registry import load_environment

    trained, unseen = template_split(8)
    assert len(unseen) == 8 and set(trained) | set(unseen) == set(TEMPLATES) and not set(trained) & set(unseen)
    assert {TEMPLATES[t].difficulty for t in unseen} == {1, 2, 3}  # every difficulty is represented
    for seed in (0, 1):
        spec = load_environment("appworld_offline", {"seed": seed, "held_out_templates": 8, "tasks_per_template": 1})
        splits = {s: {t.split("-")[0] for t in spec.dataset(s)["task_id"]} for s in ("train", "dev", "unseen")}
        assert splits["train"] == splits["dev"] == set(trained) and splits["unseen"] == set(unseen)
        assert all(t.split("-")[1] == "dev" for t in spec.dataset("unseen")["task_id"])  # dev worlds
    with pytest.raises(ValueError, match="split='unseen'"):
        load_environment("appworld_offline", {}).dataset("unseen")  # no template is held out


def test_compact_sessions_predefine_the_helpers_and_the_short_reference_solutions_solve_the_tasks():
    from skill_sd_trl.envs.registry import load_environment

    spec = load_environment("appworld_offline", {"prompt_style": "compact", "tasks_per_template": 1})
    rows = list(spec.dataset("dev"))[::3]  # 8 templates of every difficulty
    system = rows[0]["prompt"][0]["content"]
    assert "fetch_all(api, **params)" in system and "apis.api_docs" not in system
    env = spec.make_env()
    try:
        for row in rows:
            assert "def fetch_all" not in row["ground_truth"]  # the session defines it
            env.reset(row)
            env.step(f"```python\n{row['ground_truth']}\n```")
            assert env.score().success, row["task_id"]
        env.reset(rows[0])  # the full style's session has no helpers: the short solution fails there
    finally:
        env.close()
    full = load_environment("appworld_offline", {"tasks_per_template": 1}).make_env()
    try:
        full.reset(rows[0])
        assert "NameError" in full.step(f"```python\n{rows[0]['ground_truth']}\n```").observation
    finally:
        full.close()
