"""Pure Sokoban move rules: walk, push one box, never pull, never push two boxes.

Everything here is a function of an immutable :class:`~.level.Level`; nothing is stored. The environment, the
generator's sanity checks and the tests all go through :func:`move`, so the rules exist exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .level import Cell, Level

ACTIONS: tuple[str, ...] = ("Up", "Down", "Left", "Right")
DELTAS: dict[str, Cell] = {"Up": (-1, 0), "Down": (1, 0), "Left": (0, -1), "Right": (0, 1)}

# Event tags written into ``Turn.info["events"]`` (skill summarizers read them).
WALL_BUMP = "wall_bump"
BOX_ON_TARGET = "box_on_target"
BOX_OFF_TARGET = "box_off_target"
BOX_IN_DEAD_CORNER = "box_in_dead_corner"
SOLVED = "solved"


@dataclass(frozen=True)
class MoveResult:
    """Outcome of one move: the new level and what happened.

    ``moved`` is False when the player bumped into a wall or an unpushable box (the level is unchanged).
    ``events`` lists the tags of this move in order (e.g. ``("box_off_target", "box_on_target")`` when a box
    slides from one target to the next).
    """

    level: Level
    moved: bool
    pushed: bool
    events: tuple[str, ...]


def _add(cell: Cell, delta: Cell) -> Cell:
    return (cell[0] + delta[0], cell[1] + delta[1])


def move(level: Level, action: str) -> MoveResult:
    """Apply one canonical action (``"Up"``, ``"Down"``, ``"Left"``, ``"Right"``) to ``level``.

    Raises ``ValueError`` for any other action string: free-form model text goes through
    :func:`~.render.parse_actions` first.
    """
    if action not in DELTAS:
        raise ValueError(f"Unknown Sokoban action {action!r}; expected one of {', '.join(ACTIONS)}.")
    delta = DELTAS[action]
    ahead = _add(level.player, delta)
    if ahead not in level.floor:
        return MoveResult(level, moved=False, pushed=False, events=(WALL_BUMP,))
    if ahead not in level.boxes:
        return MoveResult(level.with_state(ahead, level.boxes), moved=True, pushed=False, events=())

    beyond = _add(ahead, delta)
    if not level.is_free(beyond):  # wall, void or a second box behind: cannot push
        return MoveResult(level, moved=False, pushed=False, events=(WALL_BUMP,))
    boxes = (level.boxes - {ahead}) | {beyond}
    new_level = level.with_state(ahead, boxes)
    events: list[str] = []
    if ahead in level.targets:
        events.append(BOX_OFF_TARGET)
    if beyond in level.targets:
        events.append(BOX_ON_TARGET)
    elif is_dead_corner(level, beyond):
        events.append(BOX_IN_DEAD_CORNER)
    if new_level.is_solved:
        events.append(SOLVED)
    return MoveResult(new_level, moved=True, pushed=True, events=tuple(events))


def apply_moves(level: Level, actions: Iterable[str]) -> Level:
    """Apply a sequence of canonical actions, ignoring bumps (they leave the level unchanged)."""
    for action in actions:
        level = move(level, action).level
    return level


def is_dead_corner(level: Level, cell: Cell) -> bool:
    """A non-target floor cell blocked both vertically and horizontally: a box there can never move again.

    This is the simplest dead-lock pattern (it ignores other boxes and wall-line dead-locks), cheap enough to
    report on every push.
    """
    if cell in level.targets or cell not in level.floor:
        return False
    r, c = cell
    vertical = (r - 1, c) not in level.floor or (r + 1, c) not in level.floor
    horizontal = (r, c - 1) not in level.floor or (r, c + 1) not in level.floor
    return vertical and horizontal
