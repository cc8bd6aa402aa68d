"""Fails loudly when the private TRL hooks SkillSDTrainer relies on change (trl is pinned to 1.16.*)."""

import inspect

import trl
from trl import GRPOTrainer

# name -> parameter names SkillSDTrainer relies on (in order)
HOOKS = {
    "compute_loss": ["self", "model", "inputs", "return_outputs", "num_items_in_batch"],
    "_compute_loss": ["self", "model", "inputs"],
    "_generate_and_score_completions": ["self", "inputs"],
    "_generate": ["self", "prompts"],
    "_calculate_rewards": ["self", "inputs", "prompts", "completions", "completion_ids_list"],
    "_tokenize_prompts": ["self", "prompts"],
    "_get_per_token_logps_and_entropies": ["self", "model", "input_ids", "attention_mask", "logits_to_keep", "batch_size"],
}


def test_trl_minor_version_is_the_pinned_one():
    assert trl.__version__.startswith("1.16."), (
        f"skill-sd-trl overrides private hooks of trl 1.16; found trl {trl.__version__}. Re-check every hook in "
        "tests/test_trl_contract.py before widening the pin in setup.cfg."
    )


def test_private_hook_signatures_are_unchanged():
    for name, expected in HOOKS.items():
        params = list(inspect.signature(getattr(GRPOTrainer, name)).parameters)
        assert params[: len(expected)] == expected, f"GRPOTrainer.{name} changed: {params}"


def test_compute_loss_scores_the_student_exactly_once_through_the_hook():
    # SkillSDTrainer reuses the student log-probs of the parent's pass by capturing this call.
    source = inspect.getsource(GRPOTrainer._compute_loss)
    assert source.count("self._get_per_token_logps_and_entropies(") == 1
    assert "old_per_token_logps" in source and "current_gradient_accumulation_steps" in source
    assert GRPOTrainer.loss_is_scaled_for_ga is True


def test_batch_keys_and_helpers_we_depend_on_exist():
    source = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    for key in ('"completion_ids"', '"completion_mask"', '"tool_mask"', '"old_per_token_logps"', "num_items_in_batch",
                "self._calculate_rewards(", "self._generate(", "extra_fields"):
        assert key in source, key
    from trl.models.utils import disable_gradient_checkpointing  # noqa: F401
    from trl.trainer.utils import pad, use_adapter  # noqa: F401
