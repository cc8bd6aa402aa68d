"""Test spies on a trainer's internals: what the teacher was asked to score, which adapter generated."""


def record_teacher_prompts(tr) -> list:
    """Record, per teacher scoring call, the teacher prompts handed to ``SkillSDTrainer._teacher_logps``."""
    calls = []
    original = tr._teacher_logps

    def spy(output, teacher_prompts, mode):
        calls.append(list(teacher_prompts))
        return original(output, teacher_prompts, mode)

    tr._teacher_logps = spy
    return calls
