"""The Sokoban board model and the XSB text format (both ways).

A :class:`Level` is an immutable snapshot: the static board (walls, walkable floor, targets) plus the dynamic
part (box cells, player cell). Moving returns a new ``Level`` (see :mod:`.rules`), which keeps the rules pure and
makes states hashable.

Cells are ``(row, column)`` tuples, row 0 at the top. Every cell of the ``height x width`` grid is one of:

* a wall (``#``),
* floor: a non-wall cell connected to the player through non-wall cells (boxes and targets lie on floor),
* void: a non-wall cell walled off from the player (the outside of an irregular classic level). Void is
  impassable like a wall; XSB writes it as a space, :func:`~.render.render` draws it as a wall.

XSB (the common level-collection format): ``#`` wall, space floor, ``.`` target, ``$`` box, ``*`` box on target,
``@`` player, ``+`` player on target; ``-`` and ``_`` are accepted as floor too.
"""

from __future__ import annotations

import textwrap
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

Cell = tuple[int, int]

# Unit steps for the four orthogonal directions; shared by parsing (flood fill) and the rules.
ORTHOGONAL: tuple[Cell, ...] = ((-1, 0), (1, 0), (0, -1), (0, 1))

# What each XSB character stands for: (is_wall, is_target, has_box, has_player).
XSB_SYMBOLS: dict[str, tuple[bool, bool, bool, bool]] = {
    "#": (True, False, False, False),
    " ": (False, False, False, False),
    "-": (False, False, False, False),
    "_": (False, False, False, False),
    ".": (False, True, False, False),
    "$": (False, False, True, False),
    "*": (False, True, True, False),
    "@": (False, False, False, True),
    "+": (False, True, False, True),
}


@dataclass(frozen=True)
class Level:
    """An immutable Sokoban position: static board plus box and player cells.

    ``str(level)`` is its XSB text. ``solution`` (optimal moves, when known) is carried along but takes no part
    in equality or hashing, so two identical boards compare equal whatever was stored with them.
    """

    height: int
    width: int
    walls: frozenset[Cell]
    floor: frozenset[Cell]
    targets: frozenset[Cell]
    boxes: frozenset[Cell]
    player: Cell
    solution: tuple[str, ...] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # Normalise containers so callers may pass sets/lists; frozen dataclass needs object.__setattr__.
        for name in ("walls", "floor", "targets", "boxes"):
            value = getattr(self, name)
            if not isinstance(value, frozenset):
                object.__setattr__(self, name, frozenset(tuple(c) for c in value))
        object.__setattr__(self, "player", tuple(self.player))
        if self.solution is not None and not isinstance(self.solution, tuple):
            object.__setattr__(self, "solution", tuple(self.solution))
        self._validate()

    def _validate(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"Level size must be positive, got height={self.height}, width={self.width}.")
        if self.walls & self.floor:
            raise ValueError(f"Level cells {sorted(self.walls & self.floor)} are both wall and floor.")
        for name in ("walls", "floor"):
            outside = [c for c in getattr(self, name) if not (0 <= c[0] < self.height and 0 <= c[1] < self.width)]
            if outside:
                raise ValueError(f"Level `{name}` has cells outside the {self.height}x{self.width} grid: {outside}.")
        if self.player not in self.floor:
            raise ValueError(f"Level player cell {self.player} is not a floor cell.")
        if self.player in self.boxes:
            raise ValueError(f"Level player cell {self.player} holds a box; a cell holds a player or a box.")
        if not self.boxes:
            raise ValueError("Level has no boxes; a Sokoban level needs at least one box and one target.")
        if len(self.boxes) != len(self.targets):
            raise ValueError(
                f"Level has {len(self.boxes)} boxes but {len(self.targets)} targets; the counts must match."
            )
        for name in ("boxes", "targets"):
            off = sorted(set(getattr(self, name)) - self.floor)
            if off:
                raise ValueError(f"Level `{name}` cells {off} are not floor cells reachable from the player.")

    # ------------------------------------------------------------------ accessors
    @property
    def dim(self) -> tuple[int, int]:
        """``(height, width)`` of the grid."""
        return (self.height, self.width)

    @property
    def num_boxes(self) -> int:
        return len(self.boxes)

    @property
    def boxes_on_target(self) -> int:
        """How many boxes currently stand on a target."""
        return len(self.boxes & self.targets)

    @property
    def completion(self) -> float:
        """Fraction of boxes on targets ("Comp." of the paper), in [0, 1]."""
        return self.boxes_on_target / self.num_boxes

    @property
    def is_solved(self) -> bool:
        return self.boxes == self.targets

    @property
    def solution_length(self) -> int | None:
        return None if self.solution is None else len(self.solution)

    def is_free(self, cell: Cell) -> bool:
        """True when the player (or a pushed box) may enter ``cell``: floor without a box."""
        return cell in self.floor and cell not in self.boxes

    def with_state(self, player: Cell, boxes: Iterable[Cell]) -> Level:
        """Same board, new player/box cells. The stored solution no longer applies and is dropped."""
        return replace(self, player=tuple(player), boxes=frozenset(boxes), solution=None)

    def with_solution(self, solution: Iterable[str] | None) -> Level:
        return replace(self, solution=None if solution is None else tuple(solution))

    # ------------------------------------------------------------------ XSB
    @classmethod
    def from_xsb(cls, text: str) -> Level:
        """Parse one level in XSB notation (multi-line string).

        Tolerates ``\\r\\n`` line ends, common indentation, leading/trailing blank lines, trailing spaces and
        ragged lines. Raises ``ValueError`` naming the problem for unknown characters, a missing or repeated
        player, box/target count mismatches, or boxes/targets walled off from the player.
        """
        if not isinstance(text, str):
            raise TypeError(f"XSB level must be a str, got {type(text).__name__}.")
        return level_from_grid(text, XSB_SYMBOLS, source="XSB level")

    def to_xsb(self) -> str:
        """XSB text: one line per row, trailing spaces removed, no trailing newline."""
        rows = []
        for r in range(self.height):
            row = "".join(self._xsb_char((r, c)) for c in range(self.width))
            rows.append(row.rstrip())
        return "\n".join(rows)

    def _xsb_char(self, cell: Cell) -> str:
        if cell in self.walls:
            return "#"
        if cell not in self.floor:
            return " "
        target = cell in self.targets
        if cell == self.player:
            return "+" if target else "@"
        if cell in self.boxes:
            return "*" if target else "$"
        return "." if target else " "

    def __str__(self) -> str:
        return self.to_xsb()


def as_level(level: Level | str) -> Level:
    """Accept a :class:`Level` or its XSB text."""
    if isinstance(level, Level):
        return level
    if isinstance(level, str):
        return Level.from_xsb(level)
    raise TypeError(f"Expected a Level or an XSB string, got {type(level).__name__}.")


def level_from_grid(text: str, symbols: Mapping[str, tuple[bool, bool, bool, bool]], *, source: str) -> Level:
    """Build a level from a character grid using ``symbols`` (char -> wall/target/box/player flags).

    Shared by the XSB reader and the rendered-board reader, which differ only in their alphabets.
    """
    lines = textwrap.dedent(text.replace("\r\n", "\n").replace("\r", "\n").expandtabs(1)).split("\n")
    lines = [line.rstrip() for line in lines]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise ValueError(f"{source} is empty; expected rows of {''.join(sorted(symbols))!r} characters.")

    height, width = len(lines), max(len(line) for line in lines)
    walls: set[Cell] = set()
    open_cells: set[Cell] = set()
    targets: set[Cell] = set()
    boxes: set[Cell] = set()
    players: list[Cell] = []
    for r, line in enumerate(lines):
        for c, ch in enumerate(line):
            if ch not in symbols:
                allowed = "".join(sorted(symbols))
                raise ValueError(
                    f"{source}: unknown character {ch!r} at row {r}, column {c}; allowed characters are {allowed!r}."
                )
            is_wall, is_target, has_box, has_player = symbols[ch]
            if is_wall:
                walls.add((r, c))
                continue
            open_cells.add((r, c))
            if is_target:
                targets.add((r, c))
            if has_box:
                boxes.add((r, c))
            if has_player:
                players.append((r, c))
        # Ragged (short) lines: the missing cells are plain open space, like trailing spaces.
        open_cells.update((r, c) for c in range(len(line), width))

    if len(players) != 1:
        found = "no player" if not players else f"{len(players)} players at {players}"
        raise ValueError(f"{source} must have exactly one player ('@' or '+' in XSB), found {found}.")
    if not boxes:
        raise ValueError(f"{source} has no boxes; add at least one box and as many targets.")
    if len(boxes) != len(targets):
        raise ValueError(f"{source} has {len(boxes)} boxes but {len(targets)} targets; the counts must match.")

    floor = _flood_fill(players[0], open_cells)
    for kind, cells in (("box", boxes), ("target", targets)):
        sealed = sorted(cells - floor)
        if sealed:
            r, c = sealed[0]
            raise ValueError(f"{source}: the {kind} at row {r}, column {c} is walled off from the player.")
    return Level(
        height=height,
        width=width,
        walls=frozenset(walls),
        floor=frozenset(floor),
        targets=frozenset(targets),
        boxes=frozenset(boxes),
        player=players[0],
    )


def _flood_fill(start: Cell, open_cells: set[Cell]) -> set[Cell]:
    """Cells connected to ``start`` through ``open_cells`` (boxes do not block: they can be pushed)."""
    seen = {start}
    queue = deque([start])
    while queue:
        r, c = queue.popleft()
        for dr, dc in ORTHOGONAL:
            nxt = (r + dr, c + dc)
            if nxt in open_cells and nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen
