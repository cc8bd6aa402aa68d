"""Multi-turn text environments."""

from .base import EpisodeScore, RolloutLimits, StepResult, TextEnv

__all__ = ["EpisodeScore", "RolloutLimits", "StepResult", "TextEnv"]
