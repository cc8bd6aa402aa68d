"""Sokoban for Skill-SD: pure-Python rules, seeded reverse-play generation, an optimal solver, text rendering,
``SokobanEnv`` (a :class:`~skill_sd_trl.envs.base.TextEnv`) and preset datasets.

Quick tour::

    from skill_sd_trl.envs.sokoban import SokobanEnv, make_sokoban_dataset

    spec = load_environment(preset="small", seed=0)   # what recipes load as env_name: sokoban
    ds = spec.dataset("train")                        # = make_sokoban_dataset("small", split="train", seed=0)
    env = SokobanEnv()
    env.reset(ds[0])                      # returns None: the board is already in ds[0]["prompt"]
    result = env.step("<answer>Up || Left</answer>")
    score = env.score()                   # EpisodeScore(success=Acc., completion=Comp., info={...})
"""

from .dataset import (
    PRESETS,
    SokobanPreset,
    build_prompt,
    levels_to_dataset,
    make_sokoban_dataset,
    parse_xsb_collection,
    system_prompt,
)
from .env import SokobanEnv
from .environment import load_environment
from .generator import generate_level
from .level import Level
from .render import LEGEND, format_actions, parse_actions, parse_board, render
from .rules import ACTIONS, MoveResult, apply_moves, is_dead_corner, move
from .solver import SolverLimitError, is_solvable, solve

__all__ = [
    "ACTIONS",
    "LEGEND",
    "PRESETS",
    "Level",
    "MoveResult",
    "SokobanEnv",
    "SokobanPreset",
    "SolverLimitError",
    "apply_moves",
    "build_prompt",
    "format_actions",
    "generate_level",
    "is_dead_corner",
    "is_solvable",
    "levels_to_dataset",
    "load_environment",
    "make_sokoban_dataset",
    "move",
    "parse_actions",
    "parse_board",
    "parse_xsb_collection",
    "render",
    "solve",
    "system_prompt",
]
