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

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from .. import trl_private
from ..envs.base import RolloutLimits, TextEnv
from ..rewards import episode_reward_kwargs
from ..skills.trajectory import Trajectory, Turn
from .prompts import append_to_last_message, prompt_text, task_id_of
from .turn_cache import TurnCache

STOP_REASONS = ("solved", "done", "max_turns", "invalid_output", "context_full", "env_error")


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


class GenerationBackend(Protocol):
    """What the episode loop needs from a model: the trainer's sampler during training, a plain model in eval.

    ``reset()`` is called before each batch of episodes (a backend that keeps state between turns drops it)."""

    eos_token_ids: set[int]

    def reset(self) -> None: ...

    def tokenize_prompt(self, prompt: Any) -> list[int]: ...

    def generate(self, contexts: list[list[int]], max_new_tokens: int) -> tuple[list[list[int]], list[list[float]] | None]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def observation_ids(self, observation: str, turn_closed: bool) -> list[int]: ...


class TrainerBackend:
    """Samples with the trainer's own backend: TRL's vLLM colocate/server generation, or ``transformers`` generate
    with the trainer's generation config — keeping each episode's KV cache between turns (:class:`TurnCache`) unless
    ``kv_cache`` is off, in which case TRL's own single-turn generation re-encodes every context each turn."""

    def __init__(self, trainer, kv_cache: bool = True):
        self.trainer = trainer
        self.eos_token_ids = set(trl_private.eos_token_ids(trainer))
        self._observations = ChatObservations(trainer.processing_class, *trl_private.chat_template(trainer))
        plain = trl_private.samples_with_plain_generate(trainer)
        self._turns = TurnCache(trl_private.pad_token_id(trainer), self.eos_token_ids) if kv_cache and plain else None

    def reset(self):
        if self._turns is not None:
            self._turns.reset()

    def tokenize_prompt(self, prompt):
        return list(trl_private.tokenize_prompts(self.trainer, [prompt])[0])

    def generate(self, contexts, max_new_tokens):
        if self._turns is None:
            with trl_private.generation_length_capped(self.trainer, max_new_tokens):
                return trl_private.generate_single_turn(self.trainer, contexts)
        with trl_private.generation_model(self.trainer) as model:
            return self._turns.generate(model, contexts, generation_config=trl_private.generation_config(self.trainer),
                                        max_new_tokens=max_new_tokens), None

    def decode(self, ids):
        return self.trainer.processing_class.decode(ids, skip_special_tokens=True)

    def observation_ids(self, observation, turn_closed):
        return self._observations(observation, turn_closed)


class ModelBackend:
    """Generates with a plain `transformers` model (evaluation, or any use outside a trainer), keeping each episode's
    KV cache between turns (:class:`TurnCache`) unless ``kv_cache`` is off."""

    def __init__(self, model, tokenizer, do_sample: bool = False, temperature: float = 1.0, chat_template_kwargs=None,
                 kv_cache: bool = True):
        self.model, self.tokenizer = model, tokenizer
        self.do_sample, self.temperature = do_sample, temperature
        self.chat_template_kwargs = chat_template_kwargs or {}
        eos = model.generation_config.eos_token_id if model.generation_config.eos_token_id is not None else tokenizer.eos_token_id
        self.eos_token_ids = set(eos if isinstance(eos, list) else [eos])
        self._observations = ChatObservations(tokenizer, None, self.chat_template_kwargs)
        self._turns = TurnCache(self._pad_id(), self.eos_token_ids) if kv_cache else None

    def reset(self):
        if self._turns is not None:
            self._turns.reset()

    def _pad_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos_token_ids)

    def tokenize_prompt(self, prompt):
        if isinstance(prompt, str):
            return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return list(self.tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True,
                                                       return_dict=False, **self.chat_template_kwargs))

    @torch.no_grad()
    def generate(self, contexts, max_new_tokens):
        sampling = dict(do_sample=True, temperature=self.temperature) if self.do_sample else dict(do_sample=False)
        eos = sorted(self.eos_token_ids)
        if self._turns is not None:
            return self._turns.generate(self.model, contexts, max_new_tokens=max_new_tokens, eos_token_id=eos,
                                        **sampling), None
        pad_id = self._pad_id()
        width = max(len(c) for c in contexts)
        device = next(self.model.parameters()).device
        ids = torch.tensor([[pad_id] * (width - len(c)) + list(c) for c in contexts], device=device)
        mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in contexts], device=device)
        out = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, pad_token_id=pad_id,
                                  eos_token_id=eos, **sampling)[:, width:].tolist()
        completions = []
        for row in out:
            end = next((i for i, t in enumerate(row) if t in self.eos_token_ids), None)
            completions.append(row if end is None else row[: end + 1])
        return completions, None

    def decode(self, ids):
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def observation_ids(self, observation, turn_closed):
        return self._observations(observation, turn_closed)


class ChatObservations:
    """Token ids that close the model's turn (if it did not) and render an observation as the next user message,
    ending with the assistant generation prompt — derived from the chat template, so any template works."""

    _DUMMY = [{"role": "user", "content": "dummy"}, {"role": "assistant", "content": "dummy"}]

    def __init__(self, tokenizer, chat_template=None, template_kwargs=None):
        self.tokenizer = tokenizer
        self.kwargs = dict(template_kwargs or {})
        if chat_template is not None:
            self.kwargs["chat_template"] = chat_template
        history = tokenizer.apply_chat_template(self._DUMMY, tokenize=True, add_generation_prompt=False,
                                                return_dict=False, **self.kwargs)
        # Thinking templates render the last assistant turn differently once a user message follows, so instead of
        # a prefix comparison the boundary is "after the EOS that closes the dummy assistant turn".
        self.eos_in_history = sum(1 for t in history if t == tokenizer.eos_token_id)
        if self.eos_in_history == 0:
            raise ValueError("The chat template does not close turns with the EOS token; cannot render observations.")

    def __call__(self, observation: str, turn_closed: bool) -> list[int]:
        full = self.tokenizer.apply_chat_template(self._DUMMY + [{"role": "user", "content": observation}],
                                                  tokenize=True, add_generation_prompt=True, return_dict=False,
                                                  **self.kwargs)
        eos = self.tokenizer.eos_token_id
        positions = [i for i, t in enumerate(full) if t == eos]
        suffix = list(full[positions[self.eos_in_history - 1] + 1:])
        return suffix if turn_closed else [eos, *suffix]


def play_episodes(prompts: list, rows: Sequence[Mapping[str, Any]], backend: GenerationBackend,
                  env_factory: Callable[[], TextEnv], limits: RolloutLimits, completion_budget: int,
                  task_id_column: str = "task_id", env_name: str | None = None) -> tuple[list[_Episode], list[dict]]:
    """Play one episode per prompt, all in lock-step (one batched generation per turn).

    Returns the episodes (token ids, env masks, logprobs) and their `Trajectory` records as dicts.
    """
    episodes = [_start(prompt, row, backend, env_factory) for prompt, row in zip(prompts, rows, strict=True)]
    backend.reset()
    for turn in range(limits.max_turns):
        active = [e for e in episodes if e.stop_reason is None]
        if not active:
            break
        _play_turn(active, backend, limits, completion_budget, last_turn=turn == limits.max_turns - 1)
    for e in episodes:
        if e.stop_reason is None:
            e.stop_reason = "max_turns"
    records = [_finish(e, row, task_id_column, env_name) for e, row in zip(episodes, rows, strict=True)]
    return episodes, records


def _start(prompt, row, backend, env_factory) -> _Episode:
    env = env_factory()
    extra = env.reset(row)
    prompt = append_to_last_message(prompt, extra or "")  # like TRL's environment_factory
    return _Episode(env, prompt, backend.tokenize_prompt(prompt), [], [], [], [])


def _room(e: _Episode, limits: RolloutLimits, budget: int) -> int:
    room = budget - len(e.completion_ids)
    if limits.max_context_tokens is not None:
        room = min(room, limits.max_context_tokens - len(e.prompt_ids) - len(e.completion_ids))
    return room


def _play_turn(active: list[_Episode], backend, limits: RolloutLimits, budget: int, last_turn: bool) -> None:
    playing = []
    for e in active:
        n = min(limits.max_new_tokens_per_turn, _room(e, limits, budget))
        if n <= 0:
            e.stop_reason = "context_full"
        else:
            playing.append((e, n))
    if not playing:
        return
    new_ids, new_logprobs = backend.generate([e.prompt_ids + e.completion_ids for e, _ in playing],
                                             max(n for _, n in playing))
    for i, (e, n) in enumerate(playing):
        ids = list(new_ids[i])[:n]
        ended = bool(ids) and ids[-1] in backend.eos_token_ids
        e.completion_ids += ids
        e.env_mask += [1] * len(ids)
        e.logprobs += list(new_logprobs[i])[: len(ids)] if new_logprobs is not None else [0.0] * len(ids)
        _apply_action(e, backend, ids, ended, limits, budget, last_turn)


def _apply_action(e: _Episode, backend, ids, ended: bool, limits: RolloutLimits, budget: int, last_turn: bool) -> None:
    text = backend.decode(ids)
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
    elif limits.max_consecutive_invalid is not None and e.invalid_streak >= limits.max_consecutive_invalid:
        e.stop_reason = "invalid_output"
    elif last_turn:
        e.stop_reason = "max_turns"
    else:
        obs_ids = backend.observation_ids(result.observation, turn_closed=ended)
        if len(obs_ids) + 1 > _room(e, limits, budget):  # no room for the observation and one model token
            e.stop_reason = "context_full"
            return
        e.completion_ids += obs_ids
        e.env_mask += [0] * len(obs_ids)
        e.logprobs += [0.0] * len(obs_ids)


def _finish(e: _Episode, row, task_id_column: str, env_name: str | None) -> dict[str, Any]:
    try:
        score = e.env.score()
    finally:
        e.env.close()
    traj = Trajectory(
        task_id=task_id_of(row, task_id_column),
        env_name=env_name or getattr(e.env, "name", "env"),
        task=prompt_text(e.prompt),
        turns=e.turns,
        reward=e.reward,
        success=bool(score.success),
        completion=float(score.completion),
        stop_reason=e.stop_reason,
        info={**score.info, "num_turns": len(e.turns)},
    )
    return traj.to_dict()


class MultiTurnRollout:
    """A TRL ``rollout_func`` playing one episode of ``env_factory()`` per prompt.

    Args:
        env_factory: builds a fresh environment (called once per episode; ``close()`` is called at the end).
        limits: turn / token limits.
        env_name: the name used in metrics (``env/<name>/...``) and trajectories; defaults to the env's ``name``.
        kv_cache: with ``transformers`` generation (no vLLM), keep each episode's KV cache between turns and encode
            each group's prompt once (:class:`~skill_sd_trl.rollout.turn_cache.TurnCache`); off: TRL's single-turn
            generation re-encodes every context each turn. The same sampling distribution either way.

    Each environment is ``reset`` with its dataset row, which TRL's ``rollout_func(prompts, trainer)`` does not
    pass: the trainer hands the batch's rows over explicitly with :meth:`bind` and plays the returned
    :class:`BoundRollout` (``SkillSDTrainer`` does this for every generation batch). Extra keys returned to TRL:
    ``episode`` (a `Trajectory` dict per sample, used by the skill pipeline), ``env_reward``, ``env_success``,
    ``env_completion`` (for reward functions, see ``skill_sd_trl.rewards``).
    """

    def __init__(self, env_factory: Callable[[], TextEnv], limits: RolloutLimits | None = None, env_name: str | None = None,
                 kv_cache: bool = True):
        self.env_factory = env_factory
        self.limits = limits or RolloutLimits()
        self.env_name = env_name
        self.kv_cache = kv_cache
        self._backends: dict[int, TrainerBackend] = {}

    def bind(self, rows: Sequence[Mapping[str, Any]]) -> BoundRollout:
        """The rollout of one generation batch, whose ``i``-th prompt belongs to dataset row ``rows[i]``."""
        return BoundRollout(self, list(rows))

    def __call__(self, prompts: list, trainer) -> dict[str, list]:
        raise RuntimeError(
            "MultiTurnRollout needs the dataset row of every prompt to reset its environment: use SkillSDTrainer "
            "(it binds them each batch), or pass `rollout.bind(rows)` as the rollout_func of that batch."
        )

    def backend(self, trainer) -> TrainerBackend:
        return self._backends.get(id(trainer)) or self._backends.setdefault(id(trainer),
                                                                           TrainerBackend(trainer, self.kv_cache))


@dataclass
class BoundRollout:
    """One generation batch of a :class:`MultiTurnRollout`: called by TRL as its ``rollout_func``; afterwards holds
    what was played (``records``: one `Trajectory` dict per episode; ``prompts``: the prompts after ``reset()``;
    ``stop_reasons``: the environments' own stop reasons), for the trainer to read back by name."""

    rollout: MultiTurnRollout
    rows: list
    records: list[dict] | None = None
    prompts: list | None = None
    stop_reasons: tuple[str, ...] = ()

    def __call__(self, prompts: list, trainer) -> dict[str, list]:
        if len(self.rows) != len(prompts):
            raise RuntimeError(f"the rollout was bound to {len(self.rows)} rows but got {len(prompts)} prompts")
        r = self.rollout
        episodes, records = play_episodes(
            prompts, self.rows, r.backend(trainer), r.env_factory, r.limits, trl_private.completion_budget(trainer),
            getattr(trainer.args, "task_id_column", "task_id"), r.env_name,
        )
        self.records, self.prompts = records, [e.prompt for e in episodes]
        self.stop_reasons = tuple(sorted({x for e in episodes for x in getattr(e.env, "stop_reasons", ())}))
        use_logprobs = trl_private.samples_with_vllm(trainer)
        return {
            "prompt_ids": [e.prompt_ids for e in episodes],
            "completion_ids": [e.completion_ids for e in episodes],
            "logprobs": [e.logprobs for e in episodes] if use_logprobs else None,
            "env_mask": [e.env_mask for e in episodes],
            "episode": records,
            **episode_reward_kwargs(records),
        }


def episode_metrics(records: list[dict], env_stop_reasons: Sequence[str] = (), gather=None) -> dict[str, float]:
    """``env/<name>/{acc,comp,reward,turns,invalid_actions}`` and ``env/<name>/stop/<reason>`` over all ranks.

    Records are gathered (``gather``: e.g. accelerate's ``gather_object``; ``None`` for one process) as small Python
    rows, so every rank logs the same values even when ranks saw different environments or stop reasons. Every
    known stop reason is logged each time (0 when absent), so its mean over a logging window is a true share.
    """
    rows = [(r["env_name"], float(r["success"]), float(r["completion"]), float(r["reward"]),
             float(r["info"]["num_turns"]), float(sum(not t["valid"] for t in r["turns"])), r["stop_reason"])
            for r in records]
    if gather is not None:
        rows = gather(rows)
    metrics = {}
    for name in sorted({row[0] for row in rows}):
        mine = [row for row in rows if row[0] == name]
        for i, key in enumerate(("acc", "comp", "reward", "turns", "invalid_actions"), start=1):
            metrics[f"env/{name}/{key}"] = sum(row[i] for row in mine) / len(mine)
        counts = Counter(row[6] for row in mine)
        for reason in sorted(set(STOP_REASONS) | set(env_stop_reasons) | set(counts)):
            metrics[f"env/{name}/stop/{reason}"] = counts.get(reason, 0) / len(mine)
    return metrics
