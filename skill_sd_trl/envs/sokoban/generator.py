"""Seeded Sokoban level generation by reverse play.

Recipe (as in gym-sokoban / RAGEN), per attempt:

1. carve a room: a random walk through the interior of a walled ``dim`` grid turns cells into floor;
2. put the targets and the player on random floor cells, with every box standing on its target (solved);
3. play backwards: the player walks randomly and, when stepping away from an adjacent box, may *pull* it along.
   Each pull is the exact reverse of a legal push, so the resulting position is solvable by construction;
4. solve it optimally with :func:`~.solver.solve` to store the ground truth and grade the difficulty, and keep it
   only if every box is off its target and the solution length is within the requested bounds.

Only ``random.Random(seed)`` is used, never the global random state, so a seed always gives the same level.
"""

from __future__ import annotations

import random

from .level import Cell, Level
from .solver import SolverLimitError, solve

_DIRECTIONS: tuple[Cell, ...] = ((-1, 0), (1, 0), (0, -1), (0, 1))


def generate_level(
    seed: int | str,
    dim: tuple[int, int] = (6, 6),
    num_boxes: int = 2,
    *,
    min_solution_length: int = 1,
    max_solution_length: int | None = None,
    reverse_steps: tuple[int, int] | None = None,
    pull_probability: float = 0.75,
    max_attempts: int = 500,
) -> Level:
    """Generate a solvable level with its optimal solution stored in ``level.solution``.

    Args:
        seed: any int or str; the same seed (and arguments) always gives the same level.
        dim: ``(height, width)`` including the outer wall ring.
        num_boxes: number of boxes (= targets).
        min_solution_length / max_solution_length: bounds on the optimal number of moves.
        reverse_steps: ``(low, high)`` range for the length of the backward walk; by default derived from
            ``max_solution_length`` (short walks make short puzzles).
        pull_probability: chance of pulling an adjacent box when stepping away from it during the walk.
        max_attempts: attempts before giving up with a ``RuntimeError``.
    """
    height, width = _check_args(dim, num_boxes, min_solution_length, max_solution_length)
    if reverse_steps is None:
        high = 40 if max_solution_length is None else max(2, min(40, 2 * max_solution_length))
        reverse_steps = (max(1, min(high, min_solution_length)), high)
    low_steps, high_steps = reverse_steps
    if not 1 <= low_steps <= high_steps:
        raise ValueError(f"`reverse_steps` must be (low, high) with 1 <= low <= high, got {reverse_steps}.")
    rng = random.Random(seed)
    for _ in range(max_attempts):
        floor = _carve_room(rng, height, width, num_boxes)
        targets, player = _place(rng, floor, num_boxes)
        boxes, player = _reverse_play(
            rng, floor, set(targets), player, rng.randint(low_steps, high_steps), pull_probability
        )
        if boxes & targets:  # a box never left its target: too easy, and Comp. would not start at 0
            continue
        walls = frozenset((r, c) for r in range(height) for c in range(width)) - floor
        level = Level(height, width, walls, frozenset(floor), frozenset(targets), frozenset(boxes), player)
        try:
            solution = solve(level, max_states=200_000)
        except SolverLimitError:
            continue
        if solution is None:  # cannot happen for reverse play; kept as a guard for the rules staying in sync
            continue
        if len(solution) < min_solution_length:
            continue
        if max_solution_length is not None and len(solution) > max_solution_length:
            continue
        return level.with_solution(solution)
    raise RuntimeError(
        f"Could not generate a {height}x{width} level with {num_boxes} box(es) and a solution of "
        f"{min_solution_length}..{max_solution_length} moves in {max_attempts} attempts (seed={seed!r}); "
        "relax the solution-length bounds or enlarge `dim`."
    )


def _check_args(dim, num_boxes, min_len, max_len) -> tuple[int, int]:
    try:
        height, width = (int(x) for x in dim)
    except (TypeError, ValueError):
        raise ValueError(f"`dim` must be a (height, width) pair, got {dim!r}.") from None
    if height < 3 or width < 3:
        raise ValueError(f"`dim` must be at least (3, 3) to fit a wall ring around floor, got {dim!r}.")
    if num_boxes < 1:
        raise ValueError(f"`num_boxes` must be >= 1, got {num_boxes}.")
    interior = (height - 2) * (width - 2)
    if interior < 2 * num_boxes + 2:
        raise ValueError(
            f"`dim`={dim!r} leaves {interior} interior cells, too few for {num_boxes} box(es); "
            f"use a larger `dim` or fewer boxes."
        )
    if min_len < 1:
        raise ValueError(f"`min_solution_length` must be >= 1, got {min_len}.")
    if max_len is not None and max_len < min_len:
        raise ValueError(f"`max_solution_length` ({max_len}) must be >= `min_solution_length` ({min_len}).")
    return height, width


def _carve_room(rng: random.Random, height: int, width: int, num_boxes: int) -> set[Cell]:
    """Random-walk carving inside the wall ring until a random share of the interior is floor.

    The walk keeps its direction most of the time, which yields corridors and open areas rather than noise.
    """
    interior = [(r, c) for r in range(1, height - 1) for c in range(1, width - 1)]
    minimum = min(len(interior), max(2 * num_boxes + 3, (len(interior) * 3) // 5))
    wanted = rng.randint(minimum, len(interior))
    cell = rng.choice(interior)
    floor = {cell}
    direction = rng.choice(_DIRECTIONS)
    while len(floor) < wanted:
        if rng.random() < 0.35:
            direction = rng.choice(_DIRECTIONS)
        r, c = cell[0] + direction[0], cell[1] + direction[1]
        if 1 <= r < height - 1 and 1 <= c < width - 1:
            cell = (r, c)
            floor.add(cell)
        else:
            direction = rng.choice(_DIRECTIONS)
    return floor


def _place(rng: random.Random, floor: set[Cell], num_boxes: int) -> tuple[frozenset[Cell], Cell]:
    cells = rng.sample(sorted(floor), num_boxes + 1)  # sorted: set order must not leak into the result
    return frozenset(cells[:num_boxes]), cells[num_boxes]


def _reverse_play(
    rng: random.Random, floor: set[Cell], boxes: set[Cell], player: Cell, steps: int, pull_probability: float
) -> tuple[frozenset[Cell], Cell]:
    """Walk backwards from the solved state; stepping away from an adjacent box may pull it along."""
    for _ in range(steps):
        moves = []
        for dr, dc in _DIRECTIONS:
            nxt = (player[0] + dr, player[1] + dc)
            if nxt in floor and nxt not in boxes:
                moves.append((dr, dc))
        if not moves:  # boxed in: cannot happen with a pulled box behind us, but a placement can do it
            break
        dr, dc = rng.choice(moves)
        behind = (player[0] - dr, player[1] - dc)
        if behind in boxes and rng.random() < pull_probability:
            boxes.remove(behind)
            boxes.add(player)  # the box follows the player into the cell it leaves
        player = (player[0] + dr, player[1] + dc)
    return frozenset(boxes), player
