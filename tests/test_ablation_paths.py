"""Off-policy rollouts and skill-augmented GRPO with an environment whose reset() extends the prompt.

The student must train on the plain task *with* the reset text, the teacher must be scored under exactly the prompt
it sampled under (so its log-probs are the sampler's), and the summarizer must see the plain task, never a skill.
"""

import torch

from skill_sd_trl import SkillSDTrainer
from skill_sd_trl.envs.base import EpisodeScore, StepResult, TextEnv
from skill_sd_trl.rollout.multi_turn import MultiTurnRollout, RolloutLimits
from skill_sd_trl.rewards import env_reward

from _spies import record_teacher_prompts
from _trainer_utils import config, first_batch, lora, toy_dataset

RESET_TEXT = "\nBoard: #@.$# (reset text)"


class ResetTextEnv(TextEnv):
    """One turn; reset appends a board to the task, reward is the length of the answer mod 3."""

    name = "resettext"

    def reset(self, example):
        self.turns = 0
        return RESET_TEXT

    def step(self, action):
        self.turns += 1
        return StepResult(observation="ok", reward=float(len(action) % 3), done=True, stop_reason="done")

    def score(self):
        return EpisodeScore(success=False, completion=0.0)


def _trainer(model_path, tmp_path, **overrides):
    return SkillSDTrainer(
        model=model_path, reward_funcs=env_reward, args=config(tmp_path, max_completion_length=8, **overrides),
        train_dataset=toy_dataset(skills="all"), peft_config=lora(),
        rollout_func=MultiTurnRollout(ResetTextEnv, RolloutLimits(max_turns=1, max_new_tokens_per_turn=6)),
    )


def _plain_with_reset(row_or_prompt):
    prompt = row_or_prompt["prompt"] if isinstance(row_or_prompt, dict) else row_or_prompt
    return [*prompt[:-1], {**prompt[-1], "content": prompt[-1]["content"] + RESET_TEXT}]


def _logps_under(tr, prompts, batch, adapter_ctx):
    out = []
    ids = tr._tokenize_prompts(prompts)[0]
    for i, prompt_ids in enumerate(ids):
        n = int(batch["completion_mask"][i].sum())
        completion = batch["completion_ids"][i, :n].tolist()
        seq = torch.tensor([list(prompt_ids) + completion])
        with torch.no_grad(), adapter_ctx() as model:
            logits = model(input_ids=seq).logits[0].float() / tr.args.temperature
        out.append(torch.log_softmax(logits[:-1], -1).gather(1, seq[0, 1:, None])[:, 0][-n:])
    return out


def _acting_teacher_batch(tiny_model_path, tmp_path, **config):
    """One generation batch sampled by a teacher whose weights differ from the student's (rollout_policy='teacher'):
    the trainer, the batch's rows, its output and the prompts the teacher was scored under."""
    tr = _trainer(tiny_model_path, tmp_path, rollout_policy="teacher", **config)
    with torch.no_grad():  # a teacher distinct from the student
        for n, p in tr.model.named_parameters():
            if ".teacher." in n and "lora_B" in n:
                p.add_(0.3 * torch.randn_like(p))
    teacher_calls = record_teacher_prompts(tr)
    rows = first_batch(tr)
    tr.model.train()
    return tr, rows, tr._generate_and_score_completions([dict(r) for r in rows]), teacher_calls


def test_off_policy_student_and_teacher_use_the_reset_extended_prompts(tiny_model_path, tmp_path):
    tr, rows, batch, teacher_calls = _acting_teacher_batch(tiny_model_path, tmp_path)

    # the student trains on plain task + reset text: no skill, nothing missing
    student = [ids[m.bool()].tolist() for ids, m in zip(batch["prompt_ids"], batch["prompt_mask"])]
    assert student == tr._tokenize_prompts([_plain_with_reset(r) for r in rows])[0]
    # the teacher is scored under exactly what it sampled under: skill rendered in, reset text appended
    (teacher_prompts,) = teacher_calls
    assert teacher_prompts == [_plain_with_reset(tr._render(r["prompt"], r["skill"])) for r in rows]
    # ... so the stored sampler log-probs are the teacher's log-probs of those tokens under that prompt
    expected = _logps_under(tr, teacher_prompts, batch, tr.teacher.activated)
    for i, logps in enumerate(expected):
        n = logps.numel()
        assert torch.allclose(batch["old_per_token_logps"][i, :n], logps, atol=1e-4), i
    # the summarizer sees the plain task with its reset text, never the skill
    for traj in tr.pop_finished_trajectories():
        assert "reset text" in traj.task and "golden_workflow" not in traj.task and "<skill>" not in traj.task


def test_frozen_teacher_generates_the_off_policy_rollouts(tiny_model_path, tmp_path):
    tr = _trainer(tiny_model_path, tmp_path, rollout_policy="teacher", teacher_sync_mode="frozen")
    generating = []
    generate = tr.model.generate

    def spy(*args, **kwargs):
        generating.append(tr.model.active_adapter)
        return generate(*args, **kwargs)

    tr.model.generate = spy
    initial = {n: p.detach().clone() for n, p in tr.model.named_parameters() if ".teacher." in n}
    tr.train()
    assert tr.state.global_step == 2
    assert generating and set(generating) == {"teacher"}  # never the student adapter
    assert tr.model.active_adapter == "default"
    for n, p in tr.model.named_parameters():
        if ".teacher." in n:
            assert torch.equal(p, initial[n])  # frozen: the initial student, whatever the student learned


def test_skill_augmented_grpo_summaries_see_the_plain_task(tiny_model_path, tmp_path):
    tr = _trainer(tiny_model_path, tmp_path, sdl_coef=0.0, skills_in_student_prompt=True)
    rows = first_batch(tr)
    tr.model.train()
    batch = tr._generate_and_score_completions([dict(r) for r in rows])
    text = tr.processing_class.decode(batch["prompt_ids"][0][batch["prompt_mask"][0].bool()])
    assert rows[0]["skill"] in text and "reset text" in text  # the baseline's student sees the skill
    trajectories = tr.pop_finished_trajectories()
    assert len(trajectories) == 4
    for traj in trajectories:
        assert traj.task.endswith(RESET_TEXT) and "golden_workflow" not in traj.task


def test_the_acting_teacher_is_scored_under_the_very_prompt_it_sampled_under(tiny_model_path, tmp_path, monkeypatch):
    """With the skill after the task (user_suffix) and reset text appended after it, the sampled prompt is
    task ⊕ skill ⊕ reset; re-rendering the student's prompt (task ⊕ reset) would give task ⊕ reset ⊕ skill, other
    token ids, and sampler log-probs that are not the sampler's."""
    from skill_sd_trl.rollout.multi_turn import TrainerBackend

    sampled = []  # the prompt ids each episode was sampled under, as the rollout tokenized them
    tokenize = TrainerBackend.tokenize_prompt

    def spy(backend, prompt):
        sampled.append(tokenize(backend, prompt))
        return sampled[-1]

    monkeypatch.setattr(TrainerBackend, "tokenize_prompt", spy)
    tr, rows, batch, teacher_calls = _acting_teacher_batch(tiny_model_path, tmp_path,
                                                           teacher_skill_position="user_suffix")

    (teacher_prompts,) = teacher_calls
    assert [list(ids) for ids in tr._tokenize_prompts(teacher_prompts)[0]] == sampled
    user = teacher_prompts[0][-1]["content"]
    assert user.index(rows[0]["skill"]) < user.index(RESET_TEXT)  # task ⊕ skill ⊕ reset, as sampled
    rerendered = [tr._render(_plain_with_reset(r), r["skill"]) for r in rows]  # what must not be scored
    assert all(list(ids) != s for ids, s in zip(tr._tokenize_prompts(rerendered)[0], sampled))
    # the stored sampler log-probs are the teacher's under the sampled ids, not under the re-rendered prompt
    as_sampled = _logps_under(tr, teacher_prompts, batch, tr.teacher.activated)
    as_rerendered = _logps_under(tr, rerendered, batch, tr.teacher.activated)
    for i, (under_sampled, under_rerendered) in enumerate(zip(as_sampled, as_rerendered)):
        n = under_sampled.numel()
        assert torch.allclose(batch["old_per_token_logps"][i, :n], under_sampled, atol=1e-4), i
        assert not torch.allclose(under_sampled, under_rerendered, atol=1e-3), i
