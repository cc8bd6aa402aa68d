"""What an environment's turn events mean to the programmatic (experience) summarizer.

Environments tag turns with short events (``Turn.info["events"]``). The summarizer knows no environment: each one
brings an :class:`EventVocabulary` (``EnvSpec.events``) saying which tags are progress and which are mistakes, with
what happened and how to avoid it. ``invalid_action`` and ``api_error: <message>`` are understood everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class EventVocabulary:
    """``progress``: tags that mark progress toward solving; ``mistakes``: tag -> (what happened, how to avoid it),
    most harmful first (the order of the mistake analysis); ``answer_syntax``: how the agent writes a list of actions
    in its own answers (Sokoban: ``<answer>Up || Left</answer>``), or ``None``.

    With ``answer_syntax`` the golden workflow gives a solved task's shortest solution as the answer that plays it,
    so that the teacher — the student's own network reading the skill — can act on it. Measured with the calibrated
    SmolLM2-135M Sokoban base (docs/benchmarks.md): the same solution as a numbered list of moves *lowered* its
    log-probability of the optimal answer (−6.5 → −10.6 nats on 16 levels), written in the answer syntax it raised it
    (→ −2.9)."""

    progress: frozenset[str] = frozenset({"solved"})
    mistakes: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    answer_syntax: Callable[[Sequence[str]], str] | None = None


GENERIC_EVENTS = EventVocabulary()


def vocabulary_for(env_name: str, vocabularies: Mapping[str, EventVocabulary]) -> EventVocabulary:
    """The vocabulary of ``env_name`` (exact, then by prefix: ``sokoban-6x6`` uses ``sokoban``'s), else generic."""
    name = (env_name or "").lower()
    if name in vocabularies:
        return vocabularies[name]
    for key, vocabulary in vocabularies.items():
        if name.startswith(key):
            return vocabulary
    return GENERIC_EVENTS
