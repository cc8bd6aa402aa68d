"""bench/recipe_overhead.py at tiny scale: its arms, its glue and the JSON it writes (numbers here are no measurement)."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import fields
from pathlib import Path

import pytest
from _bench import load_bench

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "sokoban" / "skill_sd_cpu.yaml"
#: The recipe at its smallest: tiny random model, tiny levels, 2 tasks, 2 groups of 2, short episodes.
TINY = ["--config", str(RECIPE), "--tiny_model", "true", "--env_args", "preset=tiny", "--max_train_samples", "2",
        "--per_device_train_batch_size", "4", "--num_generations", "2", "--max_turns", "2",
        "--max_new_tokens_per_turn", "8"]


def _bench():
    return load_bench("recipe_overhead")


def _check_report(result: dict, arms: list[str], steps: int, warmup: int) -> None:
    runs, summary = result["runs"], result["summary"]
    assert [r["arm"] for r in runs] == arms and list(summary) == arms
    for run in runs:
        assert len(run["steps"]) == warmup + steps
        assert [row["warmup"] for row in run["steps"]] == [True] * warmup + [False] * steps
        for row in run["steps"]:
            assert math.isfinite(row["step_time"]) and row["step_time"] > 0
            assert row["wall"] >= row["step_time"] * 0.5 and row["sampled_tokens"] > 0
            assert row["completions"] == 4  # one generation batch per step: 2 tasks x 2 rollouts
            assert row["parts"]["sampling (all turns)"] > 0
        assert run["peak_bytes"] > 0 and run["train_peak_bytes"] >= 0 and run["memory_method"]
    grpo, skill_sd = summary["grpo_trainer"], summary["skill_sd"]
    assert grpo["measured_steps"] == skill_sd["measured_steps"] == steps
    for row in (grpo, skill_sd):
        assert math.isfinite(row["step_time_median"]) and row["step_time_median"] > 0
        assert row["peak_mib_median"] > 0 and row["seconds_per_sampled_token"] > 0
    measured = {arm: [s["step_time"] for s in run["steps"][warmup:]] for arm, run in zip(arms, runs)}
    assert skill_sd["step_time_median"] == statistics.median(measured["skill_sd"])
    assert skill_sd["time_ratio"] == pytest.approx(statistics.median(measured["skill_sd"])
                                                   / statistics.median(measured["grpo_trainer"]))
    assert skill_sd["paired_time_ratios"] == [pytest.approx(skill_sd["time_ratio"])]  # one repeat: the same ratio
    assert skill_sd["memory_ratio"] == pytest.approx(skill_sd["peak_mib_median"] / grpo["peak_mib_median"])
    # the same seed at train start: both arms sample the same episodes at step 1 (the teacher's gradient is tiny)
    assert skill_sd["rollouts_differ_from_step"][0] is None or skill_sd["rollouts_differ_from_step"][0] > 1
    assert not grpo["has_teacher"] and skill_sd["has_teacher"]
    assert skill_sd["teacher_steps"] == steps  # prefilled skills: the teacher scores every step
    assert grpo["breakdown_mean"]["teacher scoring"] == 0 < skill_sd["breakdown_mean"]["teacher scoring"]
    machine = result["meta"]["machine"]
    assert machine["cpu"] and machine["cpu_capability"] and machine["cores"] >= 1


def test_recipe_overhead_smoke_in_process(tmp_path, monkeypatch, capsys):
    """Both arms built from the Sokoban CPU recipe, trained 1 + 2 steps in this process; the JSON and the table."""
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    out = tmp_path / "overhead.json"
    assert _bench().main(["--steps", "2", "--warmup", "1", "--repeats", "1", "--in_process", "--json", str(out),
                          *TINY]) == 0
    result = json.loads(out.read_text())
    _check_report(result, ["grpo_trainer", "skill_sd"], steps=2, warmup=1)
    assert result["runs"][0]["trainer"] == "RowBoundGRPOTrainer" and result["runs"][1]["trainer"] == "SkillSDTrainer"
    printed = capsys.readouterr().out
    assert "| TRL GRPOTrainer |" in printed and "| Skill-SD (recipe's λ) |" in printed and "Machine:" in printed


@pytest.mark.slow
def test_recipe_overhead_smoke_subprocesses(tmp_path):
    """The real path: one fresh interpreter per run, the three arms."""
    out = tmp_path / "overhead.json"
    arms = ["grpo_trainer", "skill_sd", "skill_sd_lambda0"]
    assert _bench().main(["--steps", "2", "--warmup", "1", "--repeats", "1", "--arms", ",".join(arms),
                          "--json", str(out), *TINY]) == 0
    result = json.loads(out.read_text())
    _check_report(result, arms, steps=2, warmup=1)
    assert not result["summary"]["skill_sd_lambda0"]["has_teacher"]
    assert result["summary"]["skill_sd_lambda0"]["rollouts_differ_from_step"] == [None]  # λ = 0: GRPO's episodes


def test_the_grpo_arm_is_trls_trainer_with_only_the_row_binding():
    from trl import GRPOConfig, GRPOTrainer

    bench = _bench()
    cls = bench.row_bound_grpo_trainer()
    assert cls.__bases__ == (GRPOTrainer,)
    assert {name for name in vars(cls) if not name.startswith("__")} == {"_generate_and_score_completions"}

    from skill_sd_trl.cli import parse_train_args

    _, args, _, _ = parse_train_args([*TINY, "--output_dir", "unused"])
    config = bench.grpo_config(args)
    assert type(config) is GRPOConfig
    for f in fields(GRPOConfig):
        assert getattr(config, f.name) == getattr(args, f.name), f.name
    assert not hasattr(config, "sdl_coef") and config.generation_batch_size == args.generation_batch_size


def test_tokens_are_spread_over_the_steps_a_generation_batch_feeds():
    from types import SimpleNamespace

    bench = _bench()
    gens = [{"step": 0, "completions": 8, "prompt_tokens": 80, "completion_tokens": 40, "sampled_tokens": 20},
            {"step": 2, "completions": 8, "prompt_tokens": 80, "completion_tokens": 60, "sampled_tokens": 40}]
    one = SimpleNamespace(steps_per_generation=1, num_iterations=1, gradient_accumulation_steps=1)
    two = SimpleNamespace(steps_per_generation=2, num_iterations=1, gradient_accumulation_steps=1)
    assert [r["sampled_tokens"] for r in bench.tokens_per_step(gens, 3, one)] == [20, 0, 40]
    assert [r["sampled_tokens"] for r in bench.tokens_per_step(gens, 4, two)] == [10, 10, 20, 20]
