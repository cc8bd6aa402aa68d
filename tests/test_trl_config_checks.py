"""GRPOConfig's counts that TRL divides by or batches with: a value below 1 (below 2 for num_generations) fails in
SkillSDConfig with one line naming the field and the fix, before TRL's own checks (a ZeroDivisionError there, or an
error at the first batch inside torch's sampler, or, for num_iterations, a run of 0 steps)."""

import pytest
from trl import GRPOConfig

from skill_sd_trl import SkillSDConfig

BASE = {"output_dir": "unused", "use_cpu": True, "bf16": False, "report_to": [], "per_device_train_batch_size": 4,
        "num_generations": 4}

CASES = {  # field: (value, the whole message)
    "num_generations": (0, (
        "num_generations must be >= 2 (group-relative advantages compare each completion with the rest of its group; "
        "TRL's rule), got 0; set --num_generations 2 or more, e.g. 8.")),
    "per_device_train_batch_size": (0, (
        "per_device_train_batch_size must be >= 1, got 0; set it to a multiple of num_generations, e.g. "
        "--per_device_train_batch_size 8.")),
    "per_device_eval_batch_size": (0, (
        "per_device_eval_batch_size must be >= 1, got 0; set it to a multiple of num_generations, e.g. "
        "--per_device_eval_batch_size 8.")),
    "gradient_accumulation_steps": (0, "gradient_accumulation_steps must be >= 1, got 0; use 1 for no accumulation."),
    "steps_per_generation": (0, (
        "steps_per_generation must be >= 1, got 0; use 1 or more, or leave it unset (it then follows "
        "gradient_accumulation_steps).")),
    "generation_batch_size": (-8, (
        "generation_batch_size must be >= 1, got -8; use a multiple of num_generations, or leave it unset (derived "
        "from the batch size).")),
    "num_iterations": (0, "num_iterations must be >= 1, got 0; use 1 (each generation batch trained on once) or more."),
}


@pytest.mark.parametrize("name", CASES)
def test_a_count_below_its_minimum_names_the_field_and_the_fix(name):
    value, message = CASES[name]
    with pytest.raises(ValueError) as caught:
        SkillSDConfig(**{**BASE, name: value})
    assert str(caught.value) == message and "\n" not in message


def test_num_generations_one_is_refused_with_the_same_message_as_zero():
    with pytest.raises(ValueError, match=r"^num_generations must be >= 2 .* got 1; set --num_generations 2 or more"):
        SkillSDConfig(**{**BASE, "num_generations": 1})


def test_trl_alone_would_have_divided_by_zero():
    # the reason for checking first: GRPOConfig's own __post_init__ divides by num_generations
    with pytest.raises(ZeroDivisionError):
        GRPOConfig(**{**BASE, "num_generations": 0})


@pytest.mark.parametrize("name", ["steps_per_generation", "num_iterations", "gradient_accumulation_steps"])
def test_a_plain_grpo_config_that_trl_let_through_is_refused_on_upgrade(name):
    grpo = GRPOConfig(**{**BASE, name: 0})  # TRL accepts it, and fails (or trains 0 steps) later
    with pytest.raises(ValueError, match=rf"^{name} must be >= 1, got 0; "):
        SkillSDConfig.from_grpo_config(grpo)


def test_valid_counts_pass_and_derive_as_in_trl():
    args = SkillSDConfig(**{**BASE, "num_generations": 2, "steps_per_generation": 2, "num_iterations": 1})
    assert (args.generation_batch_size, args.steps_per_generation) == (8, 2)
