"""Multi-turn text environments."""

from .base import EpisodeScore, StepResult, TextEnv

__all__ = ["EpisodeScore", "StepResult", "TextEnv"]
