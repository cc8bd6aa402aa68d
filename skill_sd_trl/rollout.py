"""Multi-turn rollouts for text-action agents, as a TRL ``rollout_func``.

Each turn the model writes an action (sampled by the trainer's own generation backend: ``transformers`` generate, or
TRL's vLLM colocate/server machinery when ``use_vllm`` is set — through ``GRPOTrainer._generate_single_turn``, so
there is no second vLLM client), the environment answers with an observation, and the observation is appended as a
user message rendered by the model's chat template. The episode is one completion: model tokens carry
``env_mask`` 1, observation/template tokens carry 0, so neither GRPO nor the distillation loss ever trains on them.
The model's sampled token ids are kept verbatim (never re-tokenized), which is what lets the teacher re-score
exactly the student's tokens.

Works with any chat template (SmolLM2 has no tool-call format: actions are plain text parsed by the environment).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .envs.base import TextEnv
from .prompts import prompt_text, task_id_of
from .trajectory import Trajectory, Turn

STOP_REASONS = ("solved", "done", "max_turns", "invalid_output", "context_full", "env_error")


@dataclass
class RolloutLimits:
    """Per-episode limits. The completion budget (all turns and observations) is the trainer's
    ``max_completion_length``; ``max_context_tokens`` additionally bounds prompt + completion."""

    max_turns: int = 8
    max_new_tokens_per_turn: int = 64
    max_context_tokens: int | None = None
    max_consecutive_invalid: int | None = 3

    def __post_init__(self):
        for name in ("max_turns", "max_new_tokens_per_turn"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}.")
        if self.max_consecutive_invalid is not None and self.max_consecutive_invalid < 1:
            raise ValueError("max_consecutive_invalid must be ≥ 1 or None (never stop on invalid output).")


@dataclass
class _Episode:
    env: TextEnv
    prompt: Any
    prompt_ids: list[int]
    completion_ids: list[int]
    env_mask: list[int]
    logprobs: list[float]
    turns: list[Turn]
    reward: float = 0.0
    invalid_streak: int = 0
    stop_reason: str | None = None


class MultiTurnRollout:
    """A ``rollout_func`` playing one episode of ``env_factory()`` per prompt.

    Args:
        env_factory: builds a fresh environment (called once per episode; ``close()`` is called at the end).
        limits: turn / token limits.
        env_name: the name used in metrics (``env/<name>/...``) and trajectories; defaults to the env's ``name``.

    The trainer must expose the dataset rows of the current batch as ``current_batch_rows`` (``SkillSDTrainer`` does);
    each env is ``reset`` with its row. Extra keys returned to TRL: ``episode`` (a `Trajectory` dict per sample, used
    by the skill pipeline), ``env_reward``, ``env_success``, ``env_completion`` (for reward functions, see
    ``skill_sd_trl.rewards``), and ``rollout_prompts``.
    """

    def __init__(self, env_factory: Callable[[], TextEnv], limits: RolloutLimits | None = None, env_name: str | None = None):
        self.env_factory = env_factory
        self.limits = limits or RolloutLimits()
        self.env_name = env_name
        self._eos_count_cache: dict[int, int] = {}

    # -- the rollout_func entry point ------------------------------------------------------------------------------
    def __call__(self, prompts: list, trainer) -> dict[str, list]:
        rows = getattr(trainer, "current_batch_rows", None)
        if rows is None or len(rows) != len(prompts):
            raise RuntimeError(
                "MultiTurnRollout needs the dataset rows of the batch as `trainer.current_batch_rows` (one per prompt); "
                "use SkillSDTrainer (which sets it), or set it in your trainer before generation."
            )
        episodes = [self._start(prompt, row, trainer) for prompt, row in zip(prompts, rows, strict=True)]
        budget = int(trainer.max_completion_length)
        for turn in range(self.limits.max_turns):
            active = [e for e in episodes if e.stop_reason is None]
            if not active:
                break
            self._play_turn(active, trainer, budget, last_turn=turn == self.limits.max_turns - 1)
        for e in episodes:
            if e.stop_reason is None:
                e.stop_reason = "max_turns"
        records = [self._finish(e, row, trainer) for e, row in zip(episodes, rows, strict=True)]
        self._log_metrics(trainer, records)
        use_logprobs = all(e.logprobs is not None for e in episodes) and getattr(trainer, "use_vllm", False)
        return {
            "prompt_ids": [e.prompt_ids for e in episodes],
            "completion_ids": [e.completion_ids for e in episodes],
            "logprobs": [e.logprobs for e in episodes] if use_logprobs else None,
            "env_mask": [e.env_mask for e in episodes],
            "episode": records,
            "env_reward": [r["reward"] for r in records],
            "env_success": [float(r["success"]) for r in records],
            "env_completion": [r["completion"] for r in records],
            "rollout_prompts": [e.prompt for e in episodes],
        }

    # -- episode life cycle -----------------------------------------------------------------------------------------
    def _start(self, prompt, row: Mapping[str, Any], trainer) -> _Episode:
        env = self.env_factory()
        extra = env.reset(row)
        if extra:  # like TRL's environment_factory: appended to the last user message
            prompt = [*prompt[:-1], {**prompt[-1], "content": prompt[-1]["content"] + extra}]
        prompt_ids = list(trainer._tokenize_prompts([prompt])[0][0])
        return _Episode(env, prompt, prompt_ids, [], [], [], [])

    def _play_turn(self, active: list[_Episode], trainer, budget: int, last_turn: bool) -> None:
        limits = self.limits
        allowed = []
        for e in active:
            room = budget - len(e.completion_ids)
            if limits.max_context_tokens is not None:
                room = min(room, limits.max_context_tokens - len(e.prompt_ids) - len(e.completion_ids))
            allowed.append(min(limits.max_new_tokens_per_turn, room))
        for e, n in zip(active, allowed, strict=True):
            if n <= 0:
                e.stop_reason = "context_full"
        playing = [(e, n) for e, n in zip(active, allowed, strict=True) if n > 0]
        if not playing:
            return
        contexts = [e.prompt_ids + e.completion_ids for e, _ in playing]
        with _max_new_tokens(trainer, max(n for _, n in playing)):
            new_ids, new_logprobs = trainer._generate_single_turn(contexts, None, {}, num_generations=1)
        eos_ids = set(trainer.eos_token_ids)
        for i, (e, n) in enumerate(playing):
            ids = list(new_ids[i])[:n]
            ended = bool(ids) and ids[-1] in eos_ids
            e.completion_ids += ids
            e.env_mask += [1] * len(ids)
            if new_logprobs is not None:
                e.logprobs += list(new_logprobs[i])[: len(ids)]
            else:
                e.logprobs += [0.0] * len(ids)
            self._apply_action(e, trainer, ids, ended, budget, last_turn)

    def _apply_action(self, e: _Episode, trainer, ids: list[int], ended: bool, budget: int, last_turn: bool) -> None:
        text = trainer.processing_class.decode(ids, skip_special_tokens=True)
        try:
            result = e.env.step(text)
        except Exception as err:  # an environment fault ends this episode, never the training run
            e.turns.append(Turn(action=text, observation=f"environment error: {err}", valid=False,
                                info={"actions": [], "events": [f"env_error: {type(err).__name__}"]}))
            e.stop_reason = "env_error"
            return
        e.reward += float(result.reward)
        e.turns.append(Turn(action=text, observation=result.observation, valid=result.valid, info=dict(result.info)))
        e.invalid_streak = 0 if result.valid else e.invalid_streak + 1
        if result.done:
            e.stop_reason = result.stop_reason or "done"
            return
        limit = self.limits.max_consecutive_invalid
        if limit is not None and e.invalid_streak >= limit:
            e.stop_reason = "invalid_output"
            return
        if last_turn:
            e.stop_reason = "max_turns"
            return
        obs_ids = observation_ids(trainer, result.observation, turn_closed=ended)
        room = budget - len(e.completion_ids)
        if self.limits.max_context_tokens is not None:
            room = min(room, self.limits.max_context_tokens - len(e.prompt_ids) - len(e.completion_ids))
        if len(obs_ids) + 1 > room:  # no room for the observation and at least one model token
            e.stop_reason = "context_full"
            return
        e.completion_ids += obs_ids
        e.env_mask += [0] * len(obs_ids)
        e.logprobs += [0.0] * len(obs_ids)

    def _finish(self, e: _Episode, row: Mapping[str, Any], trainer) -> dict[str, Any]:
        try:
            score = e.env.score()
        finally:
            e.env.close()
        name = self.env_name or getattr(e.env, "name", "env")
        traj = Trajectory(
            task_id=task_id_of(row, getattr(trainer.args, "task_id_column", "task_id")),
            env_name=name,
            task=prompt_text(e.prompt),
            turns=e.turns,
            reward=e.reward,
            success=bool(score.success),
            completion=float(score.completion),
            stop_reason=e.stop_reason,
            info={**score.info, "num_turns": len(e.turns)},
        )
        return traj.to_dict()

    def _log_metrics(self, trainer, records: list[dict]) -> None:
        metrics = getattr(trainer, "_metrics", None)
        if metrics is None or not records:
            return
        mode = "train" if trainer.model.training else "eval"
        name = records[0]["env_name"]
        local = torch.tensor(
            [[float(r["success"]), r["completion"], r["reward"], r["info"]["num_turns"],
              sum(not t["valid"] for t in r["turns"])] for r in records],
            dtype=torch.float32, device=trainer.accelerator.device,
        )
        stats = trainer.accelerator.gather(local).mean(0).tolist()
        for key, value in zip(("acc", "comp", "reward", "turns", "invalid_actions"), stats, strict=True):
            metrics[mode][f"env/{name}/{key}"].append(value)
        counts = Counter(r["stop_reason"] for r in records)
        reasons = sorted(set(STOP_REASONS) | set(counts))
        local = torch.tensor([float(counts.get(k, 0)) for k in reasons], device=trainer.accelerator.device)
        total = trainer.accelerator.reduce(local, reduction="sum")
        n = total.sum().clamp(min=1.0)
        for reason, count in zip(reasons, total.tolist(), strict=True):
            metrics[mode][f"env/{name}/stop/{reason}"].append(count / n.item())


@contextlib.contextmanager
def _max_new_tokens(trainer, n: int):
    """Temporarily cap the trainer's generation length (transformers config and TRL's vLLM generator) to ``n``."""
    saved = []
    config = getattr(trainer, "generation_config", None)
    if config is not None:
        saved.append((config, "max_new_tokens", config.max_new_tokens))
        config.max_new_tokens = n
    vllm = getattr(trainer, "vllm_generation", None) if getattr(trainer, "use_vllm", False) else None
    if vllm is not None:
        saved.append((vllm, "max_completion_length", vllm.max_completion_length))
        vllm.max_completion_length = n
    try:
        yield
    finally:
        for obj, attr, value in saved:
            setattr(obj, attr, value)


def observation_ids(trainer, observation: str, turn_closed: bool) -> list[int]:
    """Token ids that close the model's turn (if it did not) and render ``observation`` as the next user message,
    ending with the generation prompt for the assistant — derived from the chat template, for any template."""
    tok = trainer.processing_class
    kwargs = dict(chat_template=trainer.chat_template, **getattr(trainer, "chat_template_kwargs", {}))
    dummy = [{"role": "user", "content": "dummy"}, {"role": "assistant", "content": "dummy"}]
    full = tok.apply_chat_template(dummy + [{"role": "user", "content": observation}], tokenize=True,
                                   add_generation_prompt=True, return_dict=False, **kwargs)
    eos = tok.eos_token_id
    n_eos = _eos_in_history(trainer, dummy, kwargs)
    positions = [i for i, t in enumerate(full) if t == eos]
    if len(positions) < n_eos:
        raise ValueError("The chat template does not close assistant turns with the EOS token; cannot render observations.")
    suffix = list(full[positions[n_eos - 1] + 1:])
    return suffix if turn_closed else [eos, *suffix]


def _eos_in_history(trainer, dummy, kwargs) -> int:
    """How many EOS tokens the template emits up to and including the end of the dummy assistant turn."""
    tok = trainer.processing_class
    key = id(tok)
    cache = trainer.__dict__.setdefault("_skill_sd_eos_count", {})
    if key not in cache:
        ids = tok.apply_chat_template(dummy, tokenize=True, add_generation_prompt=False, return_dict=False, **kwargs)
        cache[key] = sum(1 for t in ids if t == tok.eos_token_id)
    return cache[key]
