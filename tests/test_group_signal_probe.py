"""bench/group_signal_probe.py: the step-1 groups of a recipe's training window, counted per task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _bench import load_bench

ROOT = Path(__file__).resolve().parent.parent


def _probe():
    return load_bench("group_signal_probe")


def test_probe_counts_each_group_of_the_recipes_window(tmp_path, tiny_model_path, capsys):
    from skill_sd_trl.envs.sokoban import make_sokoban_dataset

    out = tmp_path / "probe.json"
    _probe().main(["--config", str(ROOT / "recipes" / "sokoban" / "skill_sd_cpu.yaml"),
                   "--model_name_or_path", tiny_model_path, "--env_args", "preset=tiny", "--skip_train_samples", "2",
                   "--max_train_samples", "3", "--num_generations", "4", "--per_device_train_batch_size", "4",
                   "--max_turns", "1", "--max_new_tokens_per_turn", "4", "--reward", "success", "--output_dir", str(tmp_path / "run"),
                   "--json", str(out)])
    result = json.loads(out.read_text())
    split = make_sokoban_dataset("tiny", "train", seed=0)
    assert result["task_ids"] == list(split["task_id"])[2:5]  # the recipe's window: 3 tasks after the first 2
    solved = result["solved_per_task"]
    assert len(solved) == 3 and all(0 <= n <= 4 for n in solved)
    summary = result["summary"]
    assert summary["tasks"] == 3 and summary["group"] == 4
    assert summary["episodes_solved"] == sum(solved) / 12
    assert summary["groups_all_failed"] == sum(n == 0 for n in solved) / 3
    assert summary["groups_all_failed"] + summary["groups_all_solved"] + summary["groups_with_spread"] == pytest.approx(1)
    rewards = result["rewards_per_task"]  # the recipe's reward per episode: GRPO's spread is of this, not of success
    assert [len(rs) for rs in rewards] == [4, 4, 4]
    assert [sum(rs) for rs in rewards] == solved  # reward: success, so each group's rewards add up to its solved count
    assert summary["groups_with_reward_spread"] == sum(len(set(rs)) > 1 for rs in rewards) / 3
    assert summary["groups_with_reward_spread"] >= summary["groups_with_spread"]
    assert summary["mean_reward"] == pytest.approx(sum(map(sum, rewards)) / 12)
    rows = [line.split("|")[1:4] for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    assert [int(task) for task, _, _ in rows] == [2, 3, 4]  # indices in the whole split
    assert [int(n) for _, _, n in rows] == solved
    assert [int(length) for _, length, _ in rows] == list(split["solution_length"])[2:5]
