"""The ``TrainerCallback`` of the skill pipeline: a thin adapter that calls :class:`SkillPipeline` at the Trainer's
hooks (the design card's callback-driven summarizer). Everything else lives in :mod:`skill_sd_trl.skills.pipeline`.

Usage (``SkillSDTrainer`` then saves, restores and logs the pipeline with its own checkpoints and log rows)::

    trainer.add_callback(SkillSummarizerCallback(trainer, ExperienceSummarizer(), bank))
"""

from __future__ import annotations

from transformers import TrainerCallback

from .pipeline import BANK_FILE, DEFAULT_MAX_QUEUE, GRANULARITIES, SUMMARIZER_STATE_FILE, SkillPipeline, accepts_focus

__all__ = ["BANK_FILE", "DEFAULT_MAX_QUEUE", "GRANULARITIES", "SUMMARIZER_STATE_FILE", "SkillSummarizerCallback",
           "accepts_focus"]


class SkillSummarizerCallback(SkillPipeline, TrainerCallback):
    """A :class:`SkillPipeline` driven by the Trainer: after every optimizer step, at every log row, at the end."""

    def on_step_end(self, args, state, control, **kwargs):
        self.after_step(int(getattr(state, "global_step", 0) or 0))
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.log_metrics and not self._attached and logs is not None and self.is_main_process:
            logs.update(self.metrics())
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.finish()
        return control
