"""Optimal Sokoban solver: breadth-first search over (player cell, box cells) states.

Every edge is one player move, so the first solved state BFS reaches gives a fewest-moves solution (not
fewest-pushes). States are packed as ``(player_index, box_bitmask)`` for speed; a 6x6 room with two boxes has
at most a few thousand states and solves in milliseconds.

Pruning keeps optimality: a box on a "dead square" (a cell from which no push sequence, even ignoring the other
boxes, can bring it to any target) can never be part of a solution, so such states are skipped.
"""

from __future__ import annotations

from collections import deque

from .level import Level, as_level
from .rules import ACTIONS, DELTAS

DEFAULT_MAX_STATES = 1_000_000


class SolverLimitError(RuntimeError):
    """Raised when the search visits more than ``max_states`` states without settling solvability."""


def solve(level: Level | str, *, max_states: int = DEFAULT_MAX_STATES) -> list[str] | None:
    """Return a fewest-moves solution of ``level`` as a list of ``"Up"/"Down"/"Left"/"Right"``.

    Args:
        level: a :class:`Level` or its XSB text.
        max_states: guard against huge levels; beyond it a :class:`SolverLimitError` is raised (so "unsolvable"
            and "too big to decide" are never confused).

    Returns:
        The optimal move list (``[]`` when already solved), or ``None`` when the level is unsolvable.
    """
    lvl = as_level(level)
    if max_states < 1:
        raise ValueError(f"`max_states` must be >= 1, got {max_states}.")
    width = lvl.width
    index = lambda cell: cell[0] * width + cell[1]  # noqa: E731 - tiny local packer
    size = lvl.height * width
    # Neighbour tables: step[a][i] = cell reached from i moving along action a, or -1 off the floor.
    step = []
    for action in ACTIONS:
        dr, dc = DELTAS[action]
        table = [-1] * size
        for r, c in lvl.floor:
            nxt = (r + dr, c + dc)
            if nxt in lvl.floor:
                table[index((r, c))] = index(nxt)
        step.append(table)

    target_mask = _mask(index(c) for c in lvl.targets)
    live = _live_squares(step, size, [index(c) for c in lvl.targets])
    start = (index(lvl.player), _mask(index(c) for c in lvl.boxes))
    if start[1] == target_mask:
        return []
    if any(not live[index(c)] for c in lvl.boxes):
        return None

    parents: dict[tuple[int, int], tuple[tuple[int, int], int] | None] = {start: None}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        player, boxes = state
        for a, table in enumerate(step):
            ahead = table[player]
            if ahead < 0:
                continue
            bit = 1 << ahead
            if boxes & bit:
                beyond = table[ahead]
                if beyond < 0 or boxes & (1 << beyond) or not live[beyond]:
                    continue
                new_boxes = (boxes ^ bit) | (1 << beyond)
            else:
                new_boxes = boxes
            nxt = (ahead, new_boxes)
            if nxt in parents:
                continue
            parents[nxt] = (state, a)
            if new_boxes == target_mask:
                return _path(parents, nxt)
            if len(parents) > max_states:
                raise SolverLimitError(
                    f"Sokoban solver visited more than max_states={max_states} states without finishing; "
                    "raise `max_states` or use a smaller level."
                )
            queue.append(nxt)
    return None


def is_solvable(level: Level | str, *, max_states: int = DEFAULT_MAX_STATES) -> bool:
    return solve(level, max_states=max_states) is not None


def _mask(indices) -> int:
    mask = 0
    for i in indices:
        mask |= 1 << i
    return mask


def _live_squares(step: list[list[int]], size: int, targets: list[int]) -> list[bool]:
    """Cells from which a lone box can be pushed onto some target (reverse "pull" search from the targets).

    A box moves from ``b`` to ``b + d`` when the player stands on ``b - d``; so from a reached cell ``x`` the box
    could have come from ``b = x - d`` provided ``b - d`` is floor too.
    """
    opposite = {0: 1, 1: 0, 2: 3, 3: 2}  # index pairs of Up/Down and Left/Right in ACTIONS
    live = [False] * size
    queue = deque(targets)
    for t in targets:
        live[t] = True
    while queue:
        x = queue.popleft()
        for a in range(len(ACTIONS)):
            back = step[opposite[a]]
            b = back[x]  # where the box was before being pushed along direction a
            if b < 0 or live[b]:
                continue
            if back[b] < 0:  # the player must have stood behind the box
                continue
            live[b] = True
            queue.append(b)
    return live


def _path(parents, state) -> list[str]:
    moves = []
    while parents[state] is not None:
        state, a = parents[state]
        moves.append(ACTIONS[a])
    moves.reverse()
    return moves
