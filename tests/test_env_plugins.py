"""Environments are plugins: a package outside skill_sd_trl registers ``load_environment`` under the entry-point
group, and recipes, ``train``, ``eval`` and experiments use it by name (or as ``module:function``) with no edit to
``skill_sd_trl/``."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from skill_sd_trl.cli import main
from skill_sd_trl.envs.registry import ENTRY_POINT_GROUP, load_environment, registered_environments

# A third environment, written as a user would: its own package, rules, seeded tasks and scoring.
PLUGIN = '''
from functools import partial

from skill_sd_trl.envs.base import EnvSpec, EpisodeScore, StepResult, TextEnv


class CountEnv(TextEnv):
    """Say the row's number: solved when a turn contains it."""

    name = "count"
    stop_reasons = ("solved",)

    def __init__(self, strict: bool = False):
        self.strict = strict

    def reset(self, example):
        self.target, self.solved, self.turns = str(example["target"]), False, 0
        return None

    def step(self, action):
        self.turns += 1
        self.solved = (action.strip() == self.target) if self.strict else (self.target in action)
        return StepResult("right" if self.solved else "wrong, try again", reward=float(self.solved), done=self.solved,
                          stop_reason="solved" if self.solved else None)

    def score(self):
        return EpisodeScore(success=self.solved, completion=float(self.solved))


def _dataset(seed, n_tasks, split):
    from datasets import Dataset

    offset = 0 if split == "train" else 1000
    rows = [{"prompt": [{"role": "user", "content": f"Say the number {offset + seed * 100 + i}."}],
             "task_id": f"count-{split}-{seed}-{i}", "target": offset + seed * 100 + i} for i in range(n_tasks)]
    return Dataset.from_list(rows)


def load_environment(seed: int = 0, n_tasks: int = 4, strict: bool = False) -> EnvSpec:
    """Counting tasks: seed picks the numbers, n_tasks how many per split, strict whether the turn must be only it."""
    if n_tasks < 1:
        raise ValueError(f"n_tasks={n_tasks}: must be >= 1")
    return EnvSpec(name="count", make_dataset=partial(_dataset, seed, n_tasks), make_env=partial(CountEnv, strict),
                   train_split="train", eval_split="test", max_turns=2, max_new_tokens_per_turn=4,
                   task_set_arg="seed")
'''


@pytest.fixture
def count_plugin(tmp_path, monkeypatch):
    """``count_env`` installed the way pip installs a package: the module plus a dist-info with its entry point."""
    site = tmp_path / "site"
    (site / "count_env").mkdir(parents=True)
    (site / "count_env" / "__init__.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    info = site / "count_env-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: count-env\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\ncount = count_env:load_environment\n",
                                           encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield site
    sys.modules.pop("count_env", None)


def test_an_installed_environment_is_found_by_name_and_its_options_are_checked(count_plugin):
    assert registered_environments()["count"] == "count_env:load_environment"
    ours = {name: ref for name, ref in registered_environments().items() if ref.startswith("skill_sd_trl.")}
    assert ours == {"sokoban": "skill_sd_trl.envs.sokoban:load_environment",  # ours are registered the same way
                    "appworld_offline": "skill_sd_trl.envs.appworld:load_offline_environment",
                    "appworld": "skill_sd_trl.envs.appworld:load_environment"}
    spec = load_environment("count", {"seed": 2, "n_tasks": 3})
    assert spec.dataset("test")["target"] == [1200, 1201, 1202] and spec.task_set_arg == "seed"
    with pytest.raises(ValueError, match=r"^env_args.n_task: count has no option 'n_task' \(did you mean 'n_tasks'\?\)"
                                         r"\. count's options: seed=0, n_tasks=4, strict=False\.$"):
        load_environment("count", {"n_task": 3})
    with pytest.raises(ValueError, match=r"^env_args for count: n_tasks=0: must be >= 1$"):
        load_environment("count", {"n_tasks": 0})
    with pytest.raises(ValueError, match=r"^env_args.strict='yes': count expects bool"):
        load_environment("count", {"strict": "yes"})


def _recipe(tmp_path: Path, **changes) -> Path:
    recipe = {"env_name": "count", "env_args": {"n_tasks": 2}, "method": "skill_sd", "tiny_model": True,
              "use_peft": True, "lora_r": 4, "lora_target_modules": ["q_proj", "v_proj"],
              "use_cpu": True, "bf16": False, "per_device_train_batch_size": 4, "num_generations": 4, "max_steps": 2,
              "max_completion_length": 32, "logging_steps": 1, "save_strategy": "no", "report_to": "none",
              "reward": "success", "summarizer_wait": 30, "max_train_samples": 1,  # one task: skills from step 2
              "output_dir": str(tmp_path / "run")}
    recipe.update(changes)
    path = tmp_path / "count.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def test_train_and_evaluate_on_a_plugin_environment(count_plugin, tmp_path):
    recipe = _recipe(tmp_path)
    assert main(["train", "--config", str(recipe)]) == 0
    run = tmp_path / "run"
    state = json.loads((run / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    logged = {k for h in state["log_history"] for k in h}
    assert {"env/count/acc", "self_distillation/sdl"} <= logged  # its episodes scored, Skill-SD's term on them
    table = json.loads((run / "eval_results.json").read_text())
    assert [r["env"] for r in table["results"]] == ["count", "count"]
    assert [r["num_episodes"] for r in table["results"]] == [2, 2]  # the plugin's held-out split, both models
    assert json.loads((run / "skill_bank.json").read_text())  # skills written about its episodes

    # eval takes the same env_name and env_args; a module:function reference needs no registration
    assert main(["eval", "--env_name", "count_env:load_environment", "--env_args", "seed=1,n_tasks=3",
                 "--model", str(run), "--max_turns", "1", "--eval_output_dir", str(tmp_path / "eval")]) == 0
    evaluated = json.loads((tmp_path / "eval" / "eval_results.json").read_text())["results"][0]
    assert evaluated["env"] == "count" and evaluated["num_episodes"] == 3
    assert [e["task_id"] for e in evaluated["episodes"]] == [f"count-test-1-{i}" for i in range(3)]


def test_an_experiment_varies_the_plugins_task_set(count_plugin, tmp_path):
    from skill_sd_trl import experiment as ex

    recipe = _recipe(tmp_path)
    config = tmp_path / "experiment.yaml"
    config.write_text(yaml.safe_dump({"base_recipe": str(recipe), "methods": {"grpo": None, "skill_sd": None},
                                      "seeds": [0], "task_sets": [0, 3], "max_steps": 2, "eval_every": 2,
                                      "output_dir": str(tmp_path / "out")}), encoding="utf-8")
    exp = ex.load_experiment(config)
    assert exp.task_set_arg == "seed"
    cell = ex.cell_recipe(exp, "skill_sd", 0, 3, tmp_path / "cell")
    assert cell["env_args"] == {"n_tasks": 2, "seed": 3} and cell["sdl_coef"] == 0.001
    assert ex.cell_recipe(exp, "grpo", 0, 0, tmp_path / "cell")["env_args"] == {"n_tasks": 2, "seed": 0}
    assert exp.cell_dir("grpo", 0, 3).name == "seed0-tasks3"


def test_no_shared_argument_class_holds_an_environments_option():
    """Environment options live in env_args (the environment's own signature), never as fields of the argument
    classes every environment shares."""
    from dataclasses import fields

    from skill_sd_trl.app.script_args import SkillSDScriptArguments
    from skill_sd_trl.envs.registry import environment_loader, parameters

    shared = {f.name for f in fields(SkillSDScriptArguments)}
    for name in registered_environments():
        options = set(parameters(environment_loader(name)))
        assert not shared & (options | {f"env_{o}" for o in options}), name
