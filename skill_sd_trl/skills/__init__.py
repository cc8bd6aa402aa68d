"""Skills: what the teacher sees and the student never does.

Light names are imported eagerly; ``SkillSummarizerCallback`` (which pulls in ``transformers``) lazily.
"""

from .bank import SkillBank, SkillEntry
from .llm_summarizers import OpenAIChatSummarizer, TransformersSummarizer
from .pipeline import SkillPipeline
from .prompts import PromptBook, PromptTemplateError, SummaryPrompt
from .provider import ColumnSkillProvider, SkillProvider, SkillSelection
from .render import render_trajectory
from .schema import Skill, SkillParseError, parse_skill
from .show import format_bank
from .summarizers import ExperienceSummarizer, Summarizer, SummarizerError, build_summarizer
from .trajectory import Trajectory, Turn

__all__ = [
    "ColumnSkillProvider", "ExperienceSummarizer", "OpenAIChatSummarizer", "PromptBook", "PromptTemplateError", "Skill",
    "SkillBank", "SkillEntry", "SkillParseError", "SkillPipeline", "SkillProvider", "SkillSelection",
    "SkillSummarizerCallback",
    "Summarizer", "SummarizerError", "SummaryPrompt", "Trajectory", "TransformersSummarizer", "Turn",
    "build_summarizer", "format_bank", "parse_skill", "render_trajectory",
]


def __getattr__(name: str):
    if name == "SkillSummarizerCallback":
        from .callback import SkillSummarizerCallback

        return SkillSummarizerCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
