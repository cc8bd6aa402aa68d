"""The environment part of a recipe, as one typed dataclass that ``train``, ``eval`` and experiments all parse.

A recipe names its environment and that environment's options::

    env_name: sokoban                 # registered under the entry-point group skill_sd_trl.environments,
    env_args:                         # or module:function for an unregistered one
      preset: small                   # the keyword arguments of its load_environment(...)
      prompt_style: compact

The fields here are what every environment shares (which tasks, how long an episode may run); nothing in this
class is specific to one environment. A train recipe given to ``skill-sd-trl eval --config`` evaluates on exactly the
environment, tasks and limits it trained with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .base import EnvSpec, RolloutLimits
from .registry import load_environment, task_window


def parse_env_args(value: Any) -> dict[str, Any]:
    """``env_args`` as a mapping: a YAML mapping as it is; on the command line a JSON object
    (``'{"preset": "tiny"}'``) or ``key=value`` pairs (``preset=tiny,seed=1``, values read as YAML scalars)."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"env_args={value!r} is not a JSON object ({e.msg}); write "
                                 "'{\"preset\": \"tiny\"}' or preset=tiny,seed=1.") from None
            if isinstance(parsed, dict):
                return parsed
        else:
            import yaml

            pairs = {}
            for item in filter(None, (p.strip() for p in text.split(","))):
                key, sep, raw = item.partition("=")
                if not sep or not key.strip():
                    raise ValueError(f"env_args={value!r}: expected key=value pairs separated by commas "
                                     "(preset=tiny,seed=1) or a JSON object.")
                pairs[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
            return pairs
    raise ValueError(f"env_args={value!r} must be a mapping of option: value (in YAML), a JSON object or "
                     "key=value pairs.")


@dataclass
class EnvArguments:
    """Which environment, with which options; which tasks; how long an episode may run."""

    env_name: str = field(
        default="sokoban",
        metadata={"help": "Environment: a name registered under the entry-point group skill_sd_trl.environments "
                          "(sokoban, appworld_offline, appworld, or a plugin's), or module:function."},
    )
    env_args: dict[str, Any] | str | None = field(
        default=None,
        metadata={"help": "The environment's options (the keyword arguments of its load_environment): a mapping in "
                          "YAML; on the command line a JSON object or key=value pairs, merged into the recipe's. "
                          "Sokoban: preset, seed, reward_mode, prompt_style, lenient_actions."},
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
        self.env_args = parse_env_args(self.env_args)
        if not isinstance(self.skip_train_samples, int) or self.skip_train_samples < 0:
            raise ValueError(f"skip_train_samples={self.skip_train_samples!r}: must be an integer >= 0 "
                             "(0 keeps the training split from its first task).")
        for name in ("max_train_samples", "max_eval_samples", "max_turns", "max_new_tokens_per_turn",
                     "max_context_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}={value}: must be >= 1, or left unset for the environment's default.")
        if self.eval_batch_size < 1:
            raise ValueError(f"eval_batch_size={self.eval_batch_size}: must be >= 1.")
        self.spec  # noqa: B018 - load it now: an unknown environment or option fails before any model loads

    @cached_property
    def spec(self) -> EnvSpec:
        """The environment, loaded once with ``env_args`` (a mistake is one line naming the option)."""
        return load_environment(self.env_name, self.env_args)

    def train_tasks(self, dataset):
        """The training tasks a recipe selects: ``skip_train_samples`` skipped, then at most ``max_train_samples``."""
        if self.skip_train_samples >= len(dataset):
            raise ValueError(f"skip_train_samples={self.skip_train_samples} skips the whole training split "
                             f"({len(dataset)} tasks): lower it.")
        return task_window(dataset, self.skip_train_samples, self.max_train_samples)

    def limits(self) -> RolloutLimits:
        """The recipe's rollout limits, the environment's defaults where the recipe sets none."""
        return self.spec.limits(self.max_turns, self.max_new_tokens_per_turn, self.max_context_tokens)
