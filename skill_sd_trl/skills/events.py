"""What an environment's turn events mean to the programmatic (experience) summarizer.

Environments tag turns with short events (``Turn.info["events"]``). The summarizer knows no environment: each one
brings an :class:`EventVocabulary` (``EnvSpec.events``) saying which tags are progress and which are mistakes, with
what happened and how to avoid it. ``invalid_action`` and ``api_error: <message>`` are understood everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class EventVocabulary:
    """``progress``: tags that mark progress toward solving; ``mistakes``: tag -> (what happened, how to avoid it),
    most harmful first (the order of the mistake analysis)."""

    progress: frozenset[str] = frozenset({"solved"})
    mistakes: Mapping[str, tuple[str, str]] = field(default_factory=dict)


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
