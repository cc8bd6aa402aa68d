"""Skill bank scope (recipe field ``bank_scope``): per task (the paper's, the default) or per scenario, the family of
related tasks an environment names (``EnvSpec.scenario_of``). Under ``scenario`` a skill written about one task
conditions the teacher on its siblings, and UCB statistics, capacity, eviction and de-duplication are the
scenario's; under ``task`` nothing changed (a scripted sequence recorded before scopes existed replays exactly)."""

import json
import math

import pytest
import yaml

from skill_sd_trl.app.recipe import RecipeError
from skill_sd_trl.app.script_args import SkillSDScriptArguments
from skill_sd_trl.app.train import _make_bank
from skill_sd_trl.cli import main, parse_train_args
from skill_sd_trl.skills.bank import SkillBank, bank_scope_of, combine_rank_deltas, subtract_deltas
from skill_sd_trl.skills.schema import Skill
from skill_sd_trl.skills.show import format_bank
from skill_sd_trl.skills.show import main as show_main


def scenario(task_id: str) -> str:
    """Hand-made scenarios: ``"A/1"`` and ``"A/2"`` are siblings, ``"B/1"`` is alone."""
    return task_id.split("/")[0]


def sk(name, task):
    return Skill(f"success {name}", f"mistake {name}", f"workflow {name}", task_id=task)


def scenario_bank(**kw):
    return SkillBank(scope="scenario", key=scenario, **kw)


# -- sharing within a scenario, not across -------------------------------------------------------------------------
def test_tasks_of_one_scenario_share_skills_and_ucb_counts():
    bank = scenario_bank(ucb_c=1.0)
    assert bank.add(sk("x", "A/1")) and bank.add(sk("y", "A/1")) and bank.add(sk("z", "B/1"))
    # A/2 never had an episode summarized: it gets A/1's skills; B/1's are not A's
    assert [s.skill_id for s in bank.skills("A/2")] == ["A/1#0", "A/1#1"]
    assert [s.skill_id for s in bank.skills("B/1")] == ["B/1#2"]
    assert bank.select("C/1") is None  # another scenario: nothing
    first = bank.select("A/2")
    assert first.skill_id == "A/1#0" and "workflow x" in first.text
    second = bank.select("A/1")  # the sibling's selection counted: A/1#0 is tried, A/1#1 is not
    assert second.skill_id == "A/1#1"
    bank.record_outcome("A/2", "A/1#0", [1.0, 0.0])  # rewards of A/2's rollouts, credited to the shared skill
    bank.record_outcome("A/1", "A/1#1", [0.0, 0.0])
    # one set of statistics for the scenario, whichever task asks: N = 2 selections over both tasks
    assert bank.ucb_scores("A/1") == bank.ucb_scores("A/2") == bank.ucb_scores(bank_key="A")
    bonus = math.sqrt(math.log(2) / 1)
    assert bank.ucb_scores("A/2") == {"A/1#0": 0.5 + bonus, "A/1#1": 0.0 + bonus}
    assert bank.select("A/1").skill_id == "A/1#0"  # the better mean wins for either task
    entries = {e.skill.skill_id: e for e in bank.entries("A/2")}
    assert (entries["A/1#0"].selections, entries["A/1#0"].reward_count, entries["A/1#0"].reward_sum) == (2, 2, 1.0)
    # B's skill untouched by A's traffic
    (b,) = bank.entries("B/1")
    assert (b.selections, b.outcomes) == (0, 0)
    assert bank.ucb_scores("B/1") == {"B/1#2": math.inf}
    stats = bank.stats()
    assert (stats["keys_with_skills"], stats["tasks_with_skills"]) == (2, 3)  # scenarios A, B; tasks A/1, A/2, B/1
    assert stats["cross_task_selections"] == 1  # A/2 conditioned on a skill written about A/1
    assert sorted(bank.bank_keys()) == ["A", "B"] and bank.tasks() == ["A/1", "A/2", "B/1"]


def test_an_outcome_reported_under_the_wrong_scenario_is_unknown():
    bank = scenario_bank()
    bank.add(sk("x", "A/1"))
    bank.record_outcome("B/1", "A/1#0", [1.0])  # B/1 was never given A's skill
    assert bank.stats()["unknown_outcomes"] == 1 and bank.entries("A/1")[0].reward_count == 0


def test_capacity_eviction_and_duplicates_count_per_scenario():
    bank = scenario_bank(capacity_per_task=2, eviction="oldest")
    assert bank.add(sk("1", "A/1")) and bank.add(sk("2", "A/2"))
    assert bank.add(sk("9", "B/1"))
    assert bank.add(sk("3", "A/3"))  # the scenario is full: its oldest goes, B's skill stays
    assert [s.skill_id for s in bank.skills("A/1")] == ["A/2#1", "A/3#3"]
    assert [s.skill_id for s in bank.skills("B/1")] == ["B/1#2"]
    # the same text from a sibling is a duplicate; from another scenario it is not
    assert not bank.add(sk("2", "A/1"))
    assert not bank.add(sk("1", "A/3"))  # evicted from A: remembered per scenario
    assert bank.add(sk("2", "B/2"))
    assert bank.stats()["duplicates"] == 2 and bank.stats()["evicted"] == 1
    worst = scenario_bank(capacity_per_task=2)  # "worst": rated across the scenario's tasks
    worst.add(sk("good", "A/1"))
    worst.add(sk("bad", "A/2"))
    worst.record_outcome("A/2", worst.select("A/2").skill_id, [1.0])  # A/1#0, rated 1.0 through A/2
    worst.record_outcome("A/1", worst.select("A/1").skill_id, [0.0])  # A/2#1, rated 0.0 through A/1
    worst.add(sk("new", "A/3"))
    assert [s.skill_id for s in worst.skills("A/3")] == ["A/1#0", "A/3#2"]


def test_a_key_function_that_fails_names_the_task():
    def strict(task_id):
        raise ValueError(f"unknown task id {task_id!r}: expected '<template>-<split>-<index>'")

    bank = SkillBank(scope="scenario", key=strict)
    with pytest.raises(ValueError, match=r"^skill bank scope 'scenario': no scenario for task 'x': unknown task id"):
        bank.select("x")
    with pytest.raises(ValueError, match="must be a non-empty string, got ''"):
        SkillBank(scope="scenario", key=lambda t: "").add(sk("a", "x"))
    with pytest.raises(ValueError, match="pass scope='scenario'"):
        SkillBank(key=scenario)
    with pytest.raises(ValueError, match="scope='world' is not supported"):
        SkillBank(scope="world")


# -- the per-task default is unchanged ---------------------------------------------------------------------------
def _scripted(bank):
    """Two tasks, twelve steps: adds every other step (a duplicate at step 4, evictions at capacity 3), one selection
    per task per step with three rewards each. Returns the selected ids."""
    selected = []
    for step in range(12):
        for j, task in enumerate(("t", "u")):
            if step % 2 == 0:
                assert bank.add(sk(f"{task}{step}", task))
            if step == 4:
                assert not bank.add(sk(f"{task}0", task))
            sel = bank.select(task, {})
            selected.append(sel.skill_id)
            bank.record_outcome(task, sel.skill_id, [((step * 7 + j * 3 + k) % 5) / 4 for k in range(3)])
    return " ".join(selected)


#: Recorded with the bank as it was before scopes existed (commit 5aa9f3b), capacity 3 and c = 0.5.
BEFORE = {
    "ucb": "t#0 u#1 t#0 u#1 t#2 u#3 t#2 u#3 t#4 u#5 t#4 u#5 t#6 u#7 t#6 u#3 t#8 u#9 t#8 u#9 t#10 u#11 t#6 u#11",
    "latest": "t#0 u#1 t#0 u#1 t#2 u#3 t#2 u#3 t#4 u#5 t#4 u#5 t#6 u#7 t#6 u#7 t#8 u#9 t#8 u#9 t#10 u#11 t#10 u#11",
    "best": " ".join(["t#0 u#1"] * 12),
}
BEFORE_UCB_SCORES = {
    "t": {"t#6": 1.0252996665625167, "t#8": 1.014921284872878, "t#10": 0.9192830995229252},
    "u": {"u#3": 1.0415788180998673, "u#5": 1.0348590922288543, "u#11": 0.9098590922288545},
}
BEFORE_UCB_ENTRIES = {  # (skill_id, selections, outcomes, reward_sum, reward_count)
    "t": [("t#6", 3, 3, 5.75, 9), ("t#8", 2, 2, 3.25, 6), ("t#10", 1, 1, 0.75, 3)],
    "u": [("u#3", 3, 3, 5.75, 9), ("u#5", 2, 2, 3.25, 6), ("u#11", 2, 2, 2.5, 6)],
}
BEFORE_STATS = {"skills": 6, "tasks_with_skills": 2, "max_skills_per_task": 3, "added": 12, "duplicates": 2,
                "evicted": 6, "selections": 24, "outcomes": 24, "unknown_outcomes": 0, "nonfinite_rewards": 0}


@pytest.mark.parametrize("strategy", ["ucb", "latest", "best"])
def test_per_task_default_replays_the_recorded_sequence_bit_for_bit(strategy):
    bank = SkillBank(capacity_per_task=3, ucb_c=0.5, strategy=strategy)
    assert bank.scope == "task"
    assert _scripted(bank) == BEFORE[strategy]
    stats = bank.stats()
    assert {k: stats[k] for k in BEFORE_STATS} == BEFORE_STATS
    assert (stats["keys_with_skills"], stats["cross_task_selections"]) == (2, 0)
    if strategy == "ucb":
        assert {t: bank.ucb_scores(t) for t in "tu"} == BEFORE_UCB_SCORES  # exact floats
        got = {t: [(e.skill.skill_id, e.selections, e.outcomes, e.reward_sum, e.reward_count) for e in bank.entries(t)]
               for t in "tu"}
        assert got == BEFORE_UCB_ENTRIES
    # one scenario per task is the per-task bank: same choices, same statistics
    same = SkillBank(capacity_per_task=3, ucb_c=0.5, strategy=strategy, scope="scenario", key=lambda t: t)
    assert _scripted(same) == BEFORE[strategy]
    assert same.ucb_scores("t") == bank.ucb_scores("t")


# -- distributed feedback ----------------------------------------------------------------------------------------
def test_rank_merge_under_scenario_scope_counts_each_tasks_selection():
    """Rank 0 holds half of A/1's group; rank 1 the other half and all of A/2's. Both ranks start from the same bank;
    rank 1, having selected for A/1, gives A/2 the scenario's other untried skill. The merged bank equals a single
    process that made the same selections with the same rewards."""
    main_bank = scenario_bank()
    main_bank.add(sk("x", "A/1"))
    main_bank.add(sk("y", "A/1"))
    main_bank.drain_deltas()
    replica = SkillBank.from_dict(main_bank.to_dict(), key=scenario)
    single = SkillBank.from_dict(main_bank.to_dict(), key=scenario)

    s0 = main_bank.select("A/1")
    s1, s2 = replica.select("A/1"), replica.select("A/2")
    assert s0.skill_id == s1.skill_id == "A/1#0" and s2.skill_id == "A/1#1"
    main_bank.record_outcome("A/1", s0.skill_id, [1.0, 1.0])
    replica.record_outcome("A/1", s1.skill_id, [0.0, 1.0])
    replica.record_outcome("A/2", s2.skill_id, [0.5, 0.5, 0.5, 0.5])
    own, other = main_bank.drain_deltas(), replica.drain_deltas()
    assert set(other) == {"A/1", "A/2"}  # deltas stay per task id: what one rank's selection is
    main_bank.merge_deltas(subtract_deltas(combine_rank_deltas([own, other]), own))

    assert single.select("A/1").skill_id == "A/1#0" and single.select("A/2").skill_id == "A/1#1"
    single.record_outcome("A/1", "A/1#0", [1.0, 1.0, 0.0, 1.0])
    single.record_outcome("A/2", "A/1#1", [0.5, 0.5, 0.5, 0.5])

    def summary(bank):
        return [(e.skill.skill_id, e.selections, e.outcomes, e.reward_sum, e.reward_count) for e in bank.entries("A/1")]

    assert summary(main_bank) == summary(single) == [("A/1#0", 1, 1, 3.0, 4), ("A/1#1", 1, 1, 2.0, 4)]
    assert main_bank.stats()["cross_task_selections"] == single.stats()["cross_task_selections"] == 1
    assert main_bank.tasks() == ["A/1", "A/2"]  # A/2, seen on rank 1 only, arrived with the merge


# -- persistence and show-bank -----------------------------------------------------------------------------------
def _used_scenario_bank():
    bank = scenario_bank(capacity_per_task=3, ucb_c=0.7)
    for name, task in (("x", "A/1"), ("y", "A/2"), ("z", "B/1")):
        bank.add(sk(name, task))
    for task in ("A/2", "A/1", "B/1"):
        bank.record_outcome(task, bank.select(task).skill_id, [0.25, 0.75])
    return bank


def test_scenario_bank_round_trips_and_says_its_scope(tmp_path):
    bank = _used_scenario_bank()
    path = tmp_path / "skill_bank.json"
    bank.save(path)
    data = json.loads(path.read_text())
    assert data["config"]["scope"] == "scenario" and bank_scope_of(data) == "scenario"
    assert sorted(data["tasks"]) == ["A", "B"] and data["tasks"]["A"]["seen"] == ["A/1", "A/2"]
    loaded = SkillBank.load(path, key=scenario)
    assert loaded == bank and loaded.scope == "scenario"
    assert loaded.ucb_scores("A/2") == bank.ucb_scores("A/2") and loaded.stats() == bank.stats()
    # the loaded bank goes on exactly as the saved one would have
    assert [loaded.select(t).skill_id for t in ("A/1", "A/3", "B/2")] == [bank.select(t).skill_id
                                                                           for t in ("A/1", "A/3", "B/2")]
    # load_state_dict (resume, rank broadcast) keeps the live bank's key function
    live = scenario_bank()
    live.load_state_dict(data)
    assert live.key is scenario and [s.skill_id for s in live.skills("A/9")] == ["A/1#0", "A/2#1"]
    # a per-task file has scope "task"; one written before scopes existed reads as per task
    task_bank = SkillBank()
    task_bank.add(sk("x", "A/1"))
    assert task_bank.to_dict()["config"]["scope"] == "task"
    old = task_bank.to_dict()
    del old["config"]["scope"]
    assert SkillBank.from_dict(old) == task_bank and bank_scope_of(old) == "task"


def test_loading_a_bank_into_the_other_scope_is_one_line():
    scenario_data = _used_scenario_bank().to_dict()
    with pytest.raises(ValueError) as err:
        SkillBank().load_state_dict(scenario_data)
    assert str(err.value) == ("the skill bank to load is keyed per scenario (scope 'scenario'), this one per task: "
                              "resume with bank_scope: scenario, or start from an empty bank")
    with pytest.raises(ValueError, match=r"^the skill bank to load is keyed per task \(scope 'task'\), this one per "
                                         "scenario: resume with bank_scope: task, or start from an empty bank$"):
        scenario_bank().load_state_dict(SkillBank().to_dict())
    with pytest.raises(ValueError, match="^this skill bank is keyed per task .scope 'task'.: it takes no scenario "):
        SkillBank.from_dict(SkillBank().to_dict(), key=scenario)


def test_show_bank_lists_a_scenario_bank_per_scenario(tmp_path, capsys):
    bank = _used_scenario_bank()
    for table in (format_bank(bank), format_bank(SkillBank.from_dict(bank.to_dict()))):  # live, and as loaded
        lines = table.splitlines()
        assert lines[0].startswith("3 skill(s) over 2 scenario(s); strategy=ucb ucb_c=0.7 capacity_per_task=3 "
                                   "eviction=worst scope=scenario; added=3")
        assert lines[0].endswith("; tasks seen with skills=3 cross_task_selections=2")  # A/1 and A/2 swapped
        assert lines[1].split()[:2] == ["scenario", "skill_id"]
        rows = {line.split()[1]: line.split() for line in lines[3:]}
        assert {k: v[0] for k, v in rows.items()} == {"A/1#0": "A", "A/2#1": "A", "B/1#2": "B"}
        assert rows["A/1#0"][2:5] == ["1", "2", "0.500"]  # selected for A/2, its rollouts' mean
    assert "(no skills for scenario 'C')" in format_bank(bank, task="C")
    bank.save(tmp_path / "skill_bank.json")
    assert show_main([str(tmp_path), "--task", "A", "--full"]) == 0
    out = capsys.readouterr().out
    assert "A/2#1" in out and "B/1#2" not in out and "### Golden workflow\nworkflow y" in out
    assert main(["show-bank", str(tmp_path / "skill_bank.json")]) == 0
    assert "scope=scenario" in capsys.readouterr().out
    assert "scope=task;" in format_bank(SkillBank())  # a per-task bank says so too


# -- the recipe ----------------------------------------------------------------------------------------------------
def _write(tmp_path, **recipe):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"use_cpu": True, "bf16": False, **recipe}), encoding="utf-8")
    return str(path)


def test_scenario_scope_needs_an_environment_with_scenarios(tmp_path):
    with pytest.raises(SystemExit) as err:
        parse_train_args(["--config", _write(tmp_path, env_name="sokoban", bank_scope="scenario")])
    assert str(err.value) == ("error: bank_scope='scenario' needs an environment that groups its tasks into scenarios "
                              "(EnvSpec.scenario_of); sokoban has none: use bank_scope: task.")
    with pytest.raises(SystemExit, match=r"^error: .*bank.scope.*'world'.*'task', 'scenario'"):
        parse_train_args(["--config", _write(tmp_path, env_name="appworld_offline"), "--bank_scope", "world"])
    with pytest.raises(SystemExit, match=r"^error: .*bank.scope.*'world'.*'task', 'scenario'"):
        parse_train_args(["--config", _write(tmp_path, env_name="appworld_offline", bank_scope="world")])
    script, *_ = parse_train_args(["--config", _write(tmp_path, env_name="appworld_offline", bank_scope="scenario")])
    assert script.bank_scope == "scenario"
    assert parse_train_args(["--config", _write(tmp_path, env_name="sokoban")])[0].bank_scope == "task"  # default


def test_make_bank_keys_by_the_environments_scenarios_and_checks_saved_banks(tmp_path):
    script = SkillSDScriptArguments(env_name="appworld_offline", bank_scope="scenario", bank_capacity=3, ucb_c=0.5)
    bank = _make_bank(script)
    assert (bank.scope, bank.key, bank.capacity_per_task, bank.ucb_c) == ("scenario", script.spec.scenario_of, 3, 0.5)
    bank.add(sk("x", "contact_phone_number-train-0"))
    assert [s.skill_id for s in bank.skills("contact_phone_number-dev-2-s3")] == ["contact_phone_number-train-0#0"]
    assert bank.skills("payments_balance-train-0") == []
    per_task = _make_bank(SkillSDScriptArguments(env_name="appworld_offline"))
    assert (per_task.scope, per_task.key) == ("task", None)

    # bank_path: the file's scope must be the recipe's
    bank.save(tmp_path / "scenario.json")
    SkillBank().save(tmp_path / "task.json")
    from_file = _make_bank(SkillSDScriptArguments(env_name="appworld_offline", bank_scope="scenario",
                                                  bank_path=str(tmp_path / "scenario.json")))
    assert from_file == bank and from_file.key is not None
    with pytest.raises(RecipeError) as err:
        _make_bank(SkillSDScriptArguments(env_name="appworld_offline", bank_path=str(tmp_path / "scenario.json")))
    assert str(err.value) == (f"bank_path={str(tmp_path / 'scenario.json')!r} holds a skill bank keyed per scenario "
                              "(bank_scope: scenario), but this recipe has bank_scope='task': set bank_scope: "
                              "scenario, or start from an empty bank.")
    with pytest.raises(RecipeError, match="keyed per task .bank_scope: task., but this recipe has "
                                          "bank_scope='scenario'"):
        _make_bank(SkillSDScriptArguments(env_name="appworld_offline", bank_scope="scenario",
                                          bank_path=str(tmp_path / "task.json")))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(RecipeError, match=r"^bank_path='.*broken.json': .*broken.json is not a valid skill bank file"):
        _make_bank(SkillSDScriptArguments(env_name="appworld_offline", bank_path=str(tmp_path / "broken.json")))

    # resuming a checkpoint whose bank was keyed otherwise: refused before the model loads (named or the latest)
    checkpoint = tmp_path / "run" / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    bank.save(checkpoint / "skill_bank.json")
    task_script = SkillSDScriptArguments(env_name="appworld_offline")
    for resume in (str(checkpoint), True, "true"):
        with pytest.raises(RecipeError, match=r"^resume_from_checkpoint='.*checkpoint-2' holds a skill bank keyed "
                                              r"per scenario .bank_scope: scenario., but this recipe has "
                                              r"bank_scope='task'"):
            _make_bank(task_script, resume, str(tmp_path / "run"))
    assert _make_bank(script, str(checkpoint), str(tmp_path / "run")).scope == "scenario"
    assert _make_bank(task_script, None, str(tmp_path / "run")).scope == "task"  # not resuming: nothing to check


# -- a run on the offline app world ----------------------------------------------------------------------------
def _app_world_run(tmp_path, scope):
    """Two training tasks of one template (contact_phone_number, worlds 0 and 1), one per step: the task of step 2
    has never been played when step 2 selects its skill."""
    out = tmp_path / scope
    recipe = {"env_name": "appworld_offline", "env_args": {"tasks_per_template": 2}, "method": "skill_sd",
              "tiny_model": True, "use_peft": True, "lora_r": 4, "lora_target_modules": ["q_proj", "v_proj"],
              "use_cpu": True, "bf16": False, "per_device_train_batch_size": 4, "num_generations": 4, "max_steps": 2,
              "max_completion_length": 64, "logging_steps": 1, "save_strategy": "no", "report_to": "none",
              "reward": "completion", "summarizer_wait": 30, "max_train_samples": 2, "max_turns": 1,
              "max_new_tokens_per_turn": 8, "evaluate_after_training": False, "bank_scope": scope,
              "output_dir": str(out)}
    assert main(["train", "--config", _write(tmp_path, **recipe)]) == 0
    state = json.loads((out / "trainer_state.json").read_text())
    coverage = [h["skills/coverage"] for h in state["log_history"] if "skills/coverage" in h]
    return coverage, SkillBank.load(out / "skill_bank.json"), state


def test_a_task_new_to_the_run_gets_its_scenarios_skill(tmp_path):
    task_cov, task_bank, _ = _app_world_run(tmp_path, "task")
    scen_cov, scen_bank, state = _app_world_run(tmp_path, "scenario")
    assert task_cov == [0.0, 0.0]  # per task: step 2's task has no skill of its own yet
    assert scen_cov == [0.0, 1.0]  # per scenario: every row of step 2 is conditioned on its sibling's skill
    assert math.isfinite(state["log_history"][1]["self_distillation/sdl"])
    # step 1 summarized one world, step 2 the other (the sampler visits both tasks once)
    by_step = {}
    for key in scen_bank.bank_keys():
        for e in scen_bank.entries(bank_key=key):
            by_step.setdefault(e.skill.step, set()).add(e.skill.task_id)
    assert sorted(scen_bank.bank_keys()) == ["contact_phone_number"] and len(by_step[1] | by_step[2]) == 2
    (first,), (second,) = by_step[1], by_step[2]
    assert first != second
    # the one selection (step 2, for the second task) was of a skill written about the first
    selected = [e for e in scen_bank.entries(bank_key="contact_phone_number") if e.selections]
    assert len(selected) == 1 and selected[0].skill.task_id == first and selected[0].reward_count == 4
    assert scen_bank.stats()["cross_task_selections"] == 1 and scen_bank.tasks() == sorted([first, second])
    assert task_bank.scope == "task" and task_bank.stats()["selections"] == 0


# -- a bank seeded from demonstrations, and a fixed bank ---------------------------------------------------------
APP_ARGS = {"prompt_style": "compact", "held_out_templates": 8, "tasks_per_template": 1}


def test_demonstration_skills_seed_every_trained_scenario_with_working_code(tmp_path):
    import re

    script = SkillSDScriptArguments(env_name="appworld_offline", env_args={**APP_ARGS, "seed": 1},
                                    bank_scope="scenario", bank_demonstrations=16)
    bank = _make_bank(script)
    spec = script.spec
    train = spec.dataset("train")
    assert sorted(bank.bank_keys()) == sorted(spec.scenario_of(t) for t in train["task_id"])  # one per template
    run_tasks = set(train["task_id"]) | set(spec.dataset("dev")["task_id"])
    for key in bank.bank_keys():
        (skill,) = bank.skills(bank_key=key)
        assert skill.task_id not in run_tasks and skill.task_id.endswith("-s10000")  # a demonstration world
        assert re.search(r"```python\n.*apis\.supervisor\.complete_task\(.*\n```", skill.golden_workflow, re.S)
    # every training task is conditioned on its template's demonstration from the first step
    assert all(bank.select(t) is not None for t in train["task_id"])


def test_demonstration_and_fixed_bank_mistakes_are_one_line(tmp_path):
    with pytest.raises(SystemExit) as err:
        parse_train_args(["--config", _write(tmp_path, env_name="appworld_offline", bank_demonstrations=8)])
    assert str(err.value) == ("error: bank_demonstrations=8 needs bank_scope: scenario (a demonstration's world is "
                              "never a training task's, so only a scenario's bank can hand its skill to the training "
                              "tasks); set bank_scope: scenario or drop bank_demonstrations.")
    with pytest.raises(SystemExit, match=r"^error: bank_demonstrations=-1: give a count >= 0"):
        parse_train_args(["--config", _write(tmp_path, env_name="appworld_offline", bank_scope="scenario",
                                             bank_demonstrations=-1)])
    with pytest.raises(SystemExit) as err:
        parse_train_args(["--config", _write(tmp_path, env_name="appworld_offline", summarizer="none")])
    assert str(err.value) == ("error: summarizer='none' keeps the bank as it starts, but this recipe starts it empty: "
                              "give bank_path or bank_demonstrations, or choose a summarizer (experience).")


def test_a_fixed_demonstration_bank_conditions_every_step_and_is_never_summarized_into(tmp_path):
    out = tmp_path / "fixed"
    recipe = {"env_name": "appworld_offline", "env_args": {**APP_ARGS, "tasks_per_template": 1}, "method": "skill_sd",
              "tiny_model": True, "use_peft": True, "lora_r": 4, "lora_target_modules": ["q_proj", "v_proj"],
              "use_cpu": True, "bf16": False, "per_device_train_batch_size": 4, "num_generations": 4, "max_steps": 2,
              "max_completion_length": 64, "logging_steps": 1, "save_strategy": "no", "report_to": "none",
              "reward": "completion", "max_train_samples": 2, "max_turns": 1, "max_new_tokens_per_turn": 8,
              "evaluate_after_training": False, "bank_scope": "scenario", "bank_demonstrations": 16,
              "summarizer": "none", "output_dir": str(out)}
    assert main(["train", "--config", _write(tmp_path, **recipe)]) == 0
    state = json.loads((out / "trainer_state.json").read_text())
    assert [h["skills/coverage"] for h in state["log_history"] if "skills/coverage" in h] == [1.0, 1.0]
    assert all(math.isfinite(h["self_distillation/sdl"]) for h in state["log_history"] if "self_distillation/sdl" in h)
    bank = SkillBank.load(out / "skill_bank.json")  # saved at the end like a summarized bank
    assert len(bank) == 16 and {e.skill.step for k in bank.bank_keys() for e in bank.entries(bank_key=k)} == {0}
    assert bank.stats()["selections"] == 2  # each step's task chose its template's demonstration skill once
