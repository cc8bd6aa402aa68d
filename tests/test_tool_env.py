"""The tool-calling path (TRL's environment_factory, Qwen3 chat template) feeds SkillSDTrainer like rollout_func."""

import pytest
import torch

from skill_sd_trl import SkillSDTrainer
from skill_sd_trl.envs.sokoban import make_sokoban_dataset
from skill_sd_trl.envs.sokoban.tools import SokobanToolEnv

from _spies import record_teacher_prompts
from _trainer_utils import config, lora


def test_tool_calls_are_masked_and_teacher_rescores_model_tokens(tiny_model_path, tmp_path):
    ds = make_sokoban_dataset("tiny", "train", seed=0)
    ds = ds.add_column("skill", ["golden_workflow: " + g for g in ds["ground_truth"]])
    tr = SkillSDTrainer(model=tiny_model_path, reward_funcs=[], environment_factory=SokobanToolEnv,
                        args=config(tmp_path, max_completion_length=512, per_device_train_batch_size=2, num_generations=2),
                        train_dataset=ds, peft_config=lora())
    assert [t.__name__ for t in tr.tools] == ["move"]
    tok = tr.processing_class
    row = next(dict(r) for r in ds if r["ground_truth"] == "Right")
    turns = [f'<tool_call>\n{{"name": "move", "arguments": {{"directions": "{row["ground_truth"]}"}}}}\n</tool_call>',
             "Solved."]
    emitted = []

    def scripted(prompt_ids, images, fields, num_generations=1, has_tool_images=False):
        ids = tok(turns[len(emitted)], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        emitted.append(ids)
        return [list(ids) for _ in prompt_ids], None

    tr._generate_single_turn = scripted
    teacher_calls = record_teacher_prompts(tr)
    tr.model.train()
    batch = tr._generate_and_score_completions([dict(row), dict(row)])

    mask, tool_mask = batch["completion_mask"][0].bool(), batch["tool_mask"][0].bool()
    ids = batch["completion_ids"][0]
    assert ids[mask & tool_mask].tolist() == emitted[0] + emitted[1]
    tool_text = tok.decode(ids[mask & ~tool_mask])
    assert "<tool_response>" in tool_text and "puzzle solved" in tool_text
    # the environment owns the reward: -0.1 step + 1 box on target + 10 solved
    assert tr._metrics["train"]["rewards/SokobanToolEnv/mean"][-1] == pytest.approx(10.9)
    # teacher: its prompt (skill in the system message, same tool schema) + the identical completion ids
    (teacher_prompts,) = teacher_calls
    teacher_prompt = tr._tokenize_prompts(teacher_prompts)[0][0]  # rendered with each rollout's environment tools
    assert "move" in tok.decode(teacher_prompt) and row["skill"] in tok.decode(teacher_prompt)
    n = int(mask.sum())
    seq = torch.tensor([list(teacher_prompt) + ids[:n].tolist()])
    with torch.no_grad(), tr.teacher.activated() as model:
        logits = model(input_ids=seq).logits[0].float()
    manual = torch.log_softmax(logits[:-1], -1).gather(1, seq[0, 1:, None])[:, 0][-n:]
    teacher = batch["teacher_per_token_logps"][0][:n]
    model_pos = tool_mask[:n]
    assert torch.allclose(teacher[model_pos], manual[model_pos], atol=1e-4)
    assert (teacher[~model_pos] == 0).all()


class _CounterEnv:
    """A tool environment that owns its data and reward (no dataset prompt needed)."""

    def reset(self, **kwargs):
        self.count = 0
        return "Increment the counter twice."

    def increment(self, by: int) -> str:
        """Increment the counter.

        Args:
            by: how much to add.
        """
        self.count += int(by)
        return str(self.count)

    def get_reward(self) -> float:
        return float(self.count)


class _OtherCounterEnv(_CounterEnv):
    def reset(self, **kwargs):
        self.count = 0
        return "Increment the counter once."


def test_several_environments_with_an_environment_only_dataset(tiny_model_path, tmp_path):
    from datasets import Dataset

    ds = Dataset.from_dict({"environment": ["a", "b", "a", "b"]})  # no prompt column: reset() supplies the task
    tr = SkillSDTrainer(model=tiny_model_path, environment_factory={"a": _CounterEnv, "b": _OtherCounterEnv},
                        args=config(tmp_path, max_completion_length=16, per_device_train_batch_size=2,
                                    num_generations=2, max_steps=2),
                        train_dataset=ds, peft_config=lora())
    tr.train()
    assert tr.state.global_step == 2
    trajectories = tr.pop_finished_trajectories()
    assert len(trajectories) == 4
    # the summarizer's task text is what the student saw: TRL's empty prompt plus the environment's reset text
    assert {t.task.split("] ", 1)[1] for t in trajectories} <= {"Increment the counter twice.",
                                                              "Increment the counter once."}
