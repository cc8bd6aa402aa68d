"""The contract between the library and an environment: :class:`EnvSpec` (what ``load_environment`` returns) and
:class:`TextEnv` (one episode).

An environment episode is driven by text: the model's turn is passed verbatim to ``step`` (the environment
parses it), and the environment answers with an observation that becomes the next user message. Environments
never see token ids; the rollout loop owns tokenization and masks. ``RolloutLimits`` (how long an episode may run)
lives here too, so that an environment can state its defaults without importing the rollout loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..skills.events import EventVocabulary
    from ..skills.prompts import SummaryPrompt


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
class StepResult:
    observation: str
    reward: float = 0.0
    done: bool = False
    valid: bool = True  # False when the action was unparseable / refused (a format penalty is in ``reward``)
    stop_reason: str | None = None  # set when done: "solved", "failed", ... (the loop adds "max_turns", ...)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class EpisodeScore:
    success: bool  # Acc.
    completion: float  # Comp., in [0, 1]
    info: dict[str, Any] = field(default_factory=dict)


class TextEnv(ABC):
    """A multi-turn environment played through text actions. One instance plays one episode at a time."""

    name: str = "env"
    #: the stop reasons this environment reports in ``StepResult.stop_reason`` (logged as ``env/<name>/stop/<r>``)
    stop_reasons: tuple[str, ...] = ()

    @abstractmethod
    def reset(self, example: Mapping[str, Any]) -> str | None:
        """Start an episode for a dataset row; return extra text for the first user message, or None."""

    @abstractmethod
    def step(self, action: str) -> StepResult:
        """Apply the model's raw turn text and return what the environment answers."""

    @abstractmethod
    def score(self) -> EpisodeScore:
        """Acc./Comp. of the episode so far (called once the episode ends)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (processes, databases)."""


@dataclass(frozen=True)
class EnvSpec:
    """One environment with its options bound: what training, evaluation and experiments need of it.

    An environment package exposes ``load_environment(**env_args) -> EnvSpec`` (its signature documents its
    options) and registers it under the entry-point group ``skill_sd_trl.environments`` (see envs/registry.py).

    Attributes:
        name: the environment's name (metric prefix ``env/<name>/...``, the summarizer's vocabulary key).
        make_dataset: ``split -> datasets.Dataset`` with at least the columns ``prompt`` (conversational) and
            ``task_id`` (stable: the skill bank keys on it); other columns reach ``TextEnv.reset``.
        make_env: a fresh :class:`TextEnv` for one episode.
        train_split / eval_split: the splits trained on and held out.
        max_turns / max_new_tokens_per_turn: default rollout limits (a recipe may override them).
        task_set_arg: the ``load_environment`` parameter that selects the task set (a generator seed), which an
            experiment varies across cells; ``None`` when the environment has one task set.
        summary_prompt / events: what the LLM summarizer and the experience summarizer need to know of it.
        demonstrations: ``(count, seed, exclude_task_sets) -> list of rows`` for a supervised warm start: dataset
            rows (they reset the environment) plus ``answer``, the turn that solves them, drawn from tasks never
            in any split of the excluded task sets; ``None`` when the environment has no reference solutions.
        scenario_of: ``task_id -> scenario``: the family of related tasks a task belongs to (the app world: its
            template, the same task on other worlds), so that skills can be shared across a scenario's tasks
            (``bank_scope: scenario``); ``None`` when every task is its own scenario.
    """

    name: str
    make_dataset: Callable[[str], Any]
    make_env: Callable[[], TextEnv]
    train_split: str = "train"
    eval_split: str = "test"
    max_turns: int = 8
    max_new_tokens_per_turn: int = 64
    task_set_arg: str | None = None
    summary_prompt: SummaryPrompt | None = None
    events: EventVocabulary | None = None
    demonstrations: Callable[[int, int, Sequence[int]], list[dict[str, Any]]] | None = None
    scenario_of: Callable[[str], str] | None = None

    def dataset(self, split: str | None = None):
        """The rows of ``split`` (default: the training split)."""
        return self.make_dataset(split or self.train_split)

    def limits(self, max_turns: int | None = None, max_new_tokens_per_turn: int | None = None,
               max_context_tokens: int | None = None) -> RolloutLimits:
        """Rollout limits: the given overrides, else this environment's defaults."""
        return RolloutLimits(max_turns=max_turns or self.max_turns,
                             max_new_tokens_per_turn=max_new_tokens_per_turn or self.max_new_tokens_per_turn,
                             max_context_tokens=max_context_tokens)
