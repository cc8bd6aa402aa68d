"""What can be checked of the vLLM path without a GPU: per-turn length caps reach TRL's vLLM generator and are
restored, sampler log-probs flow through multi-turn rollouts, and unsupported combinations fail at config time."""

from types import SimpleNamespace

import pytest

from skill_sd_trl import SkillSDConfig
from skill_sd_trl.envs.base import EpisodeScore, StepResult, TextEnv
from skill_sd_trl.rollout.multi_turn import MultiTurnRollout, RolloutLimits, TrainerBackend


class EchoEnv(TextEnv):
    name = "echo"

    def reset(self, example):
        self.turns = 0

    def step(self, action):
        self.turns += 1
        return StepResult(observation=f"obs {self.turns}", reward=1.0, done=self.turns == 2, stop_reason="done")

    def score(self):
        return EpisodeScore(success=True, completion=1.0)


class FakeVLLMTrainer:
    """Stands in for a GRPOTrainer with use_vllm=True: records the generation caps in force at each call."""

    use_vllm = True
    eos_token_ids = [2]
    max_completion_length = 64
    chat_template = None
    chat_template_kwargs = {}

    def __init__(self, tokenizer):
        self.processing_class = tokenizer
        self.generation_config = SimpleNamespace(max_new_tokens=64)
        self.vllm_generation = SimpleNamespace(max_completion_length=64)
        self.args = SimpleNamespace(task_id_column="task_id")
        self.model = SimpleNamespace(training=True)
        self.seen_caps = []

    def _tokenize_prompts(self, prompts):
        return [[1, 1, 1] for _ in prompts], None, {}

    def _generate_single_turn(self, contexts, images, fields, num_generations=1):
        assert num_generations == 1  # each episode has its own history
        self.seen_caps.append((self.generation_config.max_new_tokens, self.vllm_generation.max_completion_length))
        return [[5, 6, 2] for _ in contexts], [[-0.5, -0.25, -0.125] for _ in contexts]


def test_turn_cap_reaches_vllm_generator_and_logprobs_flow_through():
    from skill_sd_trl.models.tiny import build_tokenizer

    trainer = FakeVLLMTrainer(build_tokenizer())
    rollout = MultiTurnRollout(EchoEnv, RolloutLimits(max_turns=3, max_new_tokens_per_turn=7))
    played = rollout.bind([{"task_id": "a"}, {"task_id": "b"}])
    out = played([[{"role": "user", "content": "x"}]] * 2, trainer)
    assert [r["task_id"] for r in played.records] == ["a", "b"] and len(played.prompts) == 2
    assert trainer.seen_caps == [(7, 7), (7, 7)]  # every turn capped...
    assert trainer.generation_config.max_new_tokens == 64 and trainer.vllm_generation.max_completion_length == 64
    logprobs, mask = out["logprobs"][0], out["env_mask"][0]
    assert len(logprobs) == len(out["completion_ids"][0]) == len(mask)
    model_lp = [lp for lp, m in zip(logprobs, mask) if m]
    assert model_lp == [-0.5, -0.25, -0.125] * 2  # the sampler's own log-probs, kept for importance sampling
    assert all(lp == 0.0 for lp, m in zip(logprobs, mask) if not m)
    assert out["episode"][0]["stop_reason"] == "done"


def test_trainer_backend_restores_caps_even_on_error():
    from skill_sd_trl.models.tiny import build_tokenizer

    trainer = FakeVLLMTrainer(build_tokenizer())

    def boom(*a, **k):
        raise RuntimeError("vLLM server unreachable")

    trainer._generate_single_turn = boom
    with pytest.raises(RuntimeError, match="unreachable"):
        TrainerBackend(trainer).generate([[1, 2]], 5)
    assert trainer.generation_config.max_new_tokens == 64 and trainer.vllm_generation.max_completion_length == 64


def test_teacher_rollouts_with_vllm_fail_at_config_time(tmp_path):
    with pytest.raises(ValueError, match="use_vllm=False"):
        SkillSDConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, rollout_policy="teacher", use_vllm=True)
