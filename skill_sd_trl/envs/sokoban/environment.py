"""Sokoban's entry point: ``load_environment(**env_args) -> EnvSpec`` (registered as ``sokoban``).

The signature is the list of Sokoban's options; a recipe writes them under ``env_args:``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from ..base import EnvSpec
from . import summary
from .dataset import PRESETS, SPLITS, SokobanPreset, build_prompt, level_pool, make_sokoban_dataset, resolve_preset
from .env import REWARD_MODES, SokobanEnv
from .generator import generate_level
from .render import PROMPT_STYLES, format_actions

#: Presets whose boards a warm start never shows: every preset the CPU recipes train or evaluate on.
WARM_START_EXCLUDED_PRESETS = ("small", "short")


def load_environment(preset: str = "small", seed: int = 0, reward_mode: str = "shaped", prompt_style: str = "full",
                     lenient_actions: bool = False) -> EnvSpec:
    """Sokoban on a preset's level sets.

    Args:
        preset: the task-set recipe, one of ``tiny``, ``small``, ``short``, ``paper`` (room, boxes, step budget,
            split sizes; ``paper`` is the paper's 6x6 room with 2 boxes).
        seed: the level set: a seed of the level generator (train and test levels of one seed never share a board).
        reward_mode: ``shaped`` (RAGEN's step/box/solve shaping) or ``success`` (1 when solved, else 0).
        prompt_style: ``full`` (rules spelled out) or ``compact`` (the same facts in about a third of the tokens).
        lenient_actions: for very small models, read direction words from turns that miss the answer grammar,
            with a format penalty.
    """
    if isinstance(preset, str) and preset not in PRESETS:
        raise ValueError(f"preset={preset!r}: choose one of {', '.join(PRESETS)}")
    chosen = resolve_preset(preset)
    if reward_mode not in REWARD_MODES:
        raise ValueError(f"reward_mode={reward_mode!r}: choose one of {', '.join(REWARD_MODES)}")
    if prompt_style not in PROMPT_STYLES:
        raise ValueError(f"prompt_style={prompt_style!r}: choose one of {', '.join(PROMPT_STYLES)}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed={seed!r}: a level-set seed is an integer >= 0")
    return EnvSpec(
        name="sokoban",
        make_dataset=partial(_dataset, chosen, seed, prompt_style),
        make_env=partial(SokobanEnv, reward_mode=reward_mode, lenient_actions=lenient_actions,
                         prompt_style=prompt_style),
        train_split="train", eval_split="test", max_turns=10, max_new_tokens_per_turn=48, task_set_arg="seed",
        summary_prompt=summary.SUMMARY_PROMPT, events=summary.EVENTS,
        demonstrations=partial(demonstrations, chosen, prompt_style),
    )


def _dataset(preset: SokobanPreset, seed: int, prompt_style: str, split: str):
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: Sokoban's splits are {', '.join(SPLITS)}")
    return make_sokoban_dataset(preset, split=split, seed=seed, prompt_style=prompt_style)


def demonstrations(preset: SokobanPreset, prompt_style: str, count: int, seed: int,
                   exclude_task_sets: Sequence[int]) -> list[dict[str, Any]]:
    """``count`` distinct solved levels of ``preset``'s kind as rows (``prompt``, ``level``, ``max_steps``,
    ``ground_truth``) with ``answer``, the optimal solution as one answer; none of them a train or test board of
    ``preset`` or of the CPU presets at any level-set seed in ``exclude_task_sets``. Drawn from their own generator
    namespace (``sokoban-warmstart/...``), reproducibly from ``seed``."""
    excluded = set()
    for name in {preset.name, *WARM_START_EXCLUDED_PRESETS} & set(PRESETS):
        for level_seed in exclude_task_sets:
            train, test = level_pool(PRESETS[name], level_seed)
            excluded.update(train)
            excluded.update(test)
    rows, seen, k = [], set(), 0
    while len(rows) < count:
        if k >= 50 * count:
            raise RuntimeError(f"only {len(rows)} of {count} demonstration levels could be generated for {preset.name}")
        level = generate_level(f"sokoban-warmstart/{preset.name}/{seed}/{k}", preset.dim, preset.num_boxes,
                               min_solution_length=preset.min_solution_length,
                               max_solution_length=preset.max_solution_length)
        k += 1
        if level in excluded or level in seen:  # Level equality: same board, player and boxes
            continue
        seen.add(level)
        moves = format_actions(level.solution)
        rows.append({"prompt": build_prompt(level, preset.max_steps, prompt_style), "level": level.to_xsb(),
                     "max_steps": preset.max_steps, "ground_truth": moves, "answer": f"<answer>{moves}</answer>"})
    return rows
