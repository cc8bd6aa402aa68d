"""The small interface through which the trainer gets a skill for a task, and reports how it went.

During training the trainer calls ``select`` once per task of a generation batch (before generation; the task's
rollouts share the skill) and ``record_outcome`` once their rewards are known. Evaluation uses no skills. The skill
bank implements the same interface, so a provider that reads a dataset column and a UCB skill bank are
interchangeable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class SkillSelection:
    """A skill chosen for one task: a stable id (for reward feedback) and the text rendered into a prompt."""

    skill_id: str
    text: str


@runtime_checkable
class SkillProvider(Protocol):
    def select(self, task_id: str, example: Mapping[str, Any]) -> SkillSelection | None:
        """Return the skill that should condition the teacher for this task, or None when there is none."""

    def record_outcome(self, task_id: str, skill_id: str, rewards: Sequence[float]) -> None:
        """Feed back the rewards of the rollouts in which ``skill_id`` conditioned the teacher."""


class ColumnSkillProvider:
    """Reads the skill text from a dataset column (a string, or a JSON skill object/dict).

    Empty or missing values mean "no skill" for that example.
    """

    def __init__(self, column: str = "skill"):
        self.column = column

    def select(self, task_id: str, example: Mapping[str, Any]) -> SkillSelection | None:
        value = example.get(self.column)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, Mapping):
            text = "\n".join(f"{k}: {v}" for k, v in value.items())
        else:
            text = str(value)
        return SkillSelection(skill_id=f"{self.column}:{task_id}", text=text)

    def record_outcome(self, task_id: str, skill_id: str, rewards: Sequence[float]) -> None:
        return None
