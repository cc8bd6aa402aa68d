"""Sokoban presets as datasets: columns, prompts, stable ids, determinism, disjoint splits, curriculum."""

import dataclasses
import hashlib
import time

import pytest
from datasets import Dataset

from skill_sd_trl.envs.sokoban import (
    PRESETS,
    Level,
    SokobanEnv,
    SokobanPreset,
    levels_to_dataset,
    make_sokoban_dataset,
    parse_actions,
    render,
    solve,
)
from skill_sd_trl.envs.sokoban.dataset import level_pool

COLUMNS = {"prompt", "task_id", "level", "ground_truth", "solution_length", "env", "max_steps"}


def test_presets_match_the_paper_and_cpu_settings():
    paper, small, tiny = PRESETS["paper"], PRESETS["small"], PRESETS["tiny"]
    assert (paper.dim, paper.num_boxes, paper.max_steps, paper.num_train, paper.num_test) == ((6, 6), 2, 40, 96, 64)
    assert (small.dim, small.num_boxes, small.max_steps, small.num_train, small.num_test) == ((6, 6), 1, 20, 64, 64)
    assert (tiny.num_boxes, tiny.max_solution_length, tiny.num_train, tiny.num_test) == (1, 4, 8, 8)
    short = PRESETS["short"]  # the CPU learning experiment: small room, 2-3 move solutions, 32 test levels
    assert (short.dim, short.num_boxes, short.max_steps, short.num_train, short.num_test) == ((6, 6), 1, 20, 64, 32)
    assert (short.min_solution_length, short.max_solution_length) == (2, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        paper.num_train = 1  # type: ignore[misc]


@pytest.mark.parametrize("preset", ["tiny", "small", "short", "paper"])
def test_splits_have_the_right_sizes_columns_and_levels(preset):
    spec = PRESETS[preset]
    for split, size in (("train", spec.num_train), ("test", spec.num_test)):
        ds = make_sokoban_dataset(preset, split, seed=0)
        assert isinstance(ds, Dataset) and len(ds) == size
        assert set(ds.column_names) == COLUMNS
        for row in ds:
            level = Level.from_xsb(row["level"])
            assert level.dim == spec.dim and level.num_boxes == spec.num_boxes
            assert row["env"] == "sokoban" and row["max_steps"] == spec.max_steps
            moves = parse_actions(row["ground_truth"])
            assert len(moves) == row["solution_length"] == len(solve(level))  # optimal ground truth
            lo, hi = spec.min_solution_length, spec.max_solution_length
            assert lo <= row["solution_length"] <= hi
            digest = hashlib.sha1(row["level"].encode()).hexdigest()[:8]
            assert row["task_id"].startswith(f"sokoban-{preset}-{split}-") and row["task_id"].endswith(digest)


def test_prompt_has_rules_legend_format_and_the_board():
    row = make_sokoban_dataset("small", "train", seed=0)[0]
    system, user = row["prompt"]
    assert system["role"] == "system" and user["role"] == "user"
    for needle in ("cannot pull", "#: wall", "O: target", "√: box on target", "<answer>", "||", "at most 20 moves"):
        assert needle in system["content"]
    assert render(row["level"]) in user["content"]
    assert "Steps left: 20" in user["content"]


def test_ground_truth_wins_every_test_level_in_the_env():
    env = SokobanEnv()
    for row in make_sokoban_dataset("paper", "test", seed=0):
        assert env.reset(row) is None
        result = env.step(f"<answer>{row['ground_truth']}</answer>")
        assert result.stop_reason == "solved"
        assert env.score().success and env.score().completion == 1.0


@pytest.mark.parametrize("preset", ["tiny", "small", "short", "paper"])
def test_train_and_test_are_disjoint_and_ids_unique(preset):
    train = make_sokoban_dataset(preset, "train", seed=3)
    test = make_sokoban_dataset(preset, "test", seed=3)
    assert not set(list(train["level"])) & set(list(test["level"]))
    assert len(set(list(train["level"]))) == len(train) and len(set(list(test["level"]))) == len(test)
    ids = list(train["task_id"]) + list(test["task_id"])
    assert len(set(ids)) == len(ids)


def test_train_split_is_a_curriculum():
    for preset in ("small", "paper"):
        lengths = list(make_sokoban_dataset(preset, "train", seed=0)["solution_length"])
        assert lengths == sorted(lengths)
        assert lengths[0] < lengths[-1]  # a real progression, not one difficulty
    unordered = dataclasses.replace(PRESETS["small"], curriculum=False)  # same name, so the same levels
    flat = make_sokoban_dataset(unordered, "train", seed=0)
    ordered = make_sokoban_dataset("small", "train", seed=0)
    assert sorted(flat["level"]) == sorted(ordered["level"])
    assert list(ordered["solution_length"]) == sorted(flat["solution_length"])
    assert list(flat["solution_length"]) != sorted(flat["solution_length"])


def test_datasets_are_reproducible_from_the_seed_and_vary_with_it():
    first = make_sokoban_dataset("small", "train", seed=0).to_list()
    level_pool.cache_clear()  # rebuild from scratch, not from the cache
    again = make_sokoban_dataset("small", "train", seed=0).to_list()
    assert first == again
    other = make_sokoban_dataset("small", "train", seed=1)
    assert set(list(other["level"])) != {row["level"] for row in first}
    assert list(other["task_id"]) != [row["task_id"] for row in first]


def test_paper_preset_builds_fast():
    level_pool.cache_clear()
    start = time.perf_counter()
    make_sokoban_dataset("paper", "train", seed=7)
    make_sokoban_dataset("paper", "test", seed=7)
    assert time.perf_counter() - start < 10.0  # about 0.3 s on an idle CPU core


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="Unknown Sokoban preset 'huge'"):
        make_sokoban_dataset("huge")
    with pytest.raises(ValueError, match="`split` must be one of"):
        make_sokoban_dataset("tiny", "validation")


def test_custom_levels_become_a_dataset():
    xsb = ["#######\n#     #\n#@$   #\n#### ##\n#### ##\n####.##\n#######", "#####\n#@$.#\n#####"]
    ds = levels_to_dataset(xsb, name="classic", max_steps=30, curriculum=True)
    assert list(ds["solution_length"]) == [1, 7]
    assert list(ds["task_id"])[0].startswith("sokoban-classic-train-0-")
    assert list(ds["max_steps"]) == [30, 30]
    with pytest.raises(ValueError, match="Level 0 of `levels` is unsolvable"):
        levels_to_dataset(["#####\n#@ $#\n#.  #\n#####"])
    custom = SokobanPreset("mine", (7, 7), 2, 30, 4, 4, min_solution_length=5)
    assert len(make_sokoban_dataset(custom, "test", seed=0)) == 4


def test_compact_prompt_carries_the_same_board_in_fewer_words():
    full = make_sokoban_dataset("small", "train", seed=0)[0]
    compact = make_sokoban_dataset("small", "train", seed=0, prompt_style="compact")[0]
    assert compact["task_id"] == full["task_id"] and compact["level"] == full["level"]  # the same task
    board = full["prompt"][1]["content"].split("\n")[1:7]
    assert compact["prompt"][1]["content"].split("\n")[:6] == board
    for fact in ("<answer>Up || Left</answer>", "X: box", "O: target", "P: player", "At most 20 moves"):
        assert fact in compact["prompt"][0]["content"]
    assert len(compact["prompt"][0]["content"]) < 0.5 * len(full["prompt"][0]["content"])
    with pytest.raises(ValueError, match="prompt_style='terse'"):
        make_sokoban_dataset("small", "train", seed=0, prompt_style="terse")


def test_a_recipe_selects_a_window_of_the_curriculum():
    """skip_train_samples then max_train_samples: the training tasks of a recipe, and the same tasks for its train
    Acc.; the default keeps the split's first tasks, as before the option existed."""
    from skill_sd_trl.envs.arguments import EnvArguments

    split = make_sokoban_dataset("small", "train", seed=0)
    window = EnvArguments(env_args={"preset": "small"}, max_train_samples=16, skip_train_samples=16).train_tasks(split)
    assert list(window["task_id"]) == list(split["task_id"])[16:32]
    assert min(window["solution_length"]) >= max(split.select(range(16))["solution_length"])  # harder or equal
    first = EnvArguments(env_args={"preset": "small"}, max_train_samples=16).train_tasks(split)
    assert list(first["task_id"]) == list(split["task_id"])[:16]
    rest = EnvArguments(env_args={"preset": "small"}, skip_train_samples=60).train_tasks(split)
    assert list(rest["task_id"]) == list(split["task_id"])[60:]  # no max: to the end
    with pytest.raises(ValueError, match=r"skip_train_samples=64 skips the whole training split \(64 tasks\)"):
        EnvArguments(env_args={"preset": "small"}, skip_train_samples=64).train_tasks(split)
    with pytest.raises(ValueError, match=r"skip_train_samples=-1: must be an integer >= 0"):
        EnvArguments(env_args={"preset": "small"}, skip_train_samples=-1)
