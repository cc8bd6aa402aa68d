"""Skills: what the teacher sees and the student never does."""

from .provider import ColumnSkillProvider, SkillProvider, SkillSelection

__all__ = ["ColumnSkillProvider", "SkillProvider", "SkillSelection"]
