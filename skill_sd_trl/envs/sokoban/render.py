"""What the model sees and writes: the text board (with its legend) and the action grammar.

Board symbols follow RAGEN: ``#`` wall, ``_`` floor, ``O`` target, ``X`` box, ``√`` box on target, ``P`` player,
``S`` player on target. Void cells (outside an irregular level) are drawn as walls: to the player they are.

Actions are ``Up``, ``Down``, ``Left``, ``Right`` inside ``<answer>...</answer>``, several per turn separated by
``||``. Parsing is deliberately tolerant about everything except the action words themselves: case, commas,
single bars, semicolons, spaces, newlines, quotes and trailing punctuation are accepted, and a missing closing
tag is fine (generation often stops on ``</answer>`` and strips it). Anything else yields ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .level import Level, as_level, level_from_grid
from .rules import ACTIONS

WALL, FLOOR, TARGET, BOX, BOX_ON_TARGET, PLAYER, PLAYER_ON_TARGET = "#", "_", "O", "X", "√", "P", "S"

LEGEND = (
    f"{WALL}: wall, {FLOOR}: floor, {TARGET}: target, {BOX}: box, {BOX_ON_TARGET}: box on target, "
    f"{PLAYER}: player, {PLAYER_ON_TARGET}: player on target"
)

# Rendered-board alphabet -> (is_wall, is_target, has_box, has_player), for reading boards back.
RENDER_SYMBOLS: dict[str, tuple[bool, bool, bool, bool]] = {
    WALL: (True, False, False, False),
    FLOOR: (False, False, False, False),
    TARGET: (False, True, False, False),
    BOX: (False, False, True, False),
    BOX_ON_TARGET: (False, True, True, False),
    PLAYER: (False, False, False, True),
    PLAYER_ON_TARGET: (False, True, False, True),
}

ANSWER_FORMAT = "<answer>Up || Left</answer>"
ANSWER_HELP = (
    "Write your moves inside <answer>...</answer>, using only Up, Down, Left, Right separated by ||, "
    f"for example {ANSWER_FORMAT}."
)

#: ``full``: the rules spelled out and the bare board; ``compact``: the same facts in few tokens, and the board followed
#: by :func:`relative_positions` (CPU runs with small models: see :func:`relative_positions`).
PROMPT_STYLES = ("full", "compact")

# A real answer is a few dozen characters; anything far longer is not a move list worth scanning.
MAX_ANSWER_CHARS = 20_000

_CANONICAL = {a.lower(): a for a in ACTIONS}
_SEPARATORS = re.compile(r"[|,;\s]+")
_STRIP = "\"'`*.!?()[]{}<>:"


def render(level_or_state: Level | str, *, sep: str = "") -> str:
    """Draw a level (or XSB text) as rows of board symbols, joined by ``sep`` within a row."""
    level = as_level(level_or_state)
    rows = []
    for r in range(level.height):
        rows.append(sep.join(_symbol(level, (r, c)) for c in range(level.width)))
    return "\n".join(rows)


def relative_positions(level_or_state: Level | str) -> str:
    """Where each box and target lies as seen from the player, in cells: ``"Box: 1 down 1 left. Target: 2 down 1
    left."`` (several are joined by ``;``; one on the player's own cell is ``here``).

    A reading aid of the compact prompt, shown under the board. The board alone is hard for a small model: the
    tokenizer merges runs of equal cells (``____`` is one SmolLM2 token), so columns are not aligned token by token.
    Measured on 2 CPU cores (docs/benchmarks.md): SmolLM2-135M fine-tuned on optimal demonstrations with the board
    alone, or with absolute (row, column) coordinates, still answered every board alike after 40 steps of 16;
    with these offsets it solved 18 of 32 held-out levels after 20 steps.
    """
    level = as_level(level_or_state)
    pr, pc = level.player

    def offset(cell: tuple[int, int]) -> str:
        dr, dc = cell[0] - pr, cell[1] - pc
        parts = [f"{abs(dr)} {'down' if dr > 0 else 'up'}"] if dr else []
        parts += [f"{abs(dc)} {'right' if dc > 0 else 'left'}"] if dc else []
        return " ".join(parts) or "here"

    boxes = "; ".join(offset(c) for c in sorted(level.boxes))
    targets = "; ".join(offset(c) for c in sorted(level.targets))
    return f"Box: {boxes}. Target: {targets}."


def _symbol(level: Level, cell: tuple[int, int]) -> str:
    if cell not in level.floor:
        return WALL
    target = cell in level.targets
    if cell == level.player:
        return PLAYER_ON_TARGET if target else PLAYER
    if cell in level.boxes:
        return BOX_ON_TARGET if target else BOX
    return TARGET if target else FLOOR


def parse_board(text: str) -> Level:
    """Read a board drawn by :func:`render` back into a :class:`Level` (spaces between symbols are ignored)."""
    if not isinstance(text, str):
        raise TypeError(f"Rendered board must be a str, got {type(text).__name__}.")
    compact = "\n".join(line.replace(" ", "") for line in text.strip().splitlines())
    return level_from_grid(compact, RENDER_SYMBOLS, source="Rendered board")


def parse_actions(text: object, lenient: bool = False) -> list[str] | None:
    """Extract canonical actions from a model's turn, or ``None`` when there is no valid move list.

    The last ``<answer>`` block is used (models sometimes quote the format while thinking). Without any
    ``<answer>`` tag the whole text is accepted only if it is nothing but a move list. One unknown word makes the
    whole answer invalid: silently dropping it would hide a mistake the model should learn from.

    ``lenient=True`` is for very small models that rarely produce the grammar at all: when the strict reading
    fails, every direction word of the answer (or of the whole turn) is taken, in order. Use it with a format
    penalty (``SokobanEnv(lenient_actions=True)`` charges one) so the exact grammar still pays more.
    """
    strict = _parse_strict(text)
    if strict is not None or not lenient or not isinstance(text, str):
        return strict
    body = _answer_body(text)
    if len(body) > MAX_ANSWER_CHARS:
        return None
    words = [_CANONICAL[w.lower()] for w in _DIRECTION_WORD.findall(body)]
    return words or None


_DIRECTION_WORD = re.compile(r"\b(up|down|left|right)\b", re.IGNORECASE)


def _answer_body(text: str) -> str:
    lowered = text.lower()
    start = lowered.rfind("<answer>")
    body = text[start + len("<answer>") :] if start >= 0 else text
    end = body.lower().find("</answer>")
    return body[:end] if end >= 0 else body


def _parse_strict(text: object) -> list[str] | None:
    if not isinstance(text, str) or not text.strip():
        return None
    body = _answer_body(text)
    if len(body) > MAX_ANSWER_CHARS:
        return None
    actions = []
    for token in _SEPARATORS.split(body):
        token = token.strip(_STRIP).lower()
        if not token:
            continue
        if token not in _CANONICAL:
            return None
        actions.append(_CANONICAL[token])
    return actions or None


def format_actions(actions: Iterable[str]) -> str:
    """The canonical text of a move list, e.g. ``"Up || Left"`` (what :func:`parse_actions` reads back)."""
    actions = list(actions)
    bad = [a for a in actions if a not in ACTIONS]
    if bad:
        raise ValueError(f"Unknown Sokoban actions {bad}; expected only {', '.join(ACTIONS)}.")
    return " || ".join(actions)
