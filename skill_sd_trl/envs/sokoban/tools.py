"""Sokoban for tool-calling models (e.g. Qwen3) through TRL's ``environment_factory``.

TRL turns the public methods of the environment class into tools (here: ``move``), appends what ``reset`` returns to
the last user message, marks tool results with ``tool_mask`` 0 and reads the reward from ``get_reward``. The rules,
rewards and parsing are those of :class:`SokobanEnv`; only the protocol differs from the text-action path.
"""

from __future__ import annotations

from .env import SokobanEnv


class SokobanToolEnv:
    """One Sokoban episode driven by ``move`` tool calls. Use ``environment_factory=SokobanToolEnv``."""

    def __init__(self, **env_kwargs):
        self._env = SokobanEnv(**env_kwargs)

    def reset(self, **row) -> str | None:
        self._env.reset(row)
        return None  # the board is already in the row's prompt

    def move(self, directions: str) -> str:
        """
        Move the player on the Sokoban board.

        Args:
            directions: One or more moves among Up, Down, Left, Right, separated by "||", for example "Up || Left".

        Returns:
            What happened, then the new board.
        """
        return self._env.step(f"<answer>{directions}</answer>").observation

    def get_reward(self) -> float:
        """The episode's return so far (shaped or success-only, as configured)."""
        return float(self._env.total_reward)
