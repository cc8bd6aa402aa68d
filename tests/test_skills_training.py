"""End to end: the summarizer callback turns episodes into skills that condition the teacher in later steps;
the bank (with UCB statistics) is checkpointed and restored exactly on resume."""

import json
import math

from skill_sd_trl import SkillSDTrainer
from skill_sd_trl.envs.sokoban import SokobanEnv, make_sokoban_dataset
from skill_sd_trl.rewards import env_reward
from skill_sd_trl.rollout.multi_turn import MultiTurnRollout, RolloutLimits
from skill_sd_trl.skills.bank import SkillBank
from skill_sd_trl.skills.callback import SkillSummarizerCallback
from skill_sd_trl.skills.summarizers import ExperienceSummarizer

from _trainer_utils import config, lora


def _trainer(model_path, out, bank, **overrides):
    ds = make_sokoban_dataset("tiny", "train", seed=0).select([0])  # one task: its skill is reused every step
    tr = SkillSDTrainer(
        model=model_path, reward_funcs=env_reward, train_dataset=ds, peft_config=lora(), skill_provider=bank,
        args=config(out, max_completion_length=128, **overrides),
        rollout_func=MultiTurnRollout(SokobanEnv, RolloutLimits(max_turns=2, max_new_tokens_per_turn=6)),
    )
    # waiting for each step's skills makes the asynchronous summarizer deterministic
    callback = SkillSummarizerCallback(tr, ExperienceSummarizer(), bank, wait_for_skills=30)
    tr.add_callback(callback)
    return tr, callback


def test_skills_from_the_callback_condition_the_teacher_in_later_steps(tiny_model_path, tmp_path):
    bank = SkillBank(capacity_per_task=16)  # room for every per-trajectory skill of the run: no eviction
    tr, callback = _trainer(tiny_model_path, tmp_path, bank, max_steps=3)
    tr.train()
    logs = [h for h in tr.state.log_history if "skills/coverage" in h]
    assert [h["skills/coverage"] for h in logs] == [0.0, 1.0, 1.0]  # empty bank first, then the new skill
    assert "self_distillation/sdl" not in logs[0]  # no skill: no teacher signal, the step is plain GRPO
    assert logs[1]["self_distillation/sdl"] > 0.0  # the skill changes what the teacher predicts
    assert logs[-1]["skills/added"] >= 1 and logs[-1]["skills/parse_failures"] == 0
    task = tr.train_dataset[0]["task_id"]
    # rewards of the 2 × 4 rollouts in which a skill conditioned the teacher flowed back into the UCB statistics
    assert sum(e.reward_count for e in bank.entries(task)) == 8
    assert sum(e.selections for e in bank.entries(task)) == 2


def test_bank_is_checkpointed_and_restored_exactly_on_resume(tiny_model_path, tmp_path):
    bank = SkillBank()
    tr, _ = _trainer(tiny_model_path, tmp_path / "a", bank, max_steps=2, save_strategy="steps", save_steps=2)
    tr.train()
    ckpt = tmp_path / "a" / "checkpoint-2"
    saved = json.loads((ckpt / "skill_bank.json").read_text())
    assert SkillBank.from_dict(saved) == bank  # the checkpoint holds the bank as it was at step 2
    assert len(bank) >= 1

    fresh = SkillBank()
    resumed, _ = _trainer(tiny_model_path, tmp_path / "b", fresh, max_steps=2)
    resumed.train(resume_from_checkpoint=str(ckpt))
    assert fresh == SkillBank.from_dict(saved)  # UCB counts included
    assert math.isfinite(resumed.state.log_history[-1].get("train_loss", 0.0))
