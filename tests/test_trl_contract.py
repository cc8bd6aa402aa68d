"""Pins every entry of ``skill_sd_trl.trl_private.CONTRACT`` (the private TRL surface SkillSDTrainer relies on) against
the installed TRL. A TRL upgrade fails here, in one test whose one message names every changed entry, what changed
and the supported version."""

import inspect

import trl
from packaging.specifiers import SpecifierSet
from trl import GRPOTrainer

from skill_sd_trl import SkillSDTrainer
from skill_sd_trl.trl_private import CONTRACT, SUPPORTED_TRL, Private, changes, resolve


def _upgrade_message(what: str) -> str:
    return (f"trl {trl.__version__}: {what}. skill-sd-trl supports trl{SUPPORTED_TRL} (setup.cfg); adapt "
            "skill_sd_trl/trl_private.py (and the trainer's overrides) before widening the pin.")


def test_the_installed_trl_is_the_supported_one():
    assert trl.__version__ in SpecifierSet(SUPPORTED_TRL), _upgrade_message("outside the supported range")


def test_setup_cfg_pins_the_supported_range():
    from pathlib import Path

    setup = (Path(__file__).resolve().parent.parent / "setup.cfg").read_text(encoding="utf-8")
    assert f"trl{SUPPORTED_TRL}" in setup.replace(" ", "")


def test_every_entry_of_the_private_trl_surface_is_unchanged():
    changed = [f"{e.name} ({e.why}): {'; '.join(problems)}" for e in CONTRACT if (problems := changes(e))]
    assert not changed, _upgrade_message("changed " + " | ".join(changed))
    assert len(CONTRACT) >= 30  # the table was read whole, not skipped


def test_every_parent_method_the_trainer_overrides_is_in_the_table():
    overridden = {name for name, value in vars(SkillSDTrainer).items()
                  if inspect.isfunction(value) and hasattr(GRPOTrainer, name)}
    listed = {e.word for e in CONTRACT if e.use == "override" and e.name.startswith("trl.GRPOTrainer.")}
    assert overridden <= listed, f"overrides missing from trl_private.CONTRACT: {sorted(overridden - listed)}"
    # ... and every override the table names is still one (no stale entries)
    assert listed <= overridden


def test_the_table_catches_a_changed_signature_a_lost_key_and_a_lost_call():
    renamed = Private("trl.GRPOTrainer._generate_single_turn", "call", "probe",
                      params=("self", "prompt_ids", "images", "multimodal_fields", "n"), accepts=("num_samples",))
    assert changes(renamed) == [
        ("parameters are ['self', 'prompt_ids', 'images', 'multimodal_fields', 'num_generations', 'has_tool_images'], "
         "expected ['self', 'prompt_ids', 'images', 'multimodal_fields', 'n']"),
        "no parameter 'num_samples'",
    ]
    lost = Private("trl.GRPOTrainer._compute_loss", "call", "probe", contains=('inputs["teacher_logps"]',),
                   once=("self._generate(",))
    assert changes(lost) == [
        "trl.GRPOTrainer._compute_loss no longer contains 'inputs[\"teacher_logps\"]'",
        "trl.GRPOTrainer._compute_loss contains 'self._generate(' 0 times, expected once",
    ]
    assert changes(Private("trl.GRPOTrainer._gone", "call", "probe", params=("self",))) == [
        "trl.GRPOTrainer._gone is gone"]
    assert changes(Private("trl.GRPOTrainer.loss_is_scaled_for_ga", "read", "probe", value=False)) == [
        "trl.GRPOTrainer.loss_is_scaled_for_ga is True, expected False"]


def test_the_entries_the_method_depends_on_most_are_pinned():
    """The facts issue 25 names, so that trimming the table cannot drop them silently."""
    by_name = {e.name: e for e in CONTRACT}
    assert "num_generations" in by_name["trl.GRPOTrainer._generate_single_turn"].accepts
    assert by_name["trl.GRPOTrainer._compute_loss"].once == ("self._get_per_token_logps_and_entropies(",)
    assert by_name["trl.GRPOTrainer.loss_is_scaled_for_ga"].value is True
    assert by_name["trl.trainer.utils.add_fused_lm_head"].params[:3] == ("model", "temperature", "cast_lm_head_to_fp32")
    keys = " ".join(by_name["trl.GRPOTrainer._generate_and_score_completions"].contains)
    for key in ("prompt_ids", "completion_ids", "completion_mask", "tool_mask", "old_per_token_logps",
                "num_items_in_batch"):
        assert f'"{key}"' in keys, key
    assert resolve("trl.GRPOTrainer") is GRPOTrainer


def test_the_entries_the_sdl_reductions_and_the_dense_estimator_rely_on_are_pinned():
    """Issue 26: what the sequence normalizer and the dense estimator's logits pass assume of TRL."""
    by_name = {e.name: e for e in CONTRACT}
    loss = " ".join(by_name["trl.GRPOTrainer._compute_loss"].contains)
    for fact in ("torch.cat([prompt_ids, completion_ids], dim=1)", "logits_to_keep = completion_ids.size(1)",
                 "compute_entropy=True", "apply_coef * entropy_loss"):
        assert fact in loss, fact
    init = " ".join(by_name["trl.GRPOTrainer.__init__"].contains)
    assert "temperature=self.temperature" in init and "self._entropy_bonus_enabled = " in init
    head = by_name["trl.trainer.utils.add_fused_lm_head"].contains
    assert "return original_forward(*args, **kwargs)" in head and ".masked_fill(~mask, 0)" in head
    assert by_name["trl.trainer.utils.split_tensor_dict"].contains == ("chunk_size = first_tensor.shape[0] // num_chunks",)
