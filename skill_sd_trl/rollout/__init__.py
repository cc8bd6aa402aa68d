"""The rollout layer: multi-turn text-action episodes played by a model against environments.

- :mod:`.multi_turn`: ``MultiTurnRollout`` (TRL's ``rollout_func``, with ``env_mask``), ``play_episodes`` and the
  generation backends (the trainer's sampler, a plain model).
- :mod:`.turn_cache`: each episode's KV cache kept between turns (transformers generation).
- :mod:`.prompts`: chat-prompt helpers shared by rollouts, the teacher's prompt and the warm starts.
"""

from ..envs.base import RolloutLimits
from .multi_turn import ModelBackend, MultiTurnRollout, episode_metrics, play_episodes

__all__ = ["ModelBackend", "MultiTurnRollout", "RolloutLimits", "episode_metrics", "play_episodes"]
