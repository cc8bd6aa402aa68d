"""The environment part of a recipe, as one typed dataclass that ``train`` and ``eval`` both parse with ``TrlParser``.

Every field is spelled as in the recipes (``env_preset``, ``max_turns`` ...), so a train recipe given to
``skill-sd-trl eval --config`` evaluates on exactly the environment, levels and limits it trained with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import RolloutLimits
from .registry import ENV_NAMES, EnvSpec, get_env_spec, task_window


@dataclass
class EnvArguments:
    """Which environment, which tasks, how long an episode may run."""

    env_name: str = field(default="sokoban", metadata={"help": "Environment name.", "choices": list(ENV_NAMES)})
    env_preset: str = field(
        default="small", metadata={"help": "Environment preset (Sokoban: tiny, small, short, paper)."}
    )
    env_seed: int = field(default=0, metadata={"help": "Seed of the task generator (reproducible task sets)."})
    env_server_url: str | None = field(
        default=None, metadata={"help": "URL of a running AppWorld environment server (env_name=appworld)."}
    )
    env_reward_mode: str | None = field(
        default=None, metadata={"help": "Sokoban reward: shaped (classic shaping, default) or success (1 on solve)."}
    )
    env_prompt_style: str | None = field(
        default=None,
        metadata={"help": "Sokoban prompt: full (rules spelled out, default) or compact (the same facts in about a "
                          "third of the tokens; CPU recipes)."},
    )
    env_lenient_actions: bool = field(
        default=False,
        metadata={"help": "Sokoban, for very small models: read direction words from turns that miss the answer "
                          "grammar, with a format penalty (the exact grammar still pays more)."},
    )
    train_split: str | None = field(default=None, metadata={"help": "Training split (default: the env's)."})
    eval_split: str | None = field(default=None, metadata={"help": "Evaluation split (default: the env's)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training tasks."})
    skip_train_samples: int = field(
        default=0,
        metadata={"help": "Skip the first N training tasks, then take max_train_samples. Sokoban's train split is "
                          "ordered shortest solution first, so this trains on harder levels."},
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on only the first N tasks."})
    max_turns: int | None = field(default=None, metadata={"help": "Max agent turns per episode (default: the env's)."})
    max_new_tokens_per_turn: int | None = field(
        default=None, metadata={"help": "Max tokens the model writes per turn (default: the env's)."}
    )
    max_context_tokens: int | None = field(
        default=None, metadata={"help": "Optional bound on prompt + episode tokens; the episode stops when full."}
    )
    eval_batch_size: int = field(default=8, metadata={"help": "Episodes played at once during evaluation."})

    def __post_init__(self):
        if self.env_name not in ENV_NAMES:
            raise ValueError(f"env_name={self.env_name!r} is not valid; choose one of "
                             f"{', '.join(map(repr, ENV_NAMES))}.")
        if not isinstance(self.skip_train_samples, int) or self.skip_train_samples < 0:
            raise ValueError(f"skip_train_samples={self.skip_train_samples!r}: must be an integer >= 0 "
                             "(0 keeps the training split from its first task).")

    @property
    def spec(self) -> EnvSpec:
        return get_env_spec(self.env_name)

    def options(self) -> dict[str, Any]:
        """The options handed to the environment's dataset builder and factory (each takes the ones it knows)."""
        return {"preset": self.env_preset, "seed": self.env_seed, "server_url": self.env_server_url,
                "reward_mode": self.env_reward_mode, "lenient_actions": self.env_lenient_actions or None,
                "prompt_style": self.env_prompt_style}

    def train_tasks(self, dataset):
        """The training tasks a recipe selects: ``skip_train_samples`` skipped, then at most ``max_train_samples``."""
        if self.skip_train_samples >= len(dataset):
            raise ValueError(f"skip_train_samples={self.skip_train_samples} skips the whole training split "
                             f"({len(dataset)} tasks): lower it.")
        return task_window(dataset, self.skip_train_samples, self.max_train_samples)

    def limits(self) -> RolloutLimits:
        """The recipe's rollout limits, the environment's defaults where the recipe sets none."""
        return self.spec.limits(self.max_turns, self.max_new_tokens_per_turn, self.max_context_tokens)
