"""The contract between the multi-turn rollout loop and an environment.

An environment episode is driven by text: the model's turn is passed verbatim to ``step`` (the environment
parses it), and the environment answers with an observation that becomes the next user message. Environments
never see token ids; the rollout loop owns tokenization and masks. ``RolloutLimits`` (how long an episode may run)
lives here too, so that an environment can state its defaults without importing the rollout loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


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
