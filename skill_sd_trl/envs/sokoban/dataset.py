"""Sokoban task sets as ``datasets.Dataset`` splits: presets, prompts, stable task ids, curriculum order.

A preset fixes the room size, box count, step budget, split sizes and solution-length bounds. For a given
``(preset, seed)`` one pool of distinct levels is generated (level ``k`` from the seed string
``"sokoban/<preset>/<seed>/<k>"``); its first ``num_train`` levels form the train split and the next ``num_test``
the test split, so the two never share a board. The train split is ordered as a curriculum (shortest optimal
solution first).

Columns: ``prompt`` (system message with rules, legend and answer format; user message with the board),
``task_id`` (``sokoban-<preset>-<split>-<index>-<sha1 of XSB, 8 hex>``, stable for a seed: the skill bank keys on
it), ``level`` (XSB), ``ground_truth`` (optimal moves as ``"Up || Left || ..."``), ``solution_length``,
``env`` (``"sokoban"``), ``max_steps``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from datasets import Dataset

from .generator import generate_level
from .level import Level, as_level
from .render import ANSWER_FORMAT, LEGEND, PROMPT_STYLES, format_actions, relative_positions, render  # noqa: F401
from .solver import solve

SPLITS = ("train", "test")
# PROMPT_STYLES (from .render): ``full``: rules spelled out (≈190 SmolLM2 tokens); ``compact``: the same facts in ≈60
# tokens, for CPU runs where every prompt token is paid per rollout, per turn, in sampling, in the student's
# forward/backward and the teacher, and the board followed by the boxes' and targets' offsets from the player.


@dataclass(frozen=True)
class SokobanPreset:
    """A named task-set recipe (hashable, so generated pools can be cached per preset and seed)."""

    name: str
    dim: tuple[int, int]
    num_boxes: int
    max_steps: int
    num_train: int
    num_test: int
    min_solution_length: int = 1
    max_solution_length: int | None = None
    curriculum: bool = True


PRESETS: dict[str, SokobanPreset] = {
    # The paper's setting: 6x6 room, 2 boxes, <= 40 steps, 96 curriculum training levels, 64 test levels.
    "paper": SokobanPreset("paper", (6, 6), 2, 40, 96, 64, min_solution_length=6, max_solution_length=24),
    # CPU-sized runs (the README's job and the CPU learning experiment): one box, 2-10 move solutions, a test split
    # big enough that one level is 1.6 %. The warm-started base solves about a fifth of it (docs/benchmarks.md).
    "small": SokobanPreset("small", (6, 6), 1, 20, 64, 64, min_solution_length=2, max_solution_length=10),
    # The CPU learning experiment: the small room, only levels with 2-3 move solutions (where a warm-started 135M
    # model solves some and fails others, so GRPO groups carry a signal), and a test split big enough that one level
    # is 3 %, not 6 %. Train and test are drawn from the same distribution and never share a level.
    "short": SokobanPreset("short", (6, 6), 1, 20, 64, 32, min_solution_length=2, max_solution_length=3),
    "tiny": SokobanPreset("tiny", (5, 5), 1, 10, 8, 8, min_solution_length=1, max_solution_length=4),
}


def system_prompt(max_steps: int) -> str:
    """Rules, legend and answer format shown to the model (the same for every level of a preset)."""
    return (
        "You are solving a Sokoban puzzle on a grid.\n"
        "Rules: you are the player. Each move goes one cell Up, Down, Left or Right. Walking into a box pushes it "
        "one cell in the same direction, but only if the cell behind it is free floor or a target. You cannot "
        "pull boxes, push two boxes at once, or walk through walls. Push every box onto a target to win.\n"
        f"Legend: {LEGEND}.\n"
        "Answer format: think briefly, then give one or more moves inside <answer>...</answer>, separated by ||, "
        f"for example {ANSWER_FORMAT}. After each answer you will see the new board.\n"
        f"You have at most {max_steps} moves in total; moves into walls still count."
    )


def compact_system_prompt(max_steps: int) -> str:
    """The rules in few tokens: goal, legend, answer format, budget."""
    return (
        f"Sokoban. Push every box onto a target. {LEGEND}. Moves: Up, Down, Left, Right; boxes can only be pushed. "
        f"Answer like {ANSWER_FORMAT}. At most {max_steps} moves."
    )


def build_prompt(level: Level, max_steps: int, style: str = "full") -> list[dict[str, str]]:
    """The conversational prompt of one level: system rules + user message with the rendered board."""
    if style not in PROMPT_STYLES:
        raise ValueError(f"prompt_style={style!r} is not valid; choose one of {', '.join(PROMPT_STYLES)}.")
    if style == "compact":
        system = compact_system_prompt(max_steps)
        user = f"{render(level)}\n{relative_positions(level)}\nSteps left: {max_steps}."
    else:
        system = system_prompt(max_steps)
        user = (
            f"Here is the board (row 0 at the top):\n{render(level)}\n"
            f"Boxes on targets: {level.boxes_on_target}/{level.num_boxes}. Steps left: {max_steps}.\n"
            "Give your moves."
        )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def make_sokoban_dataset(preset: str | SokobanPreset = "small", split: str = "train", seed: int = 0,
                         prompt_style: str = "full") -> Dataset:
    """Build one split of a preset's levels, reproducibly from ``seed``.

    Args:
        preset: a name in :data:`PRESETS` (``"paper"``, ``"small"``, ``"tiny"``) or a :class:`SokobanPreset`.
        split: ``"train"`` (curriculum-ordered) or ``"test"``; the two never share a level.
        seed: different seeds give different level sets.
        prompt_style: ``"full"`` rules or ``"compact"`` ones (:data:`PROMPT_STYLES`).
    """
    spec = resolve_preset(preset)
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}, got {split!r}.")
    train, test = level_pool(spec, seed)
    levels = train if split == "train" else test
    return levels_to_dataset(levels, name=spec.name, split=split, max_steps=spec.max_steps, prompt_style=prompt_style)


def levels_to_dataset(
    levels: Iterable[Level | str],
    *,
    name: str = "custom",
    split: str = "train",
    max_steps: int = 40,
    curriculum: bool = False,
    max_states: int = 1_000_000,
    prompt_style: str = "full",
) -> Dataset:
    """Turn any levels (e.g. a classic XSB collection) into a dataset with the standard columns.

    Levels without a stored solution are solved here; an unsolvable level raises ``ValueError`` naming its
    index. ``curriculum=True`` sorts by optimal solution length (stable).
    """
    solved = []
    for i, item in enumerate(levels):
        level = as_level(item)
        if level.solution is None:
            solution = solve(level, max_states=max_states)
            if solution is None:
                raise ValueError(f"Level {i} of `levels` is unsolvable; remove it:\n{level}")
            level = level.with_solution(solution)
        solved.append(level)
    if curriculum:
        solved.sort(key=lambda lvl: lvl.solution_length)
    rows = [_row(level, name, split, i, max_steps, prompt_style) for i, level in enumerate(solved)]
    if not rows:
        raise ValueError("`levels` is empty; give at least one level.")
    return Dataset.from_list(rows)


def parse_xsb_collection(text: str) -> list[Level]:
    """Split a classic level-collection file into levels.

    Levels are blocks of board lines; lines that are not board lines (titles, ``;`` comments, ``Title:`` ...)
    and blank lines separate them.
    """
    board_chars = set("# -_.$*@+")
    levels, block = [], []
    for line in text.replace("\r\n", "\n").split("\n") + [""]:
        stripped = line.rstrip()
        is_board = bool(stripped) and set(stripped) <= board_chars and "#" in stripped
        if is_board:
            block.append(stripped)
        elif block:
            levels.append(Level.from_xsb("\n".join(block)))
            block = []
    return levels


# ---------------------------------------------------------------------- presets and level pools
def resolve_preset(preset: str | SokobanPreset) -> SokobanPreset:
    if isinstance(preset, SokobanPreset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"Unknown Sokoban preset {preset!r}; choose one of {sorted(PRESETS)} or pass a SokobanPreset.")
    return PRESETS[preset]


@lru_cache(maxsize=16)
def level_pool(spec: SokobanPreset, seed: int) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
    """Distinct levels for both splits of ``(spec, seed)``; train first, in curriculum order when asked."""
    wanted = spec.num_train + spec.num_test
    seen: set[Level] = set()
    pool: list[Level] = []
    k = 0
    while len(pool) < wanted:
        if k >= 50 * wanted:
            raise RuntimeError(
                f"Preset {spec.name!r} produced only {len(pool)} distinct levels out of {wanted}; "
                "widen its solution-length bounds or room size."
            )
        level = generate_level(
            f"sokoban/{spec.name}/{seed}/{k}",
            spec.dim,
            spec.num_boxes,
            min_solution_length=spec.min_solution_length,
            max_solution_length=spec.max_solution_length,
        )
        k += 1
        if level in seen:  # Level equality ignores the stored solution: same board, same player, same boxes
            continue
        seen.add(level)
        pool.append(level)
    train = pool[: spec.num_train]
    if spec.curriculum:
        train = sorted(train, key=lambda lvl: lvl.solution_length)  # stable: ties keep generation order
    return tuple(train), tuple(pool[spec.num_train :])


def _row(level: Level, name: str, split: str, index: int, max_steps: int, prompt_style: str = "full") -> dict[str, Any]:
    xsb = str(level)
    digest = hashlib.sha1(xsb.encode("utf-8")).hexdigest()[:8]
    return {
        "prompt": build_prompt(level, max_steps, prompt_style),
        "task_id": f"sokoban-{name}-{split}-{index}-{digest}",
        "level": xsb,
        "ground_truth": format_actions(level.solution or ()),
        "solution_length": len(level.solution or ()),
        "env": "sokoban",
        "max_steps": max_steps,
    }
