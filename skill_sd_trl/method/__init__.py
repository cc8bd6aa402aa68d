"""The method: ``SkillSDConfig``, ``SkillSDTrainer`` (GRPO + λ · L_SDL) and the parts the trainer is made of.

- :mod:`.config`, :mod:`.trainer`: the configuration and the ``GRPOTrainer`` subclass.
- :mod:`.losses`: the per-token distillation loss (pure functions). :mod:`.sdl_metrics`: what is logged about it.
- :mod:`.batch_plan`: who sees which prompt (student, teacher, sampler). :mod:`.teacher`, :mod:`.teacher_scoring`:
  the LoRA-synced teacher, its checkpoint, its log-probs. :mod:`.shared_prompts`: each group's prompt encoded once.
- :mod:`.model_card`: the Skill-SD section of the Hub model card.
"""
