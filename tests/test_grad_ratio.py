"""bench/grad_ratio.py: the SDL-to-GRPO gradient-norm ratio per variant, with a bank prefilled from reference
episodes so that the teacher scores from step 1."""

from __future__ import annotations

import json
import math
from pathlib import Path

from _bench import load_bench

ROOT = Path(__file__).resolve().parent.parent


def _bench():
    return load_bench("grad_ratio")


def test_prefilled_bank_holds_a_solved_skill_per_training_task(tmp_path):
    from skill_sd_trl.skills.bank import SkillBank

    recipe = ["--config", str(ROOT / "recipes" / "sokoban" / "skill_sd_cpu.yaml"), "--tiny_model", "true",
              "--env_args", "preset=tiny", "--max_train_samples", "3", "--output_dir", str(tmp_path / "run")]
    path = tmp_path / "bank.json"
    _bench().prefilled_bank(recipe, "<answer>{ground_truth}</answer>", path)
    bank = SkillBank.load(path)
    assert len(bank.tasks()) == 3
    for task in bank.tasks():
        (skill,) = bank.skills(task)
        assert "solved the task" in skill.to_text()  # the summarizer saw the reference answer succeed


def test_ratios_of_two_variants_on_the_same_first_batch(tmp_path, tiny_model_path):
    out = tmp_path / "ratios.json"
    _bench().main(["--config", str(ROOT / "recipes" / "sokoban" / "skill_sd_cpu.yaml"), "--bank", "prefill",
                   "--answer", "<answer>{ground_truth}</answer>", "--steps", "1",
                   "--variants", "token_mean:rho_k3,sequence_sum:rho_k3", "--json", str(out),
                   "--model_name_or_path", tiny_model_path, "--env_args", "preset=tiny", "--max_train_samples", "2",
                   "--max_turns", "1", "--max_new_tokens_per_turn", "8", "--sdl_coef", "0.1"])
    results = json.loads(out.read_text())["results"]
    token, sequence = results["token_mean:rho_k3"], results["sequence_sum:rho_k3"]
    for r in (token, sequence):
        assert r["steps_measured"] == 1 and r["skills/coverage"] == 1.0
        assert math.isfinite(r["self_distillation/grad_norm_ratio"]) and r["self_distillation/grad_norm_ratio"] > 0
    # the same batch and the same GRPO gradient; the sequence sum weighs the SDL by the tokens per trajectory
    assert sequence["self_distillation/grpo_grad_norm"] == token["self_distillation/grpo_grad_norm"]
    assert sequence["self_distillation/grad_norm_ratio"] > token["self_distillation/grad_norm_ratio"]
