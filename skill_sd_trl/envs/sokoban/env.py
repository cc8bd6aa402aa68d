"""``SokobanEnv``: the multi-turn text environment (rewards, step budget, Acc./Comp.).

One turn = the model's raw text. It is parsed with :func:`~.render.parse_actions`; every parsed move is applied
in order (a move into a wall or an unpushable box still costs a step) until the level is solved or the step
budget is spent. Unparseable text is an *invalid action*: the format penalty is paid, nothing moves, no step is
used, and the observation says which format is expected; the episode continues (the rollout loop's turn limit
bounds how many invalid turns a model can waste).

Rewards per applied move, ``reward_mode="shaped"`` (RAGEN / gym-sokoban): ``-0.1`` per step, ``+1`` for a box
pushed onto a target, ``-1`` for a box pushed off one, ``+10`` when the level is solved.
``reward_mode="success"``: ``1`` on the move that solves the level, else ``0``.

Metrics: Acc. = solved; Comp. = fraction of boxes on targets at the end (our reading of the paper's "Comp." for
Sokoban).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..base import EpisodeScore, StepResult, TextEnv
from .level import Level
from .render import ANSWER_FORMAT, ANSWER_HELP, PROMPT_STYLES, parse_actions, relative_positions, render
from .rules import BOX_OFF_TARGET, BOX_ON_TARGET, SOLVED, WALL_BUMP, move

INVALID_ACTION = "invalid_action"
MAX_STEPS = "max_steps"
ACTIONS_TRUNCATED = "actions_truncated"
REWARD_MODES = ("shaped", "success")
LENIENT_PARSE = "lenient_parse"


class SokobanEnv(TextEnv):
    """Sokoban played through text turns; one instance plays one episode at a time.

    Args:
        max_steps: default move budget per episode (a dataset row's ``max_steps`` overrides it). Paper: 40.
        reward_mode: ``"shaped"`` (classic shaping) or ``"success"`` (1 on solve, else 0).
        format_penalty: reward of an unparseable turn; defaults to ``-0.1`` when shaped and ``0.0`` for
            success-only (so that mode's returns stay in {0, 1}). Pass a value to override either.
        max_actions_per_turn: apply at most this many moves from one turn (the rest are ignored and reported);
            ``None`` means only the step budget limits a turn.
        lenient_actions: for very small models: when a turn is not in the action grammar, play the direction words
            it contains anyway, charging the format penalty (event ``"lenient_parse"``); the exact grammar pays more.
        prompt_style: how observations show the board, matching the dataset's prompt (``"full"``: the board and the
            boxes on targets; ``"compact"``: the board and the boxes' and targets' offsets from the player).
        step_penalty, box_on_target_reward, box_off_target_penalty, solve_reward: the shaping numbers.
    """

    name = "sokoban"
    stop_reasons = ("solved", "max_steps")

    def __init__(
        self,
        max_steps: int = 40,
        reward_mode: str = "shaped",
        format_penalty: float | None = None,
        max_actions_per_turn: int | None = None,
        lenient_actions: bool = False,
        prompt_style: str = "full",
        *,
        step_penalty: float = -0.1,
        box_on_target_reward: float = 1.0,
        box_off_target_penalty: float = -1.0,
        solve_reward: float = 10.0,
    ):
        if reward_mode not in REWARD_MODES:
            raise ValueError(f"`reward_mode` must be one of {REWARD_MODES}, got {reward_mode!r}.")
        if prompt_style not in PROMPT_STYLES:
            raise ValueError(f"`prompt_style` must be one of {PROMPT_STYLES}, got {prompt_style!r}.")
        _check_positive("max_steps", max_steps)
        if max_actions_per_turn is not None:
            _check_positive("max_actions_per_turn", max_actions_per_turn)
        self.max_steps = max_steps
        self.reward_mode = reward_mode
        self.format_penalty = (-0.1 if reward_mode == "shaped" else 0.0) if format_penalty is None else format_penalty
        self.max_actions_per_turn = max_actions_per_turn
        self.lenient_actions = lenient_actions
        self.prompt_style = prompt_style
        self.step_penalty = step_penalty
        self.box_on_target_reward = box_on_target_reward
        self.box_off_target_penalty = box_off_target_penalty
        self.solve_reward = solve_reward
        self._level: Level | None = None
        self._max_steps = max_steps
        self.steps = 0
        self.invalid_actions = 0
        self.total_reward = 0.0
        self.done = False
        self.stop_reason: str | None = None

    # ------------------------------------------------------------------ episode API
    def reset(self, example: Mapping[str, Any] | None = None, **row: Any) -> None:
        """Start an episode from a dataset row (its ``level`` XSB text; optional ``max_steps``).

        Returns ``None``: the initial board is already in the row's prompt, so nothing is appended to the first
        user message. Also accepts the row as keyword arguments (``reset(**row)``, TRL's environment style).
        """
        data = {**(dict(example) if example is not None else {}), **row}
        xsb = data.get("level")
        if not isinstance(xsb, (str, Level)):
            raise ValueError(
                "SokobanEnv.reset needs the row's `level` column (XSB text, e.g. from make_sokoban_dataset); "
                f"got {type(xsb).__name__}."
            )
        self._level = xsb if isinstance(xsb, Level) else Level.from_xsb(xsb)
        budget = data.get("max_steps")
        self._max_steps = self.max_steps if budget is None else _check_positive("max_steps", budget)
        self.steps = 0
        self.invalid_actions = 0
        self.total_reward = 0.0
        self.done = self._level.is_solved
        self.stop_reason = "solved" if self.done else None
        return None

    def step(self, action: str) -> StepResult:
        """Apply one model turn; see the module docstring for rewards and budgets."""
        level = self._require_level()
        if self.done:
            return StepResult(
                observation=f"The episode is already over ({self.stop_reason}).\n{render(level)}",
                reward=0.0,
                done=True,
                valid=False,
                stop_reason=self.stop_reason,
                info={"actions": [], "events": ["episode_over"]},
            )
        actions = parse_actions(action)
        if actions is not None:
            return self._play(level, actions)
        actions = parse_actions(action, lenient=True) if self.lenient_actions else None
        if actions is None:
            return self._invalid_turn(level)
        result = self._play(level, actions)
        penalty = float(self.format_penalty)
        self.total_reward = round(self.total_reward + penalty, 10)
        result.reward = round(result.reward + penalty, 10)
        result.info["events"].append(LENIENT_PARSE)
        result.observation = f"(Answer format not followed; moves read anyway. Expected {ANSWER_FORMAT}.)\n" + result.observation
        return result

    def score(self) -> EpisodeScore:
        """Acc. (solved), Comp. (fraction of boxes on targets) and counters of the current episode."""
        level = self._require_level()
        return EpisodeScore(
            success=level.is_solved,
            completion=level.completion,
            info={
                "steps": self.steps,
                "invalid_actions": self.invalid_actions,
                "boxes_on_target": level.boxes_on_target,
                "num_boxes": level.num_boxes,
                "total_reward": self.total_reward,
            },
        )

    @property
    def level(self) -> Level:
        """The current position."""
        return self._require_level()

    @property
    def steps_left(self) -> int:
        return self._max_steps - self.steps

    # ------------------------------------------------------------------ internals
    def _require_level(self) -> Level:
        if self._level is None:
            raise RuntimeError("SokobanEnv.reset(example) must be called before step()/score().")
        return self._level

    def _invalid_turn(self, level: Level) -> StepResult:
        self.invalid_actions += 1
        reward = float(self.format_penalty)
        self.total_reward = round(self.total_reward + reward, 10)
        note = f"Invalid answer: no valid moves found. {ANSWER_HELP} Nothing moved."
        return StepResult(
            observation=self._observation(note, level),
            reward=reward,
            done=False,
            valid=False,
            info={"actions": [], "events": [INVALID_ACTION]},
        )

    def _play(self, level: Level, actions: list[str]) -> StepResult:
        events: list[str] = []
        applied: list[str] = []
        reward = 0.0
        limit = len(actions) if self.max_actions_per_turn is None else self.max_actions_per_turn
        for act in actions[:limit]:
            if self.steps >= self._max_steps or level.is_solved:
                break
            outcome = move(level, act)
            level = outcome.level
            self.steps += 1
            applied.append(act)
            events.extend(outcome.events)
            reward += self._move_reward(outcome.events)
        skipped = len(actions) - len(applied)
        if len(actions) > limit and not level.is_solved and self.steps < self._max_steps:
            events.append(ACTIONS_TRUNCATED)
        self._level = level
        if level.is_solved:
            self.done, self.stop_reason = True, "solved"
        elif self.steps >= self._max_steps:
            self.done, self.stop_reason = True, "max_steps"
            events.append(MAX_STEPS)
        reward = round(reward, 10)  # keep sums like 0.7 free of float noise in logs
        self.total_reward = round(self.total_reward + reward, 10)
        return StepResult(
            observation=self._observation(self._note(applied, events, skipped), level),
            reward=reward,
            done=self.done,
            valid=True,
            stop_reason=self.stop_reason,
            info={"actions": applied, "events": events},
        )

    def _move_reward(self, events: tuple[str, ...]) -> float:
        if self.reward_mode == "success":
            return 1.0 if SOLVED in events else 0.0
        reward = self.step_penalty
        reward += self.box_on_target_reward * events.count(BOX_ON_TARGET)
        reward += self.box_off_target_penalty * events.count(BOX_OFF_TARGET)
        if SOLVED in events:
            reward += self.solve_reward
        return reward

    def _note(self, applied: list[str], events: list[str], skipped: int) -> str:
        parts = [f"Moves applied: {', '.join(applied)}." if applied else "No moves applied."]
        if WALL_BUMP in events:
            parts.append(f"{events.count(WALL_BUMP)} move(s) were blocked by a wall or an unpushable box.")
        if BOX_ON_TARGET in events:
            parts.append("A box was pushed onto a target.")
        if BOX_OFF_TARGET in events:
            parts.append("A box was pushed off a target.")
        if "box_in_dead_corner" in events:
            parts.append("A box is stuck in a corner that is not a target; it can never move again.")
        if skipped and SOLVED not in events and MAX_STEPS not in events:
            parts.append(f"{skipped} extra move(s) were ignored (at most {self.max_actions_per_turn} per turn).")
        if SOLVED in events:
            parts.append("All boxes are on targets: puzzle solved!")
        elif MAX_STEPS in events:
            parts.append("The step budget is spent: episode over.")
        return " ".join(parts)

    def _observation(self, note: str, level: Level) -> str:
        if self.prompt_style == "compact":  # the same board text as the compact prompt (dataset.build_prompt)
            return f"{note}\n{render(level)}\n{relative_positions(level)}\nSteps left: {self.steps_left}."
        return (
            f"{note}\n{render(level)}\nBoxes on targets: {level.boxes_on_target}/{level.num_boxes}. "
            f"Steps left: {self.steps_left}."
        )


def _check_positive(name: str, value: Any) -> int:
    if hasattr(value, "__index__") and not isinstance(value, bool):  # numpy / datasets integers too
        value = value.__index__()
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return value
