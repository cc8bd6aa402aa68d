"""The experiment runner on the offline app world: the same runner as Sokoban's, cells of the tiny model (two
methods x two seeds, two steps), the held-out dev split, the `unseen` templates and the tasks trained on."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import yaml

from skill_sd_trl import experiment as ex
from skill_sd_trl.cli import main

ROOT = Path(__file__).resolve().parent.parent
BASE_RECIPE = ROOT / "recipes" / "appworld_offline" / "skill_sd_cpu.yaml"
SHIPPED = ROOT / "recipes" / "appworld_offline" / "experiments" / "experiment_cpu.yaml"
METHODS, SEEDS = ("grpo", "skill_sd"), (0, 1)
HELD_OUT_TEMPLATES = 8  # of 24: one dev world each in the `unseen` split


@pytest.fixture(scope="module")
def appworld_matrix(tmp_path_factory, tiny_model_path):
    folder = tmp_path_factory.mktemp("appworld-experiment")
    config = folder / "experiment.yaml"
    config.write_text(yaml.safe_dump({
        "base_recipe": str(BASE_RECIPE),
        "overrides": {"model_name_or_path": tiny_model_path,
                      "env_args": {"prompt_style": "compact", "held_out_templates": HELD_OUT_TEMPLATES,
                                   "tasks_per_template": 1, "eval_tasks_per_template": 1},
                      "max_train_samples": 1, "max_turns": 2, "max_new_tokens_per_turn": 8,
                      "per_device_train_batch_size": 4, "num_generations": 4},
        "methods": {m: None for m in METHODS},
        "seeds": list(SEEDS), "task_sets": [0], "max_steps": 2, "eval_every": 2,
        "eval": {"test_tasks": 2, "train_tasks": 1, "extra_splits": ["unseen"]},
        "summarizer_wait": 30, "output_dir": str(folder / "out"),
    }, sort_keys=False), encoding="utf-8")
    assert main(["experiment", "--config", str(config)]) == 0
    return folder / "out"


def cell_result(out: Path, method: str, seed: int) -> dict:
    return json.loads((out / "cells" / method / f"seed{seed}-tasks0" / ex.RESULT_FILE).read_text())


def test_every_app_world_cell_evaluates_dev_unseen_and_train_tasks(appworld_matrix):
    for method in METHODS:
        for seed in SEEDS:
            r = cell_result(appworld_matrix, method, seed)
            assert (r["method"], r["seed"], r["task_set"], r["max_steps"]) == (method, seed, 0, 2)
            # the task set is the environment's own argument (a family of worlds), the seed the trainer's
            assert r["recipe"]["env_name"] == "appworld_offline"
            assert r["recipe"]["env_args"]["seed"] == 0 and r["recipe"]["seed"] == seed
            assert [e["step"] for e in r["evals"]] == [0, 2]
            for e in r["evals"]:
                assert (e["test_episodes"], e["train_episodes"], e["unseen_episodes"]) == (2, 1, HELD_OUT_TEMPLATES)
                for key in ("test", "train", "unseen"):
                    assert 0.0 <= e[f"{key}_acc"] <= 100.0 and 0.0 <= e[f"{key}_comp"] <= 100.0
                # app-world episodes, ended by the turn budget or the agent: their metrics under the env's name
                assert 1 <= e["test_env"]["env/appworld_offline/turns"] <= 2
            assert [s["step"] for s in r["steps"]] == [1, 2]


def test_app_world_cells_share_one_base_evaluation(appworld_matrix):
    files = list((appworld_matrix / ex.BASE_EVALS_DIR).glob("*.json"))
    assert len(files) == 1  # one base model, one task set, one evaluation setting
    stored = json.loads(files[0].read_text())
    bases = [cell_result(appworld_matrix, m, s)["evals"][0] for m in METHODS for s in SEEDS]
    assert sum(1 for b in bases if b.get("shared")) == len(bases) - 1
    for base in bases:
        for key in ("test_acc", "test_comp", "unseen_acc", "unseen_comp", "train_acc"):
            assert base[key] == stored[key]


def test_the_app_world_skill_sd_cell_distils_from_a_skill_and_grpo_does_not(appworld_matrix):
    sd = cell_result(appworld_matrix, "skill_sd", 0)
    # the one training task recurs every step: step 1's episodes were summarized before step 2 (summarizer_wait)
    last = sd["steps"][1]["log"]
    assert last["skills/coverage"] > 0 and last["self_distillation/sdl"] != 0
    bank = json.loads((appworld_matrix / "cells" / "skill_sd" / "seed0-tasks0" / "skill_bank.json").read_text())
    assert json.dumps(bank).count("golden_workflow") >= 1
    assert "self_distillation/sdl" not in cell_result(appworld_matrix, "grpo", 0)["steps"][1]["log"]


def test_the_app_world_summary_is_the_statistics_of_its_cells_per_split(appworld_matrix):
    summary = json.loads((appworld_matrix / "results.json").read_text())["summary"]
    for method in METHODS:
        finals = [cell_result(appworld_matrix, method, s)["final"] for s in SEEDS]
        row = summary["methods"][method]
        assert row["n"] == len(SEEDS) and row["seeds"] == list(SEEDS) and row["task_sets"] == [0]
        for key in ("test_acc", "test_comp", "unseen_acc", "unseen_comp", "train_acc"):
            values = [f[key] for f in finals]
            assert row[key] == pytest.approx(statistics.mean(values))
            assert row[f"{key}_std"] == pytest.approx(statistics.stdev(values))
    header = (appworld_matrix / "table.md").read_text().splitlines()[0]
    assert "unseen Acc." in header and "unseen Comp." in header and "train Acc." in header


def test_the_shipped_app_world_experiment_runs_two_task_sets_of_three_seeds_with_the_unseen_split():
    exp = ex.load_experiment(SHIPPED)
    assert exp.task_sets == [0, 1] and exp.seeds == [0, 1, 2]  # the issue's >= 2 task sets x >= 3 seeds
    assert exp.task_set_arg == "seed"  # the app world's own option: a family of worlds
    assert exp.eval.extra_splits == ["unseen"] and exp.overrides["env_args"]["held_out_templates"] > 0
    assert set(exp.default_methods) <= set(exp.methods) and exp.reference_method == "grpo"
    assert {"grpo", "skill_sd", "skill_augmented_grpo", "vanilla_opd"} <= set(exp.methods)  # the paper's rows
    assert exp.output_dir.parts[-2:] == ("results", "appworld_offline_cpu")

