"""The record of one finished episode, shared by rollouts, environments, summarizers and the skill bank."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Turn:
    """One agent turn: what the model wrote and what the environment answered."""

    action: str
    observation: str = ""
    valid: bool = True  # False when the action could not be parsed or was refused
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Trajectory:
    """A finished episode as seen by the skill pipeline (text only; token ids stay in the trainer batch)."""

    task_id: str
    env_name: str
    task: str  # the task as the student saw it (plain prompt text)
    turns: list[Turn]
    reward: float
    success: bool = False  # "Acc." of the paper
    completion: float = 0.0  # "Comp." of the paper, in [0, 1]
    stop_reason: str = "done"
    step: int = 0  # training step at which the episode was played
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Trajectory":
        data = dict(data)
        data["turns"] = [Turn(**t) for t in data.get("turns", [])]
        return cls(**data)
