"""Who sees which prompt in one generation batch: the plain task, the parent's prompt, the student's, the teacher's.

The plan is made before sampling (contexts and skills are chosen per task) and settled after it (from the prompts
sampling actually used, which an environment's ``reset()`` may have extended). Nothing here touches a model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..rollout.prompts import add_context_to_prompt, append_to_last_message

#: The prompt TRL assumes for a row without one (an environment-only dataset: ``reset()`` supplies the task).
EMPTY_PROMPT = [{"role": "user", "content": ""}]


@dataclass
class BatchPlan:
    """One generation batch, as Skill-SD sees it: decided before sampling, completed by what sampling used.

    ``plain_prompts`` are the dataset's prompts; ``parent_prompts`` what the parent is handed (the plain ones, or with
    the skill rendered in for the skill-augmented GRPO baseline); ``student_prompts`` the plain prompts with the
    environment's reset text (what the student is trained on and what a summary describes); ``teacher_prompts``
    what the teacher scores under (student prompt ⊕ context, or exactly what it sampled under when it acts).
    """

    plain_prompts: list
    parent_prompts: list
    contexts: list
    skills: list
    student_prompts: list | None = None
    teacher_prompts: list | None = None
    rows: list | None = None  # the dataset rows handed to the parent (a row-aware rollout resets its envs with them)

    @classmethod
    def make(cls, inputs: list[dict], context_for: Callable[[dict, dict], tuple], render: Callable,
             skills_in_student_prompt: bool) -> BatchPlan:
        """``context_for(example, cache)`` gives (context text, skill); ``cache`` is shared by the batch so that a
        task's whole group gets one selection."""
        cache: dict = {}
        contexts, skills = zip(*(context_for(x, cache) for x in inputs), strict=True)
        plain = [x.get("prompt", EMPTY_PROMPT) for x in inputs]
        parent = ([render(p, c) for p, c in zip(plain, contexts, strict=True)]  # skill-augmented GRPO baseline
                  if skills_in_student_prompt else plain)
        return cls(plain_prompts=plain, parent_prompts=parent, contexts=list(contexts), skills=list(skills))

    def settle(self, given: list, sent: list, sampled: list, teacher_acts: bool, student_sees_skill: bool,
               render: Callable) -> None:
        """Fix the student's and the teacher's prompts from what sampling used.

        ``given``: the parent's prompts after any environment ``reset()`` text (TRL's ``environment_factory``);
        ``sent``: what went to the sampler (``given``, or with the context when the teacher acts); ``sampled``: what
        the sampler finally used (a ``rollout_func`` may append more reset text). The student's prompt is the plain
        task with all that reset text, never a skill; the teacher's is the student's plus the context — or exactly
        the prompt it sampled under when it acts.
        """
        if not teacher_acts and not student_sees_skill:
            self.student_prompts = list(sampled)  # the student sampled under its own (plain) prompt
        else:
            self.student_prompts = [
                append_to_last_message(plain, reset_text(parent, g) + reset_text(s_in, s_out))
                for plain, parent, g, s_in, s_out in zip(
                    self.plain_prompts, self.parent_prompts, given, sent, sampled, strict=True
                )
            ]
        self.teacher_prompts = (list(sampled) if teacher_acts
                                else [render(p, c) for p, c in zip(self.student_prompts, self.contexts, strict=True)])

    def scored_rows(self, every_row: bool) -> list[bool]:
        """Rows the teacher scores: all when ``every_row`` (its prompt is the plain one by design, or it sampled
        them), else those with a context. Without one the teacher is the student itself: no signal, no forward."""
        if every_row:
            return [True] * len(self.contexts)
        return [c is not None and bool(str(c).strip()) for c in self.contexts]


def render_context(prompt, context: str | None, args, tokenizer):
    """``prompt`` with the teacher's privileged context rendered in by the configured template and position."""
    template = args.teacher_ground_truth_template if args.teacher_context == "ground_truth" else args.teacher_skill_template
    # A skill is model-written text: the tokenizer's control tokens inside it are rendered as plain text.
    return add_context_to_prompt(prompt, context, template, args.teacher_skill_position, tokenizer=tokenizer)


def reset_text(before: Any, after: Any) -> str:
    """The text an environment's ``reset()`` appended to ``before`` (the last message's content) to give ``after``.

    Raises when ``after`` is not ``before`` with text appended: then the plain prompt cannot be rebuilt."""
    if before == after:
        return ""
    if isinstance(before, str) and isinstance(after, str) and after.startswith(before):
        return after[len(before):]
    if (
        isinstance(before, list) and isinstance(after, list) and len(before) == len(after) and before[:-1] == after[:-1]
        and isinstance(before[-1].get("content"), str) and isinstance(after[-1].get("content"), str)
        and after[-1]["content"].startswith(before[-1]["content"])
    ):
        return after[-1]["content"][len(before[-1]["content"]):]
    raise ValueError(
        "Cannot tell the environment's reset() text from the prompt it extended (expected text appended to the last "
        "message). Skill-augmented GRPO and teacher rollouts need environments that extend prompts that way."
    )
