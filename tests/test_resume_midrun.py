"""Resume in the middle of a run: a fresh trainer + skill bank + summarizer callback restored from checkpoint-3 of a
5-step run holds exactly the saved state before its first step, then trains steps 4 and 5 on top of it.

The wiring (Sokoban, MultiTurnRollout, SkillBank, SkillSummarizerCallback with ExperienceSummarizer, a flush after
every step) is the one of tests/test_skills_training.py. Checkpoint file names come from the modules' constants, and
the teacher's saved weights are also captured in memory at save time, so the test does not depend on the format.
"""

import json
import math
from pathlib import Path

import torch
from transformers import TrainerCallback

import skill_sd_trl.method.trainer as trainer_module
from skill_sd_trl import SkillSDTrainer
from skill_sd_trl.envs.sokoban import SokobanEnv, make_sokoban_dataset
from skill_sd_trl.rewards import env_reward
from skill_sd_trl.rollout.multi_turn import MultiTurnRollout, RolloutLimits
from skill_sd_trl.skills import callback as callback_module
from skill_sd_trl.skills.bank import SkillBank
from skill_sd_trl.skills.callback import SkillSummarizerCallback
from skill_sd_trl.skills.summarizers import ExperienceSummarizer

from _trainer_utils import config, lora

# Step 1 runs with an empty bank (teacher == student, so L_SDL = 0) and the tiny model's Sokoban rewards usually
# have no spread, so step 1 may leave the weights unchanged. Resuming at step 3 makes sure that the saved teacher
# (synced before step 3) differs from the initial one, so that restoring it is observable.
MAX_STEPS = 5
RESUME_AT = 3


def _adapter(model, name):
    return {n: p.detach().clone() for n, p in model.named_parameters() if f".{name}." in n}


def _student_as_teacher(tr):
    """The trained ("default") adapter under the teacher's parameter names."""
    teacher_tag = f".{tr.teacher.adapter_name}."
    return {n.replace(".default.", teacher_tag): v for n, v in _adapter(tr.model, "default").items()}


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _load_tensors(path):
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


class Probe(TrainerCallback):
    """Snapshots of the trainer's extra state at train begin, at every step end and at every save."""

    def __init__(self, tr, bank, summarizer):
        self.tr, self.bank, self.summarizer = tr, bank, summarizer
        self.begin = None
        self.steps = []
        self.saves = {}

    def _snapshot(self, state):
        teacher = self.tr.teacher
        return {
            "global_step": state.global_step,
            "bank": self.bank.to_dict(),
            "teacher": teacher.state_dict(),
            "sync_count": teacher.sync_count,
            "last_sync_step": teacher.last_sync_step,
            "student": _student_as_teacher(self.tr),
            "summarizer": self.summarizer.state_dict(),
        }

    def on_train_begin(self, args, state, control, **kwargs):
        self.begin = self._snapshot(state)

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(self._snapshot(state))

    def on_save(self, args, state, control, **kwargs):
        self.saves[state.global_step] = self._snapshot(state)


def _run(model_path, out, **overrides):
    # room for every skill of the run: no eviction, so every selection stays visible in the statistics
    bank, summarizer = SkillBank(capacity_per_task=64), ExperienceSummarizer()
    ds = make_sokoban_dataset("tiny", "train", seed=0).select([0])  # one task: its skills are reused every step
    tr = SkillSDTrainer(
        model=model_path, reward_funcs=env_reward, train_dataset=ds, peft_config=lora(), skill_provider=bank,
        args=config(out, max_completion_length=128, max_steps=MAX_STEPS, **overrides),
        rollout_func=MultiTurnRollout(SokobanEnv, RolloutLimits(max_turns=2, max_new_tokens_per_turn=6)),
    )
    # waiting for each step's skills makes the asynchronous summarizer deterministic
    summarizer_callback = SkillSummarizerCallback(tr, summarizer, bank, wait_for_skills=30)
    probe = Probe(tr, bank, summarizer)
    for cb in (summarizer_callback, probe):
        tr.add_callback(cb)
    return tr, bank, probe


def _selections(bank_dict):
    return {e["skill"]["skill_id"]: e["selections"] for t in bank_dict["tasks"].values() for e in t["entries"]}


def _reward_count(bank_dict):
    return sum(e["reward_count"] for t in bank_dict["tasks"].values() for e in t["entries"])


def test_resume_from_an_intermediate_checkpoint_restores_then_keeps_training(tiny_model_path, tmp_path):
    first, _, probe_a = _run(tiny_model_path, tmp_path / "a", save_strategy="steps", save_steps=RESUME_AT)
    first.train()
    assert first.state.global_step == MAX_STEPS
    ckpt = tmp_path / "a" / f"checkpoint-{RESUME_AT}"
    saved = probe_a.saves[RESUME_AT]
    saved_bank = json.loads((ckpt / callback_module.BANK_FILE).read_text())
    assert saved_bank == saved["bank"]  # the file holds the bank as it was when the step was saved
    assert len(SkillBank.from_dict(saved_bank)) >= 1 and sum(_selections(saved_bank).values()) >= 1
    assert _equal(_load_tensors(ckpt / trainer_module.TEACHER_STATE_FILE), saved["teacher"])
    assert saved["sync_count"] == RESUME_AT and saved["last_sync_step"] == RESUME_AT - 1
    # the checkpoint's teacher (synced before its step) is not its student (after it): the sync check below bites
    assert not _equal(saved["teacher"], saved["student"])
    # and the run went on past the checkpoint: the end state differs from it
    assert probe_a.steps[-1]["bank"] != saved_bank

    resumed, bank, probe = _run(tiny_model_path, tmp_path / "b", save_strategy="no")
    assert not _equal(resumed.teacher.state_dict(), saved["teacher"])  # a fresh teacher: restoring it is observable
    resumed.train(resume_from_checkpoint=str(ckpt))

    # -- restored, before the first resumed step -------------------------------------------------------------
    begin = probe.begin
    assert begin["global_step"] == RESUME_AT
    assert begin["bank"] == saved_bank  # skills, UCB statistics and counters, exactly
    assert _selections(begin["bank"]) == _selections(saved_bank)
    assert _equal(begin["teacher"], saved["teacher"])
    assert (begin["sync_count"], begin["last_sync_step"]) == (saved["sync_count"], saved["last_sync_step"])
    assert _equal(begin["student"], saved["student"])
    summarizer_file = ckpt / callback_module.SUMMARIZER_STATE_FILE
    assert begin["summarizer"] == json.loads(summarizer_file.read_text()) == saved["summarizer"]

    # -- then training continues for the remaining steps ------------------------------------------------------
    assert resumed.state.global_step == MAX_STEPS
    assert [s["global_step"] for s in probe.steps] == list(range(RESUME_AT + 1, MAX_STEPS + 1))
    logs = [h for h in resumed.state.log_history if "skills/coverage" in h]  # early ones: from the checkpoint
    assert [h["step"] for h in logs] == list(range(1, MAX_STEPS + 1))
    logs = logs[RESUME_AT:]
    assert all(h["skills/coverage"] == 1.0 for h in logs)  # the restored skills condition the teacher
    assert all(math.isfinite(h["self_distillation/sdl"]) for h in logs)
    assert "train_loss" in resumed.state.log_history[-1]
    assert math.isfinite(resumed.state.log_history[-1]["train_loss"])

    # the teacher syncs after resume: before the first resumed step it became the restored student, then once a step
    after_first = probe.steps[0]
    assert _equal(after_first["teacher"], saved["student"])
    assert (after_first["sync_count"], after_first["last_sync_step"]) == (RESUME_AT + 1, RESUME_AT)
    assert (resumed.teacher.sync_count, resumed.teacher.last_sync_step) == (MAX_STEPS, MAX_STEPS - 1)

    # UCB statistics keep counting up from the restored values: one selection and 4 rollouts per resumed step
    end = bank.to_dict()
    restored, final = _selections(saved_bank), _selections(end)
    assert set(restored) <= set(final) and all(final[skill_id] >= n for skill_id, n in restored.items())
    resumed_steps = MAX_STEPS - RESUME_AT
    assert sum(final.values()) == sum(restored.values()) + resumed_steps
    assert end["counters"]["evicted"] == 0
    assert end["counters"]["selections"] == saved_bank["counters"]["selections"] + resumed_steps
    assert _reward_count(end) == _reward_count(saved_bank) + resumed_steps * resumed.args.num_generations
