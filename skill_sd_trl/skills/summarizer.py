"""The summarizer interface: trajectories of one task in, the raw text of one skill JSON object out.

Backends: :class:`~skill_sd_trl.skills.summarizers.ExperienceSummarizer` (no model, the offline default) and the
model-backed ones in :mod:`~skill_sd_trl.skills.llm_summarizers`; ``build_summarizer`` picks one by name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from .trajectory import Trajectory


class SummarizerError(RuntimeError):
    """A backend failed to produce text (HTTP error, bad response, prompt too long...).

    ``retryable`` tells the caller whether trying again may help (timeouts, 429, 5xx) or not (401, bad JSON).
    """

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


def _check_one_task(trajectories: Sequence[Trajectory], focus: Trajectory | None = None) -> None:
    if not trajectories and focus is None:
        raise ValueError("summarize() needs at least one trajectory")
    task_ids = {t.task_id for t in trajectories} | ({focus.task_id} if focus is not None else set())
    if len(task_ids) > 1:
        raise ValueError(f"summarize() takes the trajectories of one task; got task ids {sorted(task_ids)[:5]}")


def contrast_of(trajectories: Sequence[Trajectory], focus: Trajectory | None) -> list[Trajectory]:
    """The trajectories other than ``focus`` (by identity: an identical twin of the focus is still contrast)."""
    return [t for t in trajectories if t is not focus]


class Summarizer(ABC):
    """Turns finished trajectories of one task into the raw text of one skill JSON object.

    ``summarize(trajectories, focus=None)``: with ``focus``, the skill describes that one trajectory (what it did,
    its mistakes) and ``trajectories``, the task's group (the focus may be among them), are contrast only. Without
    ``focus``, the skill summarizes the group. A subclass written for the older ``summarize(trajectories)`` still
    works with :class:`~skill_sd_trl.skills.callback.SkillSummarizerCallback`: in trajectory mode it receives the
    focus trajectory alone.
    """

    name: str = "summarizer"

    @abstractmethod
    def summarize(self, trajectories: Sequence[Trajectory], focus: Trajectory | None = None) -> str:
        """Return raw text expected to contain one skill JSON object (parsed and validated by the caller)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""
