"""Named environments: a dataset builder, an environment factory and default limits, chosen by name in recipes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..skills.events import EventVocabulary
from ..skills.prompts import SummaryPrompt
from .base import RolloutLimits, TextEnv


@dataclass(frozen=True)
class EnvSpec:
    """How to build one environment's datasets and episodes.

    ``make_dataset(split, **options)`` returns a `datasets.Dataset` with at least `prompt` and `task_id`;
    ``make_env(**options)`` returns a fresh `TextEnv` for one episode.
    """

    name: str
    make_dataset: Callable[..., Any]
    make_env: Callable[..., TextEnv]
    train_split: str
    eval_split: str
    max_turns: int
    max_new_tokens_per_turn: int
    dataset_options: tuple[str, ...] = field(default_factory=tuple)  # option names passed to make_dataset
    env_options: tuple[str, ...] = field(default_factory=tuple)  # option names passed to make_env
    summary_prompt: SummaryPrompt | None = None  # the LLM summarizer's default prompt for this environment
    events: EventVocabulary | None = None  # what its turn events mean to the experience summarizer

    def dataset(self, split: str, options: Mapping[str, Any]):
        """The split's dataset, built with the options this environment knows (others are ignored)."""
        return self.make_dataset(split, **{k: v for k, v in options.items() if k in self.dataset_options})

    def env_factory(self, options: Mapping[str, Any]) -> Callable[[], TextEnv]:
        """A factory of fresh episodes, with the options this environment knows (unset ones keep its defaults)."""
        kwargs = {k: v for k, v in options.items() if k in self.env_options and v is not None}
        return lambda: self.make_env(**kwargs)

    def limits(self, max_turns: int | None = None, max_new_tokens_per_turn: int | None = None,
               max_context_tokens: int | None = None) -> RolloutLimits:
        """Rollout limits: the given overrides, else this environment's defaults."""
        return RolloutLimits(max_turns=max_turns or self.max_turns,
                             max_new_tokens_per_turn=max_new_tokens_per_turn or self.max_new_tokens_per_turn,
                             max_context_tokens=max_context_tokens)


def _sokoban() -> EnvSpec:
    from .sokoban import SokobanEnv, make_sokoban_dataset, summary

    def make_dataset(split: str, preset: str = "small", seed: int = 0, prompt_style: str | None = None):
        return make_sokoban_dataset(preset, split=split, seed=seed, prompt_style=prompt_style or "full")

    return EnvSpec("sokoban", make_dataset, SokobanEnv, "train", "test", max_turns=10, max_new_tokens_per_turn=48,
                   dataset_options=("preset", "seed", "prompt_style"),
                   env_options=("reward_mode", "lenient_actions", "prompt_style"),
                   summary_prompt=summary.SUMMARY_PROMPT, events=summary.EVENTS)


def _appworld_offline() -> EnvSpec:
    from .appworld import OfflineAppWorldEnv, make_offline_appworld_dataset, summary

    def make_dataset(split: str, seed: int = 0, preset: str | None = None):
        return make_offline_appworld_dataset(split=split, seed=seed)

    return EnvSpec("appworld_offline", make_dataset, OfflineAppWorldEnv, "train", "dev", max_turns=40,
                   max_new_tokens_per_turn=256, dataset_options=("seed",), summary_prompt=summary.SUMMARY_PROMPT,
                   events=summary.EVENTS)


def _appworld() -> EnvSpec:
    from .appworld import AppWorldEnv, make_appworld_dataset, summary

    def make_dataset(split: str, server_url: str | None = None, seed: int = 0, preset: str | None = None):
        return make_appworld_dataset(split=split, server_url=server_url)

    return EnvSpec("appworld", make_dataset, AppWorldEnv, "train", "dev", max_turns=40, max_new_tokens_per_turn=512,
                   dataset_options=("server_url",), env_options=("server_url",),
                   summary_prompt=summary.SUMMARY_PROMPT, events=summary.EVENTS)


_BUILDERS: dict[str, Callable[[], EnvSpec]] = {
    "sokoban": _sokoban,
    "appworld_offline": _appworld_offline,
    "appworld": _appworld,
}
ENV_NAMES = tuple(_BUILDERS)


def task_window(dataset, skip: int = 0, count: int | None = None):
    """The ``count`` tasks of ``dataset`` after its first ``skip`` (all the rest when ``count`` is None)."""
    end = len(dataset) if count is None else skip + count
    return dataset.select(range(min(skip, len(dataset)), min(end, len(dataset))))


def get_env_spec(name: str) -> EnvSpec:
    """The spec of a named environment; a clear error lists the known names."""
    if name not in _BUILDERS:
        raise ValueError(f"Unknown environment {name!r}. Known environments: {', '.join(ENV_NAMES)}.")
    return _BUILDERS[name]()
