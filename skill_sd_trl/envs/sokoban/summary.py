"""What the skill summarizer is told about Sokoban: its summary prompt (an LLM summarizer's default for this
environment) and its event vocabulary (what the programmatic experience summarizer reads in turn events)."""

from __future__ import annotations

from ...skills.events import EventVocabulary
from ...skills.prompts import COMMON_RULES, SummaryPrompt
from .env import ACTIONS_TRUNCATED
from .render import format_actions
from .rules import BOX_IN_DEAD_CORNER, BOX_OFF_TARGET, BOX_ON_TARGET, SOLVED, WALL_BUMP

SOKOBAN_SYSTEM = (
    "You analyse Sokoban episodes played by an AI agent and write a skill for the same puzzle. The player "
    "moves Up, Down, Left or Right and pushes boxes onto targets; a box pushed into a corner that is not a "
    "target, or against a wall with no target along it, can never be recovered. " + COMMON_RULES + " The "
    "golden_workflow must be the move sequence (or its phases) that solves this level."
)

SOKOBAN_USER = """Sokoban level (id {task_id}):
{task}

{intro}
Each turn shows the agent's answer, the moves applied, events such as box_on_target or box_in_dead_corner, and
the board afterwards.

{trajectories}

Write the skill as JSON in this form:
{schema}"""

SUMMARY_PROMPT = SummaryPrompt(user=SOKOBAN_USER, system=SOKOBAN_SYSTEM)

def answer_syntax(actions) -> str:
    """A move list as the agent answers it: ``<answer>Up || Left</answer>``."""
    return f"<answer>{format_actions(actions)}</answer>"


#: Tags of ``rules.move`` and ``SokobanEnv`` turns. Mistakes are listed most harmful first, each with what happened
#: and how to avoid it.
EVENTS = EventVocabulary(
    progress=frozenset({BOX_ON_TARGET, SOLVED}),
    answer_syntax=answer_syntax,
    mistakes={
        BOX_IN_DEAD_CORNER: (
            "A box was pushed into a dead corner (a corner that is not a target: the box can never be moved out "
            "again)",
            "Before each push, check where the box will end; never push a box into a non-target corner.",
        ),
        BOX_OFF_TARGET: (
            "A box was pushed off a target",
            "Leave boxes that are on targets in place unless the solution needs them moved.",
        ),
        ACTIONS_TRUNCATED: (
            "The agent sent more actions in one turn than allowed; the extra ones were skipped",
            "Send at most the allowed number of actions per turn.",
        ),
        WALL_BUMP: (
            "The agent walked into a wall",
            "Read the board before moving; a move into a wall wastes a turn.",
        ),
    },
)
