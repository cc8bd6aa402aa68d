"""Summary prompt templates: the generic one, the ones environments bring (``EnvSpec.summary_prompt``), overrides.

A template is a pair of ``str.format`` strings (system, user). The user template receives these placeholders:

==================== ==========================================================
``{task}``            the task text as the student saw it
``{task_id}``         the task id
``{env_name}``        the environment name
``{trajectories}``    the rendered episodes (required; ``{trajectory}`` is an alias)
``{intro}``           one sentence introducing the episodes: the group, or the episode to summarize and its contrast
``{num_trajectories}`` how many episodes are shown (the focus included)
``{num_contrast}``    how many of them are contrast episodes (0 for a group summary)
``{num_successes}``   how many of them solved the task
``{best_reward}``     the best reward among them
``{schema}``          the JSON skeleton the answer must follow
==================== ==========================================================

Per-trajectory summaries (``render(..., focus=trajectory)``, the default of the training callback) render the focus
episode first under ``=== EPISODE TO SUMMARIZE ... ===`` with at least half of ``max_chars``, then contrast episodes
under ``=== Contrast episode k of m ... ===``, so even a custom template that only uses ``{trajectories}`` makes the
described episode unambiguous.

Literal braces (for example a JSON example) must be doubled: ``{{`` and ``}}``. Templates are validated when
built, so a typo fails at configuration time with the placeholder name, not mid-training.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .render import contrast_shown, order_for_summary, render_focus, render_trajectories
from .trajectory import Trajectory

PLACEHOLDERS = (
    "task",
    "task_id",
    "env_name",
    "trajectories",
    "trajectory",
    "intro",
    "num_trajectories",
    "num_contrast",
    "num_successes",
    "best_reward",
    "schema",
)

SCHEMA_HINT = (
    '{\n  "success_analysis": "<what the successful episodes did right, concretely>",\n'
    '  "mistake_analysis": "<the mistakes seen and how to avoid them>",\n'
    '  "golden_workflow": "<the step-by-step procedure that solves this task>"\n}'
)

COMMON_RULES = (
    "Answer with exactly one JSON object with exactly the keys success_analysis, mistake_analysis and "
    "golden_workflow, each a non-empty string, and nothing else. Be concrete and specific to this task; "
    "do not invent facts that the episodes do not show. When one episode is marked as the episode to summarize, "
    "the skill is about that episode (what it did right, the mistakes it made); the contrast episodes only help "
    "judge it."
)

GENERIC_SYSTEM = (
    "You analyse episodes of an AI agent solving a task and write a reusable skill that will help the agent "
    "solve the same task next time. " + COMMON_RULES
)

GENERIC_USER = """Task (environment {env_name}, id {task_id}):
{task}

{intro}

{trajectories}

Write the skill as JSON in this form:
{schema}"""

class PromptTemplateError(ValueError):
    """A summary prompt template is malformed (unknown placeholder, missing ``{trajectories}``, stray brace)."""


def _check_format_string(template: str, what: str, require_trajectories: bool) -> None:
    if not isinstance(template, str):
        raise PromptTemplateError(f"{what} must be a string, got {type(template).__name__}")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise PromptTemplateError(
            f"{what} is not a valid format string ({exc}); write literal braces as '{{{{' and '}}}}'"
        ) from exc
    names = set()
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            raise PromptTemplateError(
                f"{what} uses unknown placeholder {{{name}}}; allowed: "
                + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
                + " (write literal braces as '{{' and '}}')"
            )
        if spec or conversion:
            raise PromptTemplateError(f"{what}: placeholder {{{name}}} must not have a format spec or conversion")
        names.add(name)
    if require_trajectories and not names & {"trajectories", "trajectory"}:
        raise PromptTemplateError(f"{what} must contain {{trajectories}} (where the episodes are inserted)")


@dataclass(frozen=True)
class SummaryPrompt:
    """A validated (system, user) template pair."""

    user: str
    system: str = GENERIC_SYSTEM

    def __post_init__(self) -> None:
        _check_format_string(self.user, "summary prompt user template", require_trajectories=True)
        _check_format_string(self.system, "summary prompt system template", require_trajectories=False)

    def render(
        self,
        trajectories: Sequence[Trajectory],
        max_chars: int = 12000,
        max_trajectories: int = 4,
        focus: Trajectory | None = None,
    ) -> list[dict[str, str]]:
        """Chat messages asking for a skill about ``trajectories`` (all of one task), or, with ``focus``, about that
        one episode with ``trajectories`` (the focus excluded by identity) shown as contrast. ``max_trajectories``
        bounds the episodes shown, the focus included; ``max_chars`` bounds their rendered text."""
        if focus is None:
            if not trajectories:
                raise ValueError("cannot build a summary prompt without trajectories")
            shown = order_for_summary(trajectories, max_trajectories)
            text = render_trajectories(shown, max_chars=max_chars, max_trajectories=max_trajectories)
            num_contrast = 0
            intro = (
                f"Below are {len(shown)} episode(s) of the agent on this task ({sum(t.success for t in shown)} solved "
                f"it; best reward {max(t.reward for t in shown):.3f})."
            )
        else:
            others = [t for t in trajectories if t is not focus]
            text = render_focus(focus, others, max_chars, max_trajectories)
            contrast = contrast_shown(others, max_chars, max_trajectories)
            num_contrast = len(contrast)
            shown = [focus, *contrast]
            intro = (
                f"Below is the episode to summarize ({'SOLVED' if focus.success else 'NOT SOLVED'}, reward "
                f"{focus.reward:.3f})"
                + (
                    f", followed by {num_contrast} other episode(s) of the same task for contrast "
                    f"({sum(t.success for t in contrast)} of them solved it)."
                    if num_contrast
                    else "."
                )
                + " Write the skill about the episode to summarize: what it did right, the mistakes it made, and the "
                "workflow that solves the task."
            )
        first = shown[0]
        values = {
            "task": first.task.strip()[: max_chars // 3],
            "task_id": first.task_id,
            "env_name": first.env_name,
            "trajectories": text,
            "trajectory": text,
            "intro": intro,
            "num_trajectories": len(shown),
            "num_contrast": num_contrast,
            "num_successes": sum(t.success for t in shown),
            "best_reward": f"{max(t.reward for t in shown):.3f}",
            "schema": SCHEMA_HINT,
        }
        messages = []
        system = self.system.format(**values)
        if system.strip():
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": self.user.format(**values)})
        return messages


GENERIC_PROMPT = SummaryPrompt(user=GENERIC_USER, system=GENERIC_SYSTEM)

PromptSpec = str | SummaryPrompt | Mapping[str, "str | SummaryPrompt"] | None


def as_prompt(value: str | SummaryPrompt) -> SummaryPrompt:
    """A user template string becomes a :class:`SummaryPrompt` with the generic system message."""
    if isinstance(value, SummaryPrompt):
        return value
    return SummaryPrompt(user=value)


class PromptBook:
    """Chooses the template for an environment: an override if given, else the environment's own (``env_prompts``,
    which the app layer fills from ``EnvSpec.summary_prompt``; names like ``sokoban-6x6`` match by prefix), else
    the generic one.

    ``override`` may be a single template (string or :class:`SummaryPrompt`) used for every environment, or a
    mapping from environment name to template (``"generic"`` in it replaces the fallback).
    """

    def __init__(self, override: PromptSpec = None, env_prompts: Mapping[str, SummaryPrompt] | None = None):
        self._single: SummaryPrompt | None = None
        self._by_env: dict[str, SummaryPrompt] = {"generic": GENERIC_PROMPT}
        self._by_env.update({str(k).lower(): v for k, v in (env_prompts or {}).items() if v is not None})
        if override is None:
            return
        if isinstance(override, (str, SummaryPrompt)):
            self._single = as_prompt(override)
        elif isinstance(override, Mapping):
            for env, value in override.items():
                self._by_env[str(env).lower()] = as_prompt(value)
        else:
            raise PromptTemplateError(
                f"prompt override must be a string, SummaryPrompt or mapping env->template, got "
                f"{type(override).__name__}"
            )

    def for_env(self, env_name: str) -> SummaryPrompt:
        if self._single is not None:
            return self._single
        name = (env_name or "").lower()
        if name in self._by_env:
            return self._by_env[name]
        for key, prompt in self._by_env.items():
            if key != "generic" and name.startswith(key):
                return prompt
        return self._by_env["generic"]
