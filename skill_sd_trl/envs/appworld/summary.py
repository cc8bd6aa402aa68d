"""AppWorld for the skill summarizer (``EnvSpec.summary_prompt`` and ``EnvSpec.events``, for the real and the
offline app world alike): a prompt that asks for the apps, APIs and arguments that worked, and the progress tags."""

from __future__ import annotations

from ...skills.events import EventVocabulary
from ...skills.prompts import COMMON_RULES, SummaryPrompt

APPWORLD_SYSTEM = (
    "You analyse episodes of an AI agent that completes everyday tasks by writing Python code calling app APIs "
    "(apis.<app>.<api>(...)) and finishing with apis.supervisor.complete_task(...). You write a skill for the "
    "same task. " + COMMON_RULES + " Name the exact apps, APIs and arguments that worked, how to log in and "
    "paginate, and the API errors to avoid."
)

APPWORLD_USER = """Task (id {task_id}):
{task}

{intro}
Each turn shows the code the agent ran and the output or error it got.

{trajectories}

Write the skill as JSON in this form:
{schema}"""

SUMMARY_PROMPT = SummaryPrompt(user=APPWORLD_USER, system=APPWORLD_SYSTEM)


def answer_syntax(actions) -> str:
    """Code cells as the agent answers them: one fenced Python block, cells in order, line breaks kept. Without it
    the golden workflow of a solved task was each cell squeezed onto one line and clipped at 300 characters: not
    code the teacher (the student's own network) could copy."""
    return "```python\n" + "\n\n".join(str(a).strip("\n") for a in actions) + "\n```"


#: AppWorld turns report ``api_error: <status> <message>`` (counted by the summarizer as API errors) and
#: ``invalid_action``; progress is the task's completion.
EVENTS = EventVocabulary(progress=frozenset({"solved", "subtask_done", "test_passed"}), answer_syntax=answer_syntax)
